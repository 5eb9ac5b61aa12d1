"""Run a plan's cells as Ray tasks, one cell per GPU (or per CPU slot), into one run folder.

The driver (this process) keeps every duty of the local executor but one: it does not start the
cell processes. Each cell becomes one Ray task (bench.runner.ray_task) that runs the same worker
in a fresh process on some node and returns the records and image bytes; the driver alone writes
the run folder, images before their records as the worker does, so every later stage reads a
Ray run exactly as a local one. What a Ray run adds:

- records say where they were made: `node` (hostname, Ray node id, IP), `gpu` (name, UUID,
  Ray's id and NVML's index; null without one), `torch_threads`, and on the cell record `ray`,
  the task's timing (queued, set-up, cell, collect, return, write);
- the manifest's `executors` list gets one entry per Ray sweep of the folder: the address, the
  slot kind (`gpu`: one task per GPU; `cpu`: no GPU in the cluster, one task per CPU slot, and
  the entry says so), the nodes, and the GPU models that ran cells (bench.comparison reads them).

Faults. A cell process that dies is a crashed record, as locally. A task whose Ray worker dies
or whose node disappears (Ray raises for it; tasks are never retried, a retry would hide a
flaky node) is a crashed record with the node it was on. A stop (Ctrl-C) cancels every task,
writes nothing for them and leaves the folder for `--resume`. A cluster that has no node left
able to run the remaining cells stops the sweep with those cells missing, instead of waiting
for ever.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from bench.errors import UserInputError
from bench.results import (
    MANIFEST,
    RECORDS,
    RunFolderWriteError,
    append_jsonl,
    utc_now,
    write_file_atomic,
    write_json_atomic,
)
from bench.runner.executor_base import (
    CellProgress,
    Executor,
    Sweep,
    process_crash,
    progress_columns,
)
from bench.runner.interrupt import StopRequests
from bench.runner.plan import cell_job
from bench.runner.ray_address import RayConnectError, address_problem, unreachable
from bench.runner.ray_task import cell_task

STOP_GRACE_S = 15.0  # how long cancelled tasks may take to end before they are killed
POLL_S = 0.25
FEASIBLE_CHECK_S = 5.0
# How long the cluster may have no node for the waiting cells (a node restarting, an
# autoscaler adding one) before the sweep stops with them missing.
UNSCHEDULABLE_S = 300.0
# Variables a cell reads that the driver's user set; forwarded to a cluster's workers. Tokens
# are not: a cluster's nodes bring their own credentials.
FORWARDED_ENV = (
    "HF_HUB_OFFLINE",
    "HF_HOME",
    "HF_HUB_CACHE",
    "DIFFUSERS_VERBOSITY",
    "TRANSFORMERS_VERBOSITY",
    "HF_HUB_DISABLE_PROGRESS_BARS",
    "TOKENIZERS_PARALLELISM",
)


class ClusterCannotRun(UserInputError):
    """No node of the cluster can take the remaining cells (the GPU nodes are gone)."""


@dataclass(frozen=True)
class Slots:
    """How cells are placed: `gpu` (one GPU per task) or `cpu` (one CPU slot per task)."""

    kind: str
    threads_by_node: dict[str, int]
    nodes: list[dict[str, Any]]

    @property
    def resources(self) -> dict[str, float]:
        return {"num_gpus": 1, "num_cpus": 1} if self.kind == "gpu" else {"num_cpus": 1}

    def describe(self) -> str:
        if self.kind == "gpu":
            return "one task per GPU (num_gpus=1)"
        return "no GPU in the cluster: one task per free CPU slot (num_cpus=1), one torch thread"


def read_slots() -> Slots:
    """GPU slots where the cluster has GPUs, CPU slots otherwise; threads per node: its CPUs
    shared among its GPUs (GPU slots), one (CPU slots: a slot is one CPU)."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    gpus = sum(float(n.get("Resources", {}).get("GPU", 0)) for n in nodes)
    kind = "gpu" if gpus >= 1 else "cpu"
    threads: dict[str, int] = {}
    described = []
    for node in nodes:
        resources = node.get("Resources", {})
        cpus, node_gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        share = int(cpus // node_gpus) if kind == "gpu" and node_gpus >= 1 else 1
        threads[node["NodeID"]] = max(1, share)
        described.append(
            {
                "ray_node_id": node["NodeID"],
                "hostname": node.get("NodeManagerHostname"),
                "ip": node.get("NodeManagerAddress"),
                "cpus": cpus,
                "gpus": node_gpus,
                "torch_threads": threads[node["NodeID"]],
            }
        )
    return Slots(kind=kind, threads_by_node=threads, nodes=described)


class _Inbox:
    """The driver's mailbox for task events (an actor pinned to the driver's node)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def put(self, item: dict[str, Any]) -> None:
        self.items.append(item)

    def take(self) -> list[dict[str, Any]]:
        items, self.items = self.items, []
        return items


def _connect(address: str | None) -> bool:
    """Connect to the cluster (or start a local instance); True when this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    reason = unreachable(address) if address else None
    if reason is not None:
        raise RayConnectError(f"cannot reach the Ray cluster at {address}: {reason}")
    env_vars = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"env_vars": env_vars} if env_vars else None,
        )
    except Exception as exc:
        where = f"the Ray cluster at {address}" if address else "Ray here"
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise RayConnectError(f"cannot start or reach {where}: {reason}") from exc
    return True


class RayExecutor(Executor):
    """One Ray task per cell, on the cluster at `address` (None: a Ray instance started here
    for the sweep, or the one this process is connected to already)."""

    name = "ray"
    needs = ("ray",)
    when_missing = "Ray is not installed here; install the extra: pip install -e '.[ray]'"
    takes_address = True

    @classmethod
    def check_address(cls, address: str) -> None:
        problem = address_problem(address)
        if problem is not None:
            raise RayConnectError(f"--ray-address {address}: {problem}")

    def run(self, sweep: Sweep) -> bool:
        import ray  # Ray: heavy and optional, imported only by a sweep that runs on it

        _, todo, have_cell_record = sweep.owed()
        if not todo:
            return False
        try:
            started_ray = _connect(self.address)
        except RayConnectError as exc:
            where = sweep.run_dir
            raise RayConnectError(f"{exc}; nothing ran, resume {where} once it is up") from None
        try:
            slots = read_slots()
            entry = {
                "kind": "ray",
                "address": self.address,
                "started_at": utc_now(),
                "slots": slots.kind,
                "placement": slots.describe(),
                "nodes": slots.nodes,
                "gpu_models": [],
            }
            sweep.manifest.setdefault("executors", []).append(entry)
            write_json_atomic(sweep.run_dir / MANIFEST, sweep.manifest)
            _RaySweep(sweep, slots, entry, todo, have_cell_record).run()
        finally:
            if started_ray:
                ray.shutdown()
        return True


@dataclass
class _Task:
    cell: dict[str, Any]
    owed: list[dict[str, Any]]
    submitted: float
    line: CellProgress
    started: dict[str, Any] | None = None  # the task's `started` event: node, GPU, worker pid


@dataclass
class _RaySweep:
    sweep: Sweep
    slots: Slots
    entry: dict[str, Any]
    todo: dict[str, list[dict]]
    have_cell_record: set[str]
    pending: dict[Any, _Task] = field(default_factory=dict)
    by_cell: dict[str, _Task] = field(default_factory=dict)
    unschedulable_since: float | None = None

    @property
    def run_dir(self) -> Path:
        return self.sweep.run_dir

    @property
    def manifest(self) -> dict[str, Any]:
        return self.sweep.manifest

    @property
    def console(self) -> Console:
        return self.sweep.console

    @property
    def stop(self) -> StopRequests:
        return self.sweep.stop

    def run(self) -> None:
        import ray

        plain = not self.console.is_terminal
        self.say = self.sweep.say()
        driver_node = ray.get_runtime_context().get_node_id()
        strategy = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
            driver_node, soft=False
        )
        self.inbox = ray.remote(num_cpus=0)(_Inbox).options(scheduling_strategy=strategy).remote()
        remote = ray.remote(max_retries=0)(cell_task).options(**self.slots.resources)
        total = sum(len(v) for v in self.todo.values())
        with Progress(*progress_columns(), console=self.console, disable=plain) as self.progress:
            self.overall = self.progress.add_task("all images", total=total)
            self.say(f"ray: {self.slots.describe()}, {len(self.slots.nodes)} node(s)")
            with self.stop.deferred():
                try:
                    self._submit(remote)
                    self._follow()
                except BaseException:
                    self._cancel(force=True)
                    raise
                finally:
                    with contextlib.suppress(Exception):  # the cluster may be gone with it
                        ray.kill(self.inbox)

    def _submit(self, remote: Any) -> None:
        plan = self.sweep.plan
        config_dir = (Path(plan.config_path).parent if plan.config_path else Path()).resolve()
        for cell in self.manifest["cells"]:
            cell_id = cell["cell_id"]
            if cell_id not in self.todo:
                continue
            owed = self.todo[cell_id]
            unavailable = self.sweep.record_unavailable(cell, self.have_cell_record)
            if unavailable is not None:
                self.progress.advance(self.overall, len(owed))
                self.say(f"{cell_id}: unavailable ({unavailable})")
                continue
            # run_dir: the task's own folder, set there
            job = cell_job(plan, self.manifest, cell, owed, cell_id not in self.have_cell_record)
            progress_task = self.progress.add_task(f"{cell_id}: queued", total=len(owed))
            line = CellProgress(
                self.progress, progress_task, self.overall, self.say, cell, len(owed)
            )
            prepare = {
                "config": self.manifest["config"],
                "config_dir": str(config_dir),
                "variant": cell["variant"],
            }
            ref = remote.remote(job, self.slots.threads_by_node, self.inbox, prepare)
            task = _Task(cell, owed, time.time(), line)
            self.pending[ref] = task
            self.by_cell[cell_id] = task

    def _follow(self) -> None:
        import ray

        last_check = time.monotonic()
        while self.pending:
            if self.stop.requested:
                self._stop_all()
                raise KeyboardInterrupt
            self._events()
            # Back as soon as one task is done (a result waits for no poll), then every other
            # one that is done too.
            ready, rest = ray.wait(list(self.pending), num_returns=1, timeout=POLL_S)
            if ready and rest:
                ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            self._events()
            if self.stop.requested:
                continue  # a Ctrl-C reaches the tasks too: what they return now is no result
            for ref in ready:
                self._finish(ref, self.pending.pop(ref))
            if time.monotonic() - last_check > FEASIBLE_CHECK_S:
                last_check = time.monotonic()
                self._check_feasible()

    def _events(self) -> None:
        import ray

        for event in ray.get(self.inbox.take.remote()):
            task = self.by_cell.get(event.get("cell_id", ""))
            if task is not None:
                self._show(task, event)

    def _show(self, task: _Task, event: dict[str, Any]) -> None:
        cell_id = task.cell["cell_id"]
        kind = event["kind"]
        if kind == "started":
            task.started = event
            gpu = event.get("gpu") or {}
            where = event["node"]["hostname"]
            if gpu:
                where += f", GPU {gpu.get('name') or gpu.get('ray_gpu_id')}"
            self.progress.update(task.line.task, description=f"{cell_id}: loading ({where})")
            self.say(
                f"{cell_id}: started on {where} (node {event['node']['ray_node_id'][:12]}, "
                f"worker pid {event['worker_pid']})"
            )
        elif kind == "preparing":
            self.progress.update(task.line.task, description=f"{cell_id}: preparing inputs")
            self.say(f"{cell_id}: preparing on its node, which lacks {', '.join(event['missing'])}")
        elif kind == "process":
            if task.started is not None:
                task.started["cell_pid"] = event["pid"]
            self.say(f"{cell_id}: cell process {event['pid']}")
        elif kind == "note":  # shown on a terminal too: it changes how cells start there
            node = (task.started or {}).get("node") or {}
            where = f" on {node['hostname']}" if node.get("hostname") else ""
            self.console.print(f"{cell_id}{where}: note: {event['message']}", highlight=False)
        else:
            task.line.show(event)

    def _finish(self, ref: Any, task: _Task) -> None:
        """Write what one finished (or failed) task brought back."""
        import ray

        received = time.time()
        cell_id = task.cell["cell_id"]
        try:
            result = ray.get(ref)
        except ray.exceptions.RayError as exc:
            if _interrupted(exc):
                # Stopped by a signal that reached its worker, not a fault: nothing recorded, the
                # cell stays missing for `--resume`.
                self.say(f"{cell_id}: interrupted, left for --resume")
                self.progress.update(task.line.task, completed=len(task.owed))
                return
            node = (task.started or {}).get("node")
            error = {
                "type": _error_type(exc),
                "message": _first_lines(exc, node),
                "phase": task.line.phase if task.started else "not started",
            }
            self.sweep.record_crash(task.cell, task.owed, error, _origin(task.started, None))
            self.say(f"{cell_id}: crashed ({error['type']})")
        else:
            self._write(task, result, received)
        task.line.finish()

    def _write(self, task: _Task, result: dict[str, Any], received: float) -> None:
        origin = _origin(result, result.get("torch_threads"))
        timing = result["timing"]
        begin = time.monotonic()
        for rel, data in result["images"].items():
            path = self.run_dir / rel
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RunFolderWriteError.from_os_error(path.parent, exc) from exc
            write_file_atomic(path, lambda handle, data=data: handle.write(data))
        ray_timing = {
            "queued_s": timing["task_start"] - task.submitted,
            "setup_s": timing["child_start"] - timing["task_start"],
            # The warm server's start (imports) when this Ray worker runs its first cell, else
            # one fork: bench.runner.processes.
            "process_start_s": timing["process_started"] - timing["child_start"],
            "cell_s": timing["child_end"] - timing["process_started"],
            "collect_s": timing["task_end"] - timing["child_end"],
            "return_s": received - timing["task_end"],
            "images_write_s": time.monotonic() - begin,
            "image_bytes": sum(len(d) for d in result["images"].values()),
        }
        differ = self._package_differences(result.get("packages") or {})
        out = []
        for record in result["records"]:
            record = {**record, **origin}
            if record["kind"] == "cell":
                record["ray"] = ray_timing
                record["packages"] = result.get("packages")
            out.append(record)
        append_jsonl(self.run_dir / RECORDS, out)
        self._note_gpu(result.get("gpu"))
        self._note_packages(task.cell["cell_id"], result["node"], differ)
        if result["write_failed"]:
            error = {
                "type": "TaskFolderWriteError",
                "message": f"{result['node']['hostname']}: {result['write_failed']}",
                "phase": result["phase"],
            }
            self.sweep.record_crash(task.cell, task.owed, error, origin)
        elif result["exitcode"] != 0:
            where = f" on {result['node']['hostname']}"
            error = process_crash(result["exitcode"], result["phase"], where)
            self.sweep.record_crash(task.cell, task.owed, error, origin)
        elif out:
            self.say(f"{task.cell['cell_id']}: done on {result['node']['hostname']}")

    def _note_gpu(self, gpu: dict[str, Any] | None) -> None:
        name = (gpu or {}).get("name")
        if name and name not in self.entry["gpu_models"]:
            self.entry["gpu_models"] = sorted([*self.entry["gpu_models"], name])
            write_json_atomic(self.run_dir / MANIFEST, self.manifest)

    def _package_differences(self, packages: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Packages whose version on the cell's node is not the driver's (the manifest's)."""
        driver = (self.manifest.get("environment") or {}).get("packages") or {}
        return {
            name: {"driver": driver.get(name), "node": version}
            for name, version in packages.items()
            if name in driver and driver.get(name) != version
        }

    def _note_packages(
        self, cell_id: str, node: dict[str, Any], differ: dict[str, dict[str, Any]]
    ) -> None:
        """The manifest's environment is the driver's: a cell that ran with other versions is
        listed in the executor's entry, and said, so that the manifest never claims it."""
        if not differ:
            return
        mismatches = self.entry.setdefault("package_mismatches", [])
        mismatches.append(
            {"cell_id": cell_id, "hostname": node.get("hostname"), "packages": differ}
        )
        write_json_atomic(self.run_dir / MANIFEST, self.manifest)
        shown = ", ".join(f"{n} {v['driver']} here, {v['node']} there" for n, v in differ.items())
        self.console.print(f"{cell_id}: ran on {node.get('hostname')} with {shown}")

    def _check_feasible(self) -> None:
        """Stop instead of waiting for ever when no node left can run the waiting cells."""
        import ray

        if not self.pending or any(t.started for t in self.pending.values()):
            return
        need = "GPU" if self.slots.kind == "gpu" else "CPU"
        if float(ray.cluster_resources().get(need, 0)) >= 1:
            self.unschedulable_since = None
            return
        now = time.monotonic()
        if self.unschedulable_since is None:
            self.unschedulable_since = now
            self.say(f"ray: no node with a {need} left; waiting up to {UNSCHEDULABLE_S:.0f} s")
        if now - self.unschedulable_since < UNSCHEDULABLE_S:
            return
        waiting = len(self.pending)
        self._cancel(force=True)
        raise ClusterCannotRun(
            f"the Ray cluster has no {need} left for the {waiting} cell(s) still to run; "
            f"they stay missing in {self.run_dir}: resume it once the cluster has nodes again"
        )

    def _stop_all(self) -> None:
        """Cancel every task (they stop their cells), keep what finished meanwhile, then kill
        what did not end within the grace period."""
        import ray

        self._cancel(force=False)
        deadline = time.monotonic() + STOP_GRACE_S
        while self.pending and time.monotonic() < deadline:
            ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=POLL_S)
            for ref in ready:
                task = self.pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError:
                    continue  # cancelled: nothing written, stays missing
                self._write(task, result, time.time())
        self._cancel(force=True)

    def _cancel(self, force: bool) -> None:
        import ray

        for ref in list(self.pending):
            try:
                ray.cancel(ref, force=force)
            except Exception:  # already finished, or its worker is gone
                continue
        if force:
            self.pending.clear()


def _origin(source: dict[str, Any] | None, threads: int | None) -> dict[str, Any]:
    """The fields every record of a Ray task carries: where it ran."""
    source = source or {}
    return {
        "executor": "ray",
        "node": source.get("node"),
        "gpu": source.get("gpu"),
        "torch_threads": threads,
    }


def _interrupted(exc: BaseException) -> bool:
    import ray

    if isinstance(exc, ray.exceptions.TaskCancelledError):
        return True
    return isinstance(getattr(exc, "cause", None), KeyboardInterrupt)


def _error_type(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if type(exc).__name__ == "RayTaskError" and cause is not None:
        return type(cause).__name__
    return type(exc).__name__


def _first_lines(exc: BaseException, node: dict[str, Any] | None) -> str:
    text = " ".join(str(exc).split())[:1500] or repr(exc)
    where = f"on {node['hostname']} (node {node['ray_node_id']}): " if node else ""
    return f"{where}{text}"
