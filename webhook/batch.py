"""Run the CPU-bound part of many reviews back to back, once per event-loop iteration.

Under load, one iteration of the event loop reads several requests (one per ready connection)
and then resumes their handlers one after another. Run that way, each review interleaves its
pure work (parse, decide, sign, serialise) with the HTTP and TLS code of the others, and every
step pays for caches the others evicted: in place, the Ed25519 signature costs about 25 µs
against 15 µs in a loop of its own (docs/webhook.md, "Where the time goes").
:class:`IterationBatcher` queues the work instead and runs the whole queue from one
``loop.call_soon`` callback, at the end of the iteration that read the requests: the same
work, with warm caches. Measured on the saturated benchmark, CPU per review went from about
110 µs to about 95 µs.

What does not change:

* nothing waits for a batch to fill: the callback runs in the same iteration as the request
  that queued first, so an idle webhook answers a single review as before (one ``call_soon``
  hop, microseconds);
* every queued item is worked on, even when its waiter was cancelled meanwhile (a client that
  went away): its review is still decided, counted and audited, only the answer is dropped;
* an exception of the work function reaches that item's waiter only;
* at most ``max_batch`` items run per callback; the rest run in a callback scheduled after
  the waiters of this batch resume (their answers are written first), so I/O is polled in
  between and a burst cannot hold the loop for long (``max_batch`` x about 40 µs).

Single-threaded by design: call it from the event loop that runs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Items per callback. 32 reviews are about 1.3 ms of work: a burst yields to I/O that often.
DEFAULT_MAX_BATCH = 32


class IterationBatcher(Generic[T, R]):
    """Queue items and run ``work`` on them from one callback per event-loop iteration.

    Args:
        work: the per-item function (pure CPU: no awaiting, no blocking I/O). It should not
            raise; if it does, the exception is given to that item's waiter.
        max_batch: items per callback, at least 1.

    Raises:
        ValueError: ``max_batch`` below 1.
    """

    __slots__ = ("_loop", "_max_batch", "_queue", "_scheduled", "_work")

    def __init__(self, work: Callable[[T], R], *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._work = work
        self._max_batch = max_batch
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pending(self) -> int:
        """Items queued and not yet worked on."""
        return len(self._queue)

    async def __call__(self, item: T) -> R:
        """``work(item)``, run with the other items queued in this iteration.

        Returns:
            What ``work`` returned for ``item``.

        Raises:
            Exception: what ``work`` raised for ``item``.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            # Looked up once, not per item: get_running_loop is a getpid() syscall on CPython
            # 3.11. Looked up again only if that loop was closed (tests run several loops);
            # what was queued on a closed loop can never be answered.
            loop = self._loop = asyncio.get_running_loop()
            self._queue.clear()
            self._scheduled = False
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._run)
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future))
        return await future

    def _run(self) -> None:
        queue = self._queue
        batch = queue[: self._max_batch]
        del queue[: self._max_batch]
        work = self._work
        try:
            for item, future in batch:
                try:
                    result = work(item)
                except Exception as exc:
                    if not future.done():
                        future.set_exception(exc)
                else:
                    if not future.done():
                        future.set_result(result)
        finally:
            if queue:
                # Scheduled after the waiters just woken: their answers are written before
                # the next batch runs, and the loop polls I/O in between.
                assert self._loop is not None
                self._loop.call_soon(self._run)
            else:
                self._scheduled = False
