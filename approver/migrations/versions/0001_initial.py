"""Initial schema: agents and token_uses.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Spelled out rather than imported from ``approver.store.tables``, so this migration keeps
creating the same schema when the tables module moves on; a test checks that the two agree.
Constraint names are final (``op.f``): the metadata's naming convention must not rename them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.String(253), nullable=False),
        sa.Column("platform", sa.String(64), nullable=False),
        sa.Column("region", sa.String(128), nullable=True),
        sa.Column("capacity", _JSON, nullable=True),
        sa.Column("metadata", _JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("approval_method", sa.String(16), nullable=True),
        sa.Column("approved_by", sa.String(128), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("jti", sa.String(64), nullable=True),
        sa.Column("kid", sa.String(64), nullable=True),
        sa.Column("cluster", sa.String(253), nullable=True),
        sa.Column("namespace", sa.String(63), nullable=True),
        sa.Column("pod_name", sa.String(253), nullable=True),
        sa.Column("pod_uid", sa.String(64), nullable=True),
        sa.Column("credential_hash", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.UniqueConstraint("agent_id", name=op.f("uq_agents_agent_id")),
        sa.CheckConstraint(
            "status IN ('pending', 'active', 'inactive', 'rejected')",
            name=op.f("ck_agents_status"),
        ),
        sa.CheckConstraint(
            "approval_method IS NULL OR approval_method IN "
            "('manual', 'namespace', 'api_key', 'service_account')",
            name=op.f("ck_agents_approval_method"),
        ),
    )
    op.create_index(op.f("ix_agents_status"), "agents", ["status"])
    op.create_table(
        "token_uses",
        sa.Column("jti", sa.String(64), nullable=False),
        sa.Column("agent_id", sa.String(253), nullable=False),
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_token_uses")),
    )


def downgrade() -> None:
    op.drop_table("token_uses")
    op.drop_index(op.f("ix_agents_status"), table_name="agents")
    op.drop_table("agents")
