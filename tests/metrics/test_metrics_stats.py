"""Intervals on data whose answer is known, and the per-prompt mean both readers share."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bench.metrics.stats import (
    MIN_INTERVAL_N,
    mean_interval,
    per_prompt_means,
    prompt_means,
)


def test_interval_is_at_least_the_t_interval() -> None:
    data = np.random.default_rng(1).normal(10.0, 2.0, 60)
    result = mean_interval(data)
    t_low, t_high = stats.t.interval(0.95, len(data) - 1, data.mean(), stats.sem(data))
    assert result.status == "ok"
    assert result.n == 60
    assert result.mean == pytest.approx(data.mean())
    # The hull of t and bootstrap-t: never narrower than t, and close to it on normal data.
    assert result.ci_low <= t_low + 1e-12 and result.ci_high >= t_high - 1e-12
    width = t_high - t_low
    assert result.ci_low == pytest.approx(t_low, abs=0.15 * width)
    assert result.ci_high == pytest.approx(t_high, abs=0.15 * width)
    assert result.method == "t/bootstrap-t 95% over prompts"


def test_skewed_data_widen_the_interval_on_the_long_side() -> None:
    data = np.random.default_rng(5).lognormal(0.0, 1.0, 15)
    result = mean_interval(data)
    t_low, t_high = stats.t.interval(0.95, len(data) - 1, data.mean(), stats.sem(data))
    assert result.ci_high > t_high + 0.05 * (t_high - t_low)  # right tail: the upper bound moves
    assert result.ci_low == pytest.approx(t_low)


@pytest.mark.parametrize(("name", "n"), [("normal", 4), ("normal", 6), ("skewed", 6)])
def test_coverage_at_small_n(name: str, n: int) -> None:
    """The share of intervals that contain the true mean; benchmarks/interval_coverage.py
    prints the full table (n = 2..20, 2000 trials). 400 trials: standard error 0.011."""
    rng = np.random.default_rng([n, len(name)])
    if name == "normal":
        samples, true_mean = rng.normal(0.0, 1.0, (400, n)), 0.0
    else:
        samples, true_mean = rng.lognormal(0.0, 0.5, (400, n)), float(np.exp(0.125))
    hits = [
        r.ci_low <= true_mean <= r.ci_high for r in (mean_interval(sample) for sample in samples)
    ]
    assert np.mean(hits) >= 0.92


@pytest.mark.parametrize("n", range(1, MIN_INTERVAL_N))
def test_below_four_prompts_no_interval_and_the_reason(n: int) -> None:
    result = mean_interval(np.arange(n, dtype=float) ** 2)
    assert (result.ci_low, result.ci_high, result.status) == (None, None, "too_few_samples")
    assert result.mean == pytest.approx(float(np.mean(np.arange(n) ** 2)))
    assert f"n={n}" in result.note and f">= {MIN_INTERVAL_N}" in result.note


def test_heavily_tied_data_fall_back_to_the_t_interval() -> None:
    data = [1.0, 1.0, 1.0, 1.0, 0.99]
    result = mean_interval(data)
    t_low, t_high = stats.t.interval(0.95, 4, np.mean(data), stats.sem(data))
    assert result.method.startswith("student-t")
    assert (result.ci_low, result.ci_high) == pytest.approx((t_low, t_high))
    assert "tied" in result.note


@pytest.mark.parametrize("seed", range(8))
def test_interval_contains_point_estimate(seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = rng.gamma(2.0, 3.0, size=int(rng.integers(MIN_INTERVAL_N, 40)))
    result = mean_interval(data)
    assert result.ci_low is not None and result.ci_high is not None
    assert result.ci_low <= result.mean <= result.ci_high


def test_fixed_random_state_is_reproducible() -> None:
    data = [1.0, 4.0, 2.0, 8.0, 5.0]
    assert mean_interval(data) == mean_interval(data)


def test_degenerate_inputs_give_reasons_not_crashes() -> None:
    empty = mean_interval([])
    assert (empty.mean, empty.status) == (None, "no_data")
    one = mean_interval([3.0])
    assert (one.mean, one.ci_low, one.ci_high, one.status) == (3.0, None, None, "too_few_samples")
    assert "n=1" in one.note
    constant = mean_interval([2.0, 2.0, 2.0, 2.0])
    assert (constant.mean, constant.ci_low, constant.status) == (2.0, None, "constant")
    assert constant.note


def test_non_finite_values_are_left_out() -> None:
    result = mean_interval([1.0, float("inf"), 3.0, float("nan")])
    assert result.n == 2
    assert result.mean == 2.0


def test_repeats_are_averaged_per_prompt_first() -> None:
    means = per_prompt_means([("a", 1.0), ("b", 10.0), ("a", 3.0)])
    assert means == {"a": 2.0, "b": 10.0}
    assert mean_interval(means).n == 2


def _row(prompt: str, value: float | None, identical: bool = False, status: str = "ok") -> dict:
    row = {"prompt_id": prompt, "value": value, "status": status}
    if identical:
        row["identical"] = True
    return row


def test_prompt_means_average_identical_values_and_leave_out_infinite_ones() -> None:
    ssim = prompt_means([_row("a", 1.0, identical=True), _row("a", 0.98), _row("b", 0.5)])
    assert ssim.values == pytest.approx({"a": 0.99, "b": 0.5})  # docs/scores.md: averaged
    assert (ssim.identical, ssim.n_values, ssim.n_identical) == (frozenset(), 3, 0)
    psnr = prompt_means(
        [
            _row("a", None, identical=True),
            _row("a", 30.0),
            _row("b", None, identical=True),
            _row("c", None, status="image_missing"),
        ]
    )
    assert psnr.values == {"a": 30.0}
    assert psnr.identical == frozenset({"b"})
    assert (psnr.n_values, psnr.n_identical) == (1, 2)
