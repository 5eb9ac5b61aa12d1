"""A full disk and unwritable outputs, on a real small filesystem (tmpfs, where this machine lets
the tests mount one; otherwise a file-size limit): one clear line, exit 2, and a folder that
`--resume` finishes once there is room."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.results import MANIFEST, RunFolderWriteError, write_json_atomic
from bench.runner.executor import resume_run
from tests.runner.live import BENCH, LiveRun, assert_complete, image_count, records, run_folder

pytestmark = pytest.mark.slow
# Under the file-size limit a manifest fits, a 128x128 PNG does not.
FILE_SIZE_LIMIT = 30_000
ONE_VARIANT = [{"name": "full", "kind": "full", "dtype": "float32"}]


@dataclass
class SmallDisk:
    """A 2 MiB tmpfs when it can be mounted, else a folder written under RLIMIT_FSIZE."""

    path: Path
    mounted: bool
    filler: Path = field(init=False)

    def __post_init__(self) -> None:
        self.filler = self.path / "filler"

    def fill(self) -> None:
        """Take every free byte, as another program filling the disk would."""
        with self.filler.open("ab", buffering=0) as handle:
            for chunk in (1 << 16, 1 << 12, 1):
                with suppress(OSError):
                    while True:
                        handle.write(b"\0" * chunk)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    @property
    def popen(self) -> dict[str, Any]:
        """How a process must be started for its writes to meet the limit."""
        if self.mounted:
            return {}

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))

        return {"preexec_fn": limit}

    @contextmanager
    def full(self) -> Iterator[None]:
        """Writes in this process fail for lack of room inside."""
        if self.mounted:
            self.fill()
            try:
                yield
            finally:
                self.free()
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    try:
        yield SmallDisk(mount, mounted)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mount)], check=False)


def _error_line(run: LiveRun) -> str:
    assert "Traceback" not in run.stderr, run.stderr
    errors = [line for line in run.lines if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == run.lines[-1], run.stderr
    return errors[0]


def test_a_full_disk_mid_run_is_one_line_and_resume_finishes_the_run(
    small_disk: SmallDisk, write_config, tiny_pipeline: Path
) -> None:
    # Two steps an image, no warm-up: SIGSTOP, not the length of an image, holds the run
    # mid-way while the disk fills.
    config = write_config(variants=ONE_VARIANT, repeats=2, steps=2, warmup=0, height=128, width=128)
    results = small_disk.path / "results"
    run = LiveRun(str(config), "--out", str(results), "--no-score", **small_disk.popen)
    try:
        if small_disk.mounted:
            run.wait_for("the first image record", lambda: image_count(results) >= 1)
            run.signal_group(signal.SIGSTOP)
            small_disk.fill()
            run.signal_group(signal.SIGCONT)
        assert run.finish() == 2
    finally:
        run.kill()
    line = _error_line(run)
    reason = os.strerror(errno.ENOSPC if small_disk.mounted else errno.EFBIG)
    assert line.startswith("error: cannot write ") and reason in line, line

    run_dir = run_folder(results)
    manifest = json.loads((run_dir / MANIFEST).read_text())
    assert manifest["finished_at"] is None
    kept = records(run_dir)
    assert all(r["status"] == "ok" for r in kept)  # the disk failed, not the measurements
    for record in kept:
        if record["kind"] == "image":
            assert (run_dir / record["image"]).stat().st_size > 0
    assert all(png.stat().st_size > 0 for png in run_dir.rglob("*.png"))
    assert list(run_dir.rglob("*.tmp")) == []

    assert line.endswith(f"finish the run with: {BENCH} run {config} --no-score --resume {run_dir}")

    small_disk.free()
    resume_run(run_dir)  # without the limit: there is room now
    assert_complete(run_dir)


def test_a_rewrite_that_does_not_fit_keeps_the_previous_file(small_disk: SmallDisk) -> None:
    path = small_disk.path / MANIFEST
    write_json_atomic(path, {"finished_at": None})
    before = path.read_bytes()
    with small_disk.full(), pytest.raises(RunFolderWriteError, match=str(path)):
        write_json_atomic(path, {"finished_at": "now", "padding": "x" * 100_000})
    assert path.read_bytes() == before
    assert [p.name for p in small_disk.path.iterdir() if p.name != "filler"] == [MANIFEST]


def test_no_room_for_the_manifest_leaves_no_run_folder(
    small_disk: SmallDisk, write_config, tiny_pipeline: Path
) -> None:
    results = small_disk.path / "results"
    results.mkdir()
    popen = small_disk.popen
    if small_disk.mounted:
        small_disk.fill()
    else:  # too small for a manifest

        def popen_limit() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

        popen = {"preexec_fn": popen_limit}
    config = write_config(variants=ONE_VARIANT)  # refused before any cell: one is enough
    run = LiveRun(str(config), "--out", str(results), "--no-score", **popen)
    assert run.finish() == 2
    line = _error_line(run)
    assert line.startswith("error: cannot write ") and MANIFEST in line, line
    assert "--resume" not in line  # there is nothing to resume
    assert list(results.iterdir()) == []


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_out_that_is_a_file_is_one_line(tmp_path: Path, write_config, where: str) -> None:
    target = tmp_path / "taken"
    target.write_text("not a folder")
    out = target if where == "file" else target / "results"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", str(write_config()), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"error: {out}: ") and "expected a folder" in lines[0]
    assert target.read_text() == "not a folder"
