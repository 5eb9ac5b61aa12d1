"""The verdict rules on peaks and times recorded by real runs (tests/compare/fixtures/).

Each fixture is the manifest and records of one real `bench run configs/calibration.yaml
--no-score` on the project's shared 2-core CPU machine (images left out; fixtures/README.md
says which run is which). Nothing here is synthetic except the planted copies, which scale
recorded values exactly as benchmarks/compare_aa.py does.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench.comparison.load import CellData, load_run
from bench.comparison.memory import image_peaks_verdict, profiles
from bench.comparison.stability import MAX_OTHERS_SHARE, time_noise
from bench.comparison.stats import (
    BIGGER,
    NO_CHANGE,
    SLOWER,
    SMALLER,
    TOO_NOISY,
    memory_verdict,
    sample_verdict,
)
from bench.comparison.verdicts import Thresholds, compare_cells, compare_runs

FIXTURES = Path(__file__).parent / "fixtures"
RSS = "host_rss_peak_bytes"
HOST_RSS = {p.key: p for p in profiles()}[RSS]
MIB = 1 << 20
# Runs of one config (same hash), so every two of them are an A/A pair.
SMALL = ("quiet-128", "busy-128", "mixed-128")
AA_256 = ("aa-256-a", "aa-256-b")


def cells(name: str) -> dict[str, CellData]:
    return load_run(FIXTURES / name).cells


def pairs(names: tuple[str, ...]) -> list[tuple[str, str]]:
    return list(itertools.permutations(names, 2))


def test_fixtures_are_real_identical_runs() -> None:
    """Every fixture pair that the tests treat as A/A has the same config hash and seeds."""
    for group in (SMALL, AA_256):
        for a, b in pairs(group):
            assert compare_runs(FIXTURES / a, FIXTURES / b).comparable
    for name in SMALL + AA_256:
        for cell in cells(name).values():
            assert cell.status == "ok" and len(cell.wall_s) >= 6
            assert len(cell.image_memory[RSS]) == len(cell.wall_s)


@pytest.mark.parametrize(("base", "cand"), pairs(SMALL) + pairs(AA_256))
def test_recorded_aa_pairs_never_call_a_memory_change(base: str, cand: str) -> None:
    comparison = compare_runs(FIXTURES / base, FIXTURES / cand)
    for cell in comparison.cells:
        assert cell.memory is not None
        assert cell.memory.verdict not in (BIGGER, SMALLER), cell.cell_id
        rss = next(v for v in cell.memory_counters if v.key == RSS and v.phase == "images")
        assert rss.verdict == TOO_NOISY  # host RSS is noisier than the ×1.05 default
    wide = compare_runs(FIXTURES / base, FIXTURES / cand, Thresholds(memory_factor=1.15))
    for cell in wide.cells:
        assert cell.memory is not None and cell.memory.verdict == NO_CHANGE, cell.cell_id


def test_the_old_threshold_rule_cried_wolf_on_a_recorded_aa_pair() -> None:
    """Why the rule changed: the peak-only threshold (×1.05 and 32 MiB) on the recorded
    pair at 256² calls one direction a growth; the per-counter rule calls it too noisy."""
    a, b = cells(AA_256[0]), cells(AA_256[1])
    old = [
        memory_verdict(max(x.image_memory[RSS]), max(y.image_memory[RSS]), "rss", 1.05, 32 * MIB)
        for cell_id in a
        for x, y in ((a[cell_id], b[cell_id]), (b[cell_id], a[cell_id]))
    ]
    assert BIGGER in {v.verdict for v in old}
    for cell_id in a:
        for x, y in ((a[cell_id], b[cell_id]), (b[cell_id], a[cell_id])):
            new = image_peaks_verdict(
                x.image_memory[RSS], y.image_memory[RSS], HOST_RSS, 1.05, 32 * MIB
            )
            assert new.verdict == TOO_NOISY


@pytest.mark.parametrize(("base", "cand"), pairs(SMALL) + pairs(AA_256))
def test_planted_growth_of_1_2_on_recorded_peaks_is_never_passed(base: str, cand: str) -> None:
    """The candidate's recorded host RSS peaks x1.2. Against their own source the growth is
    always called. Against the other run of the pair it carries that pair's real A/A noise
    too: called wherever it clears the band, and otherwise said to be too noisy, never
    "no change"."""
    a, b = cells(base), cells(cand)
    for cell_id, cell in a.items():
        source = b[cell_id].image_memory[RSS]
        grown = [int(v * 1.2) for v in source]
        alone = image_peaks_verdict(source, grown, HOST_RSS, 1.05, 32 * MIB)
        assert alone.verdict == BIGGER, (cell_id, alone)
        v = image_peaks_verdict(cell.image_memory[RSS], grown, HOST_RSS, 1.05, 32 * MIB)
        assert v.ratio is not None
        assert v.verdict == (BIGGER if v.ratio > HOST_RSS.band else TOO_NOISY), (cell_id, v)


def test_recorded_real_growth_is_caught() -> None:
    """A real growth: the same cell at 384² (VAE activations) against 256² at the same
    settings otherwise, each run once."""
    small = cells(AA_256[0])["full-fp32__none__256x256"].image_memory[RSS]
    large = cells("grown-384")["full-fp32__none__384x384"].image_memory[RSS]
    assert np.median(large) / np.median(small) >= 1.15  # what the two recorded runs measured
    assert image_peaks_verdict(small, large, HOST_RSS, 1.05, 32 * MIB).verdict == BIGGER
    assert image_peaks_verdict(small, large, HOST_RSS, 1.10, 32 * MIB).verdict == BIGGER
    assert image_peaks_verdict(large, small, HOST_RSS, 1.05, 32 * MIB).verdict == SMALLER


def test_recorded_busy_run_is_too_noisy_not_slower() -> None:
    """The A/A failure of time on a shared machine, as recorded: the same config once on a
    quiet moment and once while other jobs ran. The rank test and the ratio both fire; the
    busy run's own spread is what says the machine changed."""
    quiet, busy = cells("quiet-128"), cells("busy-128")
    for cell_id, q in quiet.items():
        b = busy[cell_id]
        assert sample_verdict(q.wall_s, b.wall_s, 1.10).verdict == SLOWER  # the old rule
        noise = max(time_noise(q.wall_s, q.step_s).band, time_noise(b.wall_s, b.step_s).band)
        assert noise > 1.10
    comparison = compare_runs(FIXTURES / "quiet-128", FIXTURES / "busy-128")
    assert comparison.exit_code == 0
    assert {aspect for _cell, aspect in comparison.too_noisy} >= {"time"}
    assert all(c.time is not None and c.time.verdict == TOO_NOISY for c in comparison.cells)


def test_recorded_steadily_loaded_run_is_told_by_the_memory_sampler() -> None:
    """Recorded: the Q4_K cell ran 1.5x slower while a competing job took part of the CPU,
    without the spread that gives a busy run away; the sampler's rate did."""
    quiet = cells("quiet-128")["Q4_K__none__128x128"]
    loaded = cells("mixed-128")["Q4_K__none__128x128"]
    band = max(
        time_noise(quiet.wall_s, quiet.step_s).band, time_noise(loaded.wall_s, loaded.step_s).band
    )
    assert band <= 1.10
    comparison = compare_runs(FIXTURES / "quiet-128", FIXTURES / "mixed-128")
    q4 = next(c for c in comparison.cells if c.cell_id == "Q4_K__none__128x128")
    assert q4.time is not None and q4.time.ratio is not None and q4.time.ratio > 1.3
    assert q4.time.verdict == TOO_NOISY and "memory sampler" in (q4.time.note or "")


def test_recorded_quiet_cell_still_catches_a_planted_slowdown() -> None:
    """Where a recorded run was quiet enough for the factor, a x1.3 copy of it is slower."""
    judged = 0
    for name in SMALL + AA_256:
        for cell in cells(name).values():
            noise = time_noise(cell.wall_s, cell.step_s).band
            if noise is None or noise > 1.10:
                continue
            judged += 1
            slow = [t * 1.3 for t in cell.wall_s]
            steps = [[s * 1.3 for s in image] for image in cell.step_s]
            band = max(noise, time_noise(slow, steps).band)
            assert sample_verdict(cell.wall_s, slow, 1.10, noise_band=band).verdict == SLOWER
    assert judged >= 2


def test_recorded_shared_machine_pair_is_too_noisy_not_slower() -> None:
    """Recorded: an A/A pair on the shared machine where one cell really ran x1.33 slower in one
    run, with the same share of the processors taken by other work in both runs. The old rules
    call it slower; the runs' own records say the machine was not idle, so time is not judged."""
    base, cand = cells("shared-256-a"), cells("shared-256-b")
    q4b, q4c = base["Q4_K__none__256x256"], cand["Q4_K__none__256x256"]
    band = max(time_noise(q4b.wall_s, q4b.step_s).band, time_noise(q4c.wall_s, q4c.step_s).band)
    assert sample_verdict(q4b.wall_s, q4c.wall_s, 1.10, noise_band=band).verdict == SLOWER
    assert min(np.median(q4b.others_share), np.median(q4c.others_share)) > MAX_OTHERS_SHARE
    comparison = compare_runs(FIXTURES / "shared-256-a", FIXTURES / "shared-256-b")
    assert comparison.exit_code == 0
    q4 = next(c for c in comparison.cells if c.cell_id == "Q4_K__none__256x256")
    assert q4.time is not None and q4.time.verdict == TOO_NOISY
    assert "other processes" in (q4.time.note or "")


def test_a_quiet_share_leaves_time_judged() -> None:
    """The same recorded pair with the other processes' share below the limit (as on an idle
    machine) is judged on its times again: the rule only withholds verdicts, it never hides a
    difference the times show when the machine was idle."""
    comparison_cells = {}
    for name in ("shared-256-a", "shared-256-b"):
        run = load_run(FIXTURES / name)
        for cell in run.cells.values():
            cell.others_share = [MAX_OTHERS_SHARE / 5] * len(cell.wall_s)
        comparison_cells[name] = run
    q4 = compare_cells(
        comparison_cells["shared-256-a"].cells["Q4_K__none__256x256"],
        comparison_cells["shared-256-b"].cells["Q4_K__none__256x256"],
        Thresholds(time_bands={}),  # the share rule alone (the CPU band has its own tests)
    )
    assert q4.time is not None and q4.time.verdict == SLOWER


def test_recorded_idle_pair_differs_by_less_than_the_cpu_band_and_is_not_called() -> None:
    """Recorded on an idle machine: identical processes ran the Q4_K cell x1.26 apart. With
    the CPU time band measured from such pairs, that is too noisy to judge, not slower."""
    base, cand = cells("idle-256-a"), cells("idle-256-b")
    q4b, q4c = base["Q4_K__none__256x256"], cand["Q4_K__none__256x256"]
    assert max(np.median(q4b.others_share), np.median(q4c.others_share)) <= MAX_OTHERS_SHARE
    band = max(time_noise(q4b.wall_s, q4b.step_s).band, time_noise(q4c.wall_s, q4c.step_s).band)
    assert sample_verdict(q4b.wall_s, q4c.wall_s, 1.10, noise_band=band).verdict == SLOWER
    comparison = compare_runs(FIXTURES / "idle-256-a", FIXTURES / "idle-256-b")
    assert comparison.exit_code == 0
    q4 = next(c for c in comparison.cells if c.cell_id == "Q4_K__none__256x256")
    assert q4.time is not None and q4.time.verdict == TOO_NOISY
    assert "identical runs" in (q4.time.note or "")


def test_a_change_beyond_the_cpu_band_on_an_idle_machine_is_called() -> None:
    """A x1.4 copy of an idle run's cell clears the band and is slower; x1.2 is not called."""
    cell = cells("idle-256-a")["Q8_0__none__256x256"]
    for factor, expected in ((1.4, SLOWER), (1.2, TOO_NOISY)):
        slow = replace(
            cell,
            wall_s=[t * factor for t in cell.wall_s],
            step_s=[[s * factor for s in image] for image in cell.step_s],
        )
        verdict = compare_cells(cell, slow, Thresholds()).time
        assert verdict is not None and verdict.verdict == expected, factor
