"""The lifecycle table: every event moves a record only from the statuses the table names."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from approver.domain.lifecycle import (
    TRANSITIONS,
    LifecycleEvent,
    TransitionNotAllowed,
    allowed,
    apply,
    first_approval_fields,
)
from approver.domain.records import AgentRecord, AgentStatus, ApprovalMethod
from tests.approver.helpers import NOW, agent_record

T0 = datetime.fromtimestamp(NOW, UTC)
T1 = T0 + timedelta(minutes=5)
P, A, I, R = AgentStatus.PENDING, AgentStatus.ACTIVE, AgentStatus.INACTIVE, AgentStatus.REJECTED  # noqa: E741 - the table reads best with one letter per status
E = LifecycleEvent


def record(status: AgentStatus, **changes: object) -> AgentRecord:
    return agent_record(status, at=T0, **changes)


#: (event, from, allowed?) for every event and status.
TABLE = [
    (E.AUTO_APPROVE, P, True), (E.AUTO_APPROVE, A, False), (E.AUTO_APPROVE, I, False),
    (E.AUTO_APPROVE, R, False),
    (E.REBIND, P, True), (E.REBIND, A, True), (E.REBIND, R, False),
    (E.REFRESH, P, True), (E.REFRESH, A, False), (E.REFRESH, I, False), (E.REFRESH, R, False),
    (E.ADMIN_APPROVE, P, True), (E.ADMIN_APPROVE, A, False), (E.ADMIN_APPROVE, I, True),
    (E.ADMIN_APPROVE, R, True),
    (E.ADMIN_REJECT, P, True), (E.ADMIN_REJECT, A, True), (E.ADMIN_REJECT, I, True),
    (E.ADMIN_REJECT, R, False),
    (E.ADMIN_REVOKE, P, False), (E.ADMIN_REVOKE, A, True), (E.ADMIN_REVOKE, I, False),
    (E.ADMIN_REVOKE, R, False),
    (E.POD_DELETED, P, True), (E.POD_DELETED, A, True), (E.POD_DELETED, I, False),
    (E.POD_DELETED, R, False),
    (E.EXPIRE, P, True), (E.EXPIRE, A, False), (E.EXPIRE, I, False), (E.EXPIRE, R, False),
    (E.ADMIN_DELETE, P, True), (E.ADMIN_DELETE, A, True), (E.ADMIN_DELETE, I, True),
    (E.ADMIN_DELETE, R, True),
]  # fmt: skip


class TestTable:
    @pytest.mark.parametrize(("event", "status", "ok"), TABLE)
    def test_allowed(self, event: LifecycleEvent, status: AgentStatus, ok: bool) -> None:
        """Each event starts only from the statuses of the documented table."""
        assert allowed(event, record(status)) is ok

    def test_every_event_is_in_the_table(self) -> None:
        """The table covers every event but register (which starts from no record)."""
        assert set(TRANSITIONS) == set(LifecycleEvent) - {E.REGISTER}

    @pytest.mark.parametrize(("reason", "ok"), [("pod_deleted", True), ("revoked_by_admin", False)])
    def test_rebind_of_inactive_only_after_pod_deleted(self, reason: str, ok: bool) -> None:
        """A re-bind revives an inactive agent whose pod went, never one an admin revoked."""
        assert allowed(E.REBIND, record(I, reason=reason)) is ok

    @pytest.mark.parametrize("event", [E.AUTO_APPROVE, E.REFRESH, E.EXPIRE])
    def test_expired_pending_is_frozen(self, event: LifecycleEvent) -> None:
        """An expired pending record takes no automatic event."""
        assert allowed(event, record(P, expired_at=T0)) is False

    @pytest.mark.parametrize("event", [E.ADMIN_APPROVE, E.ADMIN_REJECT, E.POD_DELETED])
    def test_expired_pending_still_answers_admins_and_the_pod_watch(
        self, event: LifecycleEvent
    ) -> None:
        """Administrators and the pod watch still act on an expired pending record."""
        assert allowed(event, record(P, expired_at=T0)) is True


class TestApply:
    def test_refused_transition_raises(self) -> None:
        """Applying an event that may not start from the status raises."""
        with pytest.raises(TransitionNotAllowed, match="admin_revoke is not allowed from pending"):
            apply(record(P), E.ADMIN_REVOKE, at=T1, actor="alice", reason="revoked_by_admin")

    def test_approval_facts_are_set_once(self) -> None:
        """approved_by/approved_at/approval_method keep the first approval's values."""
        approved = apply(
            record(P),
            E.AUTO_APPROVE,
            at=T1,
            actor="bootstrap-token",
            reason="bootstrap_token_accepted",
            approval_method=ApprovalMethod.NAMESPACE,
        )
        revoked = apply(approved, E.ADMIN_REVOKE, at=T1, actor="bob", reason="revoked_by_admin")
        again = apply(
            revoked, E.ADMIN_APPROVE, at=T1 + timedelta(hours=1), actor="alice", reason="x"
        )
        assert (again.approval_method, again.approved_by, again.approved_at) == (
            ApprovalMethod.NAMESPACE,
            "bootstrap-token",
            T1,
        )
        assert (again.updated_by, again.status) == ("alice", A)

    def test_admin_approval_without_method_is_manual(self) -> None:
        """An administrator's first approval records the method manual."""
        approved = apply(record(P), E.ADMIN_APPROVE, at=T1, actor="alice", reason="ok")
        assert (approved.approval_method, approved.approved_by) == (ApprovalMethod.MANUAL, "alice")

    @pytest.mark.parametrize(
        ("start", "event"),
        [(I, E.ADMIN_APPROVE), (R, E.ADMIN_APPROVE), (A, E.REBIND)],
    )
    def test_old_api_key_never_comes_back(self, start: AgentStatus, event: LifecycleEvent) -> None:
        """Re-approval after a revoke or reject, or a re-bind, forgets the per-agent key."""
        keyed = record(start, api_key_hash="k" * 64, api_key_issued_at=T0, reason="pod_deleted")
        changed = apply(keyed, event, at=T1, actor="alice", reason="x")
        assert (changed.api_key_hash, changed.api_key_issued_at) == (None, None)

    def test_expire_marks_and_keeps_pending(self) -> None:
        """Expiry keeps the record pending and marks when."""
        expired = apply(record(P), E.EXPIRE, at=T1, actor="sweeper", reason="pending_expired")
        assert (expired.status, expired.expired_at, expired.reason) == (P, T1, "pending_expired")

    def test_approval_clears_the_expiry_mark(self) -> None:
        """An administrator approving an expired registration makes it an ordinary active one."""
        expired = record(P, expired_at=T0)
        approved = apply(expired, E.ADMIN_APPROVE, at=T1, actor="alice", reason="ok")
        assert approved.expired_at is None

    def test_delete_yields_no_record(self) -> None:
        """admin_delete removes the row: there is no record to apply it to."""
        with pytest.raises(ValueError, match="deletes the record"):
            apply(record(P), E.ADMIN_DELETE, at=T1, actor="alice", reason="deleted_by_admin")

    def test_first_approval(self) -> None:
        """A record created active carries its approval facts."""
        created = replace(
            record(A),
            **first_approval_fields(
                at=T0, actor="bootstrap-token", method=ApprovalMethod.NAMESPACE
            ),
        )
        assert (created.approval_method, created.approved_by, created.approved_at) == (
            ApprovalMethod.NAMESPACE,
            "bootstrap-token",
            T0,
        )
