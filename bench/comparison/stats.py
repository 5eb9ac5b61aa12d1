"""The statistics behind a verdict: a change must be significant *and* larger than a factor.

This follows asv (`asv continuous`): a p-value alone flags 1% changes that nobody cares about
once n is large, and a ratio alone flags noise once n is small; requiring both keeps the false
positive rate below `alpha` and ignores changes too small to matter. The functions here take
plain arrays and return small frozen records, so tests can call them thousands of times over
synthetic draws and measure the false-positive rate and power directly.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from bench.metrics.stats import mean_interval

# Verdict words, one vocabulary for every aspect so renderers and CI scripts can match on them.
NO_CHANGE = "no change"
INSUFFICIENT = "insufficient data"
NOT_MEASURED = "not measured"
# The data are there, but the measurement's own noise is wider than the threshold: a change of
# the threshold's size cannot be told from noise. Neither a regression nor a pass.
TOO_NOISY = "too noisy to judge at this threshold"
# One value per run of a counter that is not deterministic: shown, never judged.
NOT_JUDGED = "not judged"
# One value per run measured on different terms (a distribution metric over another number of
# images): not even shown side by side as if comparable.
NOT_COMPARABLE = "not comparable"
SLOWER, FASTER = "slower", "faster"
BIGGER, SMALLER = "bigger", "smaller"
WORSE, BETTER = "worse", "better"
REGRESSION_WORDS = frozenset({SLOWER, BIGGER, WORSE})
IMPROVEMENT_WORDS = frozenset({FASTER, SMALLER, BETTER})

# Below five values per side the Mann-Whitney test has next to no power (3 + 3 can never reach
# p < 0.05, 4 + 4 only when the samples do not overlap at all); say so instead of "no change".
MIN_SAMPLES = 5


@dataclass(frozen=True)
class SampleVerdict:
    """Verdict on two independent samples (per-image wall times or energies) of one cell."""

    verdict: str
    base_median: float | None
    cand_median: float | None
    ratio: float | None
    p_value: float | None
    n_base: int
    n_cand: int
    note: str | None = None
    # 1 + the largest relative spread either run showed (bench.comparison.stability.time_noise):
    # the noise a difference has to clear. None: not estimated.
    noise_band: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    data = np.asarray(values, dtype=float)
    return data[np.isfinite(data)]


def ratio_and_p(base: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median ratio (candidate / base) and two-sided Mann-Whitney U p-value along the last axis.

    Vectorised so the tests can measure the level and power over thousands of draws in one call;
    `sample_verdict` applies the same function to one cell's two samples.
    """
    base, cand = np.asarray(base, dtype=float), np.asarray(cand, dtype=float)
    ratio = np.median(cand, axis=-1) / np.median(base, axis=-1)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")
        p_value = stats.mannwhitneyu(cand, base, alternative="two-sided", axis=-1).pvalue
    # All values tied (identical constant samples): no evidence of any difference.
    return ratio, np.where(np.isnan(p_value), 1.0, p_value)


def classify(
    ratio: np.ndarray,
    p_value: np.ndarray,
    factor: float,
    alpha: float = 0.05,
    worse: str = SLOWER,
    better: str = FASTER,
    noise_band: np.ndarray | float | None = None,
) -> np.ndarray:
    """`worse` where p < alpha and ratio > factor, `better` where p < alpha and ratio <
    1/factor, "no change" elsewhere: the asv rule, significance *and* size. Where a
    `noise_band` is given and wider than `factor`, TOO_NOISY whatever the rest says."""
    significant = np.asarray(p_value) < alpha
    out = np.full(np.shape(ratio), NO_CHANGE, dtype=object)
    out[significant & (np.asarray(ratio) > factor)] = worse
    out[significant & (np.asarray(ratio) < 1.0 / factor)] = better
    if noise_band is not None:
        band = np.asarray(noise_band, dtype=float)
        out[np.broadcast_to(np.nan_to_num(band, nan=1.0) > factor, out.shape)] = TOO_NOISY
    return out


def sample_verdict(
    base: Sequence[float] | np.ndarray,
    cand: Sequence[float] | np.ndarray,
    factor: float,
    alpha: float = 0.05,
    min_samples: int = MIN_SAMPLES,
    worse: str = SLOWER,
    better: str = FASTER,
    noise_band: float | None = None,
    noise_note: str | None = None,
    unequal: str | None = None,
) -> SampleVerdict:
    """Mann-Whitney U (two-sided) and the ratio of medians, candidate over base.

    `worse` when p < alpha and the ratio exceeds `factor`, `better` when p < alpha and the ratio
    is below 1/factor, otherwise "no change". Mann-Whitney rather than a t-test because image
    times are skewed (a straggler image, a GC pause) and a rank test is not moved by them.

    The test assumes the images of a run are exchangeable. On a busy machine they are not:
    the load comes and goes in bursts longer than an image, and a whole run can be many times
    slower than its twin. Its symptom is spread inside the run, so `noise_band` (1 + the
    largest relative spread of either run, `stability.time_noise`) wider than `factor` makes
    the verdict TOO_NOISY instead: a change of the factor's size cannot be told from the
    machine's own variation, whatever the test says. `unequal` (a sentence saying how the
    two runs' conditions differed, e.g. from the memory sampler's rate) does the same.
    """
    b, c = finite(base), finite(cand)
    base_median = float(np.median(b)) if b.size else None
    cand_median = float(np.median(c)) if c.size else None
    ratio = cand_median / base_median if base_median and cand_median is not None else None
    if b.size < min_samples or c.size < min_samples or ratio is None:
        return SampleVerdict(
            INSUFFICIENT,
            base_median,
            cand_median,
            ratio,
            None,
            int(b.size),
            int(c.size),
            f"needs at least {min_samples} values per run (base {b.size}, candidate {c.size})",
            noise_band,
        )
    _ratio, p = ratio_and_p(b, c)
    p_value = float(p)
    verdict = str(
        classify(np.array(ratio), np.array(p_value), factor, alpha, worse, better, noise_band)
    )
    note = None
    if verdict == TOO_NOISY:
        note = (
            f"values inside a run spread ×{noise_band:.3f}, wider than the factor "
            f"×{factor:g}: a change of that size cannot be told from noise"
        )
        if noise_note:
            note += f" ({noise_note})"
    elif unequal is not None:
        verdict, note = TOO_NOISY, unequal
    elif verdict == NO_CHANGE and p_value < alpha:
        note = f"significant (p={p_value:.2g}) but within the factor {factor:g}"
    return SampleVerdict(
        verdict,
        base_median,
        cand_median,
        ratio,
        p_value,
        int(b.size),
        int(c.size),
        note,
        noise_band,
    )


@dataclass(frozen=True)
class MemoryVerdict:
    """Verdict on one peak-memory counter in one phase (bench.comparison.memory decides it).

    `base_bytes`/`cand_bytes` are the median per-image peak for phase "images" and the single
    value of the cell for "load" and "warmup". The fields after `note` were added with the
    per-counter rules; older JSON readers can ignore them.
    """

    verdict: str
    counter: str | None
    base_bytes: int | None
    cand_bytes: int | None
    ratio: float | None
    diff_bytes: int | None
    note: str | None = None
    key: str | None = None
    phase: str | None = None
    n_base: int | None = None
    n_cand: int | None = None
    p_value: float | None = None
    # 1 + the relative noise the counter was judged against (its A/A band or, if wider, its
    # spread inside the runs); 1.0 for a deterministic counter.
    noise_band: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def memory_verdict(
    base_bytes: int | None,
    cand_bytes: int | None,
    counter: str | None,
    factor: float,
    min_bytes: int,
) -> MemoryVerdict:
    """`bigger` when the ratio exceeds `factor` *and* the difference exceeds `min_bytes`.

    The absolute floor stops a few MiB of allocator jitter on a small cell from reading as a
    10% regression; the ratio stops a large cell's normal variation from doing the same.
    """
    if base_bytes is None or cand_bytes is None or counter is None:
        return MemoryVerdict(
            NOT_MEASURED,
            counter,
            base_bytes,
            cand_bytes,
            None,
            None,
            "no memory counter present in both runs",
        )
    diff = int(cand_bytes) - int(base_bytes)
    # A zero base (a counter net of its baseline can be 0) has no ratio; the difference decides.
    ratio = cand_bytes / base_bytes if base_bytes > 0 else None
    verdict = NO_CHANGE
    if (ratio is None or ratio > factor) and diff > min_bytes:
        verdict = BIGGER
    elif (ratio is None or ratio < 1.0 / factor) and -diff > min_bytes:
        verdict = SMALLER
    return MemoryVerdict(verdict, counter, int(base_bytes), int(cand_bytes), ratio, diff)


@dataclass(frozen=True)
class QualityVerdict:
    """Verdict on one per-image metric, paired over prompts between the two runs.

    `p_value` is the test's own; `p_adjusted` the one the verdict was decided at, corrected for
    the run's other quality tests (`correction`, e.g. Benjamini-Hochberg over 12 tests); the
    last two were added within schema 1 (null where the verdict stood alone).
    """

    verdict: str
    metric: str
    higher_is_better: bool
    base_mean: float | None
    cand_mean: float | None
    diff_mean: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    margin: float
    n_prompts: int
    method: str
    note: str | None = None
    p_adjusted: float | None = None
    correction: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# A two-sided sign-flip test over n prompts cannot go below p = 2 / 2^n: n = 5 gives 0.0625, so
# below 6 prompts no quality change can ever be significant at 0.05; say "insufficient data".
MIN_PROMPTS = 6
PERMUTATIONS = 9999
PERMUTATION_SEED = 20240602


def paired_permutation_p(base: np.ndarray, cand: np.ndarray) -> float:
    """Two-sided sign-flip permutation test of the mean paired difference.

    Exact (all 2^n sign patterns) up to n = 13 prompts, Monte Carlo with a fixed seed above.
    It gives the verdict its p-value (the one the run's correction adjusts): exact, with no
    assumption on the differences' shape. The BCa interval used before it excluded 0 in 11-12%
    of null draws at n = 10; the t/bootstrap-t interval now beside it holds its level
    (tests/compare/simulate.py measures both; docs/compare.md).
    Written with numpy rather than `scipy.stats.permutation_test` because it is the same test
    and 10-50x faster, which lets the tests measure its level over hundreds of draws.
    """
    d = np.asarray(cand, dtype=float) - np.asarray(base, dtype=float)
    n = int(d.size)
    if n == 0 or not np.any(d):
        return 1.0
    observed = abs(float(d.mean()))
    tolerance = 1e-12 * float(np.abs(d).max())
    if 2**n <= PERMUTATIONS + 1:
        patterns = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
        flipped = np.abs((2 * patterns - 1) @ d) / n
        return float(np.mean(flipped >= observed - tolerance))
    rng = np.random.default_rng(PERMUTATION_SEED)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(PERMUTATIONS, n))
    flipped = np.abs(signs @ d) / n
    return float((1 + np.sum(flipped >= observed - tolerance)) / (PERMUTATIONS + 1))


@dataclass(frozen=True)
class PairedTest:
    """The paired comparison of one metric over the prompts scored in both runs, before any
    verdict: the means, the mean difference (candidate minus base) with its 95% interval,
    and the sign-flip p-value. `p_value` is None below `min_prompts`."""

    n: int
    base_mean: float | None
    cand_mean: float | None
    diff: float | None
    low: float | None
    high: float | None
    p_value: float | None
    method: str
    note: str | None


def paired_test(
    base: Mapping[str, float], cand: Mapping[str, float], min_prompts: int = MIN_PROMPTS
) -> PairedTest:
    """`base` and `cand` map prompt ids to the prompt's score (repeats already averaged, by
    `bench.metrics.stats.prompt_means`). Every prompt was generated with the same seed in both
    runs, so the difference per prompt removes the prompt's own difficulty."""
    prompts = [p for p in base if p in cand]
    b = np.array([base[p] for p in prompts], dtype=float)
    c = np.array([cand[p] for p in prompts], dtype=float)
    keep = np.isfinite(b) & np.isfinite(c)
    b, c = b[keep], c[keep]
    n = int(b.size)
    if n < min_prompts:
        return PairedTest(
            n,
            float(b.mean()) if n else None,
            float(c.mean()) if n else None,
            float((c - b).mean()) if n else None,
            None,
            None,
            None,
            "none",
            f"needs at least {min_prompts} prompts scored in both runs (has {n})",
        )
    diff = float((c - b).mean())
    interval = mean_interval(c - b)
    # Constant differences (status "constant"): the interval is the point itself.
    low = interval.ci_low if interval.ci_low is not None else diff
    high = interval.ci_high if interval.ci_high is not None else diff
    return PairedTest(
        n,
        float(b.mean()),
        float(c.mean()),
        diff,
        low,
        high,
        paired_permutation_p(b, c),
        f"{interval.method}; sign-flip permutation test",
        interval.note,
    )


def judge_quality(
    test: PairedTest,
    metric: str,
    higher_is_better: bool,
    margin: float,
    alpha: float = 0.05,
    p_adjusted: float | None = None,
    correction: str | None = None,
) -> QualityVerdict:
    """`worse` needs all three: the 95% interval of the mean difference excludes 0 on the bad
    side, the sign-flip test's p (`p_adjusted` where the run's other tests are corrected for)
    is below alpha (the interval alone is anti-conservative at these n), and the mean change
    exceeds `margin` (in the metric's units). `better` likewise on the good side."""
    if test.p_value is None or test.diff is None or test.low is None or test.high is None:
        return QualityVerdict(
            INSUFFICIENT,
            metric,
            higher_is_better,
            test.base_mean,
            test.cand_mean,
            test.diff,
            None,
            None,
            None,
            margin,
            test.n,
            test.method,
            test.note,
        )
    p = test.p_value if p_adjusted is None else p_adjusted
    sign = 1.0 if higher_is_better else -1.0
    gain, gain_low, gain_high = sign * test.diff, *sorted((sign * test.low, sign * test.high))
    significant = p < alpha and (gain_high < 0 or gain_low > 0)
    verdict = NO_CHANGE
    notes = [test.note] if test.note else []
    if significant and gain_high < 0 and -gain > margin:
        verdict = WORSE
    elif significant and gain_low > 0 and gain > margin:
        verdict = BETTER
    elif significant:
        notes.append(f"significant (p={p:.2g}) but within the margin {margin:g}")
    elif p_adjusted is not None and test.p_value < alpha and p >= alpha:
        notes.append(
            f"p={test.p_value:.2g} alone, {p:.2g} corrected for the run's other quality tests"
        )
    return QualityVerdict(
        verdict,
        metric,
        higher_is_better,
        test.base_mean,
        test.cand_mean,
        test.diff,
        test.low,
        test.high,
        test.p_value,
        margin,
        test.n,
        test.method,
        "; ".join(notes) or None,
        p_adjusted,
        correction,
    )


def quality_verdict(
    base: Mapping[str, float],
    cand: Mapping[str, float],
    metric: str,
    higher_is_better: bool,
    margin: float,
    alpha: float = 0.05,
    min_prompts: int = MIN_PROMPTS,
) -> QualityVerdict:
    """One metric's verdict on its own (no other test to correct for): `paired_test`, then
    `judge_quality`."""
    return judge_quality(
        paired_test(base, cand, min_prompts), metric, higher_is_better, margin, alpha
    )


# Corrections for the many quality tests of one comparison (cells x metrics), by name.
BENJAMINI_HOCHBERG = "benjamini-hochberg"
NO_CORRECTION = "none"
CORRECTIONS = (BENJAMINI_HOCHBERG, NO_CORRECTION)


def adjust_p_values(p_values: Sequence[float], correction: str) -> np.ndarray:
    """The p-values a run's quality tests are decided at.

    Benjamini-Hochberg (`scipy.stats.false_discovery_control`): with no change anywhere it
    holds the chance of any false `worse` in the run at alpha however many tests there are
    (each test alone would be called at alpha, so 20 tests would give up to a third's chance);
    where some metrics really changed it keeps the share of false calls among the calls at
    alpha, and loses less power than a family-wise correction (Holm) when a regression shows
    in many cells at once. Valid for positively dependent tests (PSNR, SSIM and LPIPS of the
    same images move together). `none`: each test at its own p (the rule before).
    """
    ps = np.asarray(p_values, dtype=float)
    if correction == NO_CORRECTION or ps.size == 0:
        return ps
    if correction == BENJAMINI_HOCHBERG:
        return stats.false_discovery_control(ps, method="bh")
    raise ValueError(f"unknown correction {correction!r}; known: {', '.join(CORRECTIONS)}")
