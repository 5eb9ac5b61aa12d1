"""The run folder: manifest, append-only records, and what is still missing for a resume.

Every later stage reads runs through this module, so the folder layout lives in one place.
Schema: docs/run-folder.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.errors import UserInputError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
RECORDS = "records.jsonl"
SCORES = "scores.jsonl"
SCORES_SUMMARY = "scores_summary.json"
IMAGES = "images"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_run_id(config_name: str) -> str:
    return f"{config_name}-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"


def image_relpath(cell_id: str, prompt_id: str, repeat: int) -> str:
    return f"{IMAGES}/{cell_id}/{prompt_id}__r{repeat}.png"


def record_header(run_id: str, cell: dict[str, Any]) -> dict[str, Any]:
    """Fields every record of a cell starts with (docs/run-folder.md)."""
    return {
        "schema": SCHEMA_VERSION,
        "run_id": run_id,
        "cell_id": cell["cell_id"],
        "variant": cell["variant"],
        "offload": cell["offload"],
        "height": cell["height"],
        "width": cell["width"],
    }


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def append_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append and flush to disk: a killed run loses at most the record being written."""
    with path.open("a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def repair_torn_tail(path: Path) -> bool:
    """Cut a last line left unfinished by a kill, so the next append starts on a fresh line."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with path.open("rb+") as handle:
        data = handle.read()
        if data.endswith(b"\n"):
            return False
        handle.truncate(data.rfind(b"\n") + 1)
    return True


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield records; a torn last line (the process was killed mid-write) is skipped."""
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def require_run_dir(run_dir: Path) -> Path:
    """Check that `run_dir` is a run folder; a clear one-line error otherwise."""
    if not run_dir.is_dir():
        raise UserInputError(f"{run_dir}: run folder not found")
    if not (run_dir / MANIFEST).is_file():
        raise UserInputError(f"{run_dir}: not a run folder (no {MANIFEST})")
    return run_dir


def read_manifest(run_dir: Path) -> dict[str, Any]:
    require_run_dir(run_dir)
    try:
        manifest = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{run_dir / MANIFEST}: not valid JSON ({exc.msg})") from exc
    if manifest.get("schema") != SCHEMA_VERSION:
        raise UserInputError(
            f"{run_dir / MANIFEST}: schema {manifest.get('schema')!r}, expected {SCHEMA_VERSION}"
        )
    return manifest


def read_records(run_dir: Path) -> list[dict[str, Any]]:
    return list(iter_jsonl(run_dir / RECORDS))


def cell_records(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The cell record of each cell (the first one; a resume never writes a second `ok` one)."""
    cells: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.get("kind") == "cell":
            cells.setdefault(record["cell_id"], record)
    return cells


def image_records(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    images: dict[tuple[str, str, int], dict[str, Any]] = {}
    for record in records:
        if record.get("kind") == "image":
            images.setdefault((record["cell_id"], record["prompt_id"], record["repeat"]), record)
    return images


def missing_work(manifest: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, list[dict]]:
    """For each cell still to run, the images it still owes (all of them for a cell not started).

    A cell whose cell record says it could not run is finished: failures are data, and retrying
    them silently would hide a flaky cell.
    """
    cells = cell_records(records)
    done = image_records(records)
    todo: dict[str, list[dict]] = {}
    for cell in manifest["cells"]:
        cell_id = cell["cell_id"]
        record = cells.get(cell_id)
        if record is not None and record["status"] != "ok":
            continue
        owed = [
            image
            for image in manifest["images"]
            if (cell_id, image["prompt_id"], image["repeat"]) not in done
        ]
        if record is None or owed:
            todo[cell_id] = owed
    return todo
