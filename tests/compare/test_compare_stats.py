"""The verdicts' statistics, measured over many seeded draws of known distributions.

Each test states a rate the docs promise (docs/compare.md) and measures it. Draw counts keep the
binomial standard error near 0.5% (time, 2000 draws) and 1.3% (quality, 300 draws), so the
bounds below have room for sampling error and none for a real defect.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.comparison.stability import (
    drift,
    relative_mad,
    sampler_shift,
    stability_warnings,
    time_noise,
)
from bench.comparison.stats import (
    BIGGER,
    FASTER,
    INSUFFICIENT,
    NO_CHANGE,
    SLOWER,
    SMALLER,
    TOO_NOISY,
    WORSE,
    memory_verdict,
    paired_permutation_p,
    quality_verdict,
    sample_verdict,
)
from tests.compare.rundir import lognormal_times
from tests.compare.simulate import (
    QUALITY_SCENARIOS,
    TIME_SCENARIOS,
    quality_scenario,
    time_scenario,
)

MIB = 1 << 20
GIB = 1 << 30


@pytest.mark.parametrize("name", [k for k in TIME_SCENARIOS if k.startswith("null")])
def test_identical_time_distributions_are_no_change_at_the_documented_rate(name: str) -> None:
    rates = time_scenario(name)
    false_positive = rates.of(SLOWER) + rates.of(FASTER)
    # The whole verdict may fire at most as often as the test alone: alpha = 5%.
    assert false_positive <= 0.05
    # The test itself is calibrated: its significant fraction is near alpha, not far below
    # (a test that never fires also has no power) and not above.
    assert 0.02 <= rates.significant <= 0.065


def test_heavy_noise_at_small_n_stays_below_alpha() -> None:
    rates = time_scenario("null n=5 cv=10% factor=1.10")
    assert rates.of(SLOWER) <= 0.025  # one-sided: half of alpha, up to sampling error
    assert rates.of(SLOWER) + rates.of(FASTER) <= 0.05


@pytest.mark.parametrize(
    ("name", "minimum"),
    [
        ("+10% n=20 cv=3% factor=1.05", 0.99),
        # 5% CV sits near the 1.05 factor: in ~11% of draws one run's own spread is wider
        # than the factor and the verdict is "too noisy" instead (docs/compare.md).
        ("+10% n=10 cv=5% factor=1.05", 0.80),
        ("+15% n=10 cv=5% factor=1.10", 0.93),
        ("+20% n=10 cv=5% factor=1.10", 0.99),
    ],
)
def test_planted_slowdown_is_caught(name: str, minimum: float) -> None:
    rates = time_scenario(name)
    assert rates.of(SLOWER) >= minimum
    assert rates.of(FASTER) == 0.0


def test_a_run_on_a_busy_machine_is_too_noisy_not_slower() -> None:
    """The A/A failure on a shared machine: the candidate ran while others loaded the CPU, so
    it is 3x slower as a whole and its images vary by 40%. Both the rank test and the ratio
    fire; only the run's own spread shows that the machine, not the code, changed."""
    rng = np.random.default_rng(12)
    fired = 0
    for _ in range(200):
        base = lognormal_times(rng, 8, 0.5, 0.03)
        cand = lognormal_times(rng, 8, 1.5, 0.4)
        noise = max(time_noise(base).band or 1.0, time_noise(cand).band or 1.0)
        verdict = sample_verdict(base, cand, 1.10, noise_band=noise)
        fired += verdict.verdict == SLOWER
        assert verdict.verdict in (TOO_NOISY, SLOWER)
        assert sample_verdict(base, cand, 1.10).verdict == SLOWER  # the rule without the band
    assert fired <= 10  # 5%: the candidate's MAD over 8 images rarely falls below 10%


def test_busy_steps_make_a_quiet_looking_run_too_noisy() -> None:
    """Images of even length can hide contention that the steps inside each image show."""
    steps = [[0.05, 0.05, 0.08, 0.05, 0.04, 0.07]] * 8
    noise = time_noise([1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.0, 1.01], steps)
    assert noise.images is not None and noise.images < 0.02
    assert noise.steps is not None and noise.steps > 0.10
    assert noise.band == pytest.approx(1.0 + noise.steps)
    verdict = sample_verdict([1.0] * 8, [1.3] * 8, 1.10, noise_band=noise.band)
    assert verdict.verdict == TOO_NOISY and "cannot be told from noise" in (verdict.note or "")


def test_noise_band_within_the_factor_leaves_the_verdict_alone() -> None:
    rng = np.random.default_rng(13)
    base = lognormal_times(rng, 8, 1.0, 0.02)
    cand = lognormal_times(rng, 8, 1.3, 0.02)
    band = max(time_noise(base).band or 1.0, time_noise(cand).band or 1.0)
    assert band < 1.05
    assert sample_verdict(base, cand, 1.10, noise_band=band).verdict == SLOWER
    assert sample_verdict(cand, base, 1.10, noise_band=band).verdict == FASTER


def test_sampler_shift() -> None:
    assert sampler_shift([190.0] * 5, [180.5] * 5) == pytest.approx(190 / 180.5)
    assert sampler_shift([180.5] * 5, [190.0] * 5) == pytest.approx(190 / 180.5)
    assert sampler_shift([190.0] * 2, [100.0] * 5) is None  # too few images to say


def test_relative_mad_and_drift() -> None:
    assert relative_mad([1.0, 1.1, 0.9, 1.0]) == pytest.approx(0.05)
    assert relative_mad([1.0, 2.0]) is None
    stacked = relative_mad(np.array([[1.0, 1.1, 0.9, 1.0], [2.0, 2.0, 2.0, 2.0]]))
    assert stacked.tolist() == pytest.approx([0.05, 0.0])
    assert drift([1.0, 1.0, 1.0, 2.0, 2.0, 2.0]) == pytest.approx(2.0)
    assert drift([1.0] * 5) is None


def test_default_factor_makes_an_exact_10_percent_slowdown_a_coin_flip() -> None:
    """Why the docs say `--time-factor 1.05` to catch 10%: the significance test always fires,
    but the median ratio straddles 1.10 half of the time."""
    rates = time_scenario("+10% n=20 cv=3% factor=1.10")
    assert rates.significant >= 0.99
    assert 0.35 <= rates.of(SLOWER) <= 0.65


def test_planted_speedup_is_faster() -> None:
    rates = time_scenario("-10% n=20 cv=3% factor=1.05")
    assert rates.of(FASTER) >= 0.99
    assert rates.of(SLOWER) == 0.0


def test_vectorised_rates_agree_with_the_per_cell_verdict() -> None:
    """The Monte Carlo uses the vectorised path; the CLI uses `sample_verdict`. Same answers."""
    from bench.comparison.stats import classify, ratio_and_p
    from tests.compare.simulate import time_draws

    base, cand = time_draws(10, 0.05, 1.08, draws=60, seed=9)
    ratio, p_value = ratio_and_p(base, cand)
    expected = classify(ratio, p_value, 1.05)
    for i in range(len(base)):
        verdict = sample_verdict(base[i], cand[i], 1.05)
        assert verdict.verdict == expected[i]
        assert verdict.p_value == pytest.approx(p_value[i])
        assert verdict.ratio == pytest.approx(ratio[i])
    assert {SLOWER, NO_CHANGE} <= set(expected.tolist())  # the sample exercises both outcomes


def test_significant_but_small_change_is_no_change_with_a_note() -> None:
    rng = np.random.default_rng(5)
    base = lognormal_times(rng, 20, 2.0, 0.005)
    cand = lognormal_times(rng, 20, 2.0 * 1.03, 0.005)
    verdict = sample_verdict(base, cand, 1.10)
    assert verdict.p_value is not None and verdict.p_value < 1e-4
    assert verdict.verdict == NO_CHANGE
    assert verdict.note is not None and "within the factor" in verdict.note


def test_too_few_samples_is_insufficient_data() -> None:
    verdict = sample_verdict([1.0, 1.1, 1.0, 1.05], [2.0] * 10, 1.10)
    assert verdict.verdict == INSUFFICIENT
    assert verdict.ratio == pytest.approx(2.0 / 1.025)
    assert verdict.note is not None and "at least 5" in verdict.note


def test_identical_constant_samples_are_no_change() -> None:
    verdict = sample_verdict([1.0] * 6, [1.0] * 6, 1.10)
    assert verdict.verdict == NO_CHANGE
    assert verdict.p_value == 1.0


def test_memory_threshold_needs_both_ratio_and_absolute_difference() -> None:
    assert memory_verdict(10 * GIB, 11 * GIB, "c", 1.05, 32 * MIB).verdict == BIGGER
    assert memory_verdict(11 * GIB, 10 * GIB, "c", 1.05, 32 * MIB).verdict == SMALLER
    # Allocator jitter on a big cell: under the factor.
    assert memory_verdict(10 * GIB, 10 * GIB + 200 * MIB, "c", 1.05, 32 * MIB).verdict == NO_CHANGE
    # A tiny cell doubling by a few MiB: under the absolute floor.
    assert memory_verdict(8 * MIB, 16 * MIB, "c", 1.05, 32 * MIB).verdict == NO_CHANGE
    # A zero base (net of baseline) has no ratio; the difference alone decides.
    zero = memory_verdict(0, 100 * MIB, "c", 1.05, 32 * MIB)
    assert zero.verdict == BIGGER and zero.ratio is None
    assert memory_verdict(None, 5, "c", 1.05, 32 * MIB).verdict == "not measured"


@pytest.mark.parametrize("name", [k for k in QUALITY_SCENARIOS if k.startswith("null")])
def test_unchanged_quality_is_rarely_worse(name: str) -> None:
    rates = quality_scenario(name)
    # Two-sided 5% test: "worse" alone is expected near 2.5%; 600 draws, SE ~0.6%. The
    # bootstrap interval alone would call ~5% of these draws worse (it excludes 0 in ~10%).
    assert rates.of(WORSE) <= 0.04
    assert rates.of(WORSE) + rates.of("better") <= 0.07


def test_quality_drop_of_1_db_is_caught_with_20_prompts() -> None:
    rates = quality_scenario("-1 dB n=20 sd=1 dB margin=0.5")
    assert rates.of(WORSE) >= 0.95


def test_quality_change_within_margin_is_no_change() -> None:
    rng = np.random.default_rng(2)
    base = {f"p{i}": 30 + v for i, v in enumerate(rng.normal(0, 2, 10))}
    cand = {k: v - 0.3 + rng.normal(0, 0.02) for k, v in base.items()}
    verdict = quality_verdict(base, cand, "psnr", True, margin=0.5)
    assert verdict.p_value is not None and verdict.p_value < 0.01
    assert verdict.verdict == NO_CHANGE
    assert verdict.note is not None and "within the margin" in verdict.note
    tight = quality_verdict(base, cand, "psnr", True, margin=0.1)
    assert tight.verdict == WORSE
    assert tight.ci_high is not None and tight.ci_high < 0


def test_lower_is_better_metric_direction() -> None:
    base = {f"p{i}": 0.1 + 0.01 * i for i in range(8)}
    cand = {k: v + 0.05 + 0.001 * i for i, (k, v) in enumerate(base.items())}
    verdict = quality_verdict(base, cand, "lpips", False, margin=0.01)
    assert verdict.verdict == WORSE
    assert quality_verdict(cand, base, "lpips", False, margin=0.01).verdict == "better"


def test_quality_needs_six_prompts() -> None:
    base = {f"p{i}": 30.0 + i for i in range(5)}
    cand = {k: v - 5 for k, v in base.items()}
    assert quality_verdict(base, cand, "psnr", True, 0.5).verdict == INSUFFICIENT


def test_sign_flip_test_is_exact_for_small_n() -> None:
    """All 2^6 patterns: a constant shift of 6 prompts is the most extreme, p = 2/64."""
    base = np.zeros(6)
    assert paired_permutation_p(base, base + 1.0) == pytest.approx(2 / 64)
    assert paired_permutation_p(base, base) == 1.0
    # Monte Carlo branch (n > 13) against scipy's implementation of the same test.
    from scipy import stats

    rng = np.random.default_rng(4)
    b, c = rng.normal(0, 1, 30), rng.normal(0.3, 1, 30)
    reference = stats.permutation_test(
        (c, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=20000,
        random_state=1,
    ).pvalue
    assert paired_permutation_p(b, c) == pytest.approx(reference, abs=0.01)


def test_stability_warnings() -> None:
    rng = np.random.default_rng(0)
    clean = [stability_warnings(lognormal_times(rng, 10, 2.0, 0.03)) for _ in range(200)]
    assert not any(clean)
    kinds = {w.kind for w in stability_warnings([2.0, 2.1, 2.0])}
    assert kinds == {"too_few_samples"}
    noisy = {w.kind for w in stability_warnings(lognormal_times(rng, 20, 2.0, 0.25))}
    assert "high_spread" in noisy
    warm = stability_warnings([4.5, 2.0, 2.02, 1.98, 2.01, 2.0])
    assert "warmup" in {w.kind for w in warm}
    spike = {w.kind for w in stability_warnings([2.0, 2.0, 2.01, 1.99, 2.0, 3.5, 2.0])}
    assert "outliers" in spike and "warmup" not in spike
    moved = {w.kind for w in stability_warnings([1.0, 1.01, 0.99, 1.0, 1.3, 1.31, 1.29, 1.3])}
    assert "drift" in moved
    busy = stability_warnings([1.0] * 6, steps=[[0.1, 0.1, 0.2, 0.1, 0.05]] * 6)
    assert [w.kind for w in busy] == ["busy"]
    calm = stability_warnings([1.0] * 6, steps=[[0.1, 0.1, 0.1, 0.101, 0.099]] * 6)
    assert calm == []
