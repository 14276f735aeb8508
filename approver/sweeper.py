"""Pending registrations that outlive ``pendingTtlSeconds`` are marked, not lost. No HTTP.

:class:`PendingSweeper` runs every ``sweepIntervalSeconds``: each ``pending`` record created more
than the TTL ago and not yet marked gets ``expired_at`` and reason ``pending_expired`` (lifecycle
event ``expire``; it stays ``pending``) and one audit event (``agent.expire``, actor
``sweeper``), in batches of 500 per transaction. A marked record is frozen: the agent's retries
answer ``pending_expired`` without re-evaluation; an administrator approves, rejects or deletes
it (and a deleted agent may register afresh). Two replicas sweeping at once take disjoint rows
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from approver.audit.events import emit_all
from approver.domain.decision import Reason
from approver.domain.lifecycle import LifecycleEvent, allowed
from approver.domain.records import AgentStatus
from approver.store import Store, StoreError
from approver.transitions import write_transition
from bootstrap_token import AuditSink

log = logging.getLogger(__name__)

ACTOR = "sweeper"
EVENT = "agent.expire"
BATCH = 500


class PendingSweeper:
    """Marks expired pending registrations.

    Args:
        store: the agent store.
        audit: where audit events go (after their commit).
        clock: seconds since the epoch.
        ttl_seconds: how long a registration may stay pending.
    """

    def __init__(
        self,
        *,
        store: Store,
        audit: AuditSink,
        clock: Callable[[], float],
        ttl_seconds: int,
    ) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_seconds)

    async def sweep_once(self) -> int:
        """Mark every expired pending record now; returns how many. Raises StoreUnavailable."""
        marked = 0
        while True:
            at = datetime.fromtimestamp(self._clock(), UTC)
            async with self._store.transaction() as tx:
                batch = await tx.select_agents(
                    statuses=(AgentStatus.PENDING,),
                    created_before=at - self._ttl,
                    unexpired_only=True,
                    limit=BATCH,
                    lock=True,
                    skip_locked=True,
                )
                events = []
                for record in batch:
                    if not allowed(LifecycleEvent.EXPIRE, record):
                        continue
                    _, stored = await write_transition(
                        tx,
                        record,
                        LifecycleEvent.EXPIRE,
                        audit_event=EVENT,
                        at=at,
                        actor=ACTOR,
                        reason=Reason.PENDING_EXPIRED,
                        message=f"pending since {record.created_at.isoformat()}",
                    )
                    events.append(stored)
            emit_all(self._audit, events)
            marked += len(events)
            if len(batch) < BATCH:
                return marked

    async def run(self, *, interval_seconds: float) -> None:
        """Sweep every ``interval_seconds`` until cancelled; database trouble is logged and
        the next round tries again."""
        while True:
            try:
                count = await self.sweep_once()
                if count:
                    log.info("marked %d pending registration(s) expired", count)
            except StoreError as exc:
                log.warning("pending sweep failed: %s", exc)
            except Exception:
                log.exception("pending sweep failed unexpectedly; trying again next round")
            await asyncio.sleep(interval_seconds)
