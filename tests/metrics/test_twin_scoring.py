"""`bench score` on a speed-up cell: its paired metrics against full precision and against its
un-sped twin (the same variant, offload mode and resolution without the speed-up), on run
folders built by hand (tests/metrics/conftest.py) with speed-up cells added beside their twins.

A speed-up cell's image is its twin's image plus noise of a known size, so its PSNR against the
twin is known by construction, and differs from its PSNR against full precision whenever the
twin is not full precision itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.results import iter_jsonl
from bench.scoring import SCORES_SUMMARY, score_run
from tests.metrics.conftest import noisy

TWIN_SIGMA = 1.0  # the speed-up's change, in 8-bit levels: less than any variant's (conftest)


def add_speedup_cell(run_dir: Path, twin_id: str, name: str, sigma: float, ok: bool = True) -> str:
    """A speed-up cell beside `twin_id`, as the runner records one (docs/run-folder.md): its
    manifest cell names the speed-up; its images are the twin's plus noise of `sigma`."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    twin = next(c for c in manifest["cells"] if c["cell_id"] == twin_id)
    cell_id = f"{twin_id}__{name}"
    spec = {"name": name, "kind": "cache", "cache": {"method": "first_block"}}
    manifest["cells"].append({**twin, "cell_id": cell_id, "speedup": name, "speedup_spec": spec})
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    records = list(iter_jsonl(run_dir / "records.jsonl"))
    added = []
    for record in records:
        if record["cell_id"] != twin_id:
            continue
        if record["kind"] == "cell":
            error = None if ok else {"type": "X", "message": "y", "phase": "speedup"}
            added.append({**record, "cell_id": cell_id, "status": "ok" if ok else "failed"})
            added[-1]["error"] = error
        elif ok:
            rel = record["image"].replace(f"images/{twin_id}/", f"images/{cell_id}/")
            array = np.asarray(Image.open(run_dir / record["image"]))
            (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(noisy(array, sigma, seed=record["seed"] + 7)).save(run_dir / rel)
            added.append({**record, "cell_id": cell_id, "image": rel})
    with (run_dir / "records.jsonl").open("a") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in added)
    return cell_id


def summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / SCORES_SUMMARY).read_text())


def summary_rows(run_dir: Path, cell_id: str, metric: str) -> list[dict[str, Any]]:
    """The cell's summary rows of `metric`; a speed-up cell's sorted full, then twin."""
    rows = [
        r for r in summary(run_dir)["cells"] if (r["cell_id"], r["metric"]) == (cell_id, metric)
    ]
    return sorted(rows, key=lambda r: r.get("reference") == "twin")


def rows_by_cell(run_dir: Path, cell_id: str) -> list[dict[str, Any]]:
    return [r for r in iter_jsonl(run_dir / "scores.jsonl") if r["cell_id"] == cell_id]


def test_a_speedup_cell_is_scored_against_full_precision_and_its_twin(
    make_run: Callable[..., Path],
) -> None:
    run = make_run()
    cached = add_speedup_cell(run, "Q8_0__none__32x32", "fbc", TWIN_SIGMA)
    score_run(run, ["psnr", "ssim"], progress=False)
    rows = rows_by_cell(run, cached)
    assert {(r["reference"], r["reference_cell_id"]) for r in rows} == {
        ("full", "full__none__32x32"),
        ("twin", "Q8_0__none__32x32"),
    }
    full, twin = summary_rows(run, cached, "psnr")
    assert (full["reference"], full["reference_cell_id"]) == ("full", "full__none__32x32")
    assert (twin["reference"], twin["reference_cell_id"]) == ("twin", "Q8_0__none__32x32")
    assert twin["status"] == "ok" and twin["n_images"] == 4
    # Against full precision the cell carries Q8_0's noise and its own; against the twin only
    # its own, which is smaller: the twin isolates what the speed-up changed.
    assert twin["mean"] > full["mean"]
    (q8,) = summary_rows(run, "Q8_0__none__32x32", "psnr")
    assert full["mean"] < q8["mean"]
    expected = 20 * np.log10(255 / TWIN_SIGMA)  # noise of sigma levels, before rounding
    assert abs(twin["mean"] - expected) < 1.5
    # A reader that keys summary rows by (cell, metric) keeps the last: full precision's.
    keyed = {(r["cell_id"], r["metric"]): r for r in summary(run)["cells"]}
    assert keyed[(cached, "psnr")] == full
    references = summary(run)["references"]
    assert references[cached]["twin_cell_id"] == "Q8_0__none__32x32"
    assert "twin_cell_id" not in references["Q8_0__none__32x32"]


def test_cells_without_a_speedup_score_as_before(make_run: Callable[..., Path]) -> None:
    """Adding speed-up cells leaves every other cell's rows and summary rows as they were."""
    plain, sped = make_run(), make_run()
    add_speedup_cell(sped, "Q8_0__none__32x32", "fbc", TWIN_SIGMA)
    add_speedup_cell(sped, "full__none__32x32", "fbc", TWIN_SIGMA)
    for run in (plain, sped):
        score_run(run, ["psnr", "ssim"], progress=False)

    def drop_time(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k != "time"}

    def scored(run: Path) -> list[dict[str, Any]]:
        return [
            drop_time(r) for r in iter_jsonl(run / "scores.jsonl") if "__fbc" not in r["cell_id"]
        ]

    def summarized(run: Path) -> list[dict[str, Any]]:
        return [r for r in summary(run)["cells"] if "__fbc" not in r["cell_id"]]

    assert sorted(map(json.dumps, scored(sped))) == sorted(map(json.dumps, scored(plain)))
    assert summarized(sped) == summarized(plain)
    plain_refs = summary(plain)["references"]
    assert {k: v for k, v in summary(sped)["references"].items() if k in plain_refs} == plain_refs


def test_a_full_precision_speedup_cell_is_a_candidate_whose_twin_is_the_reference(
    make_run: Callable[..., Path],
) -> None:
    run = make_run()
    cached = add_speedup_cell(run, "full__none__32x32", "fbc", TWIN_SIGMA)
    score_run(run, ["psnr"], progress=False)
    # One set of rows: the twin and the full-precision reference are the same cell.
    assert {(r["reference"], r["reference_cell_id"]) for r in rows_by_cell(run, cached)} == {
        ("twin", "full__none__32x32")
    }
    full, twin = summary_rows(run, cached, "psnr")
    assert full["role"] == twin["role"] == "candidate"
    assert full["reference_cell_id"] == twin["reference_cell_id"] == "full__none__32x32"
    assert full["mean"] == twin["mean"] and full["status"] == "ok"
    # A speed-up cell is never the reference of the others, even of full precision.
    q8 = next(r for r in summary(run)["cells"] if r["cell_id"] == "Q8_0__none__32x32")
    assert q8["reference_cell_id"] == "full__none__32x32"


def test_a_failed_twin_is_named_and_full_precision_still_scored(
    make_run: Callable[..., Path],
) -> None:
    run = make_run(cell_status={"Q8_0__none__32x32": "failed"})
    cached = add_speedup_cell(run, "Q8_0__none__32x32", "fbc", TWIN_SIGMA)
    # The twin failed, so there are no twin images to copy: give the speed-up cell full's.
    records = list(iter_jsonl(run / "records.jsonl"))
    for record in records:
        if record["cell_id"] == "full__none__32x32" and record["kind"] == "image":
            rel = record["image"].replace("full__none__32x32", cached)
            (run / rel).parent.mkdir(parents=True, exist_ok=True)
            (run / rel).write_bytes((run / record["image"]).read_bytes())
            records.append({**record, "cell_id": cached, "variant": "Q8_0", "image": rel})
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    score_run(run, ["psnr"], progress=False)
    assert {r["reference"] for r in rows_by_cell(run, cached)} == {"full"}
    full, twin = summary_rows(run, cached, "psnr")
    assert twin["status"] == "no_twin" and twin["reference_cell_id"] is None
    assert "Q8_0__none__32x32" in twin["note"] and "failed" in twin["note"]
    assert full["status"] == "identical"  # full's own images: PSNR +inf against full
