"""approver.audit.sampling: one line per key per window, and how many were left out."""

from __future__ import annotations

import pytest

from approver.audit.sampling import LineSampler, WindowBudget


def test_first_line_then_one_per_window_with_the_count_left_out() -> None:
    sampler = LineSampler(window_seconds=10)
    assert sampler.admit(("source", "10.0.0.1"), 0.0) == 0
    assert [sampler.admit(("source", "10.0.0.1"), t) for t in (1.0, 2.0, 9.9)] == [None] * 3
    assert sampler.admit(("source", "10.0.0.1"), 10.0) == 3
    assert sampler.admit(("source", "10.0.0.1"), 10.5) is None
    assert sampler.admit(("source", "10.0.0.1"), 30.0) == 1


def test_keys_are_separate() -> None:
    sampler = LineSampler(window_seconds=10)
    assert sampler.admit(("source", "10.0.0.1"), 0.0) == 0
    assert sampler.admit(("source", "10.0.0.2"), 0.0) == 0
    assert sampler.admit(("overall", None), 0.0) == 0


def test_memory_is_bounded_least_recent_forgotten() -> None:
    sampler = LineSampler(window_seconds=10, max_keys=2)
    for address in ("a", "b", "c"):
        assert sampler.admit(address, 0.0) == 0
    assert sampler.admit("a", 1.0) == 0  # forgotten: written at once
    assert sampler.admit("c", 1.0) is None


@pytest.mark.parametrize(("window", "keys", "overall"), [(0, 1, None), (1, 0, None), (1, 1, 0)])
def test_bad_arguments(window: float, keys: int, overall: int | None) -> None:
    with pytest.raises(ValueError, match="window_seconds"):
        LineSampler(window_seconds=window, max_keys=keys, max_per_window=overall)


def test_overall_bound_over_many_keys_and_the_count_carried() -> None:
    """An attacker rotating source addresses: at most max_per_window lines per window in all;
    a key left out by the overall bound reports it on its next line."""
    sampler = LineSampler(window_seconds=10, max_per_window=3)
    admitted = [sampler.admit(("bad_signature", f"10.0.0.{n}"), 0.0) for n in range(10)]
    assert admitted == [0, 0, 0] + [None] * 7
    assert sampler.admit(("bad_signature", "10.0.0.9"), 10.0) == 1


def test_window_budget_counts_per_key_and_renews_with_the_window() -> None:
    budget = WindowBudget(per_window=2, window_seconds=10)
    assert [budget.take("malformed", t) for t in (0.0, 1.0, 2.0)] == [True, True, False]
    assert budget.take("token_reused", 2.0)  # another key: its own budget
    assert not budget.take("malformed", 9.9)
    assert budget.take("malformed", 10.0)  # a new window


def test_window_budget_refuses_bounds_below_one() -> None:
    with pytest.raises(ValueError, match="per_window"):
        WindowBudget(per_window=0)
