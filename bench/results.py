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

from bench.errors import RunFolderError, UserInputError
from bench.limits import MAX_JSONL_LINE_BYTES, MAX_MANIFEST_BYTES
from bench.run_schema import check_manifest, check_record, check_score_row
from bench.textfile import decode_utf8_line, read_text_bounded

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


def frame_relpath(cell_id: str, prompt_id: str, repeat: int, index: int) -> str:
    """One frame of a video, lossless: the frames, not the video file, are what is scored."""
    return f"{IMAGES}/{cell_id}/{prompt_id}__r{repeat}/{index:04d}.png"


def video_relpath(cell_id: str, prompt_id: str, repeat: int) -> str:
    """The video as people watch it (animated WebP at the run's frame rate)."""
    return f"{IMAGES}/{cell_id}/{prompt_id}__r{repeat}.webp"


def frame_paths(record: dict[str, Any]) -> list[str]:
    """The frame files a video record names, in order (none for an image record)."""
    count = record.get("num_frames")
    if not isinstance(count, int):
        return []
    return [
        frame_relpath(record["cell_id"], record["prompt_id"], record["repeat"], i)
        for i in range(count)
    ]


def record_files(record: dict[str, Any]) -> list[str]:
    """Every file of the run folder an image record names: its image, a video's frames and
    video file (what an executor moves from another machine)."""
    frames = frame_paths(record)  # a video's `image` is its first frame
    if frames:
        return [*frames, *([str(record["video"])] if record.get("video") else [])]
    return [str(record["image"])] if record.get("image") else []


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
        # A speed-up cell's records name it; those of other cells are as before speed-ups.
        **({"speedup": cell["speedup"]} if cell.get("speedup") else {}),
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

    A failed write (full disk) is cut back to where it started, and a torn last line left by a
    process killed mid-append (a cell's child writes its own records) is cut before the new
    lines go on: the file never holds half a line in its middle, which readers refuse.
    """
    data = "".join(json.dumps(record, default=str) + "\n" for record in records).encode("utf-8")
    try:
        # Unbuffered, so that nothing is left in a buffer to be written after the cut.
        descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RunFolderWriteError.from_os_error(path, exc) from exc
    try:
        start = os.fstat(descriptor).st_size
        if start and os.pread(descriptor, 1, start - 1) != b"\n":
            repair_torn_tail(path)
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


def iter_jsonl(
    path: Path, check: Callable[[dict[str, Any], str], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSON Lines file of a run folder, each checked.

    Only a last line without its newline (the process was killed mid-write) is skipped when it
    does not parse. Any other line that is not UTF-8, not JSON, not an object, longer than
    MAX_JSONL_LINE_BYTES, or not of its file's shape (`check`; by default the check of
    bench.run_schema for the file's name) raises RunFolderError naming the file and the line:
    a damaged line skipped in silence would leave its records missing without a word.
    """
    if not path.exists():
        return
    if not path.is_file():
        raise RunFolderError(f"{path}: not a file")
    check = check or ROW_CHECKS.get(path.name)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise RunFolderError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    with handle:
        number = 0
        while raw := handle.readline(MAX_JSONL_LINE_BYTES + 1):
            number += 1
            where = f"{path} line {number}"
            if len(raw) > MAX_JSONL_LINE_BYTES:
                raise RunFolderError(
                    f"{where}: longer than {MAX_JSONL_LINE_BYTES} bytes (docs/limits.md)"
                )
            if not raw.strip():
                continue
            torn = not raw.endswith(b"\n")  # only the last line can lack its newline
            try:
                value = json.loads(decode_utf8_line(raw, where, RunFolderError))
            except RunFolderError:
                if torn:
                    return
                raise
            except (ValueError, RecursionError) as exc:
                if torn:
                    return
                raise RunFolderError(f"{where}: not valid JSON ({_json_reason(exc)})") from None
            if not isinstance(value, dict):
                raise RunFolderError(
                    f"{where}: expected a JSON object, found {type(value).__name__}"
                )
            if check is not None:
                check(value, where)
            yield value


def _json_reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)  # e.g. an integer of more digits than Python converts


def require_run_dir(run_dir: Path) -> Path:
    """Check that `run_dir` is a run folder; a clear one-line error otherwise."""
    if not run_dir.is_dir():
        raise UserInputError(f"{run_dir}: run folder not found")
    if not (run_dir / MANIFEST).is_file():
        raise UserInputError(f"{run_dir}: not a run folder (no {MANIFEST})")
    return run_dir


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest, checked against its shape (bench.run_schema); RunFolderError if damaged."""
    require_run_dir(run_dir)
    path = run_dir / MANIFEST
    text = read_text_bounded(path, MAX_MANIFEST_BYTES, "manifest", RunFolderError)
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    except (ValueError, RecursionError) as exc:
        raise RunFolderError(f"{path}: not valid JSON ({_json_reason(exc)})") from None
    if not isinstance(manifest, dict):
        raise RunFolderError(f"{path}: expected a JSON object, found {type(manifest).__name__}")
    if manifest.get("schema") != SCHEMA_VERSION:
        raise RunFolderError(
            f"{path}: schema {manifest.get('schema')!r}, expected {SCHEMA_VERSION}"
        )
    return check_manifest(manifest, str(path))


def read_records(run_dir: Path) -> list[dict[str, Any]]:
    """Every record of the run, each checked against its kind's shape (bench.run_schema)."""
    return list(iter_jsonl(run_dir / RECORDS))


# The shape of each JSON Lines file of a run folder, by file name (iter_jsonl's default check).
ROW_CHECKS: dict[str, Callable[[dict[str, Any], str], None]] = {
    RECORDS: check_record,
    SCORES: check_score_row,
}


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
