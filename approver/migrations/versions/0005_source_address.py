"""Source address: where the registration that created (or re-bound) a record came from.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

``agents.source_address``: the client address of the registration that created or re-bound the
record (IPv4 or IPv6, at most 45 characters). A manually approved agent's key is handed only to
a request from that address (``kubernetes.bindSourceAddress``); administrators see it in the
admin API to tell a pod's agent from someone else registering its id.

Spelled out rather than imported from ``approver.store.tables`` (see 0001). Nullable: existing
rows stay valid.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("source_address", sa.String(45), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("source_address")
