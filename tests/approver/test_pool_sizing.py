"""Hardening issue item 7: ``writeBatchSize: 1`` on a healthy database never runs out of pool
connections (the writes in flight are bounded by ``writeConcurrency``, the rest wait their
turn), a pool that does run out says so rather than "database unavailable", and a pool too small
for the write concurrency is a configuration error."""

from __future__ import annotations

import asyncio

import pytest

from approver.config import ApproverSettings
from approver.store import Store, StoreUnavailable
from approver.store.batcher import WriteBatcher
from approver.store.transaction import Transaction


@pytest.fixture
async def small_pool(database_url: str) -> Store:
    """A store whose pool times out fast: 2 connections (PostgreSQL: 2 more as overflow;
    SQLite: one writer), 0.3 s to get one."""
    store = Store.open(database_url, pool_size=2, timeout_seconds=0.3)
    await store.migrate()
    return store


async def hold(tx: Transaction) -> int:
    await asyncio.sleep(0.02)  # a transaction's round trips, holding its connection
    return 1


@pytest.mark.parametrize("max_parallel", [1, 2])
async def test_batch_size_one_never_exhausts_the_pool(small_pool: Store, max_parallel: int) -> None:
    """100 concurrent decisions, one transaction each: all commit. Before, all 100 asked the
    pool at once and those that waited past its timeout got StoreUnavailable (a 503)."""
    batcher = WriteBatcher(small_pool, max_batch=1, max_parallel=max_parallel)
    try:
        results = await asyncio.gather(*(batcher.run(hold) for _ in range(100)))
    finally:
        await small_pool.close()
    assert results == [1] * 100


async def test_an_exhausted_pool_is_named_as_such(small_pool: Store) -> None:
    """Every connection held: the next transaction's error says the pool is exhausted, not
    that the database is unavailable."""
    release = asyncio.Event()
    holders = []

    async def holder() -> None:
        async with small_pool.transaction():
            await release.wait()

    try:
        for _ in range(4 if small_pool.dialect == "postgresql" else 1):
            holders.append(asyncio.create_task(holder()))
        await asyncio.sleep(0.2)
        with pytest.raises(StoreUnavailable, match="connection pool exhausted") as raised:
            async with small_pool.transaction():
                pass
        assert "database unavailable" not in str(raised.value)
    finally:
        release.set()
        await asyncio.gather(*holders)
        await small_pool.close()


def test_a_pool_smaller_than_the_write_concurrency_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"writeConcurrency \(4\) must be less than databasePoolSize \(4\)"
    ):
        ApproverSettings(
            database_url="postgresql+asyncpg://approver@db/agents",
            database_pool_size=4,
            write_concurrency=4,
        )
    fine = ApproverSettings(
        database_url="postgresql+asyncpg://approver@db/agents",
        database_pool_size=5,
        write_concurrency=4,
    )
    assert fine.write_concurrency == 4
