"""Table definitions (SQLAlchemy 2 Core), the single source of the schema's shape.

Migrations (``approver/migrations/versions``) create exactly these tables; a test compares the
migrated database with this metadata. Portable between SQLite and PostgreSQL: strings with
lengths, CHECK constraints instead of native enums, JSON (JSONB on PostgreSQL), UTC timestamps.

``token_uses.jti`` is the primary key: burning a ``jti`` is one INSERT that the database refuses
when the ``jti`` is already there (docs/design.md, "Store": "enforced by the database ... not by a
read-then-write in Python"). There is deliberately no foreign key from ``token_uses`` to
``agents``: a burnt ``jti`` stays burnt even if its agent's record is deleted later.

``audit_events`` is the hash chain (:mod:`approver.audit.chain`): ``seq`` is the primary key and
the chain order. ``audit_chain_head`` holds exactly one row (``id = 1``): the last ``seq`` and
``hash``. Every append locks that row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` serialises writers already), so two replicas never chain two events to the
same predecessor (see :meth:`approver.store.Transaction.append_audit`).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from approver.domain.records import AgentStatus, ApprovalMethod, ControlPlaneState, OwnerEvidence

#: Deterministic constraint names, so migrations and metadata agree on every dialect.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

#: JSON on SQLite, JSONB on PostgreSQL.
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every dialect.

    SQLite has no timestamp type and returns naive values; they are stored and read as UTC.
    Naive datetimes are refused on the way in, so local time can never slip in.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _one_of(column: str, values: list[str], *, nullable: bool = False) -> str:
    allowed = ", ".join(f"'{v}'" for v in values)
    check = f"{column} IN ({allowed})"
    return f"{column} IS NULL OR {check}" if nullable else check


agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("agent_id", sa.String(253), nullable=False),
    sa.Column("platform", sa.String(64), nullable=False),
    sa.Column("region", sa.String(128), nullable=True),
    sa.Column("capacity", Json, nullable=True),
    sa.Column("metadata", Json, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("approval_method", sa.String(16), nullable=True),
    sa.Column("approved_by", sa.String(128), nullable=True),
    sa.Column("approved_at", UTCDateTime(), nullable=True),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("jti", sa.String(64), nullable=True),
    sa.Column("kid", sa.String(64), nullable=True),
    sa.Column("cluster", sa.String(253), nullable=True),
    sa.Column("namespace", sa.String(63), nullable=True),
    sa.Column("pod_name", sa.String(253), nullable=True),
    sa.Column("pod_uid", sa.String(64), nullable=True),
    sa.Column("credential_hash", sa.String(64), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # 0002
    sa.Column("service_account", sa.String(253), nullable=True),
    sa.Column("owner_kind", sa.String(63), nullable=True),
    sa.Column("owner_name", sa.String(253), nullable=True),
    sa.Column("owner_uid", sa.String(64), nullable=True),
    sa.Column("api_key_hash", sa.String(64), nullable=True),
    sa.Column("api_key_issued_at", UTCDateTime(), nullable=True),
    sa.Column("expired_at", UTCDateTime(), nullable=True),
    sa.Column("updated_by", sa.String(128), nullable=True),
    # 0004
    sa.Column("control_plane", sa.String(16), nullable=True),
    sa.Column("control_plane_at", UTCDateTime(), nullable=True),
    # 0005
    sa.Column("source_address", sa.String(45), nullable=True),
    # 0006
    sa.Column("owner_deployment_name", sa.String(253), nullable=True),
    sa.Column("owner_deployment_uid", sa.String(64), nullable=True),
    sa.Column("owner_evidence", sa.String(16), nullable=True),
    sa.UniqueConstraint("agent_id"),
    sa.CheckConstraint(_one_of("status", [s.value for s in AgentStatus]), name="status"),
    sa.CheckConstraint(
        _one_of("approval_method", [m.value for m in ApprovalMethod], nullable=True),
        name="approval_method",
    ),
    sa.CheckConstraint(
        _one_of("control_plane", [s.value for s in ControlPlaneState], nullable=True),
        name="control_plane",
    ),
    sa.CheckConstraint(
        _one_of("owner_evidence", [e.value for e in OwnerEvidence], nullable=True),
        name="owner_evidence",
    ),
    sa.Index(None, "status"),
    sa.Index("ix_agents_namespace_status", "namespace", "status"),
    sa.Index(None, "owner_uid"),
    sa.Index(None, "owner_deployment_uid"),
    sa.Index(None, "pod_uid"),
    sa.Index(None, "created_at"),
    sa.Index("ix_agents_api_key_hash", "api_key_hash", unique=True),
)

token_uses = sa.Table(
    "token_uses",
    metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("agent_id", sa.String(253), nullable=False),
    sa.Column("kid", sa.String(64), nullable=False),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("used_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("pod_uid", sa.String(64), nullable=True),  # 0002
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("time", UTCDateTime(), nullable=False),
    sa.Column("component", sa.String(32), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("decision", sa.String(64), nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("security", sa.Boolean(), nullable=False),
    sa.Column("actor", sa.String(128), nullable=True),
    sa.Column("cluster", sa.String(253), nullable=True),
    sa.Column("namespace", sa.String(63), nullable=True),
    sa.Column("pod", sa.String(253), nullable=True),
    sa.Column("service_account", sa.String(253), nullable=True),
    sa.Column("jti", sa.String(64), nullable=True),
    sa.Column("kid", sa.String(64), nullable=True),
    sa.Column("admission_uid", sa.String(64), nullable=True),
    sa.Column("agent_id", sa.String(253), nullable=True),
    sa.Column("approval_method", sa.String(16), nullable=True),
    sa.Column("credential", sa.String(32), nullable=True),
    sa.Column("dry_run", sa.Boolean(), nullable=True),
    sa.Column("message", sa.Text(), nullable=True),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index(None, "agent_id"),
    sa.Index(None, "time"),
)

audit_chain_head = sa.Table(
    "audit_chain_head",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.CheckConstraint("id = 1", name="single_row"),
)
