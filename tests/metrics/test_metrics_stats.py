"""Bootstrap intervals on data whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bench.metrics.stats import bootstrap_mean, per_prompt_means


def test_interval_matches_t_interval_on_normal_data() -> None:
    data = np.random.default_rng(1).normal(10.0, 2.0, 60)
    result = bootstrap_mean(data)
    t_low, t_high = stats.t.interval(0.95, len(data) - 1, data.mean(), stats.sem(data))
    assert result.status == "ok"
    assert result.n == 60
    assert result.mean == pytest.approx(data.mean())
    # The bootstrap interval is close to the classical one on normal data (within 15% width).
    width = t_high - t_low
    assert result.ci_low == pytest.approx(t_low, abs=0.15 * width)
    assert result.ci_high == pytest.approx(t_high, abs=0.15 * width)
    assert "bootstrap" in result.method


@pytest.mark.parametrize("seed", range(8))
def test_interval_contains_point_estimate(seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = rng.gamma(2.0, 3.0, size=int(rng.integers(2, 40)))
    result = bootstrap_mean(data)
    assert result.ci_low is not None and result.ci_high is not None
    assert result.ci_low <= result.mean <= result.ci_high


def test_fixed_random_state_is_reproducible() -> None:
    data = [1.0, 4.0, 2.0, 8.0, 5.0]
    assert bootstrap_mean(data) == bootstrap_mean(data)


def test_degenerate_inputs_give_reasons_not_crashes() -> None:
    empty = bootstrap_mean([])
    assert (empty.mean, empty.status) == (None, "no_data")
    one = bootstrap_mean([3.0])
    assert (one.mean, one.ci_low, one.ci_high, one.status) == (3.0, None, None, "too_few_samples")
    assert "n=1" in one.note
    constant = bootstrap_mean([2.0, 2.0, 2.0])
    assert (constant.mean, constant.ci_low, constant.status) == (2.0, None, "constant")
    assert constant.note


def test_non_finite_values_are_left_out() -> None:
    result = bootstrap_mean([1.0, float("inf"), 3.0, float("nan")])
    assert result.n == 2
    assert result.mean == 2.0


def test_repeats_are_averaged_per_prompt_first() -> None:
    means = per_prompt_means([("a", 1.0), ("b", 10.0), ("a", 3.0)])
    assert means == {"a": 2.0, "b": 10.0}
    assert bootstrap_mean(means).n == 2
