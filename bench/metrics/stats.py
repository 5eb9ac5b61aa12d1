"""Means with 95% bootstrap intervals over prompts, and honest answers where there are none.

Images of one prompt share content, so the resampling unit is the prompt: repeats of a prompt
are averaged first. Paired metrics are already differences against the reference image of the
same seed, so resampling prompts is the paired bootstrap.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 2000
RANDOM_STATE = 20240601


@dataclass(frozen=True)
class Interval:
    """A mean with its interval; `status` says why an interval is missing (never a bare NaN)."""

    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    method: str
    status: str = "ok"
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def per_prompt_means(values: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Average the values of each prompt (over repeats), keeping the first-seen prompt order."""
    grouped: dict[str, list[float]] = {}
    for prompt_id, value in values:
        grouped.setdefault(prompt_id, []).append(float(value))
    return {prompt: float(np.mean(vals)) for prompt, vals in grouped.items()}


def bootstrap_mean(
    values: Iterable[float] | Mapping[str, float],
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    random_state: int = RANDOM_STATE,
) -> Interval:
    """Mean and BCa bootstrap interval (percentile if BCa is undefined), fixed random state.

    n = 0: no mean. n = 1 or constant data: the mean without an interval, with the reason.
    """
    data = np.asarray(
        list(values.values()) if isinstance(values, Mapping) else list(values), dtype=float
    )
    data = data[np.isfinite(data)]
    n = int(data.size)
    if n == 0:
        return Interval(None, None, None, 0, "none", "no_data", "no finite values to average")
    mean = float(data.mean())
    if n == 1:
        return Interval(
            mean, None, None, 1, "none", "too_few_samples", "n=1: no interval (needs n >= 2)"
        )
    if np.ptp(data) == 0:
        return Interval(
            mean, None, None, n, "none", "constant", "all values equal: bootstrap is degenerate"
        )
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = stats.bootstrap(
                (data,),
                np.mean,
                confidence_level=confidence,
                n_resamples=n_resamples,
                method=method,
                random_state=random_state,
            )
        low, high = (float(x) for x in result.confidence_interval)
        if math.isfinite(low) and math.isfinite(high):
            label = f"bootstrap-{method.lower()} {int(confidence * 100)}% over prompts"
            return Interval(mean, low, high, n, label)
    return Interval(mean, None, None, n, "none", "no_interval", "bootstrap gave no finite interval")
