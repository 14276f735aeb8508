"""Ghost cleanup: a deleted pod makes its agent ``inactive`` (``pod_deleted``). No HTTP.

:class:`PodReconciler` is the :class:`approver.kube.watch.PodEvents` handler of the pod watch:

* :meth:`~PodReconciler.pod_deleted` (a watch ``DELETED`` event): the ``pending`` and
  ``active`` agents bound to that pod (its UID; or, for records bound before Kubernetes access
  was on, its namespace and name) become ``inactive``;
* :meth:`~PodReconciler.pods_listed` (the list at start and after every 410): every ``pending``
  or ``active`` agent of the namespace bound to a pod that is not in the list becomes
  ``inactive``: this is what catches deletions that happened while the approver was down.
  Records changed after the list started are left alone: a registration may have bound a pod the
  list did not see yet; the watch reports it if it goes.

Each change is one lifecycle transition and one audit event (``agent.pod_deleted``, actor
``pod-watch``) in the same transaction; the rows are locked, and a record already changed by
another replica (or an administrator) is skipped, so two replicas never write the same change
twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from approver.audit.events import emit_all
from approver.domain.binding import LivePod
from approver.domain.decision import Reason
from approver.domain.lifecycle import LifecycleEvent, allowed
from approver.domain.records import AgentRecord, AgentStatus
from approver.store import Store, Transaction
from approver.transitions import write_transition
from bootstrap_token import AuditEvent, AuditSink

log = logging.getLogger(__name__)

ACTOR = "pod-watch"
EVENT = "agent.pod_deleted"
_WATCHED = (AgentStatus.PENDING, AgentStatus.ACTIVE)


class PodReconciler:
    """Marks the agents of deleted pods inactive.

    Args:
        store: the agent store.
        audit: where audit events go (after their commit).
        clock: seconds since the epoch.
        changed: called after a commit that made agents inactive (the control-plane sync
            loop's ``wake``: a deleted pod's agent is deregistered there at once).
    """

    def __init__(
        self,
        *,
        store: Store,
        audit: AuditSink,
        clock: Callable[[], float],
        changed: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock
        self._changed = changed

    async def pod_deleted(self, pod: LivePod) -> None:
        """The agents bound to ``pod`` become inactive. Raises StoreUnavailable."""
        at = datetime.fromtimestamp(self._clock(), UTC)
        async with self._store.transaction() as tx:
            by_uid = await tx.select_agents(
                statuses=_WATCHED, namespace=pod.namespace, pod_uid=pod.uid, lock=True
            )
            by_name = await tx.select_agents(
                statuses=_WATCHED, namespace=pod.namespace, pod_name=pod.name, lock=True
            )
            targets = by_uid + [a for a in by_name if a.pod_uid is None]
            events = await self._deactivate(tx, targets, at=at, why=f"pod {pod.uid} deleted")
        self._emit(events)

    async def pods_listed(self, namespace: str, pods: Sequence[LivePod], *, started: float) -> None:
        """Agents of ``namespace`` whose pod is not in ``pods`` become inactive (records
        changed after ``started`` excepted). Raises StoreUnavailable."""
        at = datetime.fromtimestamp(self._clock(), UTC)
        cutoff = datetime.fromtimestamp(started, UTC)
        uids = {p.uid for p in pods}
        names = {p.name for p in pods}
        async with self._store.transaction() as tx:
            bound = await tx.select_agents(
                statuses=_WATCHED, namespace=namespace, bound_only=True, lock=True
            )
            gone = [a for a in bound if a.updated_at < cutoff and not _alive(a, uids, names)]
            events = await self._deactivate(tx, gone, at=at, why="pod missing from the list")
        if events:
            log.info(
                "reconciled %s: %d agent(s) of deleted pods made inactive", namespace, len(events)
            )
        self._emit(events)

    def _emit(self, events: list[AuditEvent]) -> None:
        emit_all(self._audit, events)
        if events and self._changed is not None:
            self._changed()

    async def _deactivate(
        self, tx: Transaction, records: Sequence[AgentRecord], *, at: datetime, why: str
    ) -> list[AuditEvent]:
        events = []
        for record in records:
            if not allowed(LifecycleEvent.POD_DELETED, record):
                continue
            _, stored = await write_transition(
                tx,
                record,
                LifecycleEvent.POD_DELETED,
                audit_event=EVENT,
                at=at,
                actor=ACTOR,
                reason=Reason.POD_DELETED,
                message=f"from={record.status.value}; {why}",
            )
            events.append(stored)
        return events


def _alive(record: AgentRecord, uids: set[str], names: set[str]) -> bool:
    if record.pod_uid is not None:
        return record.pod_uid in uids
    return record.pod_name in names
