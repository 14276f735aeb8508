"""Pending registrations past the TTL are marked pending_expired, not lost."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from approver.domain.records import AgentStatus
from approver.store import Store
from approver.sweeper import PendingSweeper
from tests.approver.helpers import NOW, Clock, RecordingSink
from tests.approver.test_store import agent

T0 = datetime.fromtimestamp(NOW, UTC)
DAY = 86400


def pending(agent_id: str, *, age: timedelta) -> object:
    return replace(
        agent(agent_id),
        id=uuid.uuid4(),
        status=AgentStatus.PENDING,
        approval_method=None,
        approved_by=None,
        approved_at=None,
        reason="manual_approval_required",
        jti=None,
        created_at=T0 - age,
        updated_at=T0 - age,
    )


class TestSweeper:
    async def test_marks_old_pending_only(self, store: Store) -> None:
        """Pending records older than the TTL get expired_at and pending_expired; younger ones
        and other statuses stay; one audit event each; a second sweep changes nothing."""
        async with store.transaction() as tx:
            await tx.insert_agent(pending("old", age=timedelta(hours=25)))  # type: ignore[arg-type]
            await tx.insert_agent(pending("young", age=timedelta(hours=23)))  # type: ignore[arg-type]
            await tx.insert_agent(replace(agent("active"), created_at=T0 - timedelta(days=9)))
        audit = RecordingSink()
        sweeper = PendingSweeper(store=store, audit=audit, clock=Clock(), ttl_seconds=DAY)
        assert await sweeper.sweep_once() == 1
        old = await store.get_agent("old")
        assert old is not None
        assert (old.status, old.reason, old.expired_at, old.updated_by) == (
            AgentStatus.PENDING,
            "pending_expired",
            T0,
            "sweeper",
        )
        young = await store.get_agent("young")
        assert young is not None
        assert young.expired_at is None
        assert [(e.event, e.agent_id, e.reason) for e in audit.events] == [
            ("agent.expire", "old", "pending_expired")
        ]
        assert await sweeper.sweep_once() == 0
        assert len(await store.list_audit()) == 1

    async def test_large_backlog_in_batches(self, store: Store) -> None:
        """More expired records than one batch are all marked."""
        async with store.transaction() as tx:
            for n in range(620):
                await tx.insert_agent(pending(f"p{n:04d}", age=timedelta(days=2)))  # type: ignore[arg-type]
        sweeper = PendingSweeper(store=store, audit=RecordingSink(), clock=Clock(), ttl_seconds=DAY)
        assert await sweeper.sweep_once() == 620
        left = await store.list_agents(status=AgentStatus.PENDING, limit=1000)
        assert all(a.expired_at is not None for a in left)
