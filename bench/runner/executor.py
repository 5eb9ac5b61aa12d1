"""The sweep: a config's cells, each in a fresh process, into a run folder (`bench run`).

The parent validates everything first (a bad config or output folder creates no folder),
plans the cells and seeds (bench.runner.plan), prepares the base pipeline and the GGUF files,
takes the folder's lock, writes the manifest, then hands the cells the folder still owes to
the chosen executor (bench.runner.executor_base; local processes one at a time, or Ray tasks),
and marks the run finished. A cell that cannot run, or whose process dies, becomes a record;
the sweep always goes on to the next cell. A signal stops the sweep with nothing recorded for
the work in flight (bench.runner.interrupt); a folder that cannot be written stops it with one
error; in both cases `--resume` finishes the folder.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.backends import backend_for
from bench.config import config_hash, validate_config
from bench.environment import collect_environment
from bench.errors import UserInputError
from bench.library_output import quiet_library_environment
from bench.models.variants import prepare_variant, resolve_base
from bench.results import (
    MANIFEST,
    RECORDS,
    SCHEMA_VERSION,
    RunFolderWriteError,
    append_jsonl,
    describe_duplicates,
    duplicate_records,
    missing_work,
    new_run_id,
    read_manifest,
    read_records,
    remove_temporary_files,
    repair_torn_tail,
    require_run_dir,
    utc_now,
    write_json_atomic,
)
from bench.runner.executor_base import Sweep
from bench.runner.executor_choice import LOCAL, ExecutorChoice
from bench.runner.interrupt import RunInterrupted, StopRequests
from bench.runner.lock import RunFolderLock
from bench.runner.plan import RunPlan, plan_run
from bench.runner.processes import call_in_fresh_process, cell_context, usable_context


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
        cells.append({**cell, "transformer_file": plan.prepared_for(cell).file_info})
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
    leave `finished_at` null and say which folder to resume.

    The one place that hands the cells to an executor: the one `executor` names in the registry
    (bench.runner.executor_choice); every executor writes the same run folder."""
    try:
        sweep = Sweep(run_dir, manifest, plan, console, stop, context)
        ran = executor.executor().run(sweep)
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
    import bench.cell_summary  # noqa: F401  (pandas: imported while the server warms up)


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
