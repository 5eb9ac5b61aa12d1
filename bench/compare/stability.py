"""pyperf-style stability warnings: the numbers are there, but they may not mean what they seem.

A verdict of "no change" on samples with 40% spread, or a time dominated by a first image that
paid for lazy initialisation, is not evidence of anything; these warnings say so next to the
verdict instead of letting noise pass silently. They never change the exit code.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bench.compare.stats import MIN_SAMPLES, finite


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


def stability_warnings(
    values: Sequence[float] | np.ndarray,
    quantity: str = "wall time",
    min_samples: int = MIN_SAMPLES,
    max_cv: float = MAX_CV,
    outlier_ratio: float = OUTLIER_RATIO,
    warmup_ratio: float = WARMUP_RATIO,
) -> list[StabilityWarning]:
    """Warnings for one cell's values in measurement order (the first image first).

    - too few values to test (`min_samples`);
    - high spread: standard deviation above `max_cv` of the mean (pyperf's 10%);
    - outliers: the largest value above `outlier_ratio` x the median, or the smallest below
      1/`outlier_ratio` of it;
    - warm-up not enough: the first measured value above `warmup_ratio` x the median of the rest
      (the first image paid for lazy initialisation the warm-up did not trigger).
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
    return out
