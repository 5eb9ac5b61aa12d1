"""One real, scored run for all report tests, recorded (tests/fixtures/runs/report/, made by
tests/fixtures/make_runs.py): full precision and Q8_0 on the tiny synthetic pipeline (64 px,
3 steps), without offload, and Q8_0 with model offload too (which failed on the CPU-only machine
that recorded it: a real failed cell, exactly what a report must show)."""

from __future__ import annotations

import functools
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
def copy_edited(tmp_path: Path) -> Callable[..., Path]:
    """A private copy of a recorded run, optionally edited (for partial/killed-run cases)."""

    def copy(
        source: Path,
        drop_scores: bool = False,
        keep_record: Callable[[dict[str, Any]], bool] | None = None,
        manifest_edit: Callable[[dict[str, Any]], None] | None = None,
        torn_tail: bool = False,
        edit_record: Callable[[dict[str, Any]], None] | None = None,
        summary_edit: Callable[[dict[str, Any]], None] | None = None,
    ) -> Path:
        dest = tmp_path / source.name
        shutil.copytree(source, dest)
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
        for name, edit in (("manifest.json", manifest_edit), ("scores_summary.json", summary_edit)):
            if edit is not None:
                data = json.loads((dest / name).read_text())
                edit(data)
                (dest / name).write_text(json.dumps(data))
        return dest

    return copy


@pytest.fixture
def copy_run(scored_run: Path, copy_edited: Callable[..., Path]) -> Callable[..., Path]:
    """`copy_edited` of the scored run."""
    return functools.partial(copy_edited, scored_run)
