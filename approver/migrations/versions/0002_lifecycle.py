"""Lifecycle, per-agent API keys, live-pod binding, the audit hash chain.

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-01

* ``agents``: service account, controller owner, per-agent API key hash (unique) and issue
  time, pending expiry, last actor; indexes for the quota, the pod watch, paging and the
  credential review.
* ``token_uses.pod_uid``: the live pod a ``jti``'s first use was bound to.
* ``audit_events`` (the chain) and ``audit_chain_head`` (one row, the lock every append takes),
  seeded with the genesis head ``(0, 64 zeros)``.

Spelled out rather than imported from ``approver.store.tables`` (see 0001). Columns are added
in batch mode, which SQLite needs for ALTER TABLE; every new ``agents`` column is nullable, so
existing rows stay valid.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AGENT_COLUMNS = (
    ("service_account", sa.String(253)),
    ("owner_kind", sa.String(63)),
    ("owner_name", sa.String(253)),
    ("owner_uid", sa.String(64)),
    ("api_key_hash", sa.String(64)),
    ("api_key_issued_at", sa.DateTime(timezone=True)),
    ("expired_at", sa.DateTime(timezone=True)),
    ("updated_by", sa.String(128)),
)


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        for name, type_ in _AGENT_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
    op.create_index("ix_agents_namespace_status", "agents", ["namespace", "status"])
    op.create_index(op.f("ix_agents_owner_uid"), "agents", ["owner_uid"])
    op.create_index(op.f("ix_agents_pod_uid"), "agents", ["pod_uid"])
    op.create_index(op.f("ix_agents_created_at"), "agents", ["created_at"])
    op.create_index("ix_agents_api_key_hash", "agents", ["api_key_hash"], unique=True)
    with op.batch_alter_table("token_uses") as batch:
        batch.add_column(sa.Column("pod_uid", sa.String(64), nullable=True))

    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
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
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_agent_id"), "audit_events", ["agent_id"])
    op.create_index(op.f("ix_audit_events_time"), "audit_events", ["time"])
    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_chain_head_single_row")),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])


def downgrade() -> None:
    op.drop_table("audit_chain_head")
    op.drop_index(op.f("ix_audit_events_time"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_agent_id"), table_name="audit_events")
    op.drop_table("audit_events")
    with op.batch_alter_table("token_uses") as batch:
        batch.drop_column("pod_uid")
    op.drop_index("ix_agents_api_key_hash", table_name="agents")
    op.drop_index(op.f("ix_agents_created_at"), table_name="agents")
    op.drop_index(op.f("ix_agents_pod_uid"), table_name="agents")
    op.drop_index(op.f("ix_agents_owner_uid"), table_name="agents")
    op.drop_index("ix_agents_namespace_status", table_name="agents")
    with op.batch_alter_table("agents") as batch:
        for name, _ in reversed(_AGENT_COLUMNS):
            batch.drop_column(name)
