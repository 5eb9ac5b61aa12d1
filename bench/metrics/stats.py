"""Means with 95% intervals over prompts, and honest answers where there are none.

Images of one prompt share content, so the unit is the prompt: repeats of a prompt are averaged
first. Paired metrics are already differences against the reference image of the same seed, so
an interval over prompts is the paired interval.

The interval is the wider, at each end, of the Student-t interval and the studentized bootstrap
(bootstrap-t) interval ("t/bootstrap-t"). Measured by `benchmarks/interval_coverage.py`
(docs/scores.md): the t interval alone covers 95% on normal data but 91-93% on skewed
(lognormal) data at 3-20 prompts; the bootstrap-t follows the skew but is erratic where few
distinct resamples exist; their hull covers at least 94% on both from 4 prompts up. The BCa
bootstrap used before covered 50% at 2 prompts and 83% at 5. Below 4 prompts no interval is
honest on skewed data (the t interval at 3 prompts covers 92%, the bootstrap-t has no finite
bound), so there is none, and the row says why.
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
# The fewest prompts that get an interval (benchmarks/interval_coverage.py).
MIN_INTERVAL_N = 4
METHOD = "t/bootstrap-t"
T_ONLY = "student-t"


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


@dataclass(frozen=True)
class PromptMeans:
    """One metric of one cell reduced to prompts: what the summary's interval and `bench
    compare`'s paired test are both taken over."""

    values: dict[str, float]  # prompt -> mean of its rows' finite values, first-seen order
    identical: frozenset[str]  # prompts whose every row is identical with no finite value
    n_values: int  # rows averaged
    n_identical: int  # identical rows without a finite value (PSNR +inf), left out


def prompt_means(rows: Iterable[Mapping[str, Any]]) -> PromptMeans:
    """The per-prompt mean of one metric of one cell, from its ok score rows (docs/scores.md).

    The one definition `bench score`'s summary and `bench compare` share: every finite value
    is averaged, an identical image's included where it has one (SSIM 1, LPIPS 0); an
    identical image without one (PSNR +inf, stored as null) is left out and counted. A
    prompt with no finite value whose rows are all identical is in `identical`.
    """
    values: list[tuple[str, float]] = []
    same: set[str] = set()
    n_identical = 0
    for row in rows:
        if row.get("status") != "ok":
            continue
        value = row.get("value")
        if value is not None and math.isfinite(float(value)):
            values.append((str(row["prompt_id"]), float(value)))
        elif row.get("identical"):
            n_identical += 1
            same.add(str(row["prompt_id"]))
    means = per_prompt_means(values)
    return PromptMeans(means, frozenset(same - set(means)), len(values), n_identical)


def method_label(confidence: float = CONFIDENCE, method: str = METHOD) -> str:
    """How an interval's `method` reads, e.g. "t/bootstrap-t 95% over prompts"."""
    return f"{method} {round(confidence * 100):d}% over prompts"


def _studentized_bounds(
    data: np.ndarray, confidence: float, n_resamples: int, random_state: int
) -> tuple[float, float] | None:
    """The bootstrap-t interval of the mean, or None where a bound is not finite.

    scipy resamples the studentized mean t* = (mean* - mean) / se*; its quantiles replace the
    t distribution's. A resample of one repeated value has se* = 0 and t* = ±inf: where those
    reach the quantile (few distinct values, many ties) the method has no answer.
    """
    n, mean = data.size, float(data.mean())
    se = float(data.std(ddof=1)) / math.sqrt(n)

    def t_star(sample: np.ndarray, axis: int = -1) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (sample.mean(axis=axis) - mean) / (sample.std(axis=axis, ddof=1) / math.sqrt(n))
        return np.where(np.isnan(t), 0.0, t)  # 0/0: a resample of values all equal to the mean

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about the infinite draws; handled below
        result = stats.bootstrap(
            (data,),
            t_star,
            n_resamples=n_resamples,
            method="percentile",
            vectorized=True,
            rng=np.random.default_rng(random_state),
        )
    tail = (1.0 - confidence) / 2.0
    # inverted_cdf: no interpolation, so an infinite draw beside the quantile cannot leak in.
    q_low, q_high = np.quantile(
        result.bootstrap_distribution, [tail, 1.0 - tail], method="inverted_cdf"
    )
    if not (math.isfinite(q_low) and math.isfinite(q_high)):
        return None
    return mean - float(q_high) * se, mean - float(q_low) * se


def mean_interval(
    values: Iterable[float] | Mapping[str, float],
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    random_state: int = RANDOM_STATE,
) -> Interval:
    """Mean and its t/bootstrap-t interval (module docstring), fixed random state.

    n = 0: no mean. n below MIN_INTERVAL_N, or constant data: the mean without an interval,
    with the reason. Where the bootstrap-t has no finite bound (heavily tied data), the
    Student-t interval alone, and the method says so.
    """
    data = np.asarray(
        list(values.values()) if isinstance(values, Mapping) else list(values), dtype=float
    )
    data = data[np.isfinite(data)]
    n = int(data.size)
    if n == 0:
        return Interval(None, None, None, 0, "none", "no_data", "no finite values to average")
    mean = float(data.mean())
    if n >= 2 and np.ptp(data) == 0:
        return Interval(mean, None, None, n, "none", "constant", "all values equal: no spread")
    if n < MIN_INTERVAL_N:
        return Interval(
            mean,
            None,
            None,
            n,
            "none",
            "too_few_samples",
            f"n={n}: no interval (an honest {round(confidence * 100):d}% interval over prompts "
            f"needs n >= {MIN_INTERVAL_N})",
        )
    t_low, t_high = stats.ttest_1samp(data, mean).confidence_interval(confidence)
    boot = _studentized_bounds(data, confidence, n_resamples, random_state)
    if boot is None:
        return Interval(
            mean,
            float(t_low),
            float(t_high),
            n,
            method_label(confidence, T_ONLY),
            note="bootstrap-t undefined (too many tied values): Student-t interval alone",
        )
    low, high = min(float(t_low), boot[0]), max(float(t_high), boot[1])
    return Interval(mean, low, high, n, method_label(confidence))
