"""One real, scored run for all report tests, recorded (tests/fixtures/runs/report/, made by
tests/fixtures/make_runs.py): full precision and Q8_0 on the tiny synthetic pipeline (64 px,
3 steps), without offload, and Q8_0 with model offload too (which failed on the CPU-only machine
that recorded it: a real failed cell, exactly what a report must show)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.recorded import copy_recorded_run


@pytest.fixture(scope="session")
def scored_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_recorded_run("report", tmp_path_factory.mktemp("report-run"))


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
