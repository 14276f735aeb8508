"""The agent lifecycle: which event may move a record from which status to which. Pure.

An agent's ``status`` changes only through :func:`apply`, and only along this table (also in
``docs/approver.md``):

================  ================================  ==========  ===================================
event             from                              to          by, reason
================  ================================  ==========  ===================================
register          (no record)                       pending or  a registration; the decision's
                                                    active      reason
auto_approve      pending (not expired)             active      a retry with the same credential
                                                                whose re-evaluation approves
rebind            pending, inactive (after          active      a registration with another
                  ``pod_deleted``), active (same                credential that binds to this agent
                  pod)
refresh           pending (not expired)             pending     a retry whose re-evaluation gives
                                                                another pending reason
admin_approve     pending, inactive, rejected       active      an administrator;
                                                                ``approved_by_admin``
admin_reject      pending, active, inactive         rejected    an administrator;
                                                                ``rejected_by_admin``
admin_revoke      active                            inactive    an administrator;
                                                                ``revoked_by_admin``
pod_deleted       pending, active                   inactive    the pod watch or the re-list at
                                                                start; ``pod_deleted``
expire            pending (not expired)             pending     the sweeper, after
                                                                ``pendingTtlSeconds``;
                                                                ``pending_expired``, ``expired_at``
admin_delete      any                               (none)      an administrator; the row goes, its
                                                                audit events and burnt ``jti`` stay
================  ================================  ==========  ===================================

Rules every transition keeps:

* ``approval_method``, ``approved_by`` and ``approved_at`` are written once, at a record's first
  transition into ``active``, and never rewritten (the audit chain holds every later decision).
* Entering ``active`` from ``inactive`` or ``rejected``, or through a re-bind, forgets the
  per-agent API key: the old key (perhaps the reason for a revoke) never comes back to life; the
  next request proving the registration's credential gets a new one.
* ``rejected`` is sticky: only an administrator leaves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from approver.domain.records import AgentRecord, AgentStatus, ApprovalMethod


class LifecycleEvent(StrEnum):
    """The events of the table above."""

    REGISTER = "register"
    AUTO_APPROVE = "auto_approve"
    REBIND = "rebind"
    REFRESH = "refresh"
    ADMIN_APPROVE = "admin_approve"
    ADMIN_REJECT = "admin_reject"
    ADMIN_REVOKE = "admin_revoke"
    POD_DELETED = "pod_deleted"
    EXPIRE = "expire"
    ADMIN_DELETE = "admin_delete"


#: The reason of an ``inactive`` record whose pod went: the only inactive one a re-bind revives.
POD_DELETED_REASON = "pod_deleted"

_P, _A, _I, _R = AgentStatus.PENDING, AgentStatus.ACTIVE, AgentStatus.INACTIVE, AgentStatus.REJECTED

#: event -> (statuses it may start from, status it leads to; None: the row is deleted).
#: ``register`` starts from no record and is not in this table (see :func:`apply`).
TRANSITIONS: dict[LifecycleEvent, tuple[frozenset[AgentStatus], AgentStatus | None]] = {
    LifecycleEvent.AUTO_APPROVE: (frozenset({_P}), _A),
    LifecycleEvent.REBIND: (frozenset({_P, _I, _A}), _A),
    LifecycleEvent.REFRESH: (frozenset({_P}), _P),
    LifecycleEvent.ADMIN_APPROVE: (frozenset({_P, _I, _R}), _A),
    LifecycleEvent.ADMIN_REJECT: (frozenset({_P, _A, _I}), _R),
    LifecycleEvent.ADMIN_REVOKE: (frozenset({_A}), _I),
    LifecycleEvent.POD_DELETED: (frozenset({_P, _A}), _I),
    LifecycleEvent.EXPIRE: (frozenset({_P}), _P),
    LifecycleEvent.ADMIN_DELETE: (frozenset({_P, _A, _I, _R}), None),
}

#: Events a frozen (expired) pending record does not take: only administrators and the pod
#: watch act on it.
_NOT_WHEN_EXPIRED = frozenset(
    {LifecycleEvent.AUTO_APPROVE, LifecycleEvent.REFRESH, LifecycleEvent.EXPIRE}
)


class TransitionNotAllowed(ValueError):
    """The event may not start from the record's status (the table above)."""

    def __init__(self, event: LifecycleEvent, status: AgentStatus) -> None:
        super().__init__(f"{event.value} is not allowed from {status.value}")
        self.event = event
        self.status = status


def allowed(event: LifecycleEvent, record: AgentRecord) -> bool:
    """True when ``event`` may move ``record`` (status and expiry per the table)."""
    entry = TRANSITIONS.get(event)
    if entry is None:
        return False
    sources, _ = entry
    if record.status not in sources:
        return False
    if event is LifecycleEvent.REBIND and record.status is _I:
        return record.reason == POD_DELETED_REASON
    return not (record.expired_at is not None and event in _NOT_WHEN_EXPIRED)


def target(event: LifecycleEvent) -> AgentStatus | None:
    """The status ``event`` leads to (None: the record is deleted)."""
    return TRANSITIONS[event][1]


def apply(
    record: AgentRecord,
    event: LifecycleEvent,
    *,
    at: datetime,
    actor: str,
    reason: str,
    approval_method: ApprovalMethod | None = None,
    extra: Mapping[str, Any] | None = None,
) -> AgentRecord:
    """The record after ``event``: new status and reason, approval facts set once.

    Args:
        record: the record as read in the event's transaction.
        event: any event but ``register`` and ``admin_delete`` (which do not yield a record).
        at: the event's time (UTC); becomes ``updated_at`` (and ``approved_at``/``expired_at``
            where the table says so).
        actor: ``updated_by``; also ``approved_by`` on a first approval.
        reason: the record's new reason code.
        approval_method: how it is approved, for events entering ``active`` (recorded only on
            the first approval).
        extra: other field changes made with the event (what the registration bound), applied
            before the event's own (which win).

    Raises:
        TransitionNotAllowed: ``event`` may not start from the record's status.
    """
    if not allowed(event, record):
        raise TransitionNotAllowed(event, record.status)
    to = target(event)
    if to is None:
        raise ValueError(f"{event.value} deletes the record; there is nothing to apply")
    # The changes are collected and applied in one ``replace``: a record has 40 fields and each
    # copy of a frozen dataclass sets every one of them (a measurable cost per registration).
    changes: dict[str, Any] = dict(extra or {})
    changes |= {
        "status": to,
        "reason": reason,
        "updated_at": at,
        "updated_by": actor,
    }
    if to is AgentStatus.ACTIVE:
        if record.approved_at is None:
            changes.update(
                first_approval_fields(
                    at=at, actor=actor, method=approval_method or ApprovalMethod.MANUAL
                )
            )
        if event is LifecycleEvent.REBIND or record.status in (_I, _R):
            changes.update(api_key_hash=None, api_key_issued_at=None)
        changes["expired_at"] = None
    if event is LifecycleEvent.EXPIRE:
        changes["expired_at"] = at
    return replace(record, **changes)


def first_approval_fields(*, at: datetime, actor: str, method: ApprovalMethod) -> dict[str, Any]:
    """The approval facts a first approval sets (``approval_method``, ``approved_by``,
    ``approved_at``), as field changes."""
    return {"approval_method": method, "approved_by": actor, "approved_at": at}
