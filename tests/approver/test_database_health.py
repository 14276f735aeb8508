"""The hung-database watchdog and breaker (approver.store.health), on the event loop alone:
operations that never finish stand in for a frozen database."""

from __future__ import annotations

import asyncio
import time

import pytest

from approver.store.errors import StoreUnavailable
from approver.store.health import DatabaseHealth, DatabaseStalled

STALL = 0.2


class Probe:
    """A probe whose answer the test sets: ``ok``, ``fail``, ``hang`` or ``slow``."""

    def __init__(self) -> None:
        self.mode = "hang"
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.mode == "fail":
            raise StoreUnavailable("connection refused")
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "slow":  # a working database far away, its pool busy
            await asyncio.sleep(STALL / 2)


def health(probe: Probe) -> DatabaseHealth:
    return DatabaseHealth(
        probe, stall_seconds=STALL, probe_interval_seconds=0.05, probe_timeout_seconds=0.1
    )


async def hang() -> None:
    await asyncio.sleep(3600)


async def test_results_and_errors_pass_through() -> None:
    watchdog = health(Probe())

    async def answer() -> int:
        return 42

    async def conflict() -> None:
        raise ValueError("a bug")

    assert await watchdog.run(answer) == 42
    with pytest.raises(ValueError, match="a bug"):
        await watchdog.run(conflict)
    assert watchdog.ready
    await watchdog.close()


async def test_a_hang_trips_answers_the_waiting_and_refuses_new_ones_at_once() -> None:
    probe = Probe()
    watchdog = health(probe)
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(*(watchdog.run(hang) for _ in range(50)), return_exceptions=True)
    waited = loop.time() - started
    assert all(isinstance(r, DatabaseStalled) for r in results)
    assert STALL <= waited < STALL * 2  # within about stall_seconds, not the 5 s timeout
    assert not watchdog.ready
    assert watchdog.trips == 1
    started = loop.time()
    with pytest.raises(DatabaseStalled, match="database not answering"):
        await watchdog.run(hang)
    assert loop.time() - started < 0.01  # nothing queues while tripped
    await watchdog.close()


async def test_recovers_when_a_probe_answers() -> None:
    probe = Probe()
    watchdog = health(probe)
    with pytest.raises(DatabaseStalled):
        await watchdog.run(hang)
    probe.mode = "fail"
    await asyncio.sleep(0.3)
    assert not watchdog.ready  # failed and hung probes keep it tripped
    assert probe.calls >= 2
    probe.mode = "ok"
    for _ in range(40):
        if watchdog.ready:
            break
        await asyncio.sleep(0.025)
    assert watchdog.ready

    async def answer() -> str:
        return "served"

    assert await watchdog.run(answer) == "served"
    await watchdog.close()


async def test_a_slow_but_working_database_never_trips() -> None:
    """One operation takes 3 stall periods while others keep finishing: progress, no trip."""
    watchdog = health(Probe())

    async def slow() -> str:
        await asyncio.sleep(STALL * 3)
        return "slow"

    async def quick() -> str:
        await asyncio.sleep(STALL / 4)
        return "quick"

    async def stream() -> list[str]:
        return [await watchdog.run(quick) for _ in range(16)]

    slow_result, quick_results = await asyncio.gather(watchdog.run(slow), stream())
    assert slow_result == "slow"
    assert quick_results == ["quick"] * 16
    assert (watchdog.ready, watchdog.trips) == (True, 0)
    await watchdog.close()


async def test_tripped_operations_are_cancelled() -> None:
    watchdog = health(Probe())
    cancelled = asyncio.Event()

    async def transaction() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()  # the transaction's block is left: no COMMIT is ever sent
            raise

    with pytest.raises(DatabaseStalled):
        await watchdog.run(transaction)
    await asyncio.wait_for(cancelled.wait(), timeout=1)
    await watchdog.close()


async def test_a_starved_event_loop_is_not_a_hung_database() -> None:
    """An inline SQLite write (or CPU starvation) holds the loop past stall_seconds: the
    watchdog's timer fires late, which says nothing about the database."""
    watchdog = health(Probe())

    async def inline_write() -> str:
        await asyncio.sleep(0)
        time.sleep(STALL * 2)  # noqa: ASYNC251 - blocks the loop, as an inline SQLite write may
        return "committed"

    assert await watchdog.run(inline_write) == "committed"
    assert (
        await asyncio.gather(*(watchdog.run(inline_write) for _ in range(2))) == ["committed"] * 2
    )
    assert (watchdog.ready, watchdog.trips) == (True, 0)
    await watchdog.close()


async def test_one_slow_operation_on_a_database_that_answers_is_not_a_hang() -> None:
    """Nothing else in flight, so nothing finishes for 3 stall periods; but the confirming
    probe answers (a working database, or one that is down and fails by itself): no trip."""
    for mode in ("ok", "fail"):
        probe = Probe()
        probe.mode = mode
        watchdog = health(probe)

        async def slow() -> str:
            await asyncio.sleep(STALL * 3)
            return "committed"

        assert await watchdog.run(slow) == "committed"
        assert (watchdog.ready, watchdog.trips) == (True, 0)
        assert probe.calls >= 1  # the stall was confirmed against the database, and refuted
        await watchdog.close()


async def test_a_distant_database_is_not_taken_for_a_hung_one() -> None:
    """Second outside attack: PostgreSQL 10-30 ms away. A write batch took longer than
    ``stall_seconds`` and the stall probe longer than a quarter of it, and the watchdog tripped
    on a working database. Both bounds follow what the database has shown: a readiness probe
    teaches the probe latency, finished batches the operation time."""
    probe = Probe()
    probe.mode = "slow"
    watchdog = health(probe)
    await watchdog.check()  # /readyz, or the probe after the migration at start
    assert watchdog.confirm_window == pytest.approx(STALL, rel=0.1)  # 3 x 0.1 s, at most STALL

    async def batch() -> str:
        await asyncio.sleep(STALL * 1.5)  # one write batch, far away
        return "committed"

    assert [await watchdog.run(batch) for _ in range(4)] == ["committed"] * 4
    assert (watchdog.ready, watchdog.trips) == (True, 0)
    assert watchdog.stall_threshold == pytest.approx(STALL * 1.5 * 3, rel=0.2)
    await watchdog.close()


async def test_a_hang_still_trips_after_slow_answers() -> None:
    """The averages keep the last healthy figures: a hang after slow batches trips within the
    learnt threshold plus the confirm window, and the waiting caller hears it."""
    probe = Probe()
    probe.mode = "slow"
    watchdog = health(probe)
    await watchdog.check()

    async def batch() -> str:
        await asyncio.sleep(STALL * 1.5)
        return "committed"

    await watchdog.run(batch)
    probe.mode = "hang"
    started = time.monotonic()
    with pytest.raises(DatabaseStalled):
        await watchdog.run(hang)
    waited = time.monotonic() - started
    assert watchdog.trips == 1
    assert waited < watchdog.stall_threshold + watchdog.confirm_window + STALL, waited
