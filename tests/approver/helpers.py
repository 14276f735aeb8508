"""Realistic tokens and registrations for the approver's tests.

The claims are what the webhook stamps on one of StreamSpace's k8s-agent pods created by its
ReplicaSet (``tests/fixtures/streamspace``): namespace ``streamspace``, service account
``streamspace-agent``, ``generateName`` ``streamspace-k8s-agent-7d9f8b6c5-`` and no pod name yet.
The agent then registers as ``$(AGENT_ID_PREFIX)-$(POD_NAME)``.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from approver.config import ApproverSettings
from approver.domain.records import AgentRecord, AgentStatus
from bootstrap_token import (
    AuditEvent,
    AuditSink,
    BootstrapClaims,
    KeySet,
    OwnerRef,
    PodRef,
    SigningKey,
    TrustPolicy,
    VerificationPolicy,
    mint,
    new_jti,
)

#: 2025-11-30T02:00:00Z, seconds since the epoch.
NOW = 1_764_468_000
ISSUER = "agent-bootstrap-webhook"
AUDIENCE = "agent-approver"
CLUSTER = "prod-eu-1"
NAMESPACE = "streamspace"
SERVICE_ACCOUNT = "streamspace-agent"
REPLICASET = "streamspace-k8s-agent-7d9f8b6c5"
GENERATE_NAME = REPLICASET + "-"
POD_NAME = GENERATE_NAME + "x2x7q"
AGENT_ID_PREFIX = "k8s-prod-cluster"
AGENT_ID = f"{AGENT_ID_PREFIX}-{POD_NAME}"
#: The ReplicaSet's UID (the token's ``owner.uid``, the pod's controller).
OWNER_UID = str(uuid.uuid5(uuid.NAMESPACE_URL, REPLICASET))
OWNER = {"kind": "ReplicaSet", "name": REPLICASET, "uid": OWNER_UID}
#: The annotation the webhook stamps.
ANNOTATION = "agents.streamspace.io/bootstrap-token"
#: A second pod of the same ReplicaSet: another agent that a copied token must not approve.
SECOND_POD_NAME = GENERATE_NAME + "bq4zt"
SECOND_AGENT_ID = f"{AGENT_ID_PREFIX}-{SECOND_POD_NAME}"

TRUST = TrustPolicy(namespaces=frozenset({NAMESPACE}))
VERIFICATION = VerificationPolicy(issuer=ISSUER, audience=AUDIENCE, leeway_seconds=30, trust=TRUST)


def streamspace_claims(
    *,
    now: int = NOW,
    ttl_seconds: int = 3600,
    namespace: str = NAMESPACE,
    pod: PodRef | None = None,
    issuer: str = ISSUER,
    audience: str = AUDIENCE,
    jti: str | None = None,
    cluster: str = CLUSTER,
) -> BootstrapClaims:
    """The claims the webhook stamps on a StreamSpace k8s-agent pod at ``now``."""
    return BootstrapClaims.model_validate(
        {
            "iss": issuer,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_seconds,
            "jti": jti or new_jti(),
            "cluster": cluster,
            "namespace": namespace,
            "serviceAccount": SERVICE_ACCOUNT,
            "pod": (pod or PodRef(generate_name=GENERATE_NAME)).model_dump(
                by_alias=True, exclude_none=True
            ),
            "owner": OwnerRef(kind="ReplicaSet", name=REPLICASET, uid=OWNER_UID).model_dump(),
            "admissionUid": str(uuid.uuid4()),
        }
    )


def mint_token(key: SigningKey, *, now: int = NOW, **claims: Any) -> str:
    """A bootstrap token signed by ``key`` with :func:`streamspace_claims` (overridable)."""
    return mint(streamspace_claims(now=now, **claims), key, now=now)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def tamper(token: str, **changes: Any) -> str:
    """The token with claims changed (default: namespace ``kube-system``), signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(_unb64(payload))
    claims.update(changes or {"namespace": "kube-system"})
    return ".".join([header, _b64(json.dumps(claims).encode()), signature])


def resign(token: str, key: SigningKey, **changes: Any) -> str:
    """The token with claims changed to any JSON values (types included) and signed again with
    ``key``: only the claims themselves can make it fail verification."""
    header, payload, _ = token.split(".")
    claims = json.loads(_unb64(payload))
    claims.update(changes)
    signing_input = f"{header}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(key.private_key.sign(signing_input.encode('ascii')))}"


def alg_none(token: str) -> str:
    """The token re-headed ``"alg": "none"`` with an empty signature (RFC 7519 section 6)."""
    header, payload, _ = token.split(".")
    fields = json.loads(_unb64(header))
    fields["alg"] = "none"
    return f"{_b64(json.dumps(fields).encode())}.{payload}."


def header_with(token: str, **members: Any) -> str:
    """The token with JOSE header members replaced (signature kept, so it no longer verifies)."""
    header, payload, signature = token.split(".")
    fields = json.loads(_unb64(header))
    fields.update(members)
    return ".".join([_b64(json.dumps(fields).encode()), payload, signature])


def registration_body(
    agent_id: str = AGENT_ID, *, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON body StreamSpace's k8s-agent sends (``registerAgent`` in its main.go)."""
    return {
        "agentId": agent_id,
        "platform": "kubernetes",
        "region": "default",
        "capacity": {"maxCpu": 100, "maxMemory": 128, "maxSessions": 100},
        "metadata": (
            metadata if metadata is not None else {"namespace": NAMESPACE, "kubernetes": True}
        ),
    }


def write_jwks(key: SigningKey, path: Path) -> Path:
    """Write the public JWKS of ``key`` to ``path`` (what certs-tooling publishes)."""
    path.write_text(json.dumps(KeySet([key.public_key]).to_jwks()), encoding="utf-8")
    return path


def settings(*, jwks_file: Path, **overrides: Any) -> ApproverSettings:
    """Settings for StreamSpace with auto-approval on; ``overrides`` by field name."""
    values: dict[str, Any] = {
        "auto_approve": {"enabled": True},
        "trust": TRUST,
        "token": {"jwks_file": jwks_file, "clusters": [CLUSTER]},
        "agent_id_prefix": AGENT_ID_PREFIX,
    }
    values.update(overrides)
    return ApproverSettings(**values)


class RecordingSink(AuditSink):
    """Keeps the audit events in a list (and still writes them to the audit logger)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[AuditEvent] = []

    def emit(self, event: AuditEvent) -> None:
        super().emit(event)
        self.events.append(event)


@dataclass
class Clock:
    """A settable clock: seconds since the epoch, starting at :data:`NOW`."""

    now: float = NOW

    def __call__(self) -> float:
        return self.now


def agent_record(
    status: AgentStatus, *, at: datetime | None = None, **changes: object
) -> AgentRecord:
    """A record of :data:`AGENT_ID` with ``status``, created and updated ``at`` (default
    :data:`NOW`), pending-manual defaults, then ``changes`` (any :class:`AgentRecord` field)."""
    when = at or datetime.fromtimestamp(NOW, UTC)
    base = AgentRecord(
        id=uuid.uuid4(),
        agent_id=AGENT_ID,
        platform="kubernetes",
        region=None,
        capacity=None,
        metadata={},
        status=status,
        approval_method=None,
        approved_by=None,
        approved_at=None,
        reason="manual_approval_required",
        jti=None,
        kid=None,
        cluster=None,
        namespace=None,
        pod_name=None,
        pod_uid=None,
        credential_hash="c" * 64,
        created_at=when,
        updated_at=when,
    )
    return replace(base, **changes)  # type: ignore[arg-type]
