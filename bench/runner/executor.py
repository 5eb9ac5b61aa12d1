"""Sweep the cells of a config, one fresh process each, into a run folder.

The parent validates everything first (a bad config or output folder creates no folder),
prepares the base pipeline and the GGUF files, takes the folder's lock, writes the manifest,
then starts each cell in its own process (forked from a warm server, bench.runner.processes)
and follows its progress. A cell that cannot run, or whose process dies, becomes a record; the
sweep always goes on to the next cell. A signal stops the sweep with nothing recorded for the
work in flight (bench.runner.interrupt); a folder that cannot be written stops it with one
error; in both cases `--resume` finishes the folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from dataclasses import dataclass, field, replace
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bench.backends import backend_for
from bench.cells import expand_cells, expand_images, resolve_prompts
from bench.config import BenchConfig, config_hash, load_config, validate_config
from bench.environment import collect_environment, quiet_library_environment
from bench.errors import ConfigError, UserInputError
from bench.models.variants import Prepared, check_local_files, prepare_variant, resolve_base
from bench.results import (
    IMAGES,
    MANIFEST,
    RECORDS,
    SCHEMA_VERSION,
    RunFolderWriteError,
    append_jsonl,
    cell_records,
    describe_duplicates,
    duplicate_records,
    image_records,
    missing_work,
    new_run_id,
    read_manifest,
    read_records,
    record_header,
    remove_temporary_files,
    repair_torn_tail,
    require_run_dir,
    utc_now,
    write_json_atomic,
)
from bench.runner.executor_choice import LOCAL, ExecutorChoice
from bench.runner.interrupt import RunInterrupted, StopRequests
from bench.runner.lock import RunFolderLock
from bench.runner.processes import (
    born_ignoring_sigint,
    call_in_fresh_process,
    cell_context,
    usable_context,
)
from bench.runner.worker import WRITE_FAILED_EXIT, CellJob, run_cell

STOP_GRACE_S = 10.0  # how long a stopped cell may take to end before it is killed


@dataclass
class RunPlan:
    config: BenchConfig
    config_path: str | None
    prompts: list[dict[str, str]]
    images: list[dict[str, Any]]
    cells: list[dict[str, Any]]
    only: list[str] | None = None
    prepared: dict[str, Prepared] = field(default_factory=dict)
    base: str = ""


def plan_run(config_path: Path, only: list[str] | None = None) -> RunPlan:
    """Validate the config and everything it names; raises ConfigError before any file exists."""
    config, config_dir = load_config(config_path)
    try:
        check_local_files(config, config_dir)
        prompts = resolve_prompts(config, config_dir)
    except ConfigError as exc:
        raise ConfigError(f"{config_path}: {exc}") from exc
    cells = expand_cells(config, only)
    images = expand_images(config, prompts)
    return RunPlan(
        config=config,
        config_path=str(config_path),
        prompts=[{"id": p.id, "text": p.text} for p in prompts],
        images=[{"prompt_id": i.prompt_id, "repeat": i.repeat, "seed": i.seed} for i in images],
        cells=[
            {
                "cell_id": c.cell_id,
                "variant": c.variant.name,
                "offload": c.offload.label,
                "height": c.resolution.height,
                "width": c.resolution.width,
                "variant_spec": c.variant.model_dump(mode="json"),
                "offload_spec": c.offload.model_dump(mode="json"),
                # A video family's frames: what every later stage reads a video's length from.
                **(
                    {"num_frames": config.frames, "fps": config.frame_rate}
                    if config.frames is not None
                    else {}
                ),
            }
            for c in cells
        ],
        only=only,
    )


def _prepare(plan: RunPlan, config_dir: Path, console: Console) -> None:
    config = plan.config
    with console.status("preparing the base pipeline"):
        plan.base = resolve_base(config)
    wanted = {c["variant"] for c in plan.cells}
    for variant in config.variants:
        if variant.name not in wanted:
            continue
        label = f"preparing {variant.name}"
        doing = backend_for(variant).prepare_message(variant)
        if doing:
            label += f" ({doing})"
        with console.status(label):
            plan.prepared[variant.name] = prepare_variant(variant, plan.base, config_dir)


def _manifest(plan: RunPlan, run_id: str, environment: dict[str, Any]) -> dict[str, Any]:
    config = plan.config
    cells = []
    for cell in plan.cells:
        prepared = plan.prepared.get(cell["variant"], Prepared())
        cells.append({**cell, "transformer_file": prepared.file_info})
    return {
        "schema": SCHEMA_VERSION,
        "run_id": run_id,
        "created_at": utc_now(),
        "finished_at": None,
        "config": config.model_dump(mode="json"),
        "config_hash": config_hash(config),
        "config_path": plan.config_path,
        "only": plan.only,
        "base_model": {
            "source": config.model.source,
            "preset": config.model.preset if config.model.source == "synthetic" else None,
            "path": config.model.path,
            "resolved_path": plan.base,
            "synthetic": config.model.source == "synthetic",
        },
        "prompts": plan.prompts,
        "images": plan.images,
        "cells": cells,
        "environment": environment,
    }


def cell_job(
    plan: RunPlan,
    manifest: dict[str, Any],
    cell: dict[str, Any],
    owed: list[dict[str, Any]],
    write_cell_record: bool,
) -> CellJob:
    """What one cell's process needs, whichever executor starts it (run_dir left to it)."""
    config = plan.config
    prompt_text = {p["id"]: p["text"] for p in manifest["prompts"]}
    prepared = plan.prepared.get(cell["variant"], Prepared())
    return CellJob(
        run_dir="",
        run_id=manifest["run_id"],
        cell=cell,
        images=[{**i, "prompt": prompt_text[i["prompt_id"]]} for i in owed],
        write_cell_record=write_cell_record,
        base_model=plan.base,
        revision=config.model.revision,
        artifacts=prepared.artifacts,
        device=config.device,
        steps=config.steps,
        guidance=config.guidance,
        max_sequence_length=config.max_sequence_length,
        warmup=config.warmup,
        warmup_prompt=manifest["prompts"][0]["text"],
        family=config.model.family,
        num_frames=cell.get("num_frames"),
        fps=cell.get("fps"),
    )


def _run_cells(
    run_dir: Path,
    manifest: dict[str, Any],
    plan: RunPlan,
    console: Console,
    context: Any,
    stop: StopRequests,
) -> bool:
    """Run every cell that still owes records; True when there was any."""
    records = read_records(run_dir)
    todo = missing_work(manifest, records)
    have_cell_record = set(cell_records(records))
    total_images = sum(len(v) for v in todo.values())

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    # Without a terminal (CI logs, pipes) a live display shows nothing until the end: then each
    # event is one plain line instead.
    plain = not console.is_terminal

    def say(message: str) -> None:
        if plain:
            console.print(message, highlight=False)

    with Progress(*columns, console=console, transient=False, disable=plain) as progress:
        overall = progress.add_task("all images", total=total_images)
        for cell in manifest["cells"]:
            cell_id = cell["cell_id"]
            if cell_id not in todo:
                continue
            owed = todo[cell_id]
            prepared = plan.prepared.get(cell["variant"], Prepared())
            if prepared.unavailable is not None:
                if cell_id not in have_cell_record:
                    append_jsonl(
                        run_dir / RECORDS,
                        [_cell_stub(manifest, cell, "unavailable", prepared.unavailable)],
                    )
                progress.advance(overall, len(owed))
                say(f"{cell_id}: unavailable ({prepared.unavailable['message']})")
                continue
            task = progress.add_task(f"{cell_id}: loading", total=len(owed))
            job = cell_job(plan, manifest, cell, owed, cell_id not in have_cell_record)
            job = replace(job, run_dir=str(run_dir), driver_pid=os.getpid())
            follower = _CellFollower(context, job, progress, task, overall, say, stop)
            exitcode, phase = follower.run()
            _after_cell(run_dir, manifest, cell, owed, exitcode, phase)
            progress.update(task, completed=len(owed))
            progress.advance(overall, len(owed) - follower.done)
    return bool(todo)


@dataclass
class _CellFollower:
    """Start one cell's process, show its events, and stop it on request.

    The last event tells which phase a crashed process was in: no event yet means loading.
    """

    context: Any
    job: CellJob
    progress: Progress
    task: Any
    overall: Any
    say: Any
    stop: StopRequests
    done: int = 0
    phase: str = "load"
    write_failed: str | None = None

    def run(self) -> tuple[int, str]:
        """The process's exit code and last phase; KeyboardInterrupt when stopped by a signal,
        RunFolderWriteError when the cell could not write the folder."""
        receive, send = self.context.Pipe(duplex=False)
        name = f"cell-{self.job.cell['cell_id']}"
        process = self.context.Process(target=run_cell, args=(self.job, send), name=name)
        with self.stop.deferred():
            try:
                # A forked cell inherits the server's ignored SIGINT; a `spawn`ed one must be
                # born with it.
                spawned = self.context.get_start_method() == "spawn"
                with born_ignoring_sigint() if spawned else contextlib.nullcontext():
                    process.start()
                self.stop.follow(process.pid)
                send.close()  # the child has its own end; EOF on ours once it is gone
                self._events(receive, process)
                if self.stop.requested:
                    self._stop_process(process)
            except BaseException:
                self._stop_process(process)
                raise
            finally:
                self.stop.follow(None)
                receive.close()
        process.join()
        if self.stop.requested:
            raise KeyboardInterrupt
        if process.exitcode == WRITE_FAILED_EXIT and self.write_failed is not None:
            raise RunFolderWriteError(self.write_failed)
        return process.exitcode, self.phase

    def _events(self, receive: Any, process: Any) -> None:
        while not self.stop.requested:
            ready = wait([receive, process.sentinel], timeout=0.25)
            if receive in ready:
                try:
                    self._show(receive.recv())
                except EOFError:
                    process.join()
                    return
                continue
            if process.sentinel in ready:
                while receive.poll():
                    try:
                        self._show(receive.recv())
                    except EOFError:
                        break
                return

    def _show(self, event: dict[str, Any]) -> None:
        cell_id = self.job.cell["cell_id"]
        owed = len(self.job.images)
        if event["kind"] == "loaded":
            self.phase = "warmup"
            self.progress.update(self.task, description=f"{cell_id}: warming up")
            self.say(f"{cell_id}: loaded in {event['load_s']:.2f} s")
        elif event["kind"] == "warm":
            self.phase = "generate"
            self.progress.update(self.task, description=f"{cell_id}: generating")
        elif event["kind"] == "image":
            self.done += 1
            self.progress.advance(self.task)
            self.progress.advance(self.overall)
            wall = f"{event['wall_s']:.2f} s" if event.get("wall_s") else event["status"]
            what = "video" if self.job.num_frames else "image"
            self.say(f"{cell_id}: {what} {self.done}/{owed} {wall}")
        elif event["kind"] == "cell_failed":
            error = event["error"]
            self.progress.update(self.task, description=f"{cell_id}: {error['type']}")
            self.say(f"{cell_id}: failed in {error['phase']}: {error['type']}")
        elif event["kind"] == "write_failed":
            self.write_failed = event["message"]

    def _stop_process(self, process: Any) -> None:
        """End the cell now; what it was writing is whole or absent, and absent stays missing."""
        if process.pid is None:
            return
        if process.is_alive():
            process.terminate()
            process.join(STOP_GRACE_S)
        if process.is_alive():
            process.kill()
        process.join()
        cell_images = Path(self.job.run_dir) / IMAGES / self.job.cell["cell_id"]
        if cell_images.is_dir():
            remove_temporary_files(cell_images)


def _cell_stub(
    manifest: dict[str, Any], cell: dict[str, Any], status: str, error: dict[str, str]
) -> dict[str, Any]:
    return {
        **record_header(manifest["run_id"], cell),
        "kind": "cell",
        "status": status,
        "error": error,
        "time": utc_now(),
    }


def _after_cell(
    run_dir: Path,
    manifest: dict[str, Any],
    cell: dict[str, Any],
    owed: list[dict],
    exitcode: int,
    phase: str,
) -> None:
    """A cell process that died leaves records saying so, instead of silent gaps."""
    if exitcode == 0:
        return
    how = f"signal {-exitcode}" if exitcode < 0 else f"exit code {exitcode}"
    error = {"type": "ProcessCrashed", "message": f"cell process ended with {how}", "phase": phase}
    records = read_records(run_dir)
    cell_id = cell["cell_id"]
    if cell_id not in cell_records(records):
        append_jsonl(run_dir / RECORDS, [_cell_stub(manifest, cell, "crashed", error)])
        return
    done = image_records(records)
    lost = [
        {**_cell_stub(manifest, cell, "failed", error), "kind": "image", **image, "image": None}
        for image in owed
        if (cell_id, image["prompt_id"], image["repeat"]) not in done
    ]
    append_jsonl(run_dir / RECORDS, lost)


def run_cells(
    run_dir: Path,
    manifest: dict[str, Any],
    plan: RunPlan,
    console: Console,
    context: Any,
    stop: StopRequests,
    executor: ExecutorChoice = LOCAL,
) -> bool:
    """The one place that chooses how cells run: here one at a time, or as Ray tasks
    (bench.runner.ray_executor); both write the same run folder. True when work was owed."""
    if executor.is_local:
        return _run_cells(run_dir, manifest, plan, console, context, stop)
    from bench.runner.ray_executor import run_cells_on_ray

    return run_cells_on_ray(run_dir, manifest, plan, console, stop, executor)


def _sweep(
    run_dir: Path,
    manifest: dict[str, Any],
    plan: RunPlan,
    console: Console,
    context: Any,
    stop: StopRequests,
    executor: ExecutorChoice = LOCAL,
) -> None:
    """Run the missing cells, then mark the run finished; interruptions and write failures
    leave `finished_at` null and say which folder to resume."""
    try:
        ran = run_cells(run_dir, manifest, plan, console, context, stop, executor)
        if ran or manifest.get("finished_at") is None:
            manifest["finished_at"] = utc_now()
            write_json_atomic(run_dir / MANIFEST, manifest)
    except KeyboardInterrupt:
        missing = sum(len(v) for v in missing_work(manifest, read_records(run_dir)).values())
        raise RunInterrupted(run_dir, stop.signum or signal.SIGINT, missing) from None
    except RunFolderWriteError as exc:
        exc.run_dir = run_dir
        raise


def _interrupted(stop: StopRequests, run_dir: Path | None) -> RunInterrupted:
    return RunInterrupted(run_dir, stop.signum or signal.SIGINT)


def _new_run_dir(out_root: Path, config_name: str) -> Path:
    """Create a fresh run folder (another run may be creating one of the same name)."""
    run_id = new_run_id(config_name)
    for suffix in range(1, 1000):
        run_dir = out_root / (run_id if suffix == 1 else f"{run_id}-{suffix}")
        try:
            run_dir.mkdir(parents=True)
        except FileExistsError:
            continue
        except NotADirectoryError as exc:
            raise UserInputError(
                f"{out_root}: a part of this path is a file, not a folder"
            ) from exc
        except OSError as exc:
            raise RunFolderWriteError.from_os_error(run_dir, exc) from exc
        return run_dir
    raise UserInputError(f"{out_root}: too many run folders named {run_id}")


def check_output_root(out_root: Path) -> None:
    """Refuse an output root that is a file (or under one) before anything is prepared."""
    for part in (out_root, *out_root.parents):
        if part.exists():
            if not part.is_dir():
                what = "is a file" if part == out_root else f"is under {part}, which is a file"
                raise UserInputError(f"{out_root}: {what}; expected a folder for run folders")
            return


def run_config(
    config_path: Path,
    out_root: Path,
    only: list[str] | None = None,
    console: Console | None = None,
    stop: StopRequests | None = None,
    executor: ExecutorChoice = LOCAL,
) -> Path:
    """Validate, prepare, and run a new sweep; returns the run folder.

    Raises UserInputError for bad input, RunFolderWriteError when the folder cannot be written,
    RunInterrupted (a KeyboardInterrupt) when a signal stopped the sweep.
    """
    console = console or Console(stderr=True)
    stop = stop or StopRequests()
    plan = plan_run(config_path, only)
    check_output_root(out_root)
    try:
        quiet_library_environment()
        context = cell_context()  # the warm server imports while the parent prepares
        _prepare(plan, config_path.parent.resolve(), console)
        run_dir = _new_run_dir(out_root, plan.config.name)
    except KeyboardInterrupt:
        raise _interrupted(stop, None) from None
    with RunFolderLock(run_dir):
        stop.run_dir = run_dir
        try:
            # Collected in a process forked from the warm server, where torch is imported
            # already: this process never imports torch nor touches CUDA (a context held here
            # would sit in every cell's device memory).
            _import_while_the_server_warms()
            context = _usable(context, console)
            environment = call_in_fresh_process(context, collect_environment)
            manifest = _manifest(plan, run_dir.name, environment)
            write_json_atomic(run_dir / MANIFEST, manifest)
            append_jsonl(run_dir / RECORDS, [])
        except BaseException as exc:
            # No manifest, no run folder: nothing half-written is left to trip a later stage.
            shutil.rmtree(run_dir, ignore_errors=True)
            if isinstance(exc, KeyboardInterrupt):
                raise _interrupted(stop, None) from None
            raise
        _sweep(run_dir, manifest, plan, console, context, stop, executor)
    return run_dir


def _usable(context: Any, console: Console) -> Any:
    """The context cells start from (bench.runner.processes.usable_context), said in one line
    when the warm server cannot serve them."""
    context, note = usable_context(context)
    if note:
        console.print(f"note: {note}", highlight=False)
    return context


def _import_while_the_server_warms() -> None:
    """A sweep ends with its table, read through bench.summary (pandas: about half a second of
    imports); imported now, while the cell server is still importing, it costs no wall time."""
    import bench.cell_summary  # noqa: F401


def first_difference(old: Any, new: Any, path: str = "") -> str | None:
    """The first key path where two config dumps differ, as `path: old (run) vs new`."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            where = f"{path}.{key}" if path else str(key)
            if key not in new:
                return f"{where}: {old[key]!r} in the run, absent in the config"
            if key not in old:
                return f"{where}: absent in the run, {new[key]!r} in the config"
            found = first_difference(old[key], new[key], where)
            if found:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list):
        for index, (a, b) in enumerate(zip(old, new, strict=False)):
            found = first_difference(a, b, f"{path}[{index}]")
            if found:
                return found
        if len(old) != len(new):
            return f"{path}: {len(old)} entries in the run, {len(new)} in the config"
        return None
    if old != new:
        return f"{path}: {old!r} in the run, {new!r} in the config"
    return None


def check_resume_matches(
    run_dir: Path, manifest: dict[str, Any], config_path: Path, only: list[str] | None
) -> None:
    """`bench run CONFIG --resume RUN_DIR` is accepted only when CONFIG is the run's config:
    the same hash (settings; names and descriptions aside), the same prompts and `--only`."""
    plan = plan_run(config_path, only)
    refused = f"{config_path} is not the config of {run_dir}"
    if config_hash(plan.config) != manifest.get("config_hash"):
        exclude = {"name", "description"}
        old = {k: v for k, v in (manifest.get("config") or {}).items() if k not in exclude}
        new = plan.config.model_dump(mode="json", exclude=exclude)
        difference = first_difference(old, new) or "config hash differs"
        raise UserInputError(f"{refused}: {difference}")
    if plan.prompts != manifest.get("prompts"):
        ran = {p["id"]: p["text"] for p in manifest.get("prompts") or []}
        now = {p["id"]: p["text"] for p in plan.prompts}
        changed = sorted(k for k in ran.keys() | now.keys() if ran.get(k) != now.get(k))
        raise UserInputError(f"{refused}: prompt {changed[0]!r} differs from the run's prompts")
    if sorted(only or []) != sorted(manifest.get("only") or []):
        raise UserInputError(
            f"{refused}: --only {sorted(only or [])} here, {sorted(manifest.get('only') or [])}"
            " in the run"
        )


def resume_run(
    run_dir: Path,
    console: Console | None = None,
    *,
    config_path: Path | None = None,
    only: list[str] | None = None,
    stop: StopRequests | None = None,
    executor: ExecutorChoice = LOCAL,
) -> Path:
    """Run what a run folder still misses, with the config stored in its manifest.

    `config_path` (and `only`), when given, must be the run's own: see check_resume_matches.
    """
    console = console or Console(stderr=True)
    stop = stop or StopRequests()
    require_run_dir(run_dir)
    with RunFolderLock(run_dir):
        stop.run_dir = run_dir
        manifest = read_manifest(run_dir)
        if config_path is not None:
            check_resume_matches(run_dir, manifest, config_path, only)
        elif only and sorted(only) != sorted(manifest.get("only") or []):
            raise UserInputError(
                f"--only {sorted(only)}: the run was started with "
                f"{sorted(manifest.get('only') or []) or 'every variant'}; drop --only"
            )
        config = validate_config(
            manifest.get("config"), f"{run_dir / MANIFEST}: config", recorded=True
        )
        repair_torn_tail(run_dir / RECORDS)
        remove_temporary_files(run_dir)
        records = read_records(run_dir)
        duplicates = duplicate_records(records)
        if duplicates:
            raise UserInputError(
                f"{run_dir / RECORDS}: {describe_duplicates(duplicates)}: two runs wrote this "
                "folder at once, so its timings are not trustworthy; start a new run"
            )
        plan = RunPlan(
            config=config,
            config_path=manifest.get("config_path"),
            prompts=manifest["prompts"],
            images=manifest["images"],
            cells=manifest["cells"],
            only=manifest.get("only"),
        )
        context = None
        try:
            if missing_work(manifest, records):
                quiet_library_environment()
                context = cell_context()
                config_dir = Path(plan.config_path).parent if plan.config_path else Path()
                _prepare(plan, config_dir.resolve(), console)
                context = _usable(context, console)
        except KeyboardInterrupt:
            raise _interrupted(stop, run_dir) from None
        _sweep(run_dir, manifest, plan, console, context, stop, executor)
    return run_dir
