"""The ``api_keys`` table (SQLAlchemy 2 Core), created by migration ``0003``.

Kept on its own :class:`~sqlalchemy.MetaData` (same naming convention as
:mod:`approver.store.tables`), so importing this module never changes the core schema's metadata.
Alembic's environment and the schema-comparison test take both: ``target_metadata = [metadata,
api_keys_metadata]``.

Only the SHA-256 digest of a key's secret is stored (``secret_hash``). ``approved_count`` is the
``maxAgents`` counter: incremented by one conditional UPDATE in the approval's transaction
(:func:`approver.api_keys.repository.claim_approval`), never by read-then-write in Python.
"""

from __future__ import annotations

import sqlalchemy as sa

from approver.store.tables import NAMING_CONVENTION, Json, UTCDateTime

api_keys_metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

api_keys = sa.Table(
    "api_keys",
    api_keys_metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("platforms", Json, nullable=True),
    sa.Column("agent_id_pattern", sa.String(253), nullable=True),
    sa.Column("max_agents", sa.Integer(), nullable=True),
    sa.Column("approved_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(128), nullable=True),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Column("revoke_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_by", sa.String(128), nullable=True),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.Column("replaced_by", sa.String(16), nullable=True),
    sa.CheckConstraint("approved_count >= 0", name="approved_count"),
    sa.CheckConstraint("max_agents IS NULL OR max_agents >= 1", name="max_agents"),
    sa.Index(None, "name"),
)
