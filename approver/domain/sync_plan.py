"""What the control plane must be told, and what the approver must learn from it. Pure.

Two questions, answered from records and decisions only (no I/O):

* :func:`registration_step`: before a registration's decision is written, which control-plane
  call it needs (:class:`Step`): none, make the agent visible as pending (``admit``), or approve
  it there and get the key the agent will hold (``grant``). The call runs *before* the write, so
  an unreachable control plane leaves nothing written (the agent is answered 202 pending with
  Retry-After and tries again).
* :func:`sync_actions`: given the approver's records and the control plane's own list (read at
  ``listed_at``), what the sync loop does (:class:`SyncKind`), record by record:

  =====================  ====================================  ==================================
  approver record        control plane's list                  action
  =====================  ====================================  ==================================
  pending                approved (by its administrator)       ``adopt_approval``: active, method
                                                               ``manual``, approved by them; the
                                                               agent's next registration gets a
                                                               key (``grant``: rotate-key)
  pending                rejected                              ``adopt_rejection``: rejected
  pending, made visible  absent (its administrator deleted it)  ``mark`` absent: the agent's next
                                                               registration makes it visible again
  pending, expired       pending                               ``remove`` there: nobody registered
                                                               it for ``pendingTtlSeconds`` (a pod
                                                               the approver cannot watch is gone)
  active                 pending (approved in the approver)    ``approve`` there
  active, approved       absent (deleted there)                ``adopt_removal``: inactive
                                                               (``removed_in_control_plane``)
  active                 rejected                              ``adopt_rejection`` (the stricter
                                                               word wins)
  inactive               pending or approved                   ``remove`` there (pod gone, revoked)
  rejected               pending                               ``reject`` there
  rejected               approved                              ``remove`` there
  any                    as recorded                           nothing (``mark`` when the record's
                                                               ``control_plane`` is stale)
  =====================  ====================================  ==================================

  Records written at or after ``listed_at`` are left for the next round: the list may predate
  them. Rows of the control plane that the approver has no record of are never touched (agents
  registered there before the approver was installed, or by another path).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from approver.domain.control_plane import ControlPlaneAgent
from approver.domain.records import AgentRecord, AgentStatus, ControlPlaneState

_P, _A, _I, _R = AgentStatus.PENDING, AgentStatus.ACTIVE, AgentStatus.INACTIVE, AgentStatus.REJECTED
_CP_P, _CP_A, _CP_R, _CP_X = (
    ControlPlaneState.PENDING,
    ControlPlaneState.APPROVED,
    ControlPlaneState.REJECTED,
    ControlPlaneState.ABSENT,
)

#: Reason codes of records changed because of the control plane.
APPROVED_IN_CONTROL_PLANE = "approved_in_control_plane"
REJECTED_IN_CONTROL_PLANE = "rejected_in_control_plane"
REMOVED_IN_CONTROL_PLANE = "removed_in_control_plane"
CONTROL_PLANE_UNAVAILABLE = "control_plane_unavailable"


class Step(StrEnum):
    """The control-plane call a registration needs before its decision is written."""

    NONE = "none"
    ADMIT = "admit"  #: the agent must show up pending there
    GRANT = "grant"  #: approve there (or rotate its key) and hand the agent the key


def registration_step(
    *, issue_key: bool, pending: bool, creates: bool, existing: AgentRecord | None
) -> Step:
    """The call a decision needs (module docstring).

    Args:
        issue_key: the decision hands the agent a key (a new approval, a key owed after an
            administrator's approval, or a bound credential presented again).
        pending: the decision's outcome is pending.
        creates: the decision creates the record.
        existing: the agent's record before the decision, or None.
    """
    if issue_key:
        return Step.GRANT
    if pending and (creates or existing is None or existing.control_plane in (None, _CP_X)):
        return Step.ADMIT
    return Step.NONE


class SyncKind(StrEnum):
    """What the sync loop does for one record (module docstring's table)."""

    ADOPT_APPROVAL = "adopt_approval"
    ADOPT_REJECTION = "adopt_rejection"
    ADOPT_REMOVAL = "adopt_removal"
    APPROVE = "approve"
    REJECT = "reject"
    REMOVE = "remove"
    MARK = "mark"


@dataclass(frozen=True, slots=True)
class SyncAction:
    """One action of the sync loop.

    Attributes:
        kind: what to do.
        record: the approver's record as the plan saw it.
        listed: the control plane's row, if it lists the agent.
        state: for ``mark``, the state to record.
    """

    kind: SyncKind
    record: AgentRecord
    listed: ControlPlaneAgent | None = None
    state: ControlPlaneState | None = None


def sync_actions(
    records: Iterable[AgentRecord],
    listed: Mapping[str, ControlPlaneAgent],
    *,
    listed_at: datetime,
) -> list[SyncAction]:
    """The sync loop's actions (module docstring's table), in the records' order."""
    actions = []
    for record in records:
        if record.updated_at >= listed_at or (
            record.control_plane_at is not None and record.control_plane_at >= listed_at
        ):
            continue
        action = _action(record, listed.get(record.agent_id))
        if action is not None:
            actions.append(action)
    return actions


def _action(record: AgentRecord, row: ControlPlaneAgent | None) -> SyncAction | None:
    there = row.state if row is not None else _CP_X
    status, known = record.status, record.control_plane

    def mark() -> SyncAction | None:
        return None if known is there else SyncAction(SyncKind.MARK, record, row, there)

    if status is _P:
        if record.expired_at is not None and there is _CP_P:
            return SyncAction(SyncKind.REMOVE, record, row)
        if there is _CP_A:
            return SyncAction(SyncKind.ADOPT_APPROVAL, record, row)
        if there is _CP_R:
            return SyncAction(SyncKind.ADOPT_REJECTION, record, row)
        # Absent: never made visible (the agent's registration will), or deleted there.
        return mark() if known in (_CP_P, _CP_A) else None
    if status is _A:
        if there is _CP_P:
            return SyncAction(SyncKind.APPROVE, record, row)
        if there is _CP_R:
            return SyncAction(SyncKind.ADOPT_REJECTION, record, row)
        if there is _CP_X and known is _CP_A:
            return SyncAction(SyncKind.ADOPT_REMOVAL, record, row)
        return mark() if there is _CP_A else None
    if status is _I:
        return SyncAction(SyncKind.REMOVE, record, row) if row is not None else mark()
    # rejected
    if there is _CP_P:
        return SyncAction(SyncKind.REJECT, record, row)
    if there is _CP_A:
        return SyncAction(SyncKind.REMOVE, record, row)
    return mark()
