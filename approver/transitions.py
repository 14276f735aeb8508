"""One lifecycle transition, written with its audit event: the step every use case that changes
an agent's status shares (admin actions, the pod watch, the sweeper, the control-plane sync).

The caller has read (and locked) ``record`` in ``tx`` and checked that the event is allowed;
:func:`write_transition` applies it (:func:`approver.domain.lifecycle.apply`), writes the record
and appends the audit event to the hash chain in the same transaction. An agent that leaves
``active`` has its live client certificates revoked in that transaction too (``agent_inactive``:
:mod:`approver.agent_certificates`): approved again later, it needs new ones, as it needs a new
key. The event is emitted as a
JSON line by the caller after the commit (:func:`approver.audit.events.emit_all`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from approver.agent_certs.records import RevokedReason
from approver.agent_certs.repository import revoke_agent
from approver.audit.events import record_event
from approver.domain.lifecycle import LifecycleEvent, apply
from approver.domain.records import AgentRecord, AgentStatus, ApprovalMethod
from approver.store import Transaction
from bootstrap_token import AuditEvent


async def end_certificates(
    tx: Transaction,
    before: AgentRecord,
    after: AgentRecord,
    *,
    at: datetime,
    actor: str,
    rebound: bool = False,
) -> list[str]:
    """Revoke an active agent's live client certificates for good, in ``tx``, when the change
    ``before`` -> ``after`` takes it out of ``active`` (``agent_inactive``) or, with
    ``rebound``, binds it to another credential or pod (``agent_rebound``: its old key goes
    too). The serials revoked; none (and no statement) otherwise."""
    if before.status is not AgentStatus.ACTIVE:
        return []
    if after.status is not AgentStatus.ACTIVE:
        reason = RevokedReason.AGENT_INACTIVE
    elif rebound:
        reason = RevokedReason.AGENT_REBOUND
    else:
        return []
    return await revoke_agent(tx.connection, before.agent_id, at=at, reason=reason, by=actor)


async def write_transition(
    tx: Transaction,
    record: AgentRecord,
    event: LifecycleEvent,
    *,
    audit_event: str,
    at: datetime,
    actor: str,
    reason: str,
    message: str | None = None,
    approval_method: ApprovalMethod | None = None,
    **changes: Any,
) -> tuple[AgentRecord, AuditEvent]:
    """Apply ``event`` to ``record``, write it and its audit event in ``tx``.

    Args:
        tx: the transaction ``record`` was read (and locked) in.
        record: the record as read.
        event: the lifecycle event (must be allowed from the record's status).
        audit_event: the audit event's name, e.g. ``admin.approve``.
        at: the time of the change (UTC).
        actor: who made it (``updated_by``, and ``approved_by`` on a first approval).
        reason: the record's new reason code, also the audit event's.
        message: the audit event's message; default ``from=<previous status>``.
        approval_method: how it is approved, for events entering ``active``.
        changes: more record fields to set with the transition (e.g. ``control_plane``).

    Returns:
        The record as written and the stored (chained) audit event.

    Raises:
        TransitionNotAllowed: the event may not start from the record's status.
        StoreUnavailable, StoreConflict: as any statement in the transaction.
    """
    changed = apply(
        record, event, at=at, actor=actor, reason=reason, approval_method=approval_method
    )
    if changes:
        changed = replace(changed, **changes)
    await tx.update_agent(changed)
    if message is None:
        message = f"from={record.status.value}"
    revoked = await end_certificates(tx, record, changed, at=at, actor=actor)
    if revoked:
        message += f" certificates_revoked={len(revoked)}"
    stored = await tx.append_audit(
        record_event(
            event=audit_event,
            decision=changed.status.value,
            reason=reason,
            at=at,
            actor=actor,
            record=changed,
            message=message,
        )
    )
    return changed, stored
