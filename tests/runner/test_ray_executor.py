"""The Ray executor: the same run folder as the local executor, faults as records, resumable.

Ray runs on this CPU machine with fake GPU resources (`num_gpus=2`: Ray hands out GPU ids and
CUDA_VISIBLE_DEVICES, the cells still compute on the CPU), as one cluster from ray.cluster_utils
that the whole module shares: its head has the two fake GPUs, and the two-node test adds (and
removes) a second node. Ray starts once for the module; only the killed driver starts an
instance of its own. Torch threads: Ray gives a cell one thread per CPU slot here, so the local
run it is compared with runs with OMP_NUM_THREADS=1, and both record it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bench.comparison.comparability import blocking_differences, cell_gpu_models
from bench.errors import UserInputError
from bench.results import cell_records, read_manifest, read_records
from bench.runner.executor import resume_run, run_config
from bench.runner.executor_choice import ExecutorChoice
from bench.runner.ray_address import RayConnectError
from tests.runner.live import LiveRun, assert_complete, image_count, run_folder
from tests.runner.sample_config import BASE_CONFIG

ray = pytest.importorskip("ray")

RAY = ExecutorChoice(kind="ray")
SMALL = {
    "variants": [
        {"name": "full", "kind": "full", "dtype": "float32"},
        {"name": "Q8_0", "kind": "gguf", "quant": "Q8_0", "compute_dtype": "float32"},
        # Loadable by diffusers, not made by the harness: an `unavailable` cell, no task.
        {"name": "Q4_0", "kind": "gguf", "quant": "Q4_0", "compute_dtype": "float32"},
    ],
    "steps": 2,
}


class Lines:
    """A console file that keeps the plain lines the sweep prints, for a test to wait on."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def wait_for(self, check: Callable[[str], Any], timeout: float = 240) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.text.splitlines():
                found = check(line)
                if found:
                    return found
            time.sleep(0.02)
        raise AssertionError(f"not seen within {timeout} s:\n{self.text}")


def _console(lines: Lines) -> Any:
    from rich.console import Console

    return Console(file=lines, force_terminal=False, width=200)


def _summary(run_dir: Path) -> set[tuple[Any, ...]]:
    """What both executors must agree on: every record's kind, cell, image and status."""
    return {
        (r["kind"], r["cell_id"], r.get("prompt_id"), r.get("repeat"), r["status"])
        for r in read_records(run_dir)
    }


def _pixels(run_dir: Path) -> dict[str, bytes]:
    out = {}
    for record in read_records(run_dir):
        if record.get("image"):
            with Image.open(run_dir / record["image"]) as picture:
                out[record["image"]] = picture.tobytes()
    return out


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_the_choice_is_checked_before_anything_runs() -> None:
    assert ExecutorChoice.parse(None) == ExecutorChoice()
    assert ExecutorChoice("ray", "ray://head:10001").words() == [
        "--executor",
        "ray",
        "--ray-address",
        "ray://head:10001",
    ]
    with pytest.raises(UserInputError, match="expected one of local, ray"):
        ExecutorChoice.parse("slurm")
    with pytest.raises(UserInputError, match="--ray-address is for --executor ray"):
        ExecutorChoice.parse("local", "head:6379")
    with socket.socket() as closed:  # a port nobody listens on: refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(RayConnectError, match=f"127.0.0.1:{port}: cannot connect"):
        ExecutorChoice.parse("ray", f"127.0.0.1:{port}")


def test_compare_says_when_one_runs_cells_came_from_different_gpu_models() -> None:
    def manifest(models: list[str]) -> dict[str, Any]:
        return {
            "config_hash": "h",
            "config": {},
            "prompts": [],
            "images": [],
            "environment": {"gpus": []},  # the driver's: a CPU machine
            "executors": [{"kind": "ray", "gpu_models": models}],
        }

    same = blocking_differences(manifest(["NVIDIA H100"]), manifest(["NVIDIA H100"]))
    assert same == []
    mixed = manifest(["NVIDIA A10G", "NVIDIA H100"])
    assert cell_gpu_models(mixed) == ["NVIDIA A10G", "NVIDIA H100"]
    fields = [d.field for d in blocking_differences(manifest(["NVIDIA H100"]), mixed)]
    assert "cells of one run ran on different GPU models" in fields


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """The module's Ray cluster, this process connected: a head with two CPUs and two fake GPUs
    (two cells at a time), shut down with every node it still has after the last test.

    Its own Ray temp folder (RAY_TMPDIR): a Cluster records its address in the temp folder's
    `ray_current_cluster`, where any `ray.init()` without an address on this machine (another
    test process's) would find it and join; a short path keeps its sockets' paths short."""
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="ray-")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_TMPDIR", temp)
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 2, "num_gpus": 2, "include_dashboard": False},
        )
        try:
            ray.init(address=cluster.address, log_to_driver=False)
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()
            shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.usefixtures("cluster")
class TestFakeGpus:
    """The cluster's head alone: two fake GPUs, two cells at a time."""

    def test_ray_writes_the_same_run_as_the_local_executor(
        self, tmp_path: Path, write_config: Callable[..., Path], one_thread: None
    ) -> None:
        # no warm-up: it writes no record and both executors would run it alike
        config = write_config(**{**SMALL, "warmup": 0})
        local = run_config(config, tmp_path / "local")
        remote = run_config(config, tmp_path / "ray", executor=RAY)

        assert _summary(remote) == _summary(local)
        local_pixels = _pixels(local)
        assert local_pixels and _pixels(remote) == local_pixels
        manifest = read_manifest(remote)
        (entry,) = manifest["executors"]
        assert entry["slots"] == "gpu" and entry["kind"] == "ray"
        assert manifest["finished_at"] is not None
        local_threads = read_manifest(local)["environment"]["cpu"]["torch_threads"]
        ran = [r for r in read_records(remote) if r["status"] != "unavailable"]
        assert ran and all(r["torch_threads"] == local_threads for r in ran)
        node_ids = {n["ray_node_id"] for n in entry["nodes"]}
        assert all(r["node"]["ray_node_id"] in node_ids for r in ran)
        assert all(r["node"]["hostname"] for r in ran)
        # One fake GPU per concurrent task, never two cells on one.
        gpus = {r["cell_id"]: r["gpu"]["ray_gpu_id"] for r in ran if r["kind"] == "cell"}
        assert sorted(gpus.values()) == ["0", "1"]
        for record in ran:
            if record["kind"] == "cell":
                timing = record["ray"]
                assert timing["cell_s"] > 0 and timing["queued_s"] >= 0
                # One machine, one environment: the node's versions are the manifest's.
                assert record["packages"] == manifest["environment"]["packages"]
        assert "package_mismatches" not in entry

    def test_killed_cell_and_worker_processes_become_crashed_records(
        self, tmp_path: Path, write_config: Callable[..., Path], one_thread: None
    ) -> None:
        config = write_config(**{**SMALL, "variants": SMALL["variants"][:2]})
        lines = Lines()

        def pid_after(cell: str, marker: str) -> Callable[[str], int | None]:
            def check(line: str) -> int | None:
                if line.startswith(f"{cell}__") and marker in line:
                    return int(line.split(marker)[1].split(")")[0].split()[0])
                return None

            return check

        def killer() -> None:
            # full: its cell process dies; Q8_0: the Ray worker that runs its task dies.
            os.kill(lines.wait_for(pid_after("full", "cell process ")), signal.SIGKILL)
            os.kill(lines.wait_for(pid_after("Q8_0", "worker pid ")), signal.SIGKILL)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        run_dir = run_config(config, tmp_path / "results", console=_console(lines), executor=RAY)
        thread.join(5)

        cells = cell_records(read_records(run_dir))
        assert {c: r["status"] for c, r in cells.items()} == {
            "full__none__64x64": "crashed",
            "Q8_0__none__64x64": "crashed",
        }
        assert cells["full__none__64x64"]["error"]["type"] == "ProcessCrashed"
        assert "signal 9" in cells["full__none__64x64"]["error"]["message"]
        worker = cells["Q8_0__none__64x64"]
        assert worker["error"]["type"] != "ProcessCrashed"
        assert worker["node"]["hostname"] and worker["node"]["ray_node_id"]
        assert read_manifest(run_dir)["finished_at"] is not None

    def test_resume_after_the_driver_is_killed(
        self, tmp_path: Path, write_config: Callable[..., Path], one_thread: None
    ) -> None:
        """The killed `bench run` started its own Ray instance (a job of its own, killed whole);
        the resume runs on the module's cluster, already up, so no further instance starts.

        Three cells on the job's two CPU slots: the kill comes with the first finished cell, when
        the third has at most just started, so one or two are done and at least one is owed."""
        variants = [
            {"name": "full", "kind": "full", "dtype": "float32"},
            {"name": "full-b", "kind": "full", "dtype": "float32"},
            {"name": "Q8_0", "kind": "gguf", "quant": "Q8_0", "compute_dtype": "float32"},
        ]
        # one image per cell, one step: the kill waits for an image, the resume for the rest
        config = write_config(
            variants=variants, prompts=BASE_CONFIG["prompts"][:1], steps=1, warmup=0
        )
        results = tmp_path / "results"
        # RAY_ADDRESS=local: the job starts a Ray instance of its own, never joins this one
        env = {**os.environ, "RAY_ADDRESS": "local"}
        live = LiveRun(
            str(config), "--out", str(results), "--no-score", "--executor", "ray", env=env
        )
        try:
            live.wait_for("a finished cell", lambda: image_count(results) >= 1, timeout=300)
        finally:
            live.kill()  # the whole job: driver, its Ray instance and the cells, at once
        run_dir = run_folder(results)
        assert run_dir is not None
        manifest = read_manifest(run_dir)
        assert manifest["finished_at"] is None
        done = {r["cell_id"] for r in read_records(run_dir) if r["kind"] == "cell"}
        assert 1 <= len(done) < len(manifest["cells"])

        resume_run(run_dir, executor=RAY)

        assert_complete(run_dir)
        executors = read_manifest(run_dir)["executors"]
        assert [e["kind"] for e in executors] == ["ray", "ray"]
        # the job's own instance had no GPUs; the resume ran on the cluster's fake GPUs
        assert [e["slots"] for e in executors] == ["cpu", "gpu"]


@pytest.mark.slow
def test_two_nodes_and_a_node_that_disappears(
    cluster: Any, tmp_path: Path, write_config: Callable[..., Path], one_thread: None
) -> None:
    from ray.util.placement_group import placement_group, remove_placement_group

    # One of the head's two GPUs held, before the second node joins so that it is the head's:
    # one free GPU per node, so the two cells run one on each.
    held = placement_group([{"GPU": 1}])
    ray.get(held.ready(), timeout=120)
    second: Any = None
    try:
        second = cluster.add_node(num_cpus=1, num_gpus=1)
        cluster.wait_for_nodes()
        config = write_config(**{**SMALL, "variants": SMALL["variants"][:2]})
        lines = Lines()
        prefix = second.node_id[:12]

        def remove_second() -> None:
            started = lines.wait_for(
                lambda line: line if f"(node {prefix}" in line and "started on" in line else None
            )
            cell = started.split(":")[0]
            lines.wait_for(lambda line: line.startswith(f"{cell}: cell process"))
            cluster.remove_node(second)  # with its Ray worker and the cell process in flight

        thread = threading.Thread(target=remove_second, daemon=True)
        thread.start()
        choice = ExecutorChoice(kind="ray", ray_address=cluster.address)
        run_dir = run_config(config, tmp_path / "results", console=_console(lines), executor=choice)
        thread.join(5)
    finally:
        remove_placement_group(held)
        if second in cluster.worker_nodes:  # the test failed before it went: the head alone again
            cluster.remove_node(second)

    cells = cell_records(read_records(run_dir))
    by_node = {r["node"]["ray_node_id"]: r for r in cells.values()}
    assert len(by_node) == 2  # one GPU per node: the two cells ran on both
    lost = by_node[second.node_id]
    assert lost["status"] == "crashed" and lost["node"]["ray_node_id"] == second.node_id
    (kept,) = [r for node, r in by_node.items() if node != second.node_id]
    assert kept["status"] == "ok"
    assert read_manifest(run_dir)["finished_at"] is not None


@pytest.mark.slow
def test_a_node_without_the_drivers_files_prepares_its_own(
    tmp_path: Path, write_config: Callable[..., Path], one_thread: None
) -> None:
    from bench.config import load_config
    from bench.runner.plan import CellJob
    from bench.runner.processes import cell_context
    from bench.runner.ray_task import local_inputs, missing_inputs

    config_path = write_config(**SMALL)
    config, _ = load_config(config_path)
    elsewhere = tmp_path / "the-drivers-disk"
    job = CellJob(
        run_dir=str(tmp_path / "task"),
        run_id="r",
        cell={},
        images=[],
        write_cell_record=True,
        base_model=str(elsewhere / "base"),
        revision=None,
        artifacts={"gguf_file": str(elsewhere / "transformer-Q8_0.gguf")},
        device="cpu",
        steps=2,
        guidance=3.5,
        max_sequence_length=32,
        warmup=0,
        warmup_prompt="x",
    )
    assert len(missing_inputs(job)) == 2
    spec = {
        "config": config.model_dump(mode="json"),
        "config_dir": str(config_path.parent),
        "variant": "Q8_0",
    }
    here = local_inputs(job, spec, cell_context())
    assert missing_inputs(here) == []
    assert Path(here.base_model).is_dir() and Path(here.artifacts["gguf_file"]).is_file()
    assert local_inputs(here, spec, None) is here  # nothing missing: nothing prepared
