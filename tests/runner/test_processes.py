"""Cell processes: forked from a warm server that imported the heavy libraries and nothing of
CUDA; each cell is still its own fresh process; a dead cell is a record, a dead parent leaves no
cell behind."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from bench.runner.executor import resume_run
from bench.runner.processes import cell_context
from tests.runner.live import LiveRun, image_count, records, run_folder

WARM_MODULES = ("torch", "diffusers", "transformers", "diffusers.pipelines.flux.pipeline_flux")


def probe(answers: Any) -> None:
    """Runs in a cell process: what did it start with?"""
    before = set(sys.modules)
    import torch

    with open("/proc/self/maps", encoding="utf-8") as maps:
        driver_mapped = "libcuda" in maps.read()
    answers.send(
        {
            "pid": os.getpid(),
            "warm": [m for m in WARM_MODULES if m in before],
            "sigint": signal.getsignal(signal.SIGINT),
            "cuda_initialized": torch.cuda.is_initialized(),
            "bad_fork": torch.cuda._is_in_bad_fork(),
            "driver_mapped": driver_mapped,
            "nvml_check": os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK"),
        }
    )


def _probe(context: Any) -> dict[str, Any]:
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=probe, args=(send,))
    process.start()
    send.close()
    answer = receive.recv()
    process.join()
    assert process.exitcode == 0
    return answer


@pytest.mark.skipif(
    sys.platform != "linux", reason="forkserver and /proc: the spawn fallback is elsewhere"
)
def test_cells_start_warm_fresh_and_without_cuda_state() -> None:
    context = cell_context()
    assert context.get_start_method() == "forkserver"
    first, second = _probe(context), _probe(context)
    assert first["warm"] == list(WARM_MODULES)  # imported by the server, not by the cell
    assert first["pid"] != second["pid"]  # one new process per cell
    assert first["sigint"] == signal.SIG_IGN  # Ctrl-C is the parent's to handle
    assert first["cuda_initialized"] is False and first["bad_fork"] is False
    assert first["driver_mapped"] is False
    assert first["nvml_check"] == os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK")
    from multiprocessing import forkserver

    server = forkserver._forkserver._forkserver_pid
    with open(f"/proc/{server}/maps", encoding="utf-8") as maps:
        assert "libcuda" not in maps.read()  # no cuInit in the image cells are forked from


def cuda_probe(answers: Any) -> None:
    """Runs in a cell process: CUDA works in a process forked from the warm server."""
    import torch

    answers.send({"sum": float(torch.ones(4, device="cuda").sum().item())})


def _cuda_available() -> bool:
    import torch  # here in the test process, not in the server cells are forked from

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA device")
def test_a_forked_cell_can_use_cuda() -> None:
    context = cell_context()
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=cuda_probe, args=(send,))
    process.start()
    send.close()
    assert receive.recv() == {"sum": 4.0}
    process.join()
    assert process.exitcode == 0


def _cell_process(run: LiveRun) -> psutil.Process:
    """The cell: a child of the forkserver, itself a child of bench."""

    def find() -> psutil.Process | None:
        for process in run.descendants():
            with_server = process.parent()
            if with_server is not None and with_server.pid != run.process.pid:
                return process
        return None

    return run.wait_for("a cell process", find)


@pytest.mark.slow
def test_a_dead_cell_is_recorded_and_a_dead_parent_leaves_no_cell(
    tmp_path: Path, write_config, tiny_pipeline: Path
) -> None:
    variants = [{"name": n, "kind": "full", "dtype": "float32"} for n in ("a", "b")]
    # Two steps an image: SIGSTOP, not the length of an image, holds each moment acted on.
    config = write_config(variants=variants, repeats=2, steps=2)
    results = tmp_path / "results"
    run = LiveRun(str(config), "--out", str(results), "--no-score")
    try:
        run.wait_for("the first image record", lambda: image_count(results) >= 1)
        run.signal_group(signal.SIGSTOP)  # its second image in flight, however fast it is
        _cell_process(run).kill()  # the OOM killer, a segfault: the cell dies, bench goes on
        run.signal_group(signal.SIGCONT)
        run.wait_for_line("b__none__64x64: loaded in")
        run.signal_group(signal.SIGSTOP)  # b is warming up; it would finish before long
        cell = _cell_process(run)
        others = run.descendants()
        os.kill(run.process.pid, signal.SIGKILL)  # only bench itself, as `kill -9 PID` does
        for process in others:
            process.resume()
        run.finish()  # stderr ends when the last of them has: frozen, they held it 10 s more
        gone, alive = psutil.wait_procs(others, timeout=10)
        assert alive == [], f"left behind: {alive}"
        assert cell in gone
    finally:
        run.kill()

    run_dir = run_folder(results)
    crashed = [r for r in records(run_dir) if r["status"] != "ok"]
    assert crashed and {r["cell_id"] for r in crashed} == {"a__none__64x64"}
    assert {r["error"]["type"] for r in crashed} == {"ProcessCrashed"}
    assert all("signal 9" in r["error"]["message"] for r in crashed)
    size = (run_dir / "records.jsonl").stat().st_size
    time.sleep(1)
    assert (run_dir / "records.jsonl").stat().st_size == size  # no writer left

    resume_run(run_dir)  # b is finished; a's crash is data and is not retried
    after = records(run_dir)
    b_images = [r for r in after if r["cell_id"] == "b__none__64x64" and r["kind"] == "image"]
    assert len(b_images) == 4 and all(r["status"] == "ok" for r in b_images)
    assert [r for r in after if r["status"] != "ok"] == crashed
