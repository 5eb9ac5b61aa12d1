"""What a sweep runs: the plan of a config (its cells, images and prepared variants) and the job
one cell's process is handed.

Shared by every executor (bench.runner.executor_base): the plan is made once by the sweep
(bench.runner.executor), each executor turns the cells the run folder still owes into CellJobs
(`cell_job`) and starts them where it runs cells; the worker (bench.runner.worker) runs a job
the same way whichever executor started it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.backends.base import Prepared
from bench.cells import expand_cells, expand_images, resolve_prompts
from bench.config import BenchConfig, load_config
from bench.errors import ConfigError
from bench.models.variants import check_local_files


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

    def prepared_for(self, cell: dict[str, Any]) -> Prepared:
        """What the cell's variant's backend prepared (nothing, for a backend that prepares
        nothing)."""
        return self.prepared.get(cell["variant"], Prepared())


@dataclass(frozen=True)
class CellJob:
    """Everything the child needs, picklable; the config travels as its JSON dump."""

    run_dir: str
    run_id: str
    cell: dict[str, Any]  # manifest entry of the cell
    images: list[dict[str, Any]]  # {prompt_id, prompt, repeat, seed} still owed
    write_cell_record: bool
    base_model: str
    revision: str | None
    artifacts: dict[str, str]  # what the variant's backend prepared (bench.backends.Prepared)
    device: str
    steps: int
    guidance: float
    max_sequence_length: int
    warmup: int
    warmup_prompt: str
    # The sweep's own process: its CPU time is the harness's, not other work on the machine.
    driver_pid: int | None = None
    family: str = "flux"  # bench.families: how the pipeline is called and its output taken
    num_frames: int | None = None  # a video family's frames per generation (None: images)
    fps: int | None = None  # the frame rate its videos are saved at


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
                # Only a speed-up cell has these: a manifest without speed-ups is as before.
                **(
                    {"speedup": c.speedup.name, "speedup_spec": c.speedup.model_dump(mode="json")}
                    if c.speedup is not None
                    else {}
                ),
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
    return CellJob(
        run_dir="",
        run_id=manifest["run_id"],
        cell=cell,
        images=[{**i, "prompt": prompt_text[i["prompt_id"]]} for i in owed],
        write_cell_record=write_cell_record,
        base_model=plan.base,
        revision=config.model.revision,
        artifacts=plan.prepared_for(cell).artifacts,
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
