"""The approver's domain types: agent status, approval method, the agent record. No I/O.

These are what the decision engine reads, the store persists and the HTTP layer renders; none
of them knows about SQL or aiohttp. Field meanings follow DESIGN.md, "Approver: registration"
("Agent record").
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class AgentStatus(StrEnum):
    """Lifecycle of a registered agent (StreamSpace's own status names)."""

    PENDING = "pending"  #: waits for an administrator (or never proved a credential)
    ACTIVE = "active"  #: approved: may take work
    INACTIVE = "inactive"  #: was active, its pod is gone or it was revoked (set by later features)
    REJECTED = "rejected"  #: an administrator said no; sticky until an administrator changes it


class ApprovalMethod(StrEnum):
    """How an active agent was approved (DESIGN, "Decision, in order")."""

    MANUAL = "manual"  #: an administrator approved it through the admin API
    NAMESPACE = "namespace"  #: a bootstrap token from a trusted namespace, bound to this agent
    API_KEY = "api_key"  #: reserved: per-agent API keys (later issue)
    SERVICE_ACCOUNT = "service_account"  #: reserved: service-account TokenReview (later issue)


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """One row of ``agents``. Times are timezone-aware UTC datetimes.

    Attributes:
        id: the record's stable id (UUID4), returned to StreamSpace's agent as ``id``.
        agent_id: the agent's own name, 1..253 characters, unique.
        platform, region, capacity, metadata: as the agent registered them.
        status: see :class:`AgentStatus`.
        approval_method: set while ``active``; None otherwise.
        approved_by: who made the last approve/reject decision: ``bootstrap-token`` for an
            automatic approval, the administrator's name or token fingerprint otherwise.
        approved_at: when that decision was made.
        reason: the reason code of the last decision (see :mod:`approver.decision`).
        jti: the bootstrap token bound to this agent (set only once the token approved it).
        kid, cluster, namespace: from the verified token, when one was presented.
        pod_name: the pod name the agent was bound to (derived from the agent, checked against
            the token's ``pod`` claim).
        pod_uid: the live pod's UID (needs Kubernetes access; a later feature, None for now).
        credential_hash: SHA-256 hex of the credential that created (or last re-bound) the
            registration; None when the agent presented none. Never rendered.
    """

    id: uuid.UUID
    agent_id: str
    platform: str
    region: str | None
    capacity: dict[str, int] | None
    metadata: dict[str, Any]
    status: AgentStatus
    approval_method: ApprovalMethod | None
    approved_by: str | None
    approved_at: datetime | None
    reason: str
    jti: str | None
    kid: str | None
    cluster: str | None
    namespace: str | None
    pod_name: str | None
    pod_uid: str | None
    credential_hash: str | None = field(repr=False)
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class TokenUse:
    """One row of ``token_uses``: a bootstrap token's ``jti``, burnt by its first agent.

    ``expires_at`` (the token's ``exp`` plus the verification leeway) tells when the row can
    no longer matter: a token past it fails verification before its ``jti`` is looked at.
    """

    jti: str
    agent_id: str
    kid: str
    namespace: str
    used_at: datetime
    expires_at: datetime
