"""The blog's claims and the published figures, checked against a real run and against copies of
it edited to stand for what this CPU-only machine cannot produce (a GPU run with NVML counters,
the GGUF + sequential offload KeyError, a real FLUX.1-dev run at the blog's settings).

The edits are labelled in each test; they exercise the report's logic, not the runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.reporting.claims import (
    CONTRADICTED,
    NOT_MEASURED,
    SUPPORTED,
    check_claims,
)
from bench.reporting.data import load_run
from bench.reporting.overview import published_sections

pytestmark = pytest.mark.slow
GIB = 1 << 30


def _claims(run_dir: Path) -> dict[str, Any]:
    return {c.key: c for c in check_claims(load_run(run_dir))}


def test_real_cpu_run(scored_run: Path) -> None:
    claims = _claims(scored_run)
    assert len(claims) == 6
    assert claims["vram"].verdict == NOT_MEASURED and "No GPU" in claims["vram"].measured
    assert claims["power"].verdict == NOT_MEASURED
    assert "NVML" in claims["power"].measured
    assert claims["quality"].verdict == SUPPORTED  # Q8_0 PSNR is far above 27 dB here
    assert "quantization error only" in claims["quality"].measured
    assert claims["sequential"].verdict == NOT_MEASURED  # no sequential cell in this run
    assert claims["speed"].verdict == NOT_MEASURED
    assert "full/sequential is not in this run" in claims["speed"].measured


def _as_sequential(cell_id: str) -> Callable[[dict[str, Any]], None]:
    """Edit: the cell `cell_id` ran with sequential offload instead of model offload."""

    def edit(manifest: dict[str, Any]) -> None:
        for cell in manifest["cells"]:
            if cell["cell_id"] == cell_id:
                cell["offload"] = "sequential"

    return edit


def test_gguf_sequential_key_error_supports_the_claim(copy_run: Callable[..., Path]) -> None:
    def edit(record: dict[str, Any]) -> None:
        if record["cell_id"] == "Q8_0__model__64x64":
            record.update(offload="sequential", status="failed")
            record["error"] = {"type": "KeyError", "message": "None", "phase": "offload"}

    run = copy_run(manifest_edit=_as_sequential("Q8_0__model__64x64"), edit_record=edit)
    claim = _claims(run)["sequential"]
    assert claim.verdict == SUPPORTED and "KeyError" in claim.measured


def test_sequential_without_accelerator_is_not_measured(copy_run: Callable[..., Path]) -> None:
    def edit(record: dict[str, Any]) -> None:
        if record["cell_id"] == "Q8_0__model__64x64":
            record.update(offload="sequential", status="failed")
            record["error"] = {
                "type": "RuntimeError",
                "message": "`enable_sequential_cpu_offload` requires accelerator, but not found",
                "phase": "offload",
            }

    run = copy_run(manifest_edit=_as_sequential("Q8_0__model__64x64"), edit_record=edit)
    claim = _claims(run)["sequential"]
    assert claim.verdict == NOT_MEASURED and "no accelerator" in claim.measured


def test_gguf_sequential_that_runs_contradicts_the_claim(copy_run: Callable[..., Path]) -> None:
    run = copy_run(manifest_edit=_as_sequential("Q8_0__none__64x64"))
    claim = _claims(run)["sequential"]
    assert claim.verdict == CONTRADICTED and "ran with sequential offload" in claim.measured


def _gpu_edit(record: dict[str, Any]) -> None:
    """Edit: NVML counters and energy as a GPU run records them (full 2 GiB, Q8_0 1 GiB)."""
    full = record["variant"] == "full"
    record["device"] = "cuda:0" if record.get("kind") == "cell" else record.get("device")
    if record.get("kind") == "cell":
        record["energy_supported"] = True
    if record.get("kind") == "image" and record["status"] == "ok":
        record["memory"] = {"nvml_used_peak_bytes": (2 if full else 1) * GIB}
        record["energy_j"] = (100.0 if full else 60.0) * record["wall_s"]


def test_gpu_counters_answer_vram_and_power(copy_run: Callable[..., Path]) -> None:
    run = copy_run(edit_record=_gpu_edit)
    claims = _claims(run)
    assert claims["vram"].verdict == SUPPORTED
    assert "×0.5" in claims["vram"].measured and "NVML device used" in claims["vram"].measured
    assert claims["power"].verdict == SUPPORTED
    assert "60.0 W" in claims["power"].measured and "100 W" in claims["power"].measured


def _gpu_edit_with_baselines(record: dict[str, Any]) -> None:
    """Edit: as `_gpu_edit`, with the cell baselines a GPU run records (3 GiB in use on the card
    before each cell: another process, say): gross full 5 GiB, Q8_0 4 GiB; net 2 and 1 GiB."""
    _gpu_edit(record)
    if record.get("kind") == "cell":
        record.setdefault("memory", {})["baseline"] = {"nvml_used_bytes": 3 * GIB}
    if record.get("kind") == "image" and record["status"] == "ok":
        record["memory"]["nvml_used_peak_bytes"] += 3 * GIB


def test_the_vram_headline_is_net_of_the_baseline_with_gross_beside(
    copy_run: Callable[..., Path],
) -> None:
    from bench.reporting.tables import display_table, raw_table

    run_dir = copy_run(edit_record=_gpu_edit_with_baselines)
    claim = _claims(run_dir)["vram"]
    # Net: Q8_0 1 GiB against 2 (×0.5, supported); gross 4 against 5 (×0.8) would contradict it.
    assert claim.verdict == SUPPORTED
    assert "NVML net of the pre-cell baseline peak" in claim.measured
    assert "1.00 GiB vs full 2.00 GiB (×0.50; gross 4.00 vs 5.00 GiB)" in claim.measured
    run = load_run(run_dir)
    raw = raw_table(run)
    ok = raw[raw["status"] == "ok"].set_index("variant")
    assert ok.loc["Q8_0", "peak_nvml_used_net_peak_bytes"] == 1 * GIB
    assert ok.loc["Q8_0", "peak_nvml_used_peak_bytes"] == 4 * GIB
    headers = list(display_table(run, raw).columns)
    net = headers.index("peak VRAM, NVML net of the pre-cell baseline (GiB)")
    assert headers[net + 1] == "peak VRAM, NVML device used, gross (GiB)"


def test_published_figures_only_beside_matching_settings(copy_run: Callable[..., Path]) -> None:
    def blog_settings(manifest: dict[str, Any]) -> None:
        """Edit: a real FLUX.1-dev run at the blog's 496×672 (it asked for 680), 60 steps."""
        manifest["base_model"] = {
            "source": "pretrained",
            "path": "black-forest-labs/FLUX.1-dev",
            "synthetic": False,
        }
        manifest["config"]["steps"] = 60
        for cell in manifest["cells"]:
            cell.update(height=496, width=672)

    sections = published_sections(load_run(copy_run(manifest_edit=blog_settings)))
    blog, hf = sections
    assert any("published" in h for h in blog.header)
    assert [row[:2] for row in blog.rows] == [["full", "none"], ["Q8_0", "model"]]
    assert blog.rows[1][3] == "~14-15 GB" and blog.rows[1][5] == "~98 s"
    assert not hf.rows and "1024×1024" in hf.note


def test_synthetic_run_gets_a_note_not_numbers(scored_run: Path) -> None:
    for section in published_sections(load_run(scored_run)):
        assert not section.rows
        assert "random weights" in section.note
