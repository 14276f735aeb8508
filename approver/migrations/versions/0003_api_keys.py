"""API keys: the api_keys table.

Revision ID: 0003
Revises: 0002
Create Date: 2025-12-01

Spelled out rather than imported from ``approver.api_keys.tables``, so this migration keeps
creating the same schema when the tables module moves on; a test checks that the two agree.
Only the SHA-256 digest of a key's secret is stored. ``approved_count`` is the ``maxAgents``
counter (incremented by a conditional UPDATE in the approval's transaction).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("platforms", _JSON, nullable=True),
        sa.Column("agent_id_pattern", sa.String(253), nullable=True),
        sa.Column("max_agents", sa.Integer(), nullable=True),
        sa.Column("approved_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoke_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(128), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replaced_by", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.CheckConstraint("approved_count >= 0", name=op.f("ck_api_keys_approved_count")),
        sa.CheckConstraint(
            "max_agents IS NULL OR max_agents >= 1", name=op.f("ck_api_keys_max_agents")
        ),
    )
    op.create_index(op.f("ix_api_keys_name"), "api_keys", ["name"])


def downgrade() -> None:
    op.drop_index(op.f("ix_api_keys_name"), table_name="api_keys")
    op.drop_table("api_keys")
