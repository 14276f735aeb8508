"""The audit chain in the store: appended in the change's transaction, never forked by
concurrent writers (two stores on one PostgreSQL: two replicas), listed with filters."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from approver.audit.chain import verify_chain
from approver.domain.records import AgentStatus
from approver.store import AuditFilter, Store, StoreConflict
from approver.store.rows import agent_from_row, agent_values
from approver.store.tables import agents
from bootstrap_token import AuditEvent
from tests.approver.helpers import NOW
from tests.approver.test_store import agent, use

T0 = datetime.fromtimestamp(NOW, UTC)


def event(n: int, **changes: object) -> AuditEvent:
    values: dict[str, object] = {
        "time": T0 + timedelta(milliseconds=n),
        "component": "approver",
        "event": "agent.register",
        "decision": "approved",
        "reason": "ok",
        "agent_id": f"agent-{n}",
        "actor": "alice" if n % 2 else "bob",
        "security": n % 5 == 0,
    }
    values.update(changes)
    return AuditEvent.model_validate(values)


async def report(store: Store) -> tuple[int, object]:
    head = await store.audit_head()
    items = [item async for item in store.iter_audit(batch=7)]
    result = verify_chain(items, head=head)
    return result.checked, result.broken


class TestAppend:
    async def test_appends_chain_in_order(self, store: Store) -> None:
        """Events appended in several transactions form one intact chain, seq 1..n."""
        for n in range(1, 6):
            async with store.transaction() as tx:
                await tx.append_audit(event(n))
                await tx.append_audit(event(n + 100))
        assert await report(store) == (10, None)
        assert (await store.audit_head())[0] == 10

    async def test_rolled_back_events_never_existed(self, store: Store) -> None:
        """Events of a transaction that rolls back are not stored; the chain stays intact."""
        async with store.transaction() as tx:
            await tx.append_audit(event(1))

        async def conflicting() -> None:
            async with store.transaction() as tx:
                await tx.append_audit(event(2))
                await tx.insert_agent(agent())
                await tx.insert_agent(agent())

        with pytest.raises(StoreConflict):
            await conflicting()
        async with store.transaction() as tx:
            await tx.append_audit(event(3))
        events = await store.list_audit()
        assert [e.event.agent_id for e in events] == ["agent-1", "agent-3"]
        assert await report(store) == (2, None)

    async def test_stored_event_is_fitted(self, store: Store) -> None:
        """A value longer than its column is cut before hashing: stored = hashed = emitted."""
        async with store.transaction() as tx:
            stored = await tx.append_audit(event(1, reason="r" * 100))
        assert stored.reason == "r" * 64
        (item,) = await store.list_audit()
        assert item.event.reason == stored.reason
        assert await report(store) == (1, None)

    async def test_stale_head_cache_is_caught(self, store: Store, database_url: str) -> None:
        """Another writer (another replica) moving the head makes this store re-read it."""
        other = Store.open(database_url)
        try:
            async with store.transaction() as tx:
                await tx.append_audit(event(1))
            async with other.transaction() as tx:
                await tx.append_audit(event(2))
            async with store.transaction() as tx:
                await tx.append_audit(event(3))
        finally:
            await other.close()
        assert await report(store) == (3, None)

    async def test_filters_and_paging(self, store: Store) -> None:
        """Events are listed by seq, filtered, and paged with after/before."""
        async with store.transaction() as tx:
            for n in range(1, 11):
                await tx.append_audit(event(n))
        alice = await store.list_audit(where=AuditFilter(actor="alice"))
        assert [e.seq for e in alice] == [1, 3, 5, 7, 9]
        security = await store.list_audit(where=AuditFilter(security=True))
        assert [e.event.agent_id for e in security] == ["agent-5", "agent-10"]
        page = await store.list_audit(after=3, limit=2)
        assert [e.seq for e in page] == [4, 5]
        latest = await store.list_audit(descending=True, before=9, limit=3)
        assert [e.seq for e in latest] == [8, 7, 6]
        since = await store.list_audit(
            where=AuditFilter(since=T0 + timedelta(milliseconds=9), agent_id="agent-10")
        )
        assert [e.seq for e in since] == [10]


@pytest.mark.postgres
class TestReplicas:
    async def test_two_replicas_appending_at_once_never_fork(self, pg_url: str) -> None:
        """Two stores (two replicas) appending 200 transactions at once: one chain, no fork."""
        first, second = Store.open(pg_url), Store.open(pg_url)
        await first.migrate()

        async def append(store: Store, n: int) -> None:
            async with store.transaction() as tx:
                await tx.append_audit(event(n))
                if n % 3 == 0:
                    await tx.append_audit(event(n + 1000))

        try:
            await asyncio.gather(*[append(first if n % 2 else second, n) for n in range(1, 201)])
            checked, broken = await report(first)
        finally:
            await first.close()
            await second.close()
        assert broken is None
        assert checked == 200 + len(range(3, 201, 3))


class TestFastPath:
    async def test_fast_writes_store_what_sqlalchemy_stores(
        self, store: Store, database_url: str
    ) -> None:
        """A record written by the fast path reads back equal and is stored exactly as a
        record written through SQLAlchemy (same text for times, ids and JSON on SQLite)."""
        fast = agent("fast-agent", status=AgentStatus.PENDING, approval_method=None, capacity=None)
        slow = agent("slow-agent", status=AgentStatus.PENDING, approval_method=None, capacity=None)
        async with store.transaction() as tx:
            await tx.insert_agent(fast)
            await tx.connection.execute(sa.insert(agents), [agent_values(slow)])
        assert await store.get_agent("fast-agent") == fast
        if store.dialect == "sqlite":
            path = Path(sa.make_url(database_url).database or "")
            with sqlite3.connect(path) as conn:
                rows = conn.execute(
                    "SELECT agent_id, created_at, capacity, metadata, typeof(id) FROM agents "
                    "ORDER BY agent_id"
                ).fetchall()
            fast_row, slow_row = rows
            assert fast_row[1:] == slow_row[1:]

    async def test_claim_jti_once(self, store: Store) -> None:
        """The fast jti claim inserts once and then reports the jti taken."""
        async with store.transaction() as tx:
            assert await tx.claim_jti(use()) is True
            assert await tx.claim_jti(use("someone-else")) is False
        assert await store.jti_owner(use().jti) == use().agent_id

    @pytest.mark.parametrize("lock", [False, True])
    async def test_agent_and_jti_owner_in_one_read(self, store: Store, lock: bool) -> None:
        """The registration path's one read gives the record and the jti's owner, each absent or
        present independently of the other."""
        record = agent()
        other = "some-other-agent"
        async with store.transaction() as tx:
            assert await tx.get_agent_and_jti_owner(record.agent_id, "j-0", lock=lock) == (
                None,
                None,
            )
            assert await tx.claim_jti(use(other, "j-1")) is True
            assert await tx.get_agent_and_jti_owner(record.agent_id, "j-1", lock=lock) == (
                None,
                other,
            )
            await tx.insert_agent(record)
            assert await tx.get_agent_and_jti_owner(record.agent_id, "j-0", lock=lock) == (
                record,
                None,
            )
            assert await tx.get_agent_and_jti_owner(record.agent_id, "j-1", lock=lock) == (
                record,
                other,
            )


def test_rows_round_trip() -> None:
    """agent_from_row reads what agent_values writes."""
    record = agent()
    assert agent_from_row(agent_values(record)) == record
