"""Audit events of the approver's own actions (admin, pod watch, sweeper, review). Pure.

Registration events are built in :mod:`approver.registration`, next to the facts they report.
Every event is appended to the hash chain in the transaction of the change it reports
(:meth:`approver.store.Transaction.append_audit`) and emitted as a JSON line only after that
transaction committed (:func:`emit_all`), so no line reports what was not stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from approver.domain.records import AgentRecord
from bootstrap_token import AuditEvent, AuditSink

COMPONENT = "approver"


def record_event(
    *,
    event: str,
    decision: str,
    reason: str,
    at: datetime,
    actor: str | None,
    agent_id: str | None = None,
    record: AgentRecord | None = None,
    security: bool = False,
    message: str | None = None,
) -> AuditEvent:
    """An event about an agent (``record`` gives its context: namespace, pod, jti, ...)."""
    return AuditEvent(
        time=at,
        component=COMPONENT,
        event=event,
        decision=decision,
        reason=reason,
        security=security,
        actor=actor,
        agent_id=agent_id or (record.agent_id if record else None),
        approval_method=(
            record.approval_method.value if record and record.approval_method else None
        ),
        cluster=record.cluster if record else None,
        namespace=record.namespace if record else None,
        pod=record.pod_name if record else None,
        service_account=record.service_account if record else None,
        jti=record.jti if record else None,
        kid=record.kid if record else None,
        message=message,
    )


def emit_all(sink: AuditSink, events: Iterable[AuditEvent]) -> None:
    """Emit stored events as JSON lines, in chain order (after their commit)."""
    for item in events:
        sink.emit(item)
