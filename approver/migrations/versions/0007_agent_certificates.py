"""Agent client certificates: the agent_certificates table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

One row per certificate issued to an agent (``approver.agent_certs``): its serial (hex, the
primary key the gate looks a presented certificate up by), agent, SHA-256, validity, the
credential the issuance was authorized by, the issuing CA's SHA-256, and its revocation.
Spelled out rather than imported from ``approver.agent_certs.tables`` (see 0003); a test checks
that the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_certificates",
        sa.Column("serial", sa.String(40), nullable=False),
        sa.Column("agent_id", sa.String(253), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_with", sa.String(16), nullable=False),
        sa.Column("issuer_sha256", sa.String(64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(16), nullable=True),
        sa.Column("revoked_by", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_agent_certificates")),
        sa.CheckConstraint(
            "issued_with IN ('api_key', 'certificate')",
            name=op.f("ck_agent_certificates_issued_with"),
        ),
        sa.CheckConstraint(
            "revoked_reason IS NULL OR revoked_reason IN "
            "('revoked', 'superseded', 'agent_inactive', 'agent_deleted', "
            "'agent_rebound')",
            name=op.f("ck_agent_certificates_revoked_reason"),
        ),
    )
    op.create_index(op.f("ix_agent_certificates_agent_id"), "agent_certificates", ["agent_id"])
    op.create_index(op.f("ix_agent_certificates_not_after"), "agent_certificates", ["not_after"])


def downgrade() -> None:
    op.drop_index(op.f("ix_agent_certificates_not_after"), table_name="agent_certificates")
    op.drop_index(op.f("ix_agent_certificates_agent_id"), table_name="agent_certificates")
    op.drop_table("agent_certificates")
