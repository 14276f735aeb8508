"""JSON answers of the approver's HTTP API, built from decisions and records. Pure.

StreamSpace's agent decodes ``id``, ``agentId``, ``platform``, ``status`` and ``createdAt``
(RFC 3339) from a 200/201 answer (``agents/k8s-agent/main.go``, ``AgentRegistrationResponse``),
so those sit at the top level of every answer that carries a record. Builders return
``(status, body)`` or a body; the aiohttp layer only serialises.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from approver.domain.decision import Decision, Outcome
from approver.domain.records import AgentRecord

JsonBody = dict[str, Any]

#: Human text per outcome, for the ``message`` member of a registration answer.
_MESSAGES = {
    Outcome.APPROVED: "agent approved",
    Outcome.PENDING: "agent registered, waiting for approval",
    Outcome.REJECTED: "agent registration rejected",
}


def rfc3339(value: datetime) -> str:
    """UTC, seconds precision or finer, ``Z`` suffix: what Go's ``time.Time`` decodes."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def agent_json(record: AgentRecord) -> JsonBody:
    """The admin API's view of a record (camelCase). The credential hash and the API key hash
    are never rendered. ``owner`` is ``{"kind", "name", "uid", "deployment": {"name", "uid"} |
    null, "evidence": "live_pod" | "token" | null}`` (null evidence: an owner recorded before
    it was tracked, which bulk approval does not select)."""
    deployment = (
        {"name": record.owner_deployment_name, "uid": record.owner_deployment_uid}
        if record.owner_deployment_uid
        else None
    )
    owner = (
        {
            "kind": record.owner_kind,
            "name": record.owner_name,
            "uid": record.owner_uid,
            "deployment": deployment,
            "evidence": record.owner_evidence.value if record.owner_evidence else None,
        }
        if record.owner_uid
        else None
    )
    return {
        "id": str(record.id),
        "agentId": record.agent_id,
        "platform": record.platform,
        "region": record.region,
        "capacity": record.capacity,
        "metadata": record.metadata,
        "status": record.status.value,
        "approvalMethod": record.approval_method.value if record.approval_method else None,
        "approvedBy": record.approved_by,
        "approvedAt": rfc3339(record.approved_at) if record.approved_at else None,
        "reason": record.reason,
        "jti": record.jti,
        "kid": record.kid,
        "cluster": record.cluster,
        "namespace": record.namespace,
        "podName": record.pod_name,
        "podUid": record.pod_uid,
        "serviceAccount": record.service_account,
        "owner": owner,
        "apiKeyIssued": record.api_key_hash is not None,
        "apiKeyIssuedAt": rfc3339(record.api_key_issued_at) if record.api_key_issued_at else None,
        "expiredAt": rfc3339(record.expired_at) if record.expired_at else None,
        "createdAt": rfc3339(record.created_at),
        "updatedAt": rfc3339(record.updated_at),
        "updatedBy": record.updated_by,
        "sourceAddress": record.source_address,
        "controlPlane": record.control_plane.value if record.control_plane else None,
    }


def registration_answer(
    decision: Decision, record: AgentRecord | None, *, api_key: str | None = None
) -> tuple[int, JsonBody]:
    """The HTTP status and body for a registration decision.

    * 200 ``{"approvalStatus": "approved", "message", "reason", "id", "agentId", "platform",
      "status": "active", "approvalMethod", "createdAt"}``, plus ``"apiKey"`` in the one answer
      that issued the agent's key (StreamSpace's agent reads it from the registration answer);
    * 202 ``{"approvalStatus": "pending", "message", "reason", "id", "agentId", "platform",
      "status": "pending", "approvalMethod": null, "createdAt"}``
    * 403 ``{"approvalStatus": "rejected", "message", "reason"}``: nothing about any stored
      record, since the request did not prove it owns one.
    """
    body: JsonBody = {
        "approvalStatus": decision.outcome.value,
        "message": _MESSAGES[decision.outcome],
        "reason": decision.reason,
    }
    if decision.outcome is not Outcome.REJECTED and record is not None:
        body.update(
            {
                "id": str(record.id),
                "agentId": record.agent_id,
                "platform": record.platform,
                "status": record.status.value,
                "approvalMethod": (
                    record.approval_method.value if record.approval_method else None
                ),
                "createdAt": rfc3339(record.created_at),
            }
        )
        if api_key is not None and decision.outcome is Outcome.APPROVED:
            body["apiKey"] = api_key
    return decision.http_status, body


def pending_retry_answer(reason: str, message: str) -> JsonBody:
    """``{"approvalStatus": "pending", "message", "reason"}``: the body of a 202 given when the
    approver cannot decide now (its database or the control plane is unavailable). StreamSpace's
    agent reads ``approvalStatus`` and keeps waiting; nothing was written."""
    return {
        "approvalStatus": Outcome.PENDING.value,
        "message": f"{message}; retry",
        "reason": reason,
    }


def error_body(code: str, message: str | None = None) -> JsonBody:
    """``{"error": code}`` plus a human ``message`` when there is one."""
    body: JsonBody = {"error": code}
    if message:
        body["message"] = message
    return body
