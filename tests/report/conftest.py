"""One real, scored run for all report tests: full precision and Q8_0 on the tiny synthetic
pipeline (64 px, 3 steps), without offload, and Q8_0 with model offload too (which fails on a
CPU-only machine: a real failed cell, exactly what a report must show). Three cells, because
each cell is a fresh process."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.runner.sample_config import BASE_CONFIG


@pytest.fixture(scope="session")
def scored_run(bench_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bench.runner.executor import run_config
    from bench.scoring import score_run

    folder = tmp_path_factory.mktemp("report-run")
    full, q8 = BASE_CONFIG["variants"]
    config = {
        **BASE_CONFIG,
        "name": "report",
        "variants": [{**full, "offload_modes": ["none"]}, q8],
        "offload": ["none", "model"],
        "warmup": 0,
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    run_dir = run_config(path, folder / "results")
    score_run(run_dir, progress=False)
    return run_dir


@pytest.fixture
def copy_run(scored_run: Path, tmp_path: Path) -> Callable[..., Path]:
    """A private copy of the scored run, optionally edited (for partial/killed-run cases)."""

    def copy(
        drop_scores: bool = False,
        keep_record: Callable[[dict[str, Any]], bool] | None = None,
        manifest_edit: Callable[[dict[str, Any]], None] | None = None,
        torn_tail: bool = False,
        edit_record: Callable[[dict[str, Any]], None] | None = None,
    ) -> Path:
        dest = tmp_path / scored_run.name
        shutil.copytree(scored_run, dest)
        if drop_scores:
            for name in ("scores.jsonl", "scores_summary.json"):
                (dest / name).unlink(missing_ok=True)
        records_path = dest / "records.jsonl"
        if keep_record is not None:
            lines = records_path.read_text().splitlines()
            kept = [line for line in lines if keep_record(json.loads(line))]
            records_path.write_text("".join(line + "\n" for line in kept))
        if edit_record is not None:
            records = [json.loads(line) for line in records_path.read_text().splitlines()]
            for record in records:
                edit_record(record)
            records_path.write_text("".join(json.dumps(r) + "\n" for r in records))
        if torn_tail:
            with records_path.open("a") as handle:
                handle.write('{"schema": 1, "kind": "image", "cell_id": "Q8')
        if manifest_edit is not None:
            manifest = json.loads((dest / "manifest.json").read_text())
            manifest_edit(manifest)
            (dest / "manifest.json").write_text(json.dumps(manifest))
        return dest

    return copy
