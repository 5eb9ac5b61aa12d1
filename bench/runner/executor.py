"""Sweep the cells of a config, one fresh process each, into a run folder.

The parent validates everything first (a bad config creates no folder), prepares the base
pipeline and the GGUF files, writes the manifest, then starts each cell in a `spawn`ed process
and follows its progress. A cell that cannot run, or whose process dies, becomes a record; the
sweep always goes on to the next cell.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
from dataclasses import dataclass, field
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

from bench.config import BenchConfig, GGUFVariant, config_hash, load_config
from bench.environment import collect_environment, quiet_library_environment
from bench.errors import ConfigError
from bench.matrix import expand_cells, expand_images, resolve_prompts
from bench.models.variants import PreparedVariant, check_local_files, prepare_variant, resolve_base
from bench.results import (
    MANIFEST,
    RECORDS,
    SCHEMA_VERSION,
    append_jsonl,
    cell_records,
    image_records,
    missing_work,
    new_run_id,
    read_manifest,
    read_records,
    record_header,
    repair_torn_tail,
    utc_now,
    write_json_atomic,
)
from bench.runner.worker import CellJob, run_cell


@dataclass
class RunPlan:
    config: BenchConfig
    config_path: str | None
    prompts: list[dict[str, str]]
    images: list[dict[str, Any]]
    cells: list[dict[str, Any]]
    only: list[str] | None = None
    prepared: dict[str, PreparedVariant] = field(default_factory=dict)
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
        if isinstance(variant, GGUFVariant) and variant.file is None:
            label += f" (quantizing the transformer to {variant.quant})"
        with console.status(label):
            plan.prepared[variant.name] = prepare_variant(variant, plan.base, config_dir)


def _manifest(plan: RunPlan, run_id: str) -> dict[str, Any]:
    config = plan.config
    cells = []
    for cell in plan.cells:
        prepared = plan.prepared.get(cell["variant"], PreparedVariant())
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
        "environment": collect_environment(),
    }


def _run_cells(run_dir: Path, manifest: dict[str, Any], plan: RunPlan, console: Console) -> None:
    config = plan.config
    prompt_text = {p["id"]: p["text"] for p in manifest["prompts"]}
    records = read_records(run_dir)
    todo = missing_work(manifest, records)
    have_cell_record = set(cell_records(records))
    total_images = sum(len(v) for v in todo.values())
    ctx = mp.get_context("spawn")
    quiet_library_environment()

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
            prepared = plan.prepared.get(cell["variant"], PreparedVariant())
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
            job = CellJob(
                run_dir=str(run_dir),
                run_id=manifest["run_id"],
                cell=cell,
                images=[{**i, "prompt": prompt_text[i["prompt_id"]]} for i in owed],
                write_cell_record=cell_id not in have_cell_record,
                base_model=plan.base,
                revision=config.model.revision,
                gguf_file=prepared.gguf_file,
                device=config.device,
                steps=config.steps,
                guidance=config.guidance,
                max_sequence_length=config.max_sequence_length,
                warmup=config.warmup,
                warmup_prompt=manifest["prompts"][0]["text"],
            )
            _follow_cell(ctx, job, run_dir, manifest, cell, owed, progress, task, overall, say)


def _follow_cell(
    ctx: Any,
    job: CellJob,
    run_dir: Path,
    manifest: dict[str, Any],
    cell: dict[str, Any],
    owed: list[dict],
    progress: Progress,
    task: Any,
    overall: Any,
    say: Any,
) -> None:
    """Start the cell's process, show its events, and record it if it dies.

    The last event tells which phase a crashed process was in: no event yet means loading.
    """
    cell_id = cell["cell_id"]
    events: Any = ctx.Queue()
    process = ctx.Process(target=run_cell, args=(job, events), name=f"cell-{cell_id}")
    process.start()
    done = 0
    phase = "load"
    while True:
        try:
            event = events.get(timeout=0.2)
        except queue.Empty:
            if not process.is_alive():
                break
            continue
        if event["kind"] == "loaded":
            phase = "warmup"
            progress.update(task, description=f"{cell_id}: warming up")
            say(f"{cell_id}: loaded in {event['load_s']:.2f} s")
        elif event["kind"] == "warm":
            phase = "generate"
            progress.update(task, description=f"{cell_id}: generating")
        elif event["kind"] == "image":
            done += 1
            progress.advance(task)
            progress.advance(overall)
            wall = f"{event['wall_s']:.2f} s" if event.get("wall_s") else event["status"]
            say(f"{cell_id}: image {done}/{len(owed)} {wall}")
        elif event["kind"] == "cell_failed":
            error = event["error"]
            progress.update(task, description=f"{cell_id}: {error['type']}")
            say(f"{cell_id}: failed in {error['phase']}: {error['type']}")
    process.join()
    _after_cell(run_dir, manifest, cell, owed, process.exitcode, phase)
    progress.update(task, completed=len(owed))
    progress.advance(overall, len(owed) - done)


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


def run_config(
    config_path: Path,
    out_root: Path,
    only: list[str] | None = None,
    console: Console | None = None,
) -> Path:
    """Validate, prepare, and run a new sweep; returns the run folder."""
    console = console or Console(stderr=True)
    plan = plan_run(config_path, only)
    _prepare(plan, config_path.parent.resolve(), console)
    run_id = new_run_id(plan.config.name)
    run_dir = out_root / run_id
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = out_root / f"{run_id}-{suffix}"
    run_dir.mkdir(parents=True)
    manifest = _manifest(plan, run_dir.name)
    write_json_atomic(run_dir / MANIFEST, manifest)
    (run_dir / RECORDS).touch()
    _run_cells(run_dir, manifest, plan, console)
    manifest["finished_at"] = utc_now()
    write_json_atomic(run_dir / MANIFEST, manifest)
    return run_dir


def resume_run(run_dir: Path, console: Console | None = None) -> Path:
    """Run what a run folder still misses, with the config stored in its manifest."""
    console = console or Console(stderr=True)
    manifest = read_manifest(run_dir)
    repair_torn_tail(run_dir / RECORDS)
    config = BenchConfig.model_validate(manifest["config"])
    plan = RunPlan(
        config=config,
        config_path=manifest.get("config_path"),
        prompts=manifest["prompts"],
        images=manifest["images"],
        cells=manifest["cells"],
        only=manifest.get("only"),
    )
    config_dir = Path(manifest["config_path"]).parent if manifest.get("config_path") else Path()
    _prepare(plan, config_dir.resolve(), console)
    _run_cells(run_dir, manifest, plan, console)
    manifest["finished_at"] = utc_now()
    write_json_atomic(run_dir / MANIFEST, manifest)
    return run_dir
