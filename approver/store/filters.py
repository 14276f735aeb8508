"""Which records and audit events a listing returns (every set field must match)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from approver.domain.records import AgentStatus, ApprovalMethod

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AgentFilter:
    """Which agents :meth:`Store.list_agents` returns (every set field must match).

    Attributes:
        status: one status.
        namespace: the recorded namespace (the cluster's word, see records).
        approval_method: how they were approved.
        owner_uid: the controller owner's UID.
        expired: True: only pending records marked expired; False: only unmarked ones.
        deployment_uid: the owner's Deployment's UID.
        deployment_name: the owner's Deployment's name (with ``namespace``: names are per
            namespace).
    """

    status: AgentStatus | None = None
    namespace: str | None = None
    approval_method: ApprovalMethod | None = None
    owner_uid: str | None = None
    expired: bool | None = None
    deployment_uid: str | None = None
    deployment_name: str | None = None


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which stored audit events :meth:`Store.list_audit` returns (every set field must match;
    times are inclusive bounds)."""

    event: str | None = None
    agent_id: str | None = None
    actor: str | None = None
    reason: str | None = None
    security: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
