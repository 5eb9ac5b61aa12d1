"""A `cuda:N` cell selects its device before anything is loaded, and says why NVML gave no
counters; on this CPU machine both show in the failure the cell records."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.results import cell_records, read_records
from bench.runner.executor import run_config

pytestmark = pytest.mark.slow


def test_a_cuda_cell_selects_its_device_before_loading(
    write_config, tmp_path: Path, tiny_pipeline: Path
) -> None:
    config = write_config(
        variants=[{"name": "full", "kind": "full", "dtype": "float32"}],
        prompts=[{"id": "city", "text": "a city"}],
        device="cuda:1",
        warmup=0,
    )
    run_dir = run_config(config, tmp_path / "results")
    (cell,) = cell_records(read_records(run_dir)).values()
    assert cell["status"] == "failed" and cell["error"]["phase"] == "load"
    # torch.cuda.set_device(cuda:1) raised (this torch has no CUDA) before any weight was read;
    # without it, loading finished and `pipe.to("cuda:1")` failed in the offload phase.
    assert "torch.cuda.set_device(device)" in cell["traceback"]
    assert cell["load_s"] is None and cell["weights"] == {}
    # No NVML here: the record says so rather than leaving the counters silently out.
    assert cell["nvml"]["nvml_error"].startswith("NVML unreadable before the cell's CUDA")
    assert "nvml_used_bytes" not in cell["memory"]["baseline"]
