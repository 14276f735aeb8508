"""Group commit: concurrent decisions share one transaction, one ``COMMIT``, one fsync.

A registration's own statements take tens of microseconds; what costs is around them: taking
the write lock, committing (an fsync with ``synchronous=FULL``), the chain head, the pool. Under
load many registrations wait for the database at the same moment, so :class:`WriteBatcher` runs
them together: while one transaction is in flight, newly submitted work queues; when it
commits, everything queued (up to ``max_batch``) runs, in order, in the next transaction, and
each caller gets its result only after that transaction committed. An answer is therefore
still given only for committed work (docs/design.md, "Failure semantics"), and a lone request is not
delayed: with nothing in flight its transaction starts at once.

Items of one batch run one after the other on one connection, so each sees the writes of the
items before it, exactly as if they had run in separate transactions in that order. Up to
``max_parallel`` batches run at once, each its own transaction on its own connection
(PostgreSQL: a registration's statements are round trips, and one batch at a time would leave
the database idle between them; SQLite has one writer, so one).

Failure is all or nothing per batch: if any item raises, or the commit fails, the batch's
transaction is rolled back. A commit failure (:class:`StoreUnavailable`) is every item's answer;
an item's own exception sends every item of the batch through a transaction of its own, so one
item's conflict or bug never decides another's fate, and nothing half-done is ever committed.

Every transaction runs under the store's hung-database watchdog (:mod:`approver.store.health`):
while the database hangs, batches in flight are answered :class:`StoreUnavailable` within about
``stall_seconds`` and nothing new is queued until it answers again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from approver.store.errors import StoreUnavailable
from approver.store.health import DatabaseStalled
from approver.store.store import Store
from approver.store.transaction import Transaction

T = TypeVar("T")
#: Default bound of the queue of items waiting for a batch.
DEFAULT_MAX_QUEUED = 4096
Work = Callable[[Transaction], Awaitable[T]]


@dataclass
class _Item(Generic[T]):
    work: Work[T]
    future: asyncio.Future[T]


class _Abort(Exception):
    """Internal: an item raised; roll the batch back and run its items alone."""


class WriteBatcher:
    """Runs transaction work in group-committed batches.

    Args:
        store: the store whose transactions run the work.
        max_batch: most items per transaction; 1 turns batching off (each item its own
            transaction, still through this object).
        max_parallel: most batches (transactions) in flight at once.
        max_queued: most items waiting for a batch; one more is refused with
            :class:`StoreUnavailable` at once (a database too slow for the load answers
            ``202 pending`` + ``Retry-After`` rather than growing the queue without bound).
    """

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int,
        max_parallel: int = 1,
        max_queued: int = DEFAULT_MAX_QUEUED,
    ) -> None:
        if max_batch < 1 or max_parallel < 1 or max_queued < 1:
            raise ValueError("max_batch, max_parallel and max_queued must be at least 1")
        self._max_queued = max_queued
        self._store = store
        self._max = max_batch
        self._parallel = max_parallel
        self._alone = asyncio.Semaphore(max_parallel)
        self._queue: list[_Item[Any]] = []
        self._drainers: set[asyncio.Task[None]] = set()

    @property
    def max_batch(self) -> int:
        return self._max

    async def run(self, work: Work[T]) -> T:
        """Run ``work(tx)`` in a (shared) transaction; return its result once committed.

        Raises:
            StoreUnavailable: the transaction could not commit; nothing of ``work`` was written.
            StoreConflict, or whatever ``work`` raised: from a transaction of its own.
        """
        health = self._store.health
        if self._max == 1:
            return await health.run(lambda: self._alone_run(work))
        if not health.ready:
            raise DatabaseStalled("database not answering: not queued")
        if len(self._queue) >= self._max_queued:
            raise StoreUnavailable(f"write queue full ({self._max_queued} waiting)")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(work, future))
        # A drainer whose loop found the queue empty is done at once (no await in between),
        # though its done-callbacks run later: count only the ones still running.
        self._drainers = {t for t in self._drainers if not t.done()}
        if len(self._drainers) < self._parallel:
            self._drainers.add(asyncio.create_task(self._drain(), name="write-batcher"))
        return await future

    async def _alone_run(self, work: Work[T]) -> T:
        # One transaction per decision, still at most max_parallel at once: the others wait
        # here, in order, rather than for a pool connection (whose timeout is a 503).
        async with self._alone, self._store.transaction() as tx:
            return await work(tx)

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._max], self._queue[self._max :]
            await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Item[Any]]) -> None:
        async def attempt() -> list[Any]:
            results: list[Any] = []
            async with self._store.transaction() as tx:
                for item in batch:
                    try:
                        results.append(await item.work(tx))
                    except Exception as exc:
                        raise _Abort from exc
            return results

        try:
            results = await self._store.health.run(attempt)
        except _Abort as abort:
            if isinstance(abort.__cause__, StoreUnavailable):
                for item in batch:
                    _fail(item, abort.__cause__)
                return
            for item in batch:
                await self._run_alone(item)
            return
        except StoreUnavailable as exc:
            for item in batch:
                _fail(item, exc)
            return
        except BaseException as exc:  # cancelled while committing: nobody can tell the outcome
            for item in batch:
                _fail(item, StoreUnavailable(f"transaction interrupted ({type(exc).__name__})"))
            raise
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)

    async def _run_alone(self, item: _Item[Any]) -> None:
        async def attempt() -> Any:
            async with self._store.transaction() as tx:
                return await item.work(tx)

        try:
            result = await self._store.health.run(attempt)
        except Exception as exc:
            _fail(item, exc)
        else:
            if not item.future.done():
                item.future.set_result(result)


def _fail(item: _Item[Any], exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)
