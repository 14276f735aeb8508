"""The in-flight body budget (webhook.budget) and how long a body may wait for it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from tests.webhook.conftest import make_settings
from webhook.budget import ByteBudget
from webhook.credentials import Credentials
from webhook.server import create_app, go_duration_seconds


class TestByteBudget:
    async def test_reservations_that_fit_are_immediate(self) -> None:
        budget = ByteBudget(100)
        assert budget.try_reserve(60)
        await budget.reserve(40)
        assert budget.used == 100
        assert not budget.try_reserve(1)
        budget.release(60)
        budget.release(40)
        assert budget.used == 0

    async def test_a_reservation_waits_for_room(self) -> None:
        """A body that does not fit is let in as soon as enough is given back."""
        budget = ByteBudget(100)
        assert budget.try_reserve(80)
        waiting = asyncio.create_task(budget.reserve(50))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        assert budget.waiting == 1
        budget.release(80)
        await waiting
        assert budget.used == 50

    async def test_a_wait_that_times_out_reserves_nothing(self) -> None:
        budget = ByteBudget(100)
        assert budget.try_reserve(80)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await budget.reserve(50)
        assert (budget.used, budget.waiting) == (80, 0)

    async def test_room_that_comes_as_the_wait_is_cancelled_is_given_back(self) -> None:
        budget = ByteBudget(100)
        assert budget.try_reserve(80)
        waiting = asyncio.create_task(budget.reserve(50))
        await asyncio.sleep(0)
        budget.release(80)  # grants the waiter...
        waiting.cancel()  # ...which is cancelled before it resumes
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        assert (budget.used, budget.waiting) == (0, 0)

    async def test_waiters_are_served_in_order(self) -> None:
        """A large body at the head is not overtaken by small ones that would fit."""
        budget = ByteBudget(100)
        assert budget.try_reserve(60)
        order: list[str] = []

        async def reserve(name: str, size: int) -> None:
            await budget.reserve(size)
            order.append(name)

        large = asyncio.create_task(reserve("large", 90))
        await asyncio.sleep(0)
        small = asyncio.create_task(reserve("small", 10))
        await asyncio.sleep(0.01)
        assert not budget.try_reserve(10)  # somebody waits: no jumping the queue
        assert order == []
        budget.release(60)
        await asyncio.gather(large, small)
        assert order == ["large", "small"]
        assert budget.used == 100

    async def test_a_head_that_gives_up_lets_the_next_in(self) -> None:
        budget = ByteBudget(100)
        assert budget.try_reserve(60)

        async def large() -> None:
            async with asyncio.timeout(0.05):
                await budget.reserve(90)

        gives_up = asyncio.create_task(large())
        await asyncio.sleep(0)
        small = asyncio.create_task(budget.reserve(30))
        with pytest.raises(TimeoutError):
            await gives_up
        await small
        assert budget.used == 90

    async def test_a_cancelled_waiter_holds_nothing(self) -> None:
        budget = ByteBudget(100)
        assert budget.try_reserve(100)
        waiting = asyncio.create_task(budget.reserve(10))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        budget.release(100)
        assert (budget.used, budget.waiting) == (0, 0)

    async def test_a_body_larger_than_the_budget_gets_in_alone(self) -> None:
        """The settings keep the budget at least one maximum body; should it be smaller, a
        single body still gets in when nothing else is held."""
        budget = ByteBudget(100)
        assert budget.try_reserve(150)
        assert not budget.try_reserve(1)
        budget.release(150)
        assert budget.used == 0

    def test_capacity_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="capacity"):
            ByteBudget(0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("30s", 30.0), ("1m0s", 60.0), ("1.5s", 1.5), ("500ms", 0.5), ("2h", 7200.0)],
)
def test_go_durations(text: str, seconds: float) -> None:
    """The API server's ``timeout`` query parameter is a Go duration (client-go
    Request.Timeout writes ``time.Duration.String()``)."""
    assert go_duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "5x", "-5s", "5s ", " 5s", "1" * 40 + "s"])
def test_not_go_durations(text: str) -> None:
    assert go_duration_seconds(text) is None


class TestBudgetWait:
    @pytest.mark.parametrize(
        ("path", "wait"),
        [
            ("/mutate", 2.0),  # no deadline given: bodyBudgetWaitSeconds
            ("/mutate?timeout=10s", 2.0),
            ("/mutate?timeout=5s", 2.0),
            ("/mutate?timeout=2s", 1.0),  # half the API server's deadline
            ("/mutate?timeout=1s", 0.5),
            ("/mutate?timeout=soon", 2.0),  # not a duration: ignored
        ],
    )
    def test_at_most_half_the_api_servers_deadline(
        self, tmp_path: Path, path: str, wait: float
    ) -> None:
        app = create_app(make_settings(tmp_path), credentials=Credentials())
        assert app.budget_wait(make_mocked_request("POST", path)) == wait
