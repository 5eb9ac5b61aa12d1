"""The run folder: manifest, append-only records, and what is still missing for a resume.

Every later stage reads runs through this module, so the folder layout lives in one place.
Schema: docs/run-folder.md.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

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


class RunFolderWriteError(UserInputError):
    """A file of a run folder could not be written: full disk, quota, read-only, a size limit.

    Raised after the failed write was undone (a temporary file removed, a half-appended line cut),
    so the folder is left as it was before the write and `--resume` can finish it once the cause
    is gone. The message names the file and the operating system's reason, on one line.
    """

    def __init__(self, message: str, run_dir: Path | None = None) -> None:
        super().__init__(message)
        self.run_dir = run_dir  # the run folder to resume, where the writer knows it

    @classmethod
    def from_os_error(cls, path: Path, exc: OSError) -> RunFolderWriteError:
        reason = exc.strerror or str(exc) or type(exc).__name__
        return cls(f"cannot write {path}: {reason} [errno {exc.errno}]")


TEMP_SUFFIX = ".tmp"


def write_file_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` completely or not at all: a temporary file beside it, fsync, then rename.

    A kill, a full disk or an exception in `write` leaves the previous file (or none) and no
    temporary behind; after the rename the folder entry is synced too, so a record that names the
    file is never durable before the file itself.
    """
    try:
        descriptor, tmp_name = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX
        )
    except OSError as exc:
        raise RunFolderWriteError.from_os_error(path, exc) from exc
    tmp = Path(tmp_name)
    try:
        os.fchmod(descriptor, 0o644)  # mkstemp's 0600 would hide shared results from others
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RunFolderWriteError.from_os_error(path, exc) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):  # no folder fsync there
            raise
    finally:
        os.close(descriptor)


def remove_temporary_files(run_dir: Path) -> list[Path]:
    """Remove what `write_file_atomic` leaves when the process is killed mid-write."""
    removed = []
    for tmp in run_dir.rglob(f".*{TEMP_SUFFIX}"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    text = json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n"
    write_file_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def append_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append and flush to disk: a killed run loses at most the record being written.

    A failed write (full disk) is cut back to where it started, so the file never holds half a
    line in its middle that a later append would bury.
    """
    data = "".join(json.dumps(record, default=str) + "\n" for record in records).encode("utf-8")
    try:
        # Unbuffered, so that nothing is left in a buffer to be written after the cut.
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RunFolderWriteError.from_os_error(path, exc) from exc
    try:
        start = os.fstat(descriptor).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
            os.fsync(descriptor)
        except OSError as exc:
            os.ftruncate(descriptor, start)
            raise RunFolderWriteError.from_os_error(path, exc) from exc
    finally:
        os.close(descriptor)


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


def duplicate_records(records: Iterable[dict[str, Any]]) -> dict[tuple[Any, ...], int]:
    """Cells and images recorded more than once, with their counts (empty for a sound folder).

    A run writes exactly one cell record per cell and one image record per (cell, prompt,
    repeat); more means two processes wrote the folder at once (before the run-folder lock
    existed), and their timings were taken while they competed for the machine. Readers call this
    to refuse or flag such a folder instead of silently keeping the first record of each pair.
    Keys: `("cell", cell_id)` and `("image", cell_id, prompt_id, repeat)`.
    """
    counts: Counter[tuple[Any, ...]] = Counter()
    for record in records:
        if record.get("kind") == "cell":
            counts[("cell", record.get("cell_id"))] += 1
        elif record.get("kind") == "image":
            key = ("image", record.get("cell_id"), record.get("prompt_id"), record.get("repeat"))
            counts[key] += 1
    return {key: count for key, count in counts.items() if count > 1}


def describe_duplicates(duplicates: dict[tuple[Any, ...], int]) -> str:
    """One line for a message: how many keys are duplicated, and the first of them."""
    key, count = next(iter(duplicates.items()))
    what = f"cell {key[1]}" if key[0] == "cell" else f"image {key[1]}/{key[2]}/r{key[3]}"
    more = f" (and {len(duplicates) - 1} more)" if len(duplicates) > 1 else ""
    return f"{count} records for {what}{more}"


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
