"""A run killed mid-way keeps its finished records; --resume completes it without duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from bench.results import RECORDS, iter_jsonl, read_manifest
from bench.runner.executor import resume_run
from tests.fixtures.recorded import copy_recorded_run

pytestmark = pytest.mark.slow


def wait_for_images(results: Path, count: int, process: subprocess.Popen, timeout: float) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be interrupted"
        for records in results.glob(f"*/{RECORDS}"):
            if sum(1 for r in iter_jsonl(records) if r["kind"] == "image") >= count:
                return records.parent
        time.sleep(0.05)
    raise AssertionError(f"no {count} image records within {timeout} s")


def test_killed_run_resumes_to_exactly_the_expected_records(tmp_path: Path, write_config) -> None:
    prompts = [{"id": f"p{i}", "text": f"prompt number {i}"} for i in range(3)]
    config = write_config(prompts=prompts, repeats=2, steps=4)
    results = tmp_path / "results"
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", str(config), "--out", str(results), "--no-score"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        run_dir = wait_for_images(results, 2, process, timeout=180)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    time.sleep(1.5)  # the orphaned cell process notices its parent is gone and exits

    before = (run_dir / RECORDS).read_bytes()
    kept = [r for r in iter_jsonl(run_dir / RECORDS)]
    manifest = read_manifest(run_dir)
    assert manifest["finished_at"] is None
    expected_images = len(manifest["cells"]) * len(manifest["images"])
    assert 2 <= sum(r["kind"] == "image" for r in kept) < expected_images

    resume_run(run_dir)

    after = list(iter_jsonl(run_dir / RECORDS))
    assert (run_dir / RECORDS).read_bytes().startswith(before.rsplit(b"\n", 1)[0])
    cells = Counter(r["cell_id"] for r in after if r["kind"] == "cell")
    images = Counter(
        (r["cell_id"], r["prompt_id"], r["repeat"]) for r in after if r["kind"] == "image"
    )
    assert cells == Counter({c["cell_id"]: 1 for c in manifest["cells"]})
    assert len(images) == expected_images and set(images.values()) == {1}
    assert all(r["status"] == "ok" for r in after)
    assert read_manifest(run_dir)["finished_at"] is not None
    for record in after:
        if record["kind"] == "image":
            assert (run_dir / record["image"]).is_file()


def test_resume_of_a_complete_run_adds_nothing(tmp_path: Path) -> None:
    run_dir = copy_recorded_run("finished", tmp_path / "r")
    before = (run_dir / RECORDS).read_bytes()
    resume_run(run_dir)
    assert (run_dir / RECORDS).read_bytes() == before
