"""One cell as one Ray task, on whichever node Ray placed it: the same worker, a folder of its own.

The task is a follower, like the local executor's: it starts the cell in a fresh process
(forked from a warm server in this Ray worker, bench.runner.processes) running
bench.runner.worker.run_cell unchanged, and forwards its events to the driver. The cell writes
into a temporary folder of the task's own, since the node need not share the driver's disk; the
task returns the records and image bytes it found there and removes the folder. Only the driver
writes the run folder.

What the task adds is where the cell ran: the node (hostname, Ray node id) and the GPU Ray gave
it. Ray hands a GPU as an entry of CUDA_VISIBLE_DEVICES, which the cell inherits unchanged: CUDA
reads it as every other CUDA process Ray starts there does. Which physical GPU that is, only
CUDA knows (its order is fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, NVML's is its own),
so the cell itself matches its CUDA device to NVML's by UUID (bench.runner.memory, as in the
local executor) and says which it is (the `device` event): that is the GPU the records name.

Inputs: the base pipeline and the variant's prepared files (GGUF conversions) are paths on the
driver's disk. A node that has them at the same path (a shared file system, or an earlier
sweep) uses them; a node that lacks one prepares them itself, in a fresh process, from the
run's config, the same deterministic way the driver did (its own cache, its own hub
downloads): the recorded paths are then the node's.

Threads: Ray sets OMP_NUM_THREADS to a task's CPU share, the local executor leaves torch its
default; the driver decides the count per node and the cell sets it, records it, and the
driver compares it with the local figure when asked (CPU results depend on it).

Nothing here imports Ray at module level: the cell process imports this module to find its
entry point and must not pay for Ray.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from bench.config import validate_config
from bench.environment import PACKAGES
from bench.models.variants import prepare_variant, resolve_base
from bench.results import RECORDS, iter_jsonl, record_files
from bench.runner.plan import CellJob
from bench.runner.processes import (
    born_ignoring_sigint,
    call_in_fresh_process,
    cell_context,
    relay_events,
    stop_process,
    usable_context,
)
from bench.runner.worker import run_cell

TEMP_PREFIX = "bench-ray-cell-"


def node_info() -> dict[str, Any]:
    """The node this task runs on, as records keep it."""
    import ray

    context = ray.get_runtime_context()
    return {
        "hostname": socket.gethostname(),
        "ray_node_id": context.get_node_id(),
        "ip": ray.util.get_node_ip_address(),
    }


def task_gpu() -> dict[str, Any] | None:
    """The GPU Ray assigned to this task, as Ray names it (None without one); the cell adds
    its name, UUID and NVML index (`with_cell_device`)."""
    import ray

    ids = [str(i) for i in ray.get_runtime_context().get_accelerator_ids().get("GPU") or []]
    if not ids:
        return None
    return {"ray_gpu_id": ids[0], "name": None, "uuid": None, "nvml_index": None}


def with_cell_device(gpu: dict[str, Any] | None, nvml: dict[str, Any] | None) -> dict | None:
    """The task's GPU completed with the device the cell matched by UUID (its `device` event),
    or with why NVML could not say (`nvml_error`)."""
    if gpu is None or not nvml:
        return gpu
    out = {**gpu, "name": nvml.get("name"), "uuid": nvml.get("uuid")}
    out["nvml_index"] = nvml.get("index")
    if nvml.get("nvml_error"):
        out["nvml_error"] = nvml["nvml_error"]
    return out


def node_packages() -> dict[str, str | None]:
    """The versions of the manifest's packages in this node's environment (the cell's), read
    from the installed metadata without importing them."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _cell_environment(threads: int) -> None:
    """The variables the cell process starts with (the warm server restarts when they change);
    CUDA_VISIBLE_DEVICES stays as Ray set it."""
    os.environ["OMP_NUM_THREADS"] = str(threads)


def cell_child(job: CellJob, events: Any, threads: int) -> None:
    """Entry point of the cell process: the thread count set and said, then the local worker."""
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(OSError):
        events.send({"kind": "threads", "torch_threads": torch.get_num_threads()})
    run_cell(job, events)


def prepare_on_node(spec: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The base pipeline and the variant's artifacts made (or found) on this node, as the
    driver's bench.runner.executor._prepare makes them; `spec` holds the run's config dump,
    the config's folder and the variant's name."""
    config = validate_config(spec["config"], "the run's config", recorded=True)
    base = resolve_base(config)
    variant = next(v for v in config.variants if v.name == spec["variant"])
    prepared = prepare_variant(variant, base, Path(spec["config_dir"]))
    if prepared.unavailable is not None:
        raise RuntimeError(f"{spec['variant']}: {prepared.unavailable['message']}")
    return base, dict(prepared.artifacts)


def missing_inputs(job: CellJob) -> list[str]:
    """Absolute paths the cell needs that this node does not have (hub ids are not paths)."""
    wanted = [job.base_model, *job.artifacts.values()]
    return [p for p in wanted if os.path.isabs(p) and not os.path.exists(p)]


def local_inputs(job: CellJob, spec: dict[str, Any] | None, context: Any) -> CellJob:
    """`job` with this node's own inputs: unchanged where it has the driver's paths."""
    if spec is None or not missing_inputs(job):
        return job
    base, artifacts = call_in_fresh_process(context, partial(prepare_on_node, spec))
    return replace(job, base_model=base, artifacts=artifacts)


def cell_task(
    job: CellJob,
    threads_by_node: dict[str, int],
    inbox: Any,
    prepare: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of the Ray task; returns the cell's records and image bytes (see the module).

    `prepare`: what prepare_on_node needs, for a node that lacks the driver's inputs."""
    task_start = time.time()
    node = node_info()
    gpu = task_gpu()
    threads = max(1, int(threads_by_node.get(node["ray_node_id"], 1)))
    cell_id = job.cell["cell_id"]

    def send(event: dict[str, Any]) -> None:
        inbox.put.remote({"cell_id": cell_id, **event})

    send({"kind": "started", "node": node, "gpu": gpu, "worker_pid": os.getpid()})
    _cell_environment(threads)
    _remove_stale_folders()
    folder = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
    try:
        context, note = usable_context(cell_context())
        if note:
            send({"kind": "note", "message": note})
        if missing_inputs(job):
            send({"kind": "preparing", "missing": missing_inputs(job)})
        local_job = replace(
            local_inputs(job, prepare, context), run_dir=folder, driver_pid=os.getpid()
        )
        follower = _TaskFollower(context, local_job, threads, send)
        child_start = time.time()
        follower.run()
        child_end = time.time()
        records = list(iter_jsonl(Path(folder) / RECORDS))
        images = {
            name: (Path(folder) / name).read_bytes()
            for record in records
            for name in record_files(record)
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "cell_id": cell_id,
        "node": node,
        "gpu": with_cell_device(gpu, follower.device),
        "packages": node_packages(),
        "torch_threads": follower.torch_threads,
        "exitcode": follower.exitcode,
        "phase": follower.phase,
        "write_failed": follower.write_failed,
        "records": records,
        "images": images,
        "timing": {
            "task_start": task_start,
            "child_start": child_start,
            "process_started": follower.process_started or child_start,
            "child_end": child_end,
            "task_end": time.time(),
        },
    }


def _remove_stale_folders() -> None:
    """Folders of tasks whose Ray worker was killed (a killed driver, a force cancel) before it
    could remove them; the worker's pid is in the name."""
    for folder in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*-*"):
        pid = folder.name[len(TEMP_PREFIX) :].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _TaskFollower:
    """Start the cell process, forward its events, stop it when the task is cancelled.

    A cancel (ray.cancel without force) arrives as KeyboardInterrupt in this thread: the cell is
    ended and nothing is returned, so what it owed stays missing for `--resume`.
    """

    def __init__(self, context: Any, job: CellJob, threads: int, send: Any) -> None:
        self.context = context
        self.job = job
        self.threads = threads
        self.send = send
        self.phase = "load"
        self.torch_threads: int | None = None
        self.write_failed: str | None = None
        self.exitcode: int | None = None
        self.process_started: float | None = None  # when the warm server had forked the cell
        self.device: dict[str, Any] | None = None  # the NVML device the cell matched

    def run(self) -> None:
        receive, send = self.context.Pipe(duplex=False)
        name = f"cell-{self.job.cell['cell_id']}"
        process = self.context.Process(
            target=cell_child, args=(self.job, send, self.threads), name=name
        )
        try:
            spawned = self.context.get_start_method() == "spawn"
            with born_ignoring_sigint() if spawned else contextlib.nullcontext():
                process.start()
            self.process_started = time.time()
            send.close()
            self.send({"kind": "process", "pid": process.pid})
            relay_events(receive, process, self._forward)
        except BaseException:
            stop_process(process)
            raise
        finally:
            receive.close()
        process.join()
        self.exitcode = process.exitcode

    def _forward(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "threads":
            self.torch_threads = event.get("torch_threads")
            return
        if kind == "device":
            self.device = event.get("nvml")
            return
        if kind == "loaded":
            self.phase = "warmup"
        elif kind == "warm":
            self.phase = "generate"
        elif kind == "write_failed":
            self.write_failed = event.get("message")
        self.send(event)
