"""Memory verdicts per counter (bench.comparison.memory) on hand-made per-image peaks.

The recorded peaks of real runs are tested in test_compare_recorded.py; here every rule is
pinned on values chosen to sit on either side of it.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.comparison.defaults import DEFAULT_BANDS, MAX_BAND
from bench.comparison.memory import (
    cell_peak_verdict,
    combined_verdict,
    counter_verdicts,
    image_peaks_verdict,
    profiles,
)
from bench.comparison.stats import BIGGER, NO_CHANGE, NOT_JUDGED, SMALLER, TOO_NOISY

MIB = 1 << 20
GIB = 1 << 30
PROFILE = {p.name: p for p in profiles()}
FACTOR, FLOOR = 1.05, 32 * MIB


def verdict(base: list[int], cand: list[int], name: str, factor: float = FACTOR) -> str:
    return image_peaks_verdict(base, cand, PROFILE[name], factor, FLOOR).verdict


def jitter(rng: np.random.Generator, level: float, n: int, spread: float) -> list[int]:
    """n per-image peaks around `level`, uniformly within ±spread/2 of it."""
    return [int(level * (1 + spread * (rng.random() - 0.5))) for _ in range(n)]


def test_deterministic_counter_has_a_tiny_floor() -> None:
    """torch allocated: the same bytes for the same code, so +2 MiB on 40 MiB is a change."""
    base = [40 * MIB] * 8
    assert verdict(base, [42 * MIB + 1] * 8, "torch_allocated") == BIGGER
    assert verdict(base, [40 * MIB + MIB // 2] * 8, "torch_allocated") == NO_CHANGE
    assert verdict(base, base, "torch_allocated") == NO_CHANGE
    # The same change on host RSS is below the 32 MiB floor.
    assert verdict(base, [42 * MIB + 1] * 8, "host_rss") == NO_CHANGE


def test_noisy_counter_says_so_instead_of_calling_a_regression() -> None:
    """The issue's case: host RSS 5.4% (34.5 MB) higher in an unchanged re-run."""
    rng = np.random.default_rng(0)
    base = jitter(rng, 640 * MIB, 8, 0.01)
    cand = jitter(rng, 640 * MIB * 1.054, 8, 0.01)
    v = image_peaks_verdict(base, cand, PROFILE["host_rss"], FACTOR, FLOOR)
    assert v.p_value is not None and v.p_value < 0.01  # the difference is real, and noise
    assert v.verdict == TOO_NOISY
    assert v.noise_band == pytest.approx(DEFAULT_BANDS["host_rss"])
    assert v.note is not None and "A/A band" in v.note and "×1.15" in v.note
    # At a threshold as wide as the counter's noise, it is judged: no change.
    assert verdict(base, cand, "host_rss", factor=1.15) == NO_CHANGE
    # The old rule, threshold only, called this a regression.
    from bench.comparison.stats import memory_verdict

    old = memory_verdict(int(np.max(base)), int(np.max(cand)), "host RSS", FACTOR, FLOOR)
    assert old.verdict == BIGGER


@pytest.mark.parametrize("name", sorted(DEFAULT_BANDS))
def test_growth_of_1_2_is_caught_on_every_counter(name: str) -> None:
    rng = np.random.default_rng(1)
    base = jitter(rng, 2 * GIB, 8, 0.02)
    cand = [int(v * 1.2) for v in jitter(rng, 2 * GIB, 8, 0.02)]
    assert verdict(base, cand, name) == BIGGER
    assert verdict(cand, base, name) == SMALLER


def test_a_wide_spread_inside_a_run_raises_the_band_up_to_its_cap() -> None:
    """Peaks that vary by 30% inside one run: changes up to the cap are not called, ×1.2
    still is (the rank test guards against the spread)."""
    base = [int(GIB * f) for f in (1.0, 1.3, 1.0, 1.3, 1.0, 1.3, 1.0, 1.3)]
    small = [int(v * 1.10) for v in base]
    big = [int(v * 1.2) for v in base]
    v = image_peaks_verdict(base, small, PROFILE["torch_reserved"], FACTOR, FLOOR)
    assert v.noise_band == pytest.approx(1.3, abs=1e-6)
    assert v.verdict == TOO_NOISY and "spread inside a run" in (v.note or "")
    assert MAX_BAND < 1.2
    shifted = [2 * GIB] * 8
    assert verdict([GIB] * 4 + [int(1.05 * GIB)] * 4, shifted, "torch_reserved") == BIGGER
    assert image_peaks_verdict(base, big, PROFILE["torch_reserved"], FACTOR, FLOOR).verdict in (
        BIGGER,
        TOO_NOISY,  # interleaved samples: the rank test may not separate 8 + 8 of them
    )


def test_small_n_decides_on_the_band_alone() -> None:
    """3 images per run: no rank test can be significant; the change must clear the whole
    band, and says so."""
    base = [600 * MIB] * 3
    noisy = image_peaks_verdict(base, [640 * MIB] * 3, PROFILE["host_rss"], FACTOR, FLOOR)
    assert noisy.verdict == TOO_NOISY and noisy.p_value is None
    grown = image_peaks_verdict(base, [720 * MIB] * 3, PROFILE["host_rss"], FACTOR, FLOOR)
    assert grown.verdict == BIGGER and "too few images" in (grown.note or "")
    exact = image_peaks_verdict(
        [40 * MIB] * 2, [43 * MIB] * 2, PROFILE["torch_allocated"], FACTOR, FLOOR
    )
    assert exact.verdict == BIGGER


def test_a_small_cell_is_protected_by_the_floor_not_called_noisy() -> None:
    """Host RSS noise of 15% on a 200 MiB process is 30 MiB: inside the 32 MiB floor, so the
    counter is judged at the threshold, not declared too noisy."""
    rng = np.random.default_rng(2)
    base = jitter(rng, 200 * MIB, 8, 0.01)
    cand = jitter(rng, 210 * MIB, 8, 0.01)
    assert verdict(base, cand, "host_rss") == NO_CHANGE


def test_cell_level_peaks_are_judged_only_for_deterministic_counters() -> None:
    allocated = cell_peak_verdict(
        40 * MIB, 44 * MIB, PROFILE["torch_allocated"], "load", FACTOR, FLOOR
    )
    assert allocated.verdict == BIGGER and allocated.phase == "load"
    rss = cell_peak_verdict(500 * MIB, 900 * MIB, PROFILE["host_rss"], "warmup", FACTOR, FLOOR)
    assert rss.verdict == NOT_JUDGED and rss.ratio == pytest.approx(1.8)
    assert "not deterministic" in (rss.note or "")


def test_combined_verdict_any_growth_wins_then_the_headline_counter() -> None:
    images = {
        "torch_max_allocated_bytes": [GIB] * 6,
        "host_rss_peak_bytes": [3 * GIB] * 6,
    }
    grown = {**images, "host_rss_peak_bytes": [int(3.9 * GIB)] * 6}
    cell = {"load": {"host_rss_peak_bytes": 2 * GIB}}
    same = counter_verdicts(images, images, cell, cell, FACTOR, FLOOR)
    assert [(v.key, v.phase, v.verdict) for v in same] == [
        ("torch_max_allocated_bytes", "images", NO_CHANGE),
        # identical peaks, but host RSS is noisier (×1.15) than the ×1.05 threshold
        ("host_rss_peak_bytes", "images", TOO_NOISY),
        ("host_rss_peak_bytes", "load", NOT_JUDGED),
    ]
    assert combined_verdict(same).key == "torch_max_allocated_bytes"
    assert combined_verdict(same).verdict == NO_CHANGE
    worse = counter_verdicts(images, grown, cell, cell, FACTOR, FLOOR)
    assert combined_verdict(worse).verdict == BIGGER
    assert combined_verdict(worse).key == "host_rss_peak_bytes"
    assert combined_verdict([]).verdict == "not measured"


def test_bands_can_be_overridden() -> None:
    """A quieter host (measured with compare_aa.py) narrows host RSS's band."""
    quiet = {p.name: p for p in profiles({"host_rss": 1.02})}
    rng = np.random.default_rng(3)
    base = jitter(rng, 640 * MIB, 8, 0.005)
    cand = jitter(rng, 640 * MIB * 1.06, 8, 0.005)
    assert image_peaks_verdict(base, cand, quiet["host_rss"], FACTOR, FLOOR).verdict == BIGGER
    assert verdict(base, cand, "host_rss") == TOO_NOISY
