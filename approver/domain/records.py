"""The approver's domain types: agent status, approval method, the agent record. No I/O.

These are what the decision engine reads, the store persists and the HTTP layer renders; none
of them knows about SQL or aiohttp. Field meanings follow docs/design.md, "Approver: registration"
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
    INACTIVE = "inactive"  #: its pod is gone (``pod_deleted``) or an administrator revoked it
    REJECTED = "rejected"  #: an administrator said no; sticky until an administrator changes it


class ApprovalMethod(StrEnum):
    """How an active agent was approved (docs/design.md, "Decision, in order")."""

    MANUAL = "manual"  #: an administrator approved it through the admin API
    NAMESPACE = "namespace"  #: a bootstrap token from a trusted namespace, bound to this agent
    API_KEY = "api_key"  #: a pre-provisioned API key (decision step 3, :mod:`approver.verifiers`)
    SERVICE_ACCOUNT = "service_account"  #: a service-account token (step 4, TokenReview)


class OwnerEvidence(StrEnum):
    """What proved a record's controller owner (``agents.owner_evidence``). An owner is written
    only from verified evidence; a registration that proved nothing (a bare agent id, a token
    that does not bind to the agent's pod) never records one, whatever it claims."""

    LIVE_POD = "live_pod"  #: the live pod's controller, read after a credential bound the pod
    TOKEN = "token"  # noqa: S105 - the verified bootstrap token's ``owner`` claim (no Kubernetes)


class ControlPlaneState(StrEnum):
    """The agent's record in the control plane (StreamSpace's ``approval_status``), as the
    approver last saw or made it (:mod:`approver.connectors`)."""

    PENDING = "pending"  #: a pending row exists there (visible to its administrators)
    APPROVED = "approved"  #: approved there; the agent holds (or is owed) a key it accepts
    REJECTED = "rejected"  #: its administrator rejected the agent there
    ABSENT = "absent"  #: no row there (never created, or deregistered)


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """One row of ``agents``. Times are timezone-aware UTC datetimes.

    Attributes:
        id: the record's stable id (UUID4), returned to StreamSpace's agent as ``id``.
        agent_id: the agent's own name, 1..253 characters, unique.
        platform, region, capacity, metadata: as the agent registered them.
        status: see :class:`AgentStatus`; changed only by the events of
            :mod:`approver.domain.lifecycle`.
        approval_method, approved_by, approved_at: how, by whom and when the agent was first
            approved; written once, at its first transition into ``active``, never rewritten
            (later approvals are in the audit chain). ``approved_by`` is ``bootstrap-token``,
            ``api-key`` or ``service-account`` for an automatic approval, else the
            administrator's name or token fingerprint.
        reason: the reason code of the last decision (see :mod:`approver.domain.decision`).
        jti: the bootstrap token bound to this agent (set only once a token approved it).
        kid, cluster, namespace, service_account: from the verified credential, when one was
            presented. ``namespace`` is the cluster's word (the token's claim, a TokenReview's
            user), never the agent's ``metadata.namespace``.
        pod_name: the pod name the agent was bound to (derived from the agent, checked against
            the token's ``pod`` claim).
        pod_uid: the live pod's UID, read from the Kubernetes API when ``kubernetes.enabled``.
        owner_kind, owner_name, owner_uid: the pod's controller, written only from verified
            evidence (``owner_evidence``): a verified bootstrap token bound to the agent's pod
            (with Kubernetes access: its live pod passed the checks, so the token's ``owner``
            claim is the live pod's controller), or a verified service-account token whose live
            pod was read. Never from what a registration merely claims.
        owner_deployment_name, owner_deployment_uid: the Deployment that controls that owner
            (a ReplicaSet), read from the Kubernetes API; None when the owner is not a
            ReplicaSet, has no Deployment, or the ReplicaSet could not be read.
        owner_evidence: what proved the owner (:class:`OwnerEvidence`); None when no owner is
            recorded, or for owners recorded before it existed (migration 0006), which bulk
            approval never selects.
        credential_hash: SHA-256 hex of the credential that created (or last re-bound) the
            registration; None when the agent presented none. Never rendered.
        api_key_hash: SHA-256 hex of the per-agent API key, once issued
            (:mod:`approver.domain.agent_keys`). Never rendered.
        api_key_issued_at: when the key was shown to the agent (exactly once).
        expired_at: when a ``pending`` record passed ``pendingTtlSeconds`` and was marked
            ``pending_expired`` (it stays ``pending``, frozen until an administrator acts).
        updated_by: who made the last change: ``registration``, ``pod-watch``, ``sweeper`` or
            an administrator.
        control_plane: the agent's state in the control plane (:class:`ControlPlaneState`);
            None when no control-plane connector has touched it.
        control_plane_at: when ``control_plane`` was last written.
        source_address: the client address of the registration that created (or re-bound)
            the record; a manually approved agent's key goes only to that address.
    """

    id: uuid.UUID
    agent_id: str
    platform: str
    region: str | None
    capacity: dict[str, Any] | None
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
    service_account: str | None = None
    owner_kind: str | None = None
    owner_name: str | None = None
    owner_uid: str | None = None
    api_key_hash: str | None = field(default=None, repr=False)
    api_key_issued_at: datetime | None = None
    expired_at: datetime | None = None
    updated_by: str | None = None
    control_plane: ControlPlaneState | None = None
    control_plane_at: datetime | None = None
    source_address: str | None = None
    owner_deployment_name: str | None = None
    owner_deployment_uid: str | None = None
    owner_evidence: OwnerEvidence | None = None


@dataclass(frozen=True, slots=True)
class TokenUse:
    """One row of ``token_uses``: a bootstrap token's ``jti``, burnt by its first agent.

    ``expires_at`` (the token's ``exp`` plus the verification leeway) tells when the row can
    no longer matter: a token past it fails verification before its ``jti`` is looked at.
    ``pod_uid`` is the live pod the first use was bound to (with Kubernetes access).
    """

    jti: str
    agent_id: str
    kid: str
    namespace: str
    used_at: datetime
    expires_at: datetime
    pod_uid: str | None = None
