"""How much a run's own measurements vary: the noise a verdict is judged against, and warnings.

`time_noise` is the spread inside one run that decides whether a time (or energy) verdict can
be made at all (bench.comparison.stats.sample_verdict: TOO_NOISY). The pyperf-style warnings say,
next to any verdict, that the numbers may not mean what they seem: a first image that paid for
lazy initialisation, a cell whose speed changed half-way. Warnings never change the exit code.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bench.comparison.defaults import TIME_PROCESS_BANDS
from bench.comparison.stats import MIN_SAMPLES, finite


@dataclass(frozen=True)
class StabilityWarning:
    """A pyperf-style warning: the numbers are there, but they may not mean what they seem."""

    kind: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


MAX_CV = 0.10
OUTLIER_RATIO = 1.5
WARMUP_RATIO = 1.5
MAX_DRIFT = 1.10  # the second half of a cell's images against the first
MAX_STEP_SPREAD = 0.05  # identical denoising steps of one image, around their median
MIN_DRIFT_SAMPLES = 6
# The memory sampler's achieved rate in two runs of one cell, larger over smaller. Inside one
# quiet run its per-image rate varies by about ±1%; a run made while a steady competing job
# took part of the CPU measured 5.6% lower (and 1.5x slower) than its quiet twin
# (tests/compare/fixtures: quiet-128 and mixed-128, cell Q4_K).
MAX_SAMPLER_SHIFT = 1.03
# Share of the processors other processes took during a cell's images (median over images).
# Times are only judged when the rest of the machine was nearly idle in both runs: other work
# takes cores, and also caches and memory bandwidth, which the share does not show. Measured on
# a real A/A pair on this project's 2-core VM: the same Q4_K cell took x1.33 the wall time and
# x1.2 the CPU seconds in one run, with other processes at 8% and 10% of the processors in the
# two runs (benchmarks/compare_aa.py, docs/compare.md).
MAX_OTHERS_SHARE = 0.05


def process_band(device: str | None, bands: dict[str, float] | None = None) -> float:
    """The A/A time band of a device type ("cuda:0" -> "cuda"), 1.0 when not calibrated."""
    table = TIME_PROCESS_BANDS if bands is None else bands
    if not device:
        return 1.0
    return float(table.get(device.split(":", 1)[0], 1.0))


@dataclass(frozen=True)
class Noise:
    """Relative spread of one run's values, as a median absolute deviation over the median.

    `images`: of the per-image values. `steps`: of the denoising steps inside each image
    (the first step left out: it can carry a transfer or a lazy initialisation), median over
    images. Steps of one image are identical work, so their spread is the machine's alone.
    `band` is 1 + the larger of the two: a difference between runs smaller than that is within
    what one run shows between identical items.
    """

    band: float | None
    images: float | None
    steps: float | None

    def describe(self) -> str:
        parts = []
        if self.images is not None:
            parts.append(f"images ±{self.images:.1%}")
        if self.steps is not None:
            parts.append(f"steps ±{self.steps:.1%}")
        return ", ".join(parts) or "not estimated"


def relative_mad(values: Sequence[float] | np.ndarray) -> Any:
    """Median absolute deviation over the median along the last axis (robust to one
    straggler): a float for one sample, an array for a stack of them; None (or NaN per row)
    below 3 values or for a median that is not positive. Vectorised so the simulations of
    tests/compare/simulate.py apply the same rule to thousands of draws."""
    data = np.asarray(values, dtype=float)
    if data.ndim == 1:
        data = finite(data)
        if data.size < 3:
            return None
    elif data.shape[-1] < 3:
        return np.full(data.shape[:-1], np.nan)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")
        median = np.median(data, axis=-1, keepdims=True)
        spread = np.median(np.abs(data / median - 1.0), axis=-1)
        spread = np.where(median[..., 0] > 0, spread, np.nan)
    if data.ndim == 1:
        value = float(spread)
        return value if np.isfinite(value) else None
    return spread


def time_noise(
    values: Sequence[float] | np.ndarray, steps: Sequence[Sequence[float]] | None = None
) -> Noise:
    """The spread of one run: per-image values and, if given, the steps inside each image."""
    images = relative_mad(values)
    per_image = [relative_mad(list(s)[1:]) for s in steps or []]
    per_image = [x for x in per_image if x is not None]
    step_spread = float(np.median(per_image)) if per_image else None
    known = [x for x in (images, step_spread) if x is not None]
    return Noise(1.0 + max(known) if known else None, images, step_spread)


def sampler_shift(base_hz: Sequence[float], cand_hz: Sequence[float]) -> float | None:
    """How unequally busy the machine was in two runs of a cell: the ratio (>= 1) of the
    memory sampler's median achieved rate in one run over the other's. The sampler sleeps
    5 ms between readings, so it is late exactly when other work holds the processor; unlike
    a time, its rate does not change when the code under test gets slower or faster."""
    b, c = finite(base_hz), finite(cand_hz)
    if b.size < 3 or c.size < 3:
        return None
    rb, rc = float(np.median(b)), float(np.median(c))
    if rb <= 0 or rc <= 0:
        return None
    return max(rb / rc, rc / rb)


def contention_shift(
    base_share: Sequence[float], cand_share: Sequence[float]
) -> tuple[float, float] | None:
    """Median share of the processors other processes used during the images of each run
    (bench.runner.timing.CpuMeter); None when either run did not record it."""
    b, c = finite(base_share), finite(cand_share)
    if b.size < 1 or c.size < 1:
        return None
    return float(np.median(b)), float(np.median(c))


def drift(values: Sequence[float] | np.ndarray) -> float | None:
    """Median of the second half of the values over that of the first (measurement order)."""
    data = finite(values)
    if data.size < MIN_DRIFT_SAMPLES:
        return None
    half = data.size // 2
    first, second = float(np.median(data[:half])), float(np.median(data[half:]))
    return second / first if first > 0 else None


def stability_warnings(
    values: Sequence[float] | np.ndarray,
    quantity: str = "wall time",
    min_samples: int = MIN_SAMPLES,
    max_cv: float = MAX_CV,
    outlier_ratio: float = OUTLIER_RATIO,
    warmup_ratio: float = WARMUP_RATIO,
    steps: Sequence[Sequence[float]] | None = None,
) -> list[StabilityWarning]:
    """Warnings for one cell's values in measurement order (the first image first).

    - too few values to test (`min_samples`);
    - high spread: standard deviation above `max_cv` of the mean (pyperf's 10%);
    - outliers: the largest value above `outlier_ratio` x the median, or the smallest below
      1/`outlier_ratio` of it;
    - warm-up not enough: the first measured value above `warmup_ratio` x the median of the rest
      (the first image paid for lazy initialisation the warm-up did not trigger);
    - drift: the second half of the values beyond `MAX_DRIFT` of the first, either way (the
      machine's speed changed while the cell ran);
    - busy: identical denoising steps of an image spread beyond `MAX_STEP_SPREAD` (median over
      images), a symptom of other work competing for the processor.
    """
    data = finite(values)
    out: list[StabilityWarning] = []
    n = int(data.size)
    if n < min_samples:
        out.append(
            StabilityWarning(
                "too_few_samples", f"only {n} {quantity} value(s); at least {min_samples} needed"
            )
        )
    if n < 2:
        return out
    mean = float(data.mean())
    median = float(np.median(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv = float(data.std(ddof=1) / mean) if mean > 0 else math.nan
    if math.isfinite(cv) and cv > max_cv:
        out.append(
            StabilityWarning(
                "high_spread",
                f"{quantity} standard deviation is {cv:.0%} of the mean (> {max_cv:.0%})",
            )
        )
    if median > 0 and (data.max() > outlier_ratio * median or data.min() < median / outlier_ratio):
        out.append(
            StabilityWarning(
                "outliers",
                f"{quantity} ranges {data.min():.4g}..{data.max():.4g} around a median of "
                f"{median:.4g}",
            )
        )
    if n >= 3:
        rest = float(np.median(data[1:]))
        if rest > 0 and data[0] > warmup_ratio * rest:
            out.append(
                StabilityWarning(
                    "warmup",
                    f"first image {data[0] / rest:.1f}x slower than the median of the rest: "
                    f"increase `warmup`",
                )
            )
    moved = drift(data)
    if moved is not None and max(moved, 1.0 / moved) > MAX_DRIFT:
        out.append(
            StabilityWarning(
                "drift",
                f"{quantity} of the second half of the images ×{moved:.2f} the first half: "
                f"the machine's speed changed during the cell",
            )
        )
    step_spread = time_noise([], steps).steps if steps else None
    if step_spread is not None and step_spread > MAX_STEP_SPREAD:
        out.append(
            StabilityWarning(
                "busy",
                f"identical denoising steps of an image vary ±{step_spread:.1%} (median over "
                f"images): other work was competing for the machine",
            )
        )
    return out
