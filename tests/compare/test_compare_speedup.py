"""`bench compare` treats a speed-up as part of the cell: a speed-up cell (id `..__<name>`) is
paired with the same speed-up in the other run, never with its twin, and every output names it.

The recorded speed-up run (tests/fixtures/runs/speedups/: the tiny synthetic pipeline, full
precision and Q8_0, each with a First Block Cache, and two speed-ups that failed); the candidate
is a copy in which the full-precision cache cell failed, as a library change could make it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from bench.comparison.load import load_run
from bench.comparison.render import print_comparison, to_json, to_markdown
from bench.comparison.verdicts import NEWLY_FAILING, NO_CHANGE, STILL_FAILING, compare_runs
from bench.run_schema import TWIN_REFERENCE
from tests.fixtures.recorded import copy_recorded_run

TWIN = "full__none__64x64"
SPED = f"{TWIN}__fbc"
LABEL = "fbc: cache(first_block, threshold=0.2)"


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_recorded_run("speedups", tmp_path_factory.mktemp("compare-speedup"))


def _cell_ids(run_dir: Path) -> list[str]:
    return [c["cell_id"] for c in json.loads((run_dir / "manifest.json").read_text())["cells"]]


def _with_failed_speedup(base: Path, dest: Path) -> Path:
    """A copy of `base` whose speed-up cell failed in loading (its images never made)."""
    shutil.copytree(base, dest)
    records = [json.loads(line) for line in (dest / "records.jsonl").read_text().splitlines()]
    kept = []
    for record in records:
        if record["cell_id"] != SPED:
            kept.append(record)
        elif record["kind"] == "cell":
            error = {"type": "RuntimeError", "message": "cache refused", "phase": "speedup"}
            kept.append({**record, "status": "failed", "error": error})
    (dest / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    return dest


def test_speedup_cells_pair_by_their_own_id(base_run: Path, tmp_path: Path) -> None:
    cand = _with_failed_speedup(base_run, tmp_path / "cand")
    comparison = compare_runs(base_run, cand)
    cells = {c.cell_id: c for c in comparison.cells}
    assert list(cells) == _cell_ids(base_run) and SPED in cells and TWIN in cells
    assert not comparison.only_in_base and not comparison.only_in_cand
    assert cells[SPED].status_verdict == NEWLY_FAILING and cells[SPED].speedup == LABEL
    assert cells[TWIN].status_verdict == NO_CHANGE and cells[TWIN].speedup is None
    # the other variant's cache cell is its own, unchanged, and named as such
    other = cells["Q8_0__none__64x64__fbc"]
    assert other.status_verdict == NO_CHANGE and other.speedup == LABEL
    failed = [c for c in comparison.cells if c.status_verdict == STILL_FAILING]
    assert {c.cell_id for c in failed} == {f"{TWIN}__attn-flash", f"{TWIN}__gguf-kernels"}
    assert comparison.regressions == [(SPED, "status")]
    assert comparison.exit_code == 1


def test_every_output_names_the_speedup(base_run: Path, tmp_path: Path) -> None:
    comparison = compare_runs(base_run, _with_failed_speedup(base_run, tmp_path / "cand"))
    markdown = to_markdown(comparison)
    row = next(line for line in markdown.splitlines() if line.startswith(f"| ❌ {SPED}"))
    assert f"<br>speed-up {LABEL}" in row and "ok → failed (RuntimeError: cache refused)" in row
    twin_row = next(line for line in markdown.splitlines() if line.startswith(f"| {TWIN} |"))
    assert "speed-up" not in twin_row
    # the most important news first: the regression, before the counts of anything else
    bottom = markdown.strip().splitlines()[-1]
    assert bottom.startswith(f"**Result: exit 1**. 1 regression(s): {SPED} status. 0 improve")
    payload = json.loads(to_json(comparison))
    by_id = {c["cell_id"]: c for c in payload["cells"]}
    assert by_id[SPED]["speedup"] == LABEL and "speedup" not in by_id[TWIN]
    console = Console(record=True, width=200)
    print_comparison(comparison, console)
    text = console.export_text()
    assert f"speed-up {LABEL}" in text
    assert f"1 regression(s): {SPED} status." in text


def test_same_run_compares_both_cells_unchanged(base_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(base_run, copy)
    comparison = compare_runs(base_run, copy)
    assert [c.cell_id for c in comparison.cells] == _cell_ids(base_run)
    assert all(c.status_verdict in (NO_CHANGE, STILL_FAILING) for c in comparison.cells)
    assert comparison.regressions == [] and comparison.exit_code == 0
    # each cell's samples are its own images, the speed-up's not its twin's
    records = [json.loads(line) for line in (base_run / "records.jsonl").read_text().splitlines()]
    for cell_id in (TWIN, SPED):
        walls = [r["wall_s"] for r in records if r["kind"] == "image" and r["cell_id"] == cell_id]
        assert comparison.base.cells[cell_id].wall_s == walls and len(walls) == 2


def test_quality_is_judged_against_full_precision_whatever_the_row_order(
    base_run: Path, tmp_path: Path
) -> None:
    """A speed-up cell has rows against its twin and against full precision; the comparison
    reads the full-precision ones, as for every other cell, even when the twin's come last."""
    run = tmp_path / base_run.name
    shutil.copytree(base_run, run)
    rows = [json.loads(line) for line in (run / "scores.jsonl").read_text().splitlines()]
    twin_rows = [r for r in rows if r.get("reference") == TWIN_REFERENCE]
    other_rows = [r for r in rows if r.get("reference") != TWIN_REFERENCE]
    assert twin_rows, "the recorded run has no rows against a twin"
    lines = [json.dumps(r) + "\n" for r in other_rows + twin_rows]
    (run / "scores.jsonl").write_text("".join(lines))
    sped = "Q8_0__none__64x64__fbc"
    full = {
        r["prompt_id"]: r["value"]
        for r in other_rows
        if r["cell_id"] == sped and r["metric"] == "psnr" and r["status"] == "ok"
    }
    assert full and all(v is not None for v in full.values())
    scores = load_run(run).cells[sped].scores["psnr"]
    assert scores.values == pytest.approx(full)
    assert not scores.identical
