"""Group commit: concurrent work shares one transaction; one item's failure is its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from approver.domain.records import AgentStatus
from approver.store import Store, StoreConflict, StoreUnavailable, Transaction
from approver.store.batcher import WriteBatcher
from tests.approver.test_store import agent


class CountingStore(Store):
    """Counts transactions; can make the next commit fail."""

    transactions = 0
    fail_commit = False

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        type(self).transactions += 1
        async with super().transaction() as tx:
            yield tx
            if self.fail_commit:
                raise StoreUnavailable("commit failed (test)")


@pytest.fixture
async def counting(database_url: str) -> AsyncIterator[CountingStore]:
    store = CountingStore.open(database_url)
    assert isinstance(store, CountingStore)
    await store.migrate()
    CountingStore.transactions = 0
    try:
        yield store
    finally:
        await store.close()


def insert(agent_id: str) -> Callable[[Transaction], Awaitable[str]]:
    async def work(tx: Transaction) -> str:
        await tx.insert_agent(agent(agent_id, status=AgentStatus.PENDING, approval_method=None))
        return agent_id

    return work


class TestWriteBatcher:
    async def test_concurrent_work_shares_transactions(self, counting: CountingStore) -> None:
        """50 concurrent items commit in far fewer transactions, each result after commit."""
        batcher = WriteBatcher(counting, max_batch=64)
        results = await asyncio.gather(*[batcher.run(insert(f"a{n}")) for n in range(50)])
        assert results == [f"a{n}" for n in range(50)]
        assert CountingStore.transactions <= 3
        assert len(await counting.list_agents()) == 50

    async def test_items_see_earlier_items(self, counting: CountingStore) -> None:
        """An item reads what an earlier item of its batch wrote."""
        batcher = WriteBatcher(counting, max_batch=64)

        async def read(tx: Transaction) -> bool:
            return await tx.get_agent("first") is not None

        inserted, seen = await asyncio.gather(batcher.run(insert("first")), batcher.run(read))
        assert (inserted, seen) == ("first", True)

    async def test_a_failing_item_fails_alone(self, counting: CountingStore) -> None:
        """An item that raises gets its own error; the other items still commit."""
        batcher = WriteBatcher(counting, max_batch=64)
        results = await asyncio.gather(
            batcher.run(insert("dup")),
            batcher.run(insert("dup")),
            batcher.run(insert("other")),
            return_exceptions=True,
        )
        assert results[0] == "dup"
        assert isinstance(results[1], StoreConflict)
        assert results[2] == "other"
        assert sorted(a.agent_id for a in await counting.list_agents()) == ["dup", "other"]

    async def test_commit_failure_fails_every_item(self, counting: CountingStore) -> None:
        """When the commit fails, every item of the batch hears it and nothing is written."""
        batcher = WriteBatcher(counting, max_batch=64)
        counting.fail_commit = True
        results = await asyncio.gather(
            *[batcher.run(insert(f"b{n}")) for n in range(5)],
            return_exceptions=True,
        )
        counting.fail_commit = False
        assert all(isinstance(r, StoreUnavailable) for r in results)
        assert await counting.list_agents() == []

    async def test_batch_of_one_is_a_plain_transaction(self, counting: CountingStore) -> None:
        """max_batch 1: every item its own transaction."""
        batcher = WriteBatcher(counting, max_batch=1)
        await asyncio.gather(*[batcher.run(insert(f"c{n}")) for n in range(4)])
        assert CountingStore.transactions == 4

    def test_max_batch_must_be_positive(self, counting: CountingStore) -> None:
        """A batch of zero is a configuration error."""
        with pytest.raises(ValueError, match="at least 1"):
            WriteBatcher(counting, max_batch=0)


class TestParallelBatches:
    async def test_two_batches_in_flight(self, counting: CountingStore) -> None:
        """With max_parallel 2, items still commit exactly once each (SQLite serialises the
        two transactions; PostgreSQL runs them side by side)."""
        batcher = WriteBatcher(counting, max_batch=8, max_parallel=2)
        results = await asyncio.gather(*[batcher.run(insert(f"d{n}")) for n in range(40)])
        assert sorted(results) == sorted(f"d{n}" for n in range(40))
        assert len(await counting.list_agents()) == 40

    async def test_one_after_another(self, counting: CountingStore) -> None:
        """Items submitted one after the other (each awaited) each get a transaction: a
        drainer that just finished never swallows the next item."""
        batcher = WriteBatcher(counting, max_batch=16, max_parallel=1)
        for n in range(5):
            assert await asyncio.wait_for(batcher.run(insert(f"s{n}")), 10) == f"s{n}"
