"""The planted copies of benchmarks/compare_aa.py: exactly the change they claim, nothing else."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from bench.comparison.load import load_run
from bench.comparison.verdicts import compare_runs
from tests.compare.rundir import GIB, CellPlan, lognormal_times, write_run

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def aa() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compare_aa", ROOT / "benchmarks/compare_aa.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["compare_aa"] = module
    spec.loader.exec_module(module)
    return module


def test_time_plant_scales_times_and_sampler_readings(aa: ModuleType, tmp_path: Path) -> None:
    source = FIXTURES / "quiet-128"
    planted = aa.plant(source, tmp_path / "slow", aa.slower(1.3))
    before, after = load_run(source).cells, load_run(planted).cells
    for cell_id, cell in before.items():
        slow = after[cell_id]
        assert np.allclose(slow.wall_s, np.array(cell.wall_s) * 1.3)
        assert np.allclose(np.concatenate(slow.step_s), np.concatenate(cell.step_s) * 1.3)
        # an equally loaded machine: the sampler's rate is unchanged (to rounding)
        assert np.allclose(slow.sampler_hz, cell.sampler_hz, rtol=0.02)
        assert slow.image_memory == cell.image_memory
    comparison = compare_runs(source, planted)
    q4 = next(c for c in comparison.cells if c.cell_id.startswith("Q4_K"))
    assert q4.time is not None and q4.time.verdict == "slower"


def test_memory_plant_scales_one_counter_nvml_net_of_its_baseline(
    aa: ModuleType, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    cell = CellPlan("full", wall_s=lognormal_times(rng, 8), nvml_peak=9 * GIB, nvml_baseline=GIB)
    source = write_run(tmp_path, "base", [cell])
    key = "nvml_used_peak_bytes"
    planted = aa.plant(source, tmp_path / "big", aa.with_baselines(aa.bigger(key, 1.2), source))
    before = next(iter(load_run(source).cells.values()))
    after = next(iter(load_run(planted).cells.values()))
    assert after.image_memory[key] == [round(v * 1.2) for v in before.image_memory[key]]
    assert after.image_memory[key][0] == round(8 * GIB * 1.2)  # net 8 GiB, not gross 9 GiB
    rss = "host_rss_peak_bytes"
    assert after.image_memory[rss] == before.image_memory[rss]
    assert after.wall_s == before.wall_s
    assert aa.measured_counters(source) == [key, rss]
