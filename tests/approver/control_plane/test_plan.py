"""The control-plane plan: which call a registration needs, and the sync loop's table."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from approver.domain.control_plane import ControlPlaneAgent
from approver.domain.records import AgentRecord, AgentStatus, ControlPlaneState
from approver.domain.sync_plan import Step, SyncKind, registration_step, sync_actions
from tests.approver.helpers import AGENT_ID, agent_record

AGENT = AGENT_ID
LISTED_AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
BEFORE = LISTED_AT - timedelta(seconds=30)
_P, _A, _I, _R = AgentStatus.PENDING, AgentStatus.ACTIVE, AgentStatus.INACTIVE, AgentStatus.REJECTED
CP = ControlPlaneState


def record(
    status: AgentStatus,
    known: ControlPlaneState | None,
    *,
    updated: datetime = BEFORE,
    synced: datetime | None = BEFORE,
) -> AgentRecord:
    return agent_record(
        status,
        at=BEFORE,
        updated_at=updated,
        control_plane=known,
        control_plane_at=synced if known is not None else None,
    )


def listed(state: ControlPlaneState | None) -> dict[str, ControlPlaneAgent]:
    if state is None:
        return {}
    return {AGENT: ControlPlaneAgent(agent_id=AGENT, state=state, decided_by="u-1")}


class TestRegistrationStep:
    @pytest.mark.parametrize(
        ("issue_key", "pending", "creates", "existing", "step"),
        [
            (True, False, True, None, Step.GRANT),
            (True, False, False, record(_A, CP.APPROVED), Step.GRANT),
            (False, True, True, None, Step.ADMIT),
            (False, True, False, record(_P, None), Step.ADMIT),
            (False, True, False, record(_P, CP.ABSENT), Step.ADMIT),
            (False, True, False, record(_P, CP.PENDING), Step.NONE),
            (False, False, False, record(_A, CP.APPROVED), Step.NONE),
            (False, False, False, None, Step.NONE),
        ],
        ids=["new approval", "key again", "new pending", "pending never shown",
             "pending deleted there", "pending shown", "reconnect", "refused"],
    )  # fmt: skip
    def test_step(
        self,
        issue_key: bool,
        pending: bool,
        creates: bool,
        existing: AgentRecord | None,
        step: Step,
    ) -> None:
        """A key means grant; a pending agent not shown there yet means admit; else nothing."""
        assert (
            registration_step(
                issue_key=issue_key, pending=pending, creates=creates, existing=existing
            )
            is step
        )


class TestSyncActions:
    @pytest.mark.parametrize(
        ("status", "known", "there", "kind", "state"),
        [
            (_P, CP.PENDING, CP.APPROVED, SyncKind.ADOPT_APPROVAL, None),
            (_P, CP.PENDING, CP.REJECTED, SyncKind.ADOPT_REJECTION, None),
            (_P, CP.PENDING, None, SyncKind.MARK, CP.ABSENT),
            (_P, CP.PENDING, CP.PENDING, None, None),
            (_P, None, None, None, None),
            (_A, CP.PENDING, CP.PENDING, SyncKind.APPROVE, None),
            (_A, CP.APPROVED, CP.APPROVED, None, None),
            (_A, CP.PENDING, CP.APPROVED, SyncKind.MARK, CP.APPROVED),
            (_A, CP.APPROVED, None, SyncKind.ADOPT_REMOVAL, None),
            (_A, None, None, None, None),
            (_A, CP.APPROVED, CP.REJECTED, SyncKind.ADOPT_REJECTION, None),
            (_I, CP.APPROVED, CP.APPROVED, SyncKind.REMOVE, None),
            (_I, CP.PENDING, CP.PENDING, SyncKind.REMOVE, None),
            (_I, CP.APPROVED, None, SyncKind.MARK, CP.ABSENT),
            (_I, CP.ABSENT, None, None, None),
            (_R, CP.PENDING, CP.PENDING, SyncKind.REJECT, None),
            (_R, CP.APPROVED, CP.APPROVED, SyncKind.REMOVE, None),
            (_R, CP.REJECTED, CP.REJECTED, None, None),
        ],
        ids=["approved there", "rejected there", "pending deleted there", "pending in step",
             "pending never shown", "approved here", "active in step", "active marked",
             "approved agent deleted there", "active never shown", "rejected there wins",
             "pod gone", "pending pod gone", "gone both sides", "absent in step",
             "rejected here", "rejected here after approval", "rejected in step"],
    )  # fmt: skip
    def test_table(
        self,
        status: AgentStatus,
        known: ControlPlaneState | None,
        there: ControlPlaneState | None,
        kind: SyncKind | None,
        state: ControlPlaneState | None,
    ) -> None:
        """Each row of the table in approver.domain.sync_plan."""
        actions = sync_actions([record(status, known)], listed(there), listed_at=LISTED_AT)
        if kind is None:
            assert actions == []
        else:
            [action] = actions
            assert (action.kind, action.state) == (kind, state)

    @pytest.mark.parametrize(
        ("updated", "synced"),
        [(LISTED_AT, BEFORE), (BEFORE, LISTED_AT), (LISTED_AT + timedelta(seconds=1), BEFORE)],
        ids=["changed at the listing", "synced at the listing", "changed after"],
    )
    def test_records_newer_than_the_list_wait(self, updated: datetime, synced: datetime) -> None:
        """A record written at or after the list was read is left for the next round."""
        stale = record(_P, CP.PENDING, updated=updated, synced=synced)
        assert sync_actions([stale], listed(CP.APPROVED), listed_at=LISTED_AT) == []

    def test_expired_pending_is_removed_there(self) -> None:
        """A pending record past pendingTtlSeconds (its pod perhaps gone, unwatched) leaves
        StreamSpace's list: no ghost row."""
        stale = replace(record(_P, CP.PENDING), expired_at=BEFORE)
        [action] = sync_actions([stale], listed(CP.PENDING), listed_at=LISTED_AT)
        assert action.kind is SyncKind.REMOVE
        [gone] = sync_actions([stale], listed(None), listed_at=LISTED_AT)
        assert (gone.kind, gone.state) == (SyncKind.MARK, CP.ABSENT)

    def test_rows_unknown_to_the_approver_are_not_touched(self) -> None:
        """An agent listed there but without a record here causes no action."""
        other = {"other": ControlPlaneAgent(agent_id="other", state=CP.APPROVED)}
        assert sync_actions([], other, listed_at=LISTED_AT) == []
