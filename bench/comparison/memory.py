"""Peak-memory verdicts per counter, each judged against the noise that counter has.

The four counters a run records (docs/run-folder.md) are not alike. torch's
`max_memory_allocated` is what the code asked for: the same code and shapes give the same
bytes, so a ratio and a tiny absolute floor decide. NVML device used memory and host RSS add
what the process happened to hold (allocator caches, pages of mapped files, the CUDA context,
whatever else shares the device) and differ from one process to the next: an unchanged re-run
of the demo once had a host RSS peak 5.4% (34.5 MB) higher, past both old thresholds.

A counter is judged against the larger of two noise estimates:
- its A/A band (`CounterProfile.band`): the ratio between the median per-image peaks of two
  identical runs that noise alone produces, measured with benchmarks/compare_aa.py
  (docs/compare.md); it covers what one run cannot show, the process-to-process offset;
- its spread inside each run: the per-image peaks of one process, largest over smallest.

Per-image peaks (one per image, so n per run): `bigger` needs the Mann-Whitney test on the
peaks significant, the ratio of medians beyond both the threshold and the noise band, and the
difference beyond the absolute floor. A counter whose noise band is wider than the threshold,
in ratio and in bytes, is TOO_NOISY unless the change clears the band. The band a change must
clear is capped at MAX_BAND, so growth of ×1.2 is still called on every counter.

Cell-level peaks (loading, warm-up) have one value per run: no spread, no test. They are judged
(ratio and floor) only for a deterministic counter and shown without a verdict otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bench.cell_summary import MEMORY_COUNTERS
from bench.comparison.defaults import DEFAULT_BANDS, MAX_BAND
from bench.comparison.stats import (
    BIGGER,
    MIN_SAMPLES,
    NO_CHANGE,
    NOT_JUDGED,
    NOT_MEASURED,
    SMALLER,
    TOO_NOISY,
    MemoryVerdict,
    memory_verdict,
    ratio_and_p,
)
from bench.sizing.units import MIB

# Phases of the cell record that hold peaks (docs/run-folder.md), after the per-image peaks.
IMAGES = "images"
CELL_PHASES = ("load", "warmup")


@dataclass(frozen=True)
class CounterProfile:
    """What is known about one counter before looking at a run."""

    key: str  # the record key, e.g. host_rss_peak_bytes
    name: str  # the short name for options, e.g. host_rss
    label: str  # the name people read, from bench.summary
    band: float  # A/A band: 1 + relative noise between identical runs; 1.0 = deterministic
    deterministic: bool
    # The counter's own absolute floor; None: the threshold's `memory_min_bytes`.
    min_bytes: int | None = None


_NAMES = {
    "nvml_used_peak_bytes": "nvml_used",
    "torch_max_reserved_bytes": "torch_reserved",
    "torch_max_allocated_bytes": "torch_allocated",
    "host_rss_peak_bytes": "host_rss",
}
DETERMINISTIC = frozenset({"torch_allocated"})
EXACT_MIN_BYTES = 1 * MIB  # the floor of a deterministic counter: page and block rounding


def counter_name(key: str) -> str:
    return _NAMES.get(key, key)


def profiles(
    bands: Mapping[str, float] | None = None, exact_min_bytes: int = EXACT_MIN_BYTES
) -> list[CounterProfile]:
    """The counters in bench.summary's order (most device-relevant first)."""
    bands = {**DEFAULT_BANDS, **(bands or {})}
    out = []
    for key, label in MEMORY_COUNTERS:
        name = counter_name(key)
        deterministic = name in DETERMINISTIC and bands[name] <= 1.0
        if key == "nvml_used_peak_bytes":
            label = f"{label} above baseline"
        out.append(
            CounterProfile(
                key,
                name,
                label,
                bands[name],
                deterministic,
                exact_min_bytes if deterministic else None,
            )
        )
    return out


def within_run_spread(values: np.ndarray) -> float:
    """Largest over smallest peak of one run (1.0 for fewer than two values or a zero)."""
    if values.size < 2 or values.min() <= 0:
        return 1.0
    return float(values.max() / values.min())


def image_peaks_verdict(
    base: Sequence[int] | np.ndarray,
    cand: Sequence[int] | np.ndarray,
    profile: CounterProfile,
    factor: float,
    min_bytes: int,
    alpha: float = 0.05,
    min_samples: int = MIN_SAMPLES,
) -> MemoryVerdict:
    """Per-image peaks of one counter in both runs, judged against the counter's noise."""
    b = np.asarray(base, dtype=float)
    c = np.asarray(cand, dtype=float)
    if not b.size or not c.size:
        return _empty(profile, IMAGES, int(b.size), int(c.size))
    base_med, cand_med = float(np.median(b)), float(np.median(c))
    diff = round(cand_med - base_med)
    ratio = cand_med / base_med if base_med > 0 else None
    spread = max(within_run_spread(b), within_run_spread(c))
    band = max(profile.band, spread)
    floor = profile.min_bytes if profile.min_bytes is not None else min_bytes
    notes = []
    if b.size < min_samples or c.size < min_samples:
        # No test can be significant; a change must clear the whole band, uncapped.
        p_value = None
        significant = True
        call_at = max(factor, band)
        notes.append(
            f"n={b.size}/{c.size}: too few images for the rank test, decided on the noise band "
            f"×{band:.3g} alone"
        )
    else:
        _ratio, p = ratio_and_p(b, c)
        p_value = float(p)
        significant = p_value < alpha
        call_at = max(factor, min(band, MAX_BAND))
    up = ratio is None or ratio > call_at
    down = ratio is None or ratio < 1.0 / call_at
    noisy = band > factor and (band - 1.0) * base_med > floor
    if significant and up and diff > floor:
        verdict = BIGGER
    elif significant and down and -diff > floor:
        verdict = SMALLER
    elif noisy:
        verdict = TOO_NOISY
        source = (
            f"its spread inside a run ×{spread:.3g}"
            if spread > profile.band
            else f"its A/A band ×{profile.band:g}"
        )
        notes.append(
            f"{profile.label} varies by {source} ({_mib((band - 1.0) * base_med)}), wider than "
            f"×{factor:g} and {_mib(floor)}: only changes beyond ×{call_at:.3g} are called"
        )
    else:
        verdict = NO_CHANGE
        if p_value is not None and significant and (up or down):
            notes.append(f"significant (p={p_value:.2g}) but within {_mib(floor)}")
        elif p_value is not None and significant:
            notes.append(f"significant (p={p_value:.2g}) but within ×{call_at:.3g}")
    if verdict in (BIGGER, SMALLER) and call_at > factor:
        notes.append(f"beyond the counter's noise band ×{call_at:.3g}")
    return MemoryVerdict(
        verdict,
        profile.label,
        round(base_med),
        round(cand_med),
        ratio,
        diff,
        "; ".join(notes) or None,
        profile.key,
        IMAGES,
        int(b.size),
        int(c.size),
        p_value,
        band,
    )


def cell_peak_verdict(
    base: int | None,
    cand: int | None,
    profile: CounterProfile,
    phase: str,
    factor: float,
    min_bytes: int,
) -> MemoryVerdict:
    """One cell-level peak per run (loading or warm-up): no spread to judge noise by."""
    if base is None or cand is None:
        return _empty(profile, phase, int(base is not None), int(cand is not None))
    label = f"{profile.label}, {phase}"
    if profile.deterministic:
        floor = profile.min_bytes if profile.min_bytes is not None else min_bytes
        v = memory_verdict(base, cand, label, factor, floor)
        return MemoryVerdict(
            v.verdict,
            label,
            v.base_bytes,
            v.cand_bytes,
            v.ratio,
            v.diff_bytes,
            None,
            profile.key,
            phase,
            1,
            1,
            None,
            profile.band,
        )
    return MemoryVerdict(
        NOT_JUDGED,
        label,
        int(base),
        int(cand),
        cand / base if base > 0 else None,
        int(cand) - int(base),
        f"one value per run and {profile.label} is not deterministic (A/A band "
        f"×{profile.band:g}): shown without a verdict",
        profile.key,
        phase,
        1,
        1,
        None,
        profile.band,
    )


def counter_verdicts(
    base_images: Mapping[str, Sequence[int]],
    cand_images: Mapping[str, Sequence[int]],
    base_cell: Mapping[str, Mapping[str, int]],
    cand_cell: Mapping[str, Mapping[str, int]],
    factor: float,
    min_bytes: int,
    alpha: float = 0.05,
    min_samples: int = MIN_SAMPLES,
    bands: Mapping[str, float] | None = None,
    exact_min_bytes: int = EXACT_MIN_BYTES,
) -> list[MemoryVerdict]:
    """Every counter both runs measured: per-image peaks first, then loading and warm-up.

    `*_images` map a record key to the cell's per-image peaks in measurement order;
    `*_cell` map a phase ("load", "warmup") to its peaks by record key.
    """
    out = []
    counters = profiles(bands, exact_min_bytes)
    for profile in counters:
        b, c = base_images.get(profile.key), cand_images.get(profile.key)
        if b and c:
            out.append(image_peaks_verdict(b, c, profile, factor, min_bytes, alpha, min_samples))
    for phase in CELL_PHASES:
        for profile in counters:
            b_value = (base_cell.get(phase) or {}).get(profile.key)
            c_value = (cand_cell.get(phase) or {}).get(profile.key)
            if b_value is not None and c_value is not None:
                out.append(cell_peak_verdict(b_value, c_value, profile, phase, factor, min_bytes))
    return out


def combined_verdict(verdicts: Sequence[MemoryVerdict]) -> MemoryVerdict:
    """The cell's one memory verdict: a growth on any counter in any phase is a regression;
    otherwise a shrink is an improvement; otherwise the most device-relevant counter says."""
    for word in (BIGGER, SMALLER):
        for v in verdicts:
            if v.verdict == word:
                return v
    judged = [v for v in verdicts if v.verdict not in (NOT_MEASURED, NOT_JUDGED)]
    if judged:
        return judged[0]
    if verdicts:
        return verdicts[0]
    return MemoryVerdict(
        NOT_MEASURED, None, None, None, None, None, "no memory counter present in both runs"
    )


def _empty(profile: CounterProfile, phase: str, n_base: int, n_cand: int) -> MemoryVerdict:
    return MemoryVerdict(
        NOT_MEASURED,
        profile.label,
        None,
        None,
        None,
        None,
        f"{profile.label} not measured in both runs",
        profile.key,
        phase,
        n_base,
        n_cand,
    )


def _mib(value: float) -> str:
    return f"{value / MIB:.1f} MiB"
