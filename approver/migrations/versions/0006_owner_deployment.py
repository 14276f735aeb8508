"""Owner Deployment and owner evidence: approve a whole workload, only on verified evidence.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

* ``agents.owner_deployment_name``, ``agents.owner_deployment_uid`` (indexed): the Deployment
  controlling the agent's owner ReplicaSet, read from the Kubernetes API at registration; bulk
  approval by Deployment selects on them (across the Deployment's ReplicaSets: a rollout).
* ``agents.owner_evidence``: what proved the owner (``live_pod``: the live pod's controller,
  read after a credential bound the pod; ``token``: a verified bootstrap token's ``owner``
  claim, without Kubernetes access). Bulk approval selects only records that have it.

Spelled out rather than imported from ``approver.store.tables`` (see 0001). Nullable: existing
rows stay valid. Their owners (recorded before 0006, when a verified token that did not bind
the agent's pod could still leave its ``owner`` claim on a pending record) get no evidence, so
no bulk approval selects them until a retry of the agent proves its owner again (a pending
record is refreshed then).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EVIDENCE = "owner_evidence IS NULL OR owner_evidence IN ('live_pod', 'token')"


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("owner_deployment_name", sa.String(253), nullable=True))
        batch.add_column(sa.Column("owner_deployment_uid", sa.String(64), nullable=True))
        batch.add_column(sa.Column("owner_evidence", sa.String(16), nullable=True))
        batch.create_check_constraint(op.f("ck_agents_owner_evidence"), _EVIDENCE)
    op.create_index(op.f("ix_agents_owner_deployment_uid"), "agents", ["owner_deployment_uid"])


def downgrade() -> None:
    op.drop_index(op.f("ix_agents_owner_deployment_uid"), table_name="agents")
    with op.batch_alter_table("agents") as batch:
        batch.drop_constraint(op.f("ck_agents_owner_evidence"), type_="check")
        batch.drop_column("owner_evidence")
        batch.drop_column("owner_deployment_uid")
        batch.drop_column("owner_deployment_name")
