"""The in-flight body budget: bytes of request bodies held at once, with a bounded wait for room.

A review the API server sends can be large: Go's JSON encoder writes each ``&``, ``<`` and ``>``
of the pod as a six-byte escape, so a pod near etcd's 1.5 MiB limit can arrive as a 9 MiB body
(:data:`webhook.config.DEFAULT_MAX_REQUEST_BYTES`). The webhook accepts such a body; what bounds
its memory is this budget: a body that does not come with its headers reserves its declared
length here before it is read and gives it back once its review is answered (parse, decide and
the answer included), so ``maxInFlightBodyBytes`` bounds the bodies held in memory, not only
those still arriving.

A body that does not fit *waits* for room, first come first served, rather than being refused
at once: a refusal leaves its pod unchanged (with ``failurePolicy: Ignore`` the API server admits
it unstamped), while a wait costs only time. The wait is bounded by the caller (see
:meth:`webhook.server.WebhookHttp.budget_wait`), well under the API server's own deadline; a body
still waiting then is refused (503 ``overloaded``). Waiting in order means a large body is never
overtaken forever by small ones.

A single body larger than the whole budget is still let in when nothing else is held (the
settings keep the budget at least ``maxRequestBytes``, so this is a safety net, not a path).

Single-threaded by design: use it from the event loop that serves.
"""

from __future__ import annotations

import asyncio
from collections import deque


class ByteBudget:
    """At most ``capacity`` bytes reserved at once; reservations that do not fit wait in order.

    Args:
        capacity: the bytes that may be reserved at once (at least 1).

    Raises:
        ValueError: ``capacity`` below 1.
    """

    __slots__ = ("_capacity", "_used", "_waiters")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def capacity(self) -> int:
        """The bytes that may be reserved at once."""
        return self._capacity

    @property
    def used(self) -> int:
        """The bytes reserved now."""
        return self._used

    @property
    def waiting(self) -> int:
        """Reservations waiting for room now."""
        return sum(1 for _, future in self._waiters if not future.done())

    def _fits(self, size: int) -> bool:
        # Nothing held: anything fits, even a body over the whole budget (see the module).
        return self._used == 0 or self._used + size <= self._capacity

    def try_reserve(self, size: int) -> bool:
        """Reserve ``size`` bytes now if they fit and nobody waits before; else False."""
        if self._waiters or not self._fits(size):
            return False
        self._used += size
        return True

    async def reserve(self, size: int) -> None:
        """Reserve ``size`` bytes, waiting in order until they fit; give them back with
        :meth:`release`. Bound the wait with :func:`asyncio.timeout`: a wait that is cancelled
        (or times out) leaves nothing reserved, even when room came in the same instant.
        """
        if self.try_reserve(size):
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(size)  # room came, but the wait was cancelled before it resumed
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            if entry in self._waiters:
                self._waiters.remove(entry)
            self._wake()  # a waiter at the head that leaves may let the next ones in

    def release(self, size: int) -> None:
        """Give back ``size`` reserved bytes; waiters that now fit are let in, in order."""
        self._used -= size
        self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters:
            size, future = waiters[0]
            if future.done():  # cancelled or timed out: no longer waiting
                waiters.popleft()
                continue
            if not self._fits(size):
                return
            waiters.popleft()
            self._used += size
            future.set_result(None)
