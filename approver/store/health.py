"""Fail fast while the database hangs: a stall watchdog and a circuit breaker.

A database that is down refuses connections and every caller learns it at once. A database
that *hangs* (frozen, partitioned, a disk that stopped) answers nothing: every statement waits
its full timeout (5 s), one write batch after another, requests queue behind them and are
answered long after their clients gave up; and cancelling a statement on a hung connection
itself takes seconds (asyncpg's cancellation and SQLAlchemy's rollback both need the
network). So the calls that must answer quickly, the registrations' transactions and
``/readyz``, go through :meth:`DatabaseHealth.run`:

* each runs as a task of its own; its caller waits for the result, not for the task;
* a watchdog (a timer while anything is in flight) suspects a hang when an operation has been
  in flight for the stall threshold **and** no operation finished within it (a slow but
  working database keeps finishing operations, however deep the queue), and confirms it with
  a probe (``SELECT 1``): it trips only when that probe has not answered within the confirm
  window. A probe that answers, even with an error (a database that is down fails each call by
  itself), means one slow operation, not a hang;
* both bounds follow what the database has shown, so a working database far away (10-30 ms a
  round trip: a write batch of 0.5 s, a probe of 100 ms behind the pool's pre-ping) is not
  taken for a hung one (it was, in the second outside attack). The stall threshold is
  ``stall_seconds`` or three times the moving average (EWMA) of finished operations'
  durations, whichever is longer, at most ten times ``stall_seconds``; the confirm window is
  ``stall_seconds / 4`` or three times the moving average of answered probes' latencies, at
  most ``stall_seconds``. The probe latency is learnt from :meth:`DatabaseHealth.check`
  (``/readyz``, and once after the migration at start) and from every probe the watchdog
  runs. A database that hangs finishes nothing, so the averages keep its last healthy
  figures: on one next door both bounds stay at their minimum;
* on a trip every caller in flight gets :class:`DatabaseStalled` (a
  :class:`~approver.store.errors.StoreUnavailable`: the registration path answers
  ``202 pending`` with ``Retry-After``, the others 503) and every operation task is
  cancelled in the background: its transaction never reaches ``COMMIT`` (one whose ``COMMIT``
  was already sent may still land, as with any connection lost mid-commit);
* while tripped, :meth:`run` refuses at once (nothing queues), :attr:`ready` is False
  (``/readyz`` 503), and one probe (``SELECT 1``, abandoned after ``probe_timeout_seconds``)
  runs every ``probe_interval_seconds``; the first that answers closes the breaker, without a
  restart.

Log lines: one WARNING at the trip (how many callers were answered), one at the recovery (how
long it lasted); none per refused call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from approver.store.errors import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Default seconds without progress that count as a hang (``databaseStallSeconds``).
DEFAULT_STALL_SECONDS = 0.5
#: Seconds between probes of a hung database, and how long one probe may take.
PROBE_INTERVAL_SECONDS = 1.0
PROBE_TIMEOUT_SECONDS = 1.0
#: The stall threshold is at least this many typical operations, at most ``MAX_STALL_FACTOR``
#: times ``stall_seconds``; the confirm window at least this many typical probes.
TYPICAL_FACTOR = 3.0
MAX_STALL_FACTOR = 10.0
#: Weight of the newest sample in the moving averages.
EWMA_WEIGHT = 0.2


class DatabaseStalled(StoreUnavailable):
    """The database stopped answering (no progress for ``stall_seconds``), or is still being
    probed after it did; nothing of the refused operation was committed."""


class DatabaseHealth:
    """The watchdog and breaker of the module docstring.

    Args:
        probe: one round trip to the database (``Store.ping``); raises on failure.
        stall_seconds: seconds in flight without any operation finishing that trip the breaker.
        probe_interval_seconds: seconds between probes while tripped.
        probe_timeout_seconds: seconds after which a probe is abandoned (and cancelled).
    """

    def __init__(
        self,
        probe: Callable[[], Awaitable[None]],
        *,
        stall_seconds: float = DEFAULT_STALL_SECONDS,
        probe_interval_seconds: float = PROBE_INTERVAL_SECONDS,
        probe_timeout_seconds: float = PROBE_TIMEOUT_SECONDS,
    ) -> None:
        if stall_seconds <= 0 or probe_interval_seconds <= 0 or probe_timeout_seconds <= 0:
            raise ValueError("stall, probe interval and probe timeout must be positive")
        self._probe = probe
        self._stall = stall_seconds
        self._interval = probe_interval_seconds
        self._probe_timeout = probe_timeout_seconds
        #: In-flight operations: task -> (the caller's future, start time on the loop clock,
        #: whether its duration is averaged as an operation's).
        self._inflight: dict[asyncio.Task[Any], tuple[asyncio.Future[Any], float, bool]] = {}
        self._last_progress = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        #: The probe asked when operations stall, and when it must have answered by.
        self._confirming: asyncio.Task[None] | None = None
        self._confirm_by = 0.0
        self._tripped_at: float | None = None
        self._prober: asyncio.Task[None] | None = None
        self._abandoned: set[asyncio.Task[Any]] = set()
        self.trips = 0
        #: Moving averages, seconds: finished operations' durations, answered probes'
        #: latencies (None: none seen yet).
        self._typical_operation: float | None = None
        self._typical_probe: float | None = None

    @property
    def ready(self) -> bool:
        """False from a trip until a probe answers."""
        return self._tripped_at is None

    @property
    def stall_seconds(self) -> float:
        return self._stall

    @property
    def stall_threshold(self) -> float:
        """Seconds without progress after which a hang is suspected now (module docstring)."""
        if self._typical_operation is None:
            return self._stall
        return min(
            max(self._stall, TYPICAL_FACTOR * self._typical_operation),
            MAX_STALL_FACTOR * self._stall,
        )

    @property
    def confirm_window(self) -> float:
        """Seconds the stall probe has to answer before the database counts as hung."""
        if self._typical_probe is None:
            return self._stall / 4
        return min(max(self._stall / 4, TYPICAL_FACTOR * self._typical_probe), self._stall)

    async def check(self) -> None:
        """One probe under the watchdog (readiness), its latency learnt for the confirm window.

        Raises:
            DatabaseStalled: as :meth:`run`.
            Whatever the probe raised (StoreUnavailable).
        """
        await self._submit(self._timed_probe, operation=False)

    async def _timed_probe(self) -> None:
        """The probe, its latency averaged in when it answers (even with an error)."""
        started = asyncio.get_running_loop().time()
        try:
            await self._probe()
        except asyncio.CancelledError:
            raise
        except Exception:
            self._learn_probe(started)
            raise
        self._learn_probe(started)

    def _learn_probe(self, started: float) -> None:
        self._typical_probe = _average(
            self._typical_probe, asyncio.get_running_loop().time() - started
        )

    async def run(self, operation: Callable[[], Awaitable[T]]) -> T:
        """``await operation()`` under the watchdog.

        Returns:
            The operation's result.

        Raises:
            DatabaseStalled: the breaker is open (at once), or it tripped while the operation
                was in flight (within about ``stall_seconds``); the operation is cancelled.
            Whatever ``operation`` raised.
        """
        return await self._submit(operation, operation=True)

    async def _submit(self, call: Callable[[], Awaitable[T]], *, operation: bool) -> T:
        """:meth:`run`; ``operation`` False: a probe, its duration not averaged with the
        operations' (it has its own average)."""
        if self._tripped_at is not None:
            raise DatabaseStalled(self._refusal())
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not self._inflight:
            self._last_progress = now
        task: asyncio.Task[T] = loop.create_task(_call(call))
        answer: asyncio.Future[T] = loop.create_future()
        self._inflight[task] = (answer, now, operation)
        task.add_done_callback(self._finished)
        self._arm(loop)
        return await answer

    def _finished(self, task: asyncio.Task[Any]) -> None:
        entry = self._inflight.pop(task, None)
        self._last_progress = task.get_loop().time()
        if entry is not None and entry[2] and not task.cancelled():
            self._typical_operation = _average(
                self._typical_operation, self._last_progress - entry[1]
            )
        if task.cancelled():
            if entry is not None and not entry[0].done():
                entry[0].set_exception(DatabaseStalled("database operation cancelled"))
            return
        exc = task.exception()  # retrieved here, so an abandoned task never warns
        if entry is None or entry[0].done():
            return
        if exc is not None:
            entry[0].set_exception(exc)
        else:
            entry[0].set_result(task.result())

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None and self._inflight:
            self._due = loop.time() + self._stall / 8
            self._timer = loop.call_at(self._due, self._check)

    def _check(self) -> None:
        self._timer = None
        if not self._inflight or self._tripped_at is not None:
            self._stop_confirming()
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - self._due > self._stall / 4:
            # The event loop itself was held up (CPU starvation, an inline SQLite write):
            # finished operations may not have reported yet, so this is no evidence of a hang.
            self._last_progress = max(self._last_progress, now - self._stall / 2)
            self._arm(loop)
            return
        oldest = min(started for _, started, _ in self._inflight.values())
        threshold = self.stall_threshold
        if now - oldest < threshold or now - self._last_progress < threshold:
            self._stop_confirming()
            self._arm(loop)
            return
        # Stalled. One slow operation on a working database looks the same, so ask the
        # database directly before calling it hung: a probe that answers (even with an error: a
        # database that is down, not hung, fails each call by itself) says it is not.
        confirming = self._confirming
        if confirming is None:
            self._confirming = loop.create_task(
                _call(self._timed_probe), name="database-stall-probe"
            )
            self._confirm_by = now + self.confirm_window
        elif confirming.done():
            self._stop_confirming()
            self._last_progress = now
        elif now >= self._confirm_by:
            self._stop_confirming()
            self._trip(now)
            return
        self._arm(loop)

    def _stop_confirming(self) -> None:
        """Drop the stall probe: retrieve its outcome when done, else cancel it (it then
        finishes in the background, like any abandoned operation)."""
        confirming, self._confirming = self._confirming, None
        if confirming is None:
            return
        if confirming.done():
            if not confirming.cancelled():
                confirming.exception()
            return
        confirming.cancel()
        self._abandoned.add(confirming)
        confirming.add_done_callback(_discard_result(self._abandoned))

    def _trip(self, now: float) -> None:
        self._tripped_at = now
        self.trips += 1
        inflight, self._inflight = self._inflight, {}
        reason = self._refusal()
        for task, (answer, _, _) in inflight.items():
            if not answer.done():
                answer.set_exception(DatabaseStalled(reason))
            task.cancel()
            self._abandoned.add(task)
            task.add_done_callback(self._abandoned.discard)
        log.warning(
            "database not answering: no operation finished for %.1f s and a probe did not "
            "answer either; %d request(s) answered "
            "without it, new ones refused at once; not ready until a probe answers (every "
            "%.1f s)",
            self.stall_threshold,
            len(inflight),
            self._interval,
        )
        self._prober = asyncio.get_running_loop().create_task(
            self._probe_until_answered(), name="database-probe"
        )

    def _refusal(self) -> str:
        return f"database not answering (no progress for {self.stall_threshold:.2g} s)"

    async def _probe_until_answered(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._interval)
            probe = loop.create_task(_call(self._timed_probe))
            done, _ = await asyncio.wait({probe}, timeout=self._probe_timeout)
            if not done:
                probe.cancel()
                self._abandoned.add(probe)
                probe.add_done_callback(_discard_result(self._abandoned))
                continue
            if probe.cancelled() or probe.exception() is not None:
                continue
            started = self._tripped_at or loop.time()
            self._tripped_at = None
            self._last_progress = loop.time()
            log.warning("database answering again after %.1f s; ready", loop.time() - started)
            return

    async def close(self) -> None:
        """Stop the probe and the timer; cancel operations still in flight (shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks: set[asyncio.Task[Any]] = {*self._inflight, *self._abandoned}
        if self._prober is not None:
            tasks.add(self._prober)
        if self._confirming is not None:
            tasks.add(self._confirming)
        for task in tasks:
            task.cancel()
        if tasks:
            # A task cancelled on a hung connection may need seconds to clean up; a shutdown
            # does not wait for that (the process ends and the database drops the session).
            await asyncio.wait(tasks, timeout=1.0)


def _average(average: float | None, sample: float) -> float:
    """The moving average with ``sample`` taken in (the first sample stands alone)."""
    if average is None:
        return sample
    return average + EWMA_WEIGHT * (sample - average)


async def _call(operation: Callable[[], Awaitable[T]]) -> T:
    return await operation()


def _discard_result(
    tasks: set[asyncio.Task[Any]],
) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()

    return done
