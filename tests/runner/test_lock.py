"""One writer per run folder: a second `bench run --resume` on a folder in use is refused with
one line naming the writer, and a folder written twice over is refused, never merged."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
from pathlib import Path

import pytest

from bench.errors import UserInputError
from bench.results import RECORDS, duplicate_records, read_records
from bench.runner.executor import resume_run
from bench.runner.lock import RunFolderBusy, RunFolderLock
from tests.fixtures.recorded import copy_recorded_run
from tests.runner.live import LiveRun, assert_complete, image_count, run_folder

pytestmark = pytest.mark.slow


def test_a_second_writer_is_refused_while_the_first_runs(
    tmp_path: Path, write_config, tiny_pipeline: Path
) -> None:
    one_variant = [{"name": "full", "kind": "full", "dtype": "float32"}]
    # Two steps an image, no warm-up: SIGSTOP, not the length of an image, holds it mid-run.
    config = write_config(variants=one_variant, repeats=2, steps=2, warmup=0)
    results = tmp_path / "results"
    first = LiveRun(str(config), "--out", str(results), "--no-score")
    try:
        first.wait_for("the first image record", lambda: image_count(results) >= 1)
        first.signal_group(signal.SIGSTOP)  # held mid-run, however fast this machine is
        run_dir = run_folder(results)
        second = LiveRun("--resume", str(run_dir), "--no-score")
        assert second.finish() == 2
        assert len(second.lines) == 1, second.stderr
        message = second.lines[0]
        assert message.startswith(f"error: {run_dir}: another bench run is writing this folder")
        assert f"pid {first.process.pid} on {socket.gethostname()}, started 20" in message
        first.signal_group(signal.SIGINT)
        first.signal_group(signal.SIGCONT)
        assert first.finish() == 130  # the refused one changed nothing for the first
    finally:
        first.kill()
    resume_run(run_dir)  # the lock went with its holder
    assert_complete(run_dir)
    assert duplicate_records(read_records(run_dir)) == {}


def test_the_lock_is_released_when_its_holder_dies(tmp_path: Path) -> None:
    pid = os.fork()
    if pid == 0:  # a holder that dies without releasing anything
        try:
            RunFolderLock(tmp_path).acquire()
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)
    os.waitpid(pid, 0)
    with RunFolderLock(tmp_path), pytest.raises(RunFolderBusy, match=f"pid {os.getpid()} on "):
        RunFolderLock(tmp_path).acquire()


def test_duplicate_records_are_found_not_hidden() -> None:
    header = {"cell_id": "c", "status": "ok"}
    image = {**header, "kind": "image", "prompt_id": "p", "repeat": 0}
    records = [{**header, "kind": "cell"}, image, {**image, "repeat": 1}]
    assert duplicate_records(records) == {}
    assert duplicate_records([*records, dict(image), {**header, "kind": "cell"}]) == {
        ("image", "c", "p", 0): 2,
        ("cell", "c"): 2,
    }


def test_resume_refuses_a_folder_that_two_runs_wrote(tmp_path: Path) -> None:
    run_dir = copy_recorded_run("finished", tmp_path / "results")
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    lines = (copy / RECORDS).read_text().splitlines()
    image_line = next(line for line in lines if json.loads(line)["kind"] == "image")
    with (copy / RECORDS).open("a") as handle:
        handle.write(image_line + "\n")
    before = (copy / RECORDS).read_bytes()
    with pytest.raises(UserInputError, match="2 records for image full__none__64x64/") as info:
        resume_run(copy)
    assert "two runs wrote this folder" in str(info.value) and "\n" not in str(info.value)
    assert (copy / RECORDS).read_bytes() == before
