"""Rows <-> domain types: agent records, token uses, chained audit events. Pure.

Audit events are *fitted* to their columns before they are hashed and stored: a string longer
than its column is cut (``message`` is unbounded), so the stored event, the hashed event and the
emitted JSON line are the same event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from approver.audit.chain import FIELDS as CHAINED_FIELDS
from approver.audit.chain import ChainedEvent
from approver.domain.records import (
    AgentRecord,
    AgentStatus,
    ApprovalMethod,
    ControlPlaneState,
    OwnerEvidence,
    TokenUse,
)
from approver.store.tables import audit_events
from bootstrap_token import AuditEvent

_AGENT_FIELDS = tuple(AgentRecord.__dataclass_fields__)
_AUDIT_LIMITS: dict[str, int] = {
    column.name: column.type.length
    for column in audit_events.columns
    if isinstance(column.type, sa.String)
    and not isinstance(column.type, sa.Text)
    and column.type.length is not None
}


def agent_from_row(m: Mapping[Any, Any]) -> AgentRecord:
    """An :class:`AgentRecord` from a row mapping of ``agents``."""
    values = {name: m[name] for name in _AGENT_FIELDS}
    values["status"] = AgentStatus(m["status"])
    method = m["approval_method"]
    values["approval_method"] = ApprovalMethod(method) if method else None
    state = m["control_plane"]
    values["control_plane"] = ControlPlaneState(state) if state else None
    evidence = m["owner_evidence"]
    values["owner_evidence"] = OwnerEvidence(evidence) if evidence else None
    return AgentRecord(**values)


def agent_values(record: AgentRecord) -> dict[str, Any]:
    """Column values of ``record``."""
    values = {name: getattr(record, name) for name in _AGENT_FIELDS}
    values["status"] = record.status.value
    values["approval_method"] = record.approval_method.value if record.approval_method else None
    values["control_plane"] = record.control_plane.value if record.control_plane else None
    values["owner_evidence"] = record.owner_evidence.value if record.owner_evidence else None
    return values


def token_use_values(use: TokenUse) -> dict[str, Any]:
    return {
        "jti": use.jti,
        "agent_id": use.agent_id,
        "kid": use.kid,
        "namespace": use.namespace,
        "used_at": use.used_at,
        "expires_at": use.expires_at,
        "pod_uid": use.pod_uid,
    }


def fit_event(event: AuditEvent) -> AuditEvent:
    """``event`` with every string cut to its column's length (a no-op for normal events)."""
    changes: dict[str, str] = {}
    for name, limit in _AUDIT_LIMITS.items():
        value = getattr(event, name, None)
        if isinstance(value, str) and len(value) > limit:
            changes[name] = value[:limit]
    return event.model_copy(update=changes) if changes else event


def audit_values(chained: ChainedEvent) -> dict[str, Any]:
    """Column values of a chained event."""
    e = chained.event
    return {
        "seq": chained.seq,
        **{name: getattr(e, name) for name in CHAINED_FIELDS},
        "prev_hash": chained.prev_hash,
        "hash": chained.hash,
    }


def chained_from_row(m: Mapping[Any, Any]) -> ChainedEvent:
    """A stored event back from its row (``model_construct``: the row is what was hashed, and a
    row edited into something the model would refuse must still reach the chain check)."""
    fields = {name: m[name] for name in CHAINED_FIELDS}
    return ChainedEvent(
        seq=int(m["seq"]),
        prev_hash=m["prev_hash"],
        hash=m["hash"],
        event=AuditEvent.model_construct(**fields),
    )
