"""The A/B runner's arithmetic: rows from both JSON shapes, paired ratios, medians."""

from __future__ import annotations

import math

from bench.ab import median_ratio, paired, rows_of


def test_rows_of_both_shapes() -> None:
    """Approver rows are a list named by ``step``; webhook rows sit under ``medians`` and are
    named by ``target``; only numeric figures count (not booleans, not strings)."""
    approver = [{"step": "sqlite-1p", "throughput_rps": 1000, "non_200": 0, "checks": ["x"]}]
    webhook = {"medians": [{"target": "webhook", "saturated_rps": 7000.5, "ok": True}], "runs": []}
    assert rows_of(approver) == {"sqlite-1p": {"throughput_rps": 1000.0, "non_200": 0.0}}
    assert rows_of(webhook) == {"webhook": {"saturated_rps": 7000.5}}


def test_paired_ratio_is_the_median_of_per_round_ratios() -> None:
    """Ratios are taken per round, then the median: one slow round on the host moves both
    sides of its pair, not the answer."""
    old = [{"s": {"rps": 100.0}}, {"s": {"rps": 50.0}}, {"s": {"rps": 100.0}}]
    new = [{"s": {"rps": 110.0}}, {"s": {"rps": 60.0}}, {"s": {"rps": 90.0}}]
    ((row, figure, olds, news),) = paired(old, new)
    assert (row, figure, olds, news) == ("s", "rps", [100.0, 50.0, 100.0], [110.0, 60.0, 90.0])
    assert median_ratio(olds, news) == 1.1


def test_figures_missing_from_a_round_or_zero_are_left_out() -> None:
    """A figure absent in some round is not paired; a zero or NaN old value gives no ratio."""
    old = [{"s": {"rps": 100.0, "errors": 0.0}}, {"s": {"rps": 100.0}}]
    new = [{"s": {"rps": 100.0, "errors": 0.0}}, {"s": {"rps": 120.0}}]
    assert [(r, f) for r, f, _, _ in paired(old, new)] == [("s", "rps")]
    assert math.isnan(median_ratio([0.0], [1.0]))
    assert math.isnan(median_ratio([float("nan")], [1.0]))
