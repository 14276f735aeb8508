"""The sync loop: the approver's records and the control plane's own list kept in step.

Every ``controlPlane.syncIntervalSeconds`` (and at once after :meth:`ControlPlaneSync.wake`:
an administrator acted in the approver, a pod was deleted), :meth:`ControlPlaneSync.once`:

1. notes the time, then reads the control plane's list (:meth:`ControlPlane.snapshot`:
   StreamSpace's ``GET /api/v1/admin/agents``: never a registration, which would mark an agent
   online);
2. reads every record of the approver and plans (:func:`approver.domain.sync_plan.
   sync_actions`, the table there): its administrators' approvals and rejections adopted
   (``approval_method`` ``manual``, ``approved_by`` ``streamspace:<their user id>``), an
   approved agent deleted there revoked, the approver's own administrators' decisions and
   deleted pods carried there (approve, reject, deregister);
3. runs each action: the control-plane call first, then one transaction that re-reads the
   record (skipping it when it changed meanwhile), writes the change and its audit event
   (actor ``control-plane-sync``, or the control plane's administrator for adopted
   decisions).

A control plane that is down costs a round (logged, retried next period); nothing is lost:
the plan is made again from the records each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from approver.audit.events import emit_all, record_event
from approver.domain.control_plane import AgentIntent, ControlPlane, ControlPlaneError
from approver.domain.lifecycle import LifecycleEvent, allowed
from approver.domain.records import AgentRecord, ApprovalMethod, ControlPlaneState
from approver.domain.sync_plan import (
    APPROVED_IN_CONTROL_PLANE,
    REJECTED_IN_CONTROL_PLANE,
    REMOVED_IN_CONTROL_PLANE,
    SyncAction,
    SyncKind,
    sync_actions,
)
from approver.store import Store, StoreUnavailable
from approver.transitions import write_transition
from bootstrap_token import AuditEvent, AuditSink, jsonio

log = logging.getLogger(__name__)

ACTOR = "control-plane-sync"
EVENT_PREFIX = "control_plane."
_PAGE = 1000

#: Adopted decisions: lifecycle event and reason.
_ADOPT = {
    SyncKind.ADOPT_APPROVAL: (LifecycleEvent.ADMIN_APPROVE, APPROVED_IN_CONTROL_PLANE),
    SyncKind.ADOPT_REJECTION: (LifecycleEvent.ADMIN_REJECT, REJECTED_IN_CONTROL_PLANE),
    SyncKind.ADOPT_REMOVAL: (LifecycleEvent.ADMIN_REVOKE, REMOVED_IN_CONTROL_PLANE),
}
_ADOPTED_STATE = {
    SyncKind.ADOPT_APPROVAL: ControlPlaneState.APPROVED,
    SyncKind.ADOPT_REJECTION: ControlPlaneState.REJECTED,
    SyncKind.ADOPT_REMOVAL: ControlPlaneState.ABSENT,
}


def intent_of(record: AgentRecord) -> AgentIntent:
    """The agent as the control plane must see it, rebuilt from its record (no request)."""
    body: dict[str, object] = {"agentId": record.agent_id, "platform": record.platform}
    if record.region:
        body["region"] = record.region
    if record.capacity is not None:
        body["capacity"] = record.capacity
    if record.metadata:
        body["metadata"] = record.metadata
    return AgentIntent(agent_id=record.agent_id, body=jsonio.dumps(body))


class ControlPlaneSync:
    """Runs the sync loop (module docstring).

    Args:
        store: the agent store.
        control_plane: the control plane's adapter.
        audit: where audit events go (after their commit).
        clock: seconds since the epoch.
        interval_seconds: the period of the loop.
    """

    def __init__(
        self,
        *,
        store: Store,
        control_plane: ControlPlane,
        audit: AuditSink,
        clock: Callable[[], float],
        interval_seconds: float,
    ) -> None:
        self._store = store
        self._cp = control_plane
        self._audit = audit
        self._clock = clock
        self._interval = interval_seconds
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Run a round now (the loop is waiting)."""
        self._wake.set()

    async def run(self) -> None:
        """Rounds forever (a background task); a failed round is logged and retried."""
        while True:
            try:
                await self.once()
            except (ControlPlaneError, StoreUnavailable) as exc:
                log.warning("control-plane sync: %s", exc)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)

    async def once(self) -> list[SyncAction]:
        """One round; returns the actions it ran.

        Raises:
            ControlPlaneError: the control plane's list could not be read.
            StoreUnavailable: the records could not be read.
        """
        listed_at = datetime.fromtimestamp(self._clock(), UTC)
        listed = await self._cp.snapshot()
        records = await self._records()
        actions = sync_actions(records, listed, listed_at=listed_at)
        done = []
        for action in actions:
            try:
                await self._run(action)
            except ControlPlaneError as exc:
                log.warning(
                    "control-plane sync: %s of %s: %s",
                    action.kind.value,
                    action.record.agent_id,
                    exc,
                )
                continue
            done.append(action)
        return done

    async def _records(self) -> list[AgentRecord]:
        records: list[AgentRecord] = []
        after = None
        while True:
            page = await self._store.list_agents(after=after, limit=_PAGE)
            records.extend(page)
            if len(page) < _PAGE:
                return records
            after = (page[-1].created_at, page[-1].id)

    async def _run(self, action: SyncAction) -> None:
        record = action.record
        kind = action.kind
        if kind in _ADOPT:
            await self._adopt(action)
            return
        state: ControlPlaneState
        if kind is SyncKind.APPROVE:
            state = await self._cp.approve(intent_of(record))
        elif kind is SyncKind.REJECT:
            state = await self._cp.reject(record.agent_id)
        elif kind is SyncKind.REMOVE:
            await self._cp.remove(record.agent_id)
            state = ControlPlaneState.ABSENT
        else:
            assert action.state is not None
            state = action.state
        await self._mark(record, state, told=kind is not SyncKind.MARK, kind=kind)

    async def _mark(
        self, seen: AgentRecord, state: ControlPlaneState, *, told: bool, kind: SyncKind
    ) -> None:
        at = datetime.fromtimestamp(self._clock(), UTC)
        events: list[AuditEvent] = []
        async with self._store.transaction() as tx:
            current = await tx.get_agent(seen.agent_id, lock=True)
            if current is None or current.id != seen.id:
                return
            await tx.update_agent(replace(current, control_plane=state, control_plane_at=at))
            if told:
                events.append(
                    await tx.append_audit(
                        record_event(
                            event=EVENT_PREFIX + kind.value,
                            decision=state.value,
                            reason="ok",
                            at=at,
                            actor=ACTOR,
                            record=current,
                            message=f"{self._cp.name}: agent {state.value} there",
                        )
                    )
                )
        emit_all(self._audit, events)

    async def _adopt(self, action: SyncAction) -> None:
        """A decision of the control plane's administrator, made the approver's."""
        event, reason = _ADOPT[action.kind]
        listed = action.listed
        who = listed.decided_by if listed is not None and listed.decided_by else "admin"
        actor = f"{self._cp.name}:{who}"
        at = datetime.fromtimestamp(self._clock(), UTC)
        events: list[AuditEvent] = []
        async with self._store.transaction() as tx:
            current = await tx.get_agent(action.record.agent_id, lock=True)
            if current is None or current.updated_at != action.record.updated_at:
                return  # changed since the plan: the next round decides again
            if not allowed(event, current):
                return
            _, stored = await write_transition(
                tx,
                current,
                event,
                audit_event=EVENT_PREFIX + action.kind.value,
                at=at,
                actor=actor,
                reason=reason,
                message=f"from={current.status.value}; decided in {self._cp.name}",
                approval_method=ApprovalMethod.MANUAL,
                control_plane=_ADOPTED_STATE[action.kind],
                control_plane_at=at,
            )
            events.append(stored)
        emit_all(self._audit, events)
