"""IterationBatcher: items queued in one event-loop iteration run from one callback."""

from __future__ import annotations

import asyncio

import pytest

from webhook.batch import IterationBatcher


class Recorder:
    """A work function that records the items it was called with; negative ones raise."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, item: int) -> int:
        if item < 0:
            raise ValueError(f"negative item {item}")
        self.calls.append(item)
        return item * 10


async def test_one_callback_for_the_items_of_one_iteration() -> None:
    """Ten items submitted together run back to back before any waiter resumes."""
    seen: list[str] = []

    def work(item: int) -> int:
        seen.append(f"work {item}")
        return item * 10

    batcher: IterationBatcher[int, int] = IterationBatcher(work)

    async def submit(item: int) -> None:
        result = await batcher(item)
        seen.append(f"done {item}")
        assert result == item * 10

    await asyncio.gather(*(submit(i) for i in range(10)))
    assert seen == [f"work {i}" for i in range(10)] + [f"done {i}" for i in range(10)]
    assert batcher.pending == 0


async def test_single_item_is_answered_without_waiting_for_more() -> None:
    """An idle batcher runs a lone item in the next callback: no timer, no batch to fill."""
    batcher: IterationBatcher[int, int] = IterationBatcher(lambda i: i + 1)
    async with asyncio.timeout(1):
        assert await batcher(41) == 42


async def test_max_batch_splits_a_burst() -> None:
    """With max_batch 4, ten items run as 4 + 4 + 2, I/O polled in between."""
    order: list[str] = []

    def work(item: int) -> int:
        order.append(f"w{item}")
        return item

    batcher: IterationBatcher[int, int] = IterationBatcher(work, max_batch=4)

    async def other() -> None:
        # Runs in between: a callback scheduled now lands after the first batch.
        await asyncio.sleep(0)
        order.append("other")

    tasks = [asyncio.create_task(batcher(i)) for i in range(10)]
    await asyncio.sleep(0)  # the tasks queue their items
    await asyncio.gather(other(), *tasks)
    assert [r.result() for r in tasks] == list(range(10))
    works = [o for o in order if o != "other"]
    assert works == [f"w{i}" for i in range(10)]
    assert order.index("other") in (4, 8)  # between batches, never inside one


async def test_exception_reaches_only_its_waiter() -> None:
    """A raising item fails its own waiter; the others of the batch get their results."""
    recorder = Recorder()
    batcher: IterationBatcher[int, int] = IterationBatcher(recorder)
    results = await asyncio.gather(batcher(1), batcher(-2), batcher(3), return_exceptions=True)
    assert (results[0], results[2]) == (10, 30)
    assert isinstance(results[1], ValueError)
    assert str(results[1]) == "negative item -2"
    assert recorder.calls == [1, 3]


async def test_cancelled_waiter_still_worked() -> None:
    """An item whose waiter was cancelled is still worked on (its review is audited)."""
    recorder = Recorder()
    batcher: IterationBatcher[int, int] = IterationBatcher(recorder)
    gone = asyncio.create_task(batcher(7))
    kept = asyncio.create_task(batcher(8))
    await asyncio.sleep(0)  # both queued, callback not run yet
    gone.cancel()
    assert await kept == 80
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert recorder.calls == [7, 8]


async def test_reusable_after_a_batch() -> None:
    """Later submissions start a new batch."""
    recorder = Recorder()
    batcher: IterationBatcher[int, int] = IterationBatcher(recorder)
    assert await batcher(1) == 10
    assert list(await asyncio.gather(batcher(2), batcher(3))) == [20, 30]
    assert recorder.calls == [1, 2, 3]


def test_max_batch_must_be_positive() -> None:
    """max_batch 0 is refused."""
    with pytest.raises(ValueError, match="max_batch must be at least 1"):
        IterationBatcher(lambda i: i, max_batch=0)
