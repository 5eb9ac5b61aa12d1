"""The report of a run with speed-ups: each speed-up beside its twin (ratio over paired images,
memory delta per counter, PSNR against the twin and full precision, failures with their
message), its plot, and the published speed-up figures beside a run with their settings.

One real run on the tiny synthetic pipeline, recorded (tests/fixtures/runs/speedups/, made by
tests/fixtures/make_runs.py): full precision and Q8_0, each with a First Block Cache; full
precision also with flash attention (failed on the recording CPU: a real library message) and
the GGUF kernels (refused before loading: not a GGUF variant).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bench.reporting.build import build_report
from bench.reporting.data import load_run
from bench.reporting.overview import published_sections
from bench.reporting.published import (
    FIRST_BLOCK_CACHE_PR,
    HF_BACKENDS_BLOG,
    SPEEDUP_TABLES,
    TABLES,
)
from bench.reporting.speedup_table import speedup_cells
from bench.reporting.tables import memory_columns, peak_bytes, score_text
from bench.runner.plan import plan_run
from bench.speedups import parse_speedup
from tests.fixtures.make_runs import FBC
from tests.fixtures.recorded import copy_recorded_run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def speedup_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_recorded_run("speedups", tmp_path_factory.mktemp("speedup-run"))


@pytest.fixture
def copy_speedup_run(speedup_run: Path, copy_edited: Callable[..., Path]) -> Callable[..., Path]:
    return functools.partial(copy_edited, speedup_run)


def _records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]


def _walls(run_dir: Path, cell_id: str) -> dict[tuple[str, int], float]:
    return {
        (r["prompt_id"], r["repeat"]): r["wall_s"]
        for r in _records(run_dir)
        if r["kind"] == "image" and r["cell_id"] == cell_id and r["status"] == "ok"
    }


def test_each_speedup_is_paired_with_its_twin(speedup_run: Path) -> None:
    run = load_run(speedup_run)
    cells = {c.cell_id: c for c in speedup_cells(run)}
    assert set(cells) == {
        "full__none__64x64__fbc",
        "full__none__64x64__attn-flash",
        "full__none__64x64__gguf-kernels",
        "Q8_0__none__64x64__fbc",
    }
    for cell_id, cell in cells.items():
        assert cell.twin_id == cell_id.rsplit("__", 1)[0]
    for cell_id in ("full__none__64x64__fbc", "Q8_0__none__64x64__fbc"):
        cell = cells[cell_id]
        mine, twin = _walls(speedup_run, cell_id), _walls(speedup_run, str(cell.twin_id))
        assert cell.status == "ok" and cell.message == ""
        assert len(cell.ratios) == len(mine) == len(twin) == 2
        expected = np.median([mine[key] / twin[key] for key in mine])
        assert cell.ratio == pytest.approx(expected)
        assert cell.label == "cache(first_block, threshold=0.2)"
        assert "denoiser_calls" in cell.recorded and "skipped_calls" in cell.recorded


def test_failed_speedups_are_rows_with_their_message(speedup_run: Path) -> None:
    cells = {c.speedup: c for c in speedup_cells(load_run(speedup_run)) if c.variant == "full"}
    flash, kernels = cells["attn-flash"], cells["gguf-kernels"]
    assert flash.status == "failed: RuntimeError" and "flash" in flash.message.lower()
    assert kernels.status == "failed: SpeedupIncompatible"
    assert "GGUF variants only" in kernels.message
    assert flash.ratio is None and not flash.ratios


def test_memory_delta_on_every_counter_of_the_main_table(speedup_run: Path) -> None:
    run = load_run(speedup_run)
    columns = memory_columns(run)
    assert columns  # a CPU run: host RSS
    for cell in speedup_cells(run):
        assert [header for header, _, _ in cell.memory] == [h for _, h in columns]
        rows = {r["cell_id"]: r for _, r in run.summary.iterrows()}
        for (counter, _), (_, twin, mine) in zip(columns, cell.memory, strict=True):
            assert twin == peak_bytes(rows[str(cell.twin_id)], counter)
            assert mine == peak_bytes(rows[cell.cell_id], counter)


@pytest.mark.parametrize("labelled", [True, False], ids=["labelled", "by-reference-cell"])
def test_psnr_against_full_precision_and_against_the_twin(
    copy_speedup_run: Callable[..., Path], labelled: bool
) -> None:
    cell_id, twin_id = "Q8_0__none__64x64__fbc", "Q8_0__none__64x64"

    def add_twin_row(summary: dict[str, Any]) -> None:
        """A PSNR row whose reference is the twin, as `bench score` writes it (`reference:
        twin`), or as a summary without that label names it (its reference cell only)."""
        summary["cells"] = [
            r
            for r in summary["cells"]
            if not (r["cell_id"] == cell_id and r.get("reference_cell_id") == twin_id)
        ]
        summary["cells"].insert(
            0,
            {
                "kind": "cell_score",
                "cell_id": cell_id,
                "metric": "psnr",
                **({"reference": "twin"} if labelled else {}),
                "reference_cell_id": twin_id,
                "mean": 41.25,
                "ci_low": None,
                "ci_high": None,
                "n": 2,
                "status": "too_few_samples",
                "method": "none",
            },
        )

    run = load_run(copy_speedup_run(summary_edit=add_twin_row))
    cell = next(c for c in speedup_cells(run) if c.cell_id == cell_id)
    assert cell.psnr_twin.startswith("41.2")
    full_row = next(
        r
        for r in run.scores["cells"]  # type: ignore[index]
        if r["cell_id"] == cell_id
        and r["metric"] == "psnr"
        and r.get("reference_cell_id") == "full__none__64x64"
    )
    assert cell.psnr_full == score_text(full_row, "psnr")
    assert cell.psnr_full != cell.psnr_twin


def test_whole_report_has_the_speedup_section_and_plot(speedup_run: Path, tmp_path: Path) -> None:
    out = build_report(speedup_run, tmp_path / "report")
    markdown = (out / "report.md").read_text()
    assert "- **speed-ups**: fbc (2 cells), attn-flash (1 cell), gguf-kernels (1 cell);" in markdown
    section = markdown.split("## Speed-ups\n", 1)[1].split("\n## Plots\n", 1)[0]
    assert "### full\n" in section and "### Q8_0\n" in section
    assert "| fbc | cache(first_block, threshold=0.2) | ok | ×" in section
    assert "GGUF variants only" in section and "PSNR vs twin (dB)" in section
    assert (out / "speedups.png").stat().st_size > 0
    html = (out / "report.html").read_text()
    assert "<h2 id='speedups'>Speed-ups</h2>" in html and "href='#speedups'" in html
    table = pd.read_csv(out / "table.csv")
    assert table.set_index("cell_id").loc["Q8_0__none__64x64__fbc", "speedup"] == "fbc"
    assert pd.isna(table.set_index("cell_id").loc["Q8_0__none__64x64", "speedup"])


def test_a_run_without_speedups_reports_as_before(scored_run: Path, tmp_path: Path) -> None:
    out = build_report(scored_run, tmp_path / "report")
    assert "Speed-ups" not in (out / "report.md").read_text()
    assert "speed-ups" not in (out / "report.md").read_text()
    assert "speedup" not in pd.read_csv(out / "table.csv").columns
    assert len(published_sections(load_run(scored_run))) == len(TABLES)


def _planned_cells() -> list[dict[str, Any]]:
    return plan_run(ROOT / "configs" / "speedups-flux-dev.yaml").cells


def _nested(dotted: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "x"}
    for key, value in dotted:
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def test_flux_dev_speedup_config_runs_every_published_row() -> None:
    cells = _planned_cells()
    for table in SPEEDUP_TABLES:
        for row in table.rows:
            if row.speedup is not None:  # the row names a real speed-up's real settings
                parse_speedup(_nested(row.speedup))
            hits = [
                c
                for c in cells
                if row.describes(c) and (c["height"], c["width"]) == (table.height, table.width)
            ]
            assert len(hits) == 1, (table.key, row.variant, row.offload)
            assert bool(hits[0].get("speedup")) == (row.speedup is not None)


def test_published_speedup_rows_sit_beside_matching_cells(
    copy_speedup_run: Callable[..., Path],
) -> None:
    """The tiny run dressed as FLUX.1-dev bf16 at 1024x1024 and 28 steps: the First Block
    Cache PR's rows pair with the twin and the 0.2 cache cell, never the other way round."""

    def as_flux_dev(manifest: dict[str, Any]) -> None:
        manifest["base_model"] = {"source": "pretrained", "path": "black-forest-labs/FLUX.1-dev"}
        manifest["config"]["steps"] = 28
        for cell in manifest["cells"]:
            cell.update(height=1024, width=1024)
            if cell["variant"] == "full":
                cell["variant_spec"]["dtype"] = "bfloat16"

    sections = published_sections(load_run(copy_speedup_run(manifest_edit=as_flux_dev)))
    assert len(sections) == len(TABLES) + len(SPEEDUP_TABLES)
    fbc = next(s for s in sections if s.title.startswith("diffusers pull request #11180"))
    assert fbc.header[:4] == ["variant", "offload", "speed-up", "*published* as"]
    published = fbc.header.index("*published* s/image")
    assert [(r[2], r[3], r[published]) for r in fbc.rows] == [
        ("–", "bf16", "16.47 s"),
        ("fbc", "bf16, First Block Cache 0.2", "5.91 s"),
    ]


def test_a_row_measured_without_a_speedup_never_describes_a_speedup_cell() -> None:
    bf16 = next(r for r in HF_BACKENDS_BLOG.rows if r.variant == "full" and r.offload == "none")
    plain = {"offload": "none", "variant_spec": {"kind": "full", "dtype": "bfloat16"}}
    assert bf16.describes(plain)
    assert not bf16.describes({**plain, "speedup": "fbc", "speedup_spec": FBC})
    cached = next(r for r in FIRST_BLOCK_CACHE_PR.rows if r.speedup is not None)
    assert not cached.describes(plain)
    assert cached.speedup is not None and ("cache.threshold", 0.05) in cached.speedup
    same = {**FBC, "cache": {"method": "first_block", "threshold": 0.05}}
    assert cached.describes({**plain, "speedup": "fbc", "speedup_spec": same})
    other = {**FBC, "cache": {"method": "first_block", "threshold": 0.3}}
    assert not cached.describes({**plain, "speedup": "fbc", "speedup_spec": other})


def test_the_tables_show_full_precision_whatever_order_the_rows_are_in(
    copy_speedup_run: Callable[..., Path],
) -> None:
    cell_id = "Q8_0__none__64x64__fbc"

    def twin_rows_last(summary: dict[str, Any]) -> None:
        twin = [r for r in summary["cells"] if r.get("reference") == "twin"]
        assert any(r["cell_id"] == cell_id for r in twin)
        summary["cells"] = [r for r in summary["cells"] if r not in twin] + twin

    run = load_run(copy_speedup_run(summary_edit=twin_rows_last))
    assert run.quality[(cell_id, "psnr")]["reference_cell_id"] == "full__none__64x64"
