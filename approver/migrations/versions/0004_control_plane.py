"""Control plane: what the control plane (StreamSpace) knows of each agent.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

* ``agents.control_plane``: the agent's state in the control plane as the approver last saw or
  made it (``pending``, ``approved``, ``rejected``, ``absent``), NULL when no connector ever
  touched it (:mod:`approver.connectors`).
* ``agents.control_plane_at``: when that state was last written; the sync loop acts only on
  records synced before its snapshot of the control plane's list was taken.

Spelled out rather than imported from ``approver.store.tables`` (see 0001). Both columns are
nullable, so existing rows stay valid (and are picked up by the sync loop).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATES = "control_plane IS NULL OR control_plane IN ('pending', 'approved', 'rejected', 'absent')"


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("control_plane", sa.String(16), nullable=True))
        batch.add_column(sa.Column("control_plane_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_check_constraint(op.f("ck_agents_control_plane"), _STATES)


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_constraint(op.f("ck_agents_control_plane"), type_="check")
        batch.drop_column("control_plane_at")
        batch.drop_column("control_plane")
