"""A real run of the tiny FLUX with caches, scored: each cache cell's fidelity against its
un-sped twin beside the noise floor (full precision again with attention through the math
kernel, `noise_floor: sdpa-math`), as docs/speedups.md reads them.

What holds, measured: a cache that skipped a computation changes the image, so its PSNR against
the twin is finite, and lower than the noise floor's (the floor's change is numerical only; on a
CPU it is often none at all, PSNR +inf); a cache that skipped nothing (First Block Cache below
its threshold) gives its twin's image exactly, PSNR +inf, which the summary reports as
`identical`, not as a number.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.api import run
from bench.results import iter_jsonl
from bench.scoring import SCORES_SUMMARY, score_run

ROOT = Path(__file__).resolve().parents[2]
TWIN = "full-fp32__none__64x64"
FLOOR = "full-fp32-noise__none__64x64"


def _skipped(image: dict[str, Any]) -> int:
    """Computations the image's cache hooks skipped (bench/speedups/cache.py)."""
    hooks = image["speedup"]["cache"]["hooks"]
    return sum(h["skipped"] for h in hooks.values())


@pytest.mark.slow
def test_cache_fidelity_against_the_twin_beside_the_noise_floor(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "configs" / "speedups-tiny.yaml").read_text())
    # One prompt, two steps, no warm-up: TaylorSeer still predicts a step, and nothing here
    # reads a time.
    data.update(prompts=[{"id": "city", "text": "a futuristic city at sunset"}], steps=2, warmup=0)
    data["variants"] = [
        {"name": "full-fp32", "kind": "full", "dtype": "float32"},
        {
            "name": "full-fp32-noise",
            "kind": "full",
            "dtype": "float32",
            "noise_floor": "sdpa-math",
        },
    ]
    only = {"variants": ["full-fp32"]}
    data["speedups"] = [
        {"name": "fbc", "kind": "cache", "cache": {"method": "first_block"}, **only},
        {
            "name": "taylor",
            "kind": "cache",
            "cache": {"method": "taylorseer", "cache_interval": 2, "disable_cache_before_step": 1},
            **only,
        },
        {"name": "mag", "kind": "cache", "cache": {"method": "mag", "mag_ratios": "flux"}, **only},
    ]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    folder = run(path, out=tmp_path / "out")
    score_run(folder, ["psnr"], progress=False)

    images = {
        (r["cell_id"], r["prompt_id"], r["repeat"]): r
        for r in iter_jsonl(folder / "records.jsonl")
        if r["kind"] == "image"
    }
    scores = [r for r in iter_jsonl(folder / "scores.jsonl") if r["kind"] == "image_score"]
    floor = [r for r in scores if r["cell_id"] == FLOOR]
    assert floor and all(r["status"] == "ok" for r in floor)
    # The floor's PSNR, +inf where the math kernel changed nothing.
    floor_psnr = min(math.inf if r.get("identical") else r["value"] for r in floor)
    cached = [r for r in scores if r.get("reference") == "twin"]
    assert {r["cell_id"] for r in cached} == {f"{TWIN}__{n}" for n in ("fbc", "taylor", "mag")}
    skipped_any = set()
    for row in cached:
        assert row["status"] == "ok" and row["reference_cell_id"] == TWIN
        skipped = _skipped(images[(row["cell_id"], row["prompt_id"], row["repeat"])])
        if skipped:
            skipped_any.add(row["cell_id"].rsplit("__", 1)[1])
            assert row["value"] is not None and math.isfinite(row["value"]), row
            assert row["value"] < floor_psnr, (row, floor_psnr)
        else:
            assert row.get("identical") and row["value"] is None, row
    # TaylorSeer with interval 2 after one full step predicts every other step (diffusers'
    # rule), so it skipped computations whatever the weights.
    assert "taylor" in skipped_any
    summary = json.loads((folder / SCORES_SUMMARY).read_text())
    twin_rows = [r for r in summary["cells"] if r.get("reference") == "twin"]
    assert {r["cell_id"] for r in twin_rows} == {r["cell_id"] for r in cached}
