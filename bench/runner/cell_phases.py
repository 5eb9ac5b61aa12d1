"""The phases of one cell, in its own process: load, warm up, generate, record.

Imported only by the cell's process (bench.runner.worker.run_cell, after the warm-up imports of
bench.runner.preload): it imports torch and the pipeline's libraries, which the sweep's own
process never does. `run_phases` reads top to bottom as the cell runs:

- load: the variant's runtime checked, the pipeline loaded and its offload applied, timed and
  measured (`_load`); a callable that generates one image or video (`_Generator`);
- warm-up: `job.warmup` generations that are not recorded but timed (`_warm_up`);
- the cell record: written when the cell got this far (`_record_cell`), or the failure of the
  load or warm-up recorded instead (`_record_failure`);
- generate: each owed image generated and measured (`_generate`), then recorded, its picture
  or frames saved before the record that names them (`_record_image`).

Every record is appended and flushed the moment it exists; a failure of the measured work is a
record, never a crash. Writing the run folder may raise RunFolderWriteError, which the worker
turns into its exit code.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch

from bench.backends import backend_for, load_pipeline, parse_variant
from bench.families import get_family
from bench.families.base import Family
from bench.metrics.noise_floor import floor_record, harmless_change
from bench.models.loading import component_weights, import_pipeline_classes, resolve_device
from bench.offload import OffloadSpec, apply_offload
from bench.results import (
    RECORDS,
    RunFolderWriteError,
    append_jsonl,
    frame_relpath,
    image_relpath,
    record_header,
    utc_now,
    video_relpath,
    write_file_atomic,
)
from bench.runner.memory import MemorySampler, monotonic, synchronize
from bench.runner.plan import CellJob
from bench.runner.timing import CallTimer, CpuMeter
from bench.speedups import parse_speedup, speedup_for
from bench.speedups.base import ApplyContext, Probe, SpeedupIncompatible

T = TypeVar("T")
Emit = Callable[..., None]  # emit(kind, **payload): one event to the executor


@dataclass
class _Cell:
    """One cell while it runs: its job, its cell record as the phases fill it, the memory
    sampler, and the phase a failure is charged to."""

    job: CellJob
    emit: Emit
    device: torch.device
    offload: OffloadSpec
    sampler: MemorySampler
    common: dict[str, Any]  # the fields every record of the cell starts with
    record: dict[str, Any] = field(default_factory=dict)
    phase: str = "load"
    speedup: Any = None  # the cell's speed-up spec (bench.speedups), if any
    probe: Probe | None = None  # what it reports

    @property
    def run_dir(self) -> Path:
        return Path(self.job.run_dir)

    @property
    def records_path(self) -> Path:
        return self.run_dir / RECORDS


def run_phases(job: CellJob, emit: Emit) -> None:
    """Run the cell; failures become records (see the module)."""
    cell = _start(job, emit)
    try:
        generate = _load(cell)
        _warm_up(cell, generate)
    except Exception as exc:
        # The error first: the cleanup below can raise again (a CUDA error poisons the context).
        _record_failure(cell, exc, traceback.format_exc(limit=8)[-4000:])
        return
    _record_cell(cell)
    for image in job.images:
        record, frames = _generate(cell, generate, image)
        _record_image(cell, image, record, frames)
    cell.sampler.stop()


def _start(job: CellJob, emit: Emit) -> _Cell:
    """The cell record's skeleton, and the memory sampler started with its baseline: before
    anything creates this process's CUDA context, which NVML's baseline must not hold."""
    common = record_header(job.run_id, job.cell)
    offload = OffloadSpec(**job.cell["offload_spec"])
    device = resolve_device(job.device)
    cell = _Cell(job, emit, device, offload, MemorySampler(device), common)
    cell.record = {
        **cell.common,
        "kind": "cell",
        "device": str(device),
        "status": "ok",
        "error": None,
        "load_s": None,
        "first_call_s": None,
        "warmup_s": [],
        "memory": {},
        "weights": {},
        "energy_supported": False,
    }
    cell.sampler.start()
    cell.record["memory"]["baseline"] = cell.sampler.baseline()
    return cell


def _load(cell: _Cell) -> _Generator:
    """Load the pipeline and apply the offload, timed and measured (phases `load`, `offload`)."""
    job, record, sampler, device = cell.job, cell.record, cell.sampler, cell.device
    # Inside the cell's failure handling: a variant this process cannot read is its failure.
    variant = parse_variant(job.cell["variant_spec"])
    # Every module the backend needs, named in one line before anything loads.
    backend_for(variant).check_runtime(variant)
    speedup = cell.speedup = _speedup_spec(cell, variant.kind)
    import_pipeline_classes(job.base_model, job.revision)
    if device.type == "cuda":
        # Libraries place weights on the current device, not the configured one (diffusers'
        # bitsandbytes quantizer: cuda:{torch.cuda.current_device()}). Creates the context.
        torch.cuda.set_device(device)
    sampler.attach()
    record["memory"]["baseline"] = sampler.baseline()
    record["energy_supported"] = sampler.energy_j() is not None
    record["nvml"] = sampler.describe()  # after the energy read: with its reason
    if record["nvml"] is not None:
        cell.emit("device", nvml=record["nvml"])
    sampler.begin_phase()
    started = monotonic()
    pipe = load_pipeline(job.base_model, variant, job.artifacts, job.revision)
    cell.phase = "offload"
    apply_offload(pipe, cell.offload, device)
    family = get_family(job.family)
    if speedup is not None:
        # After the offload, as diffusers' documentation orders them (a compiled graph is
        # traced through the offload hooks); its failure is the cell's, with diffusers' message.
        cell.phase = "speedup"
        context = ApplyContext(family.denoiser_module(pipe), job.steps, device.type, variant.kind)
        cell.probe = speedup_for(speedup).apply(pipe, speedup, context)
    # Copies to the device are asynchronous (and bitsandbytes quantizes on it): load time ends
    # when they have, not when the last one was queued.
    synchronize(device)
    record["load_s"] = monotonic() - started
    record["memory"]["load"] = sampler.end_phase()
    record["weights"] = component_weights(pipe)
    cell.emit("loaded", load_s=record["load_s"])

    timer = CallTimer(device)
    timer.watch(family.denoiser_module(pipe))
    numeric_change: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    noise_floor = getattr(variant, "noise_floor", None)
    if noise_floor:
        numeric_change = partial(harmless_change, noise_floor)
        record["noise_floor"] = floor_record(noise_floor, device.type, variant.dtype)
    return _Generator(job, pipe, family, timer, numeric_change)


@dataclass
class _Generator:
    """The loaded pipeline as one call per image (or video), its steps timed by `timer`."""

    job: CellJob
    pipe: Any
    family: Family
    timer: CallTimer
    numeric_change: Callable[[], contextlib.AbstractContextManager[Any]]

    def __call__(self, prompt: str, seed: int, size: tuple[int, int] | None = None) -> list[Any]:
        """One image (or video) at the cell's size, or at `size` (height, width)."""
        job = self.job
        height, width = size or (job.cell["height"], job.cell["width"])
        options = {"num_frames": job.num_frames} if job.num_frames is not None else None
        self.timer.reset()
        with self.numeric_change():
            frames = self.family.generate(
                self.pipe,
                prompt,
                height=height,
                width=width,
                steps=job.steps,
                guidance=job.guidance,
                max_sequence_length=job.max_sequence_length,
                # A CPU generator gives the same initial noise on every device (paired).
                generator=torch.Generator("cpu").manual_seed(seed),
                callback_on_step_end=self.timer.on_step_end,
                options=options,
            )
        self.timer.finish()
        return frames


def _warm_up(cell: _Cell, generate: _Generator) -> None:
    """`job.warmup` generations of the first prompt, timed but not recorded as images."""
    cell.phase = "warmup"
    cell.sampler.begin_phase()
    for _ in range(cell.job.warmup):
        cell.record["warmup_s"].append(_warm_call(generate))
    if cell.job.warmup:
        cell.record["first_call_s"] = cell.record["warmup_s"][0]
        cell.record["memory"]["warmup"] = cell.sampler.end_phase()
    if cell.probe is not None:
        # What the warm-up paid: a compiled cell's compile time and dynamo counters.
        cell.record["speedup"].update(cell.probe())
        after = speedup_for(cell.speedup).after_warmup(cell.speedup, partial(_warm_call, generate))
        for key, value in after.items():
            cell.record["speedup"].setdefault(key, {}).update(value)
    cell.emit("warm")


def _warm_call(generate: _Generator, size: tuple[int, int] | None = None) -> float:
    """One call of the warm-up prompt, not recorded as an image, at the cell's size or at `size`
    (height, width; a speed-up's `RunAt`): its wall seconds."""
    generate(generate.job.warmup_prompt, 0, size)
    return float(generate.timer.summary()["wall_s"])


def _speedup_spec(cell: _Cell, variant_kind: str) -> Any:
    """The cell's speed-up as its entry's model, noted in the cell record; SpeedupIncompatible
    before anything loads when the entry documents that the combination fails."""
    recorded = cell.job.cell.get("speedup_spec")
    if recorded is None:
        return None
    spec = parse_speedup(recorded)
    entry = speedup_for(spec)
    cell.record["speedup"] = {"name": spec.name, "kind": spec.kind, "label": entry.label(spec)}
    reason = entry.incompatibility(spec, variant_kind, cell.device.type)
    if reason is not None:
        raise SpeedupIncompatible(reason)
    return spec


def _probe_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What a speed-up's counters did between two probes (one image): numbers subtracted,
    nested objects likewise, anything else as it is after."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, dict):
            out[key] = _probe_delta(old if isinstance(old, dict) else {}, value)
        elif _counter(value) and _counter(old):
            out[key] = value - old
        else:
            out[key] = value
    return out


def _counter(value: Any) -> bool:
    """A number a probe counts up (a flag such as `capture_dynamic_output_shape_ops` is not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _record_failure(cell: _Cell, exc: Exception, trace: str) -> None:
    """The load or warm-up failed: the cell record says so, or, when an earlier process wrote
    the cell's `ok` record and stopped part-way, every image this one owed is `failed`."""
    record, sampler = cell.record, cell.sampler
    record["status"] = "failed"
    record["error"] = _error(exc, cell.phase)
    record["traceback"] = trace
    if cell.phase in ("load", "offload", "speedup"):
        record["memory"]["load"] = _after_failure(sampler.end_phase, record["error"])
    sampler.stop()
    record["nvml"] = sampler.describe()
    if cell.job.write_cell_record:
        append_jsonl(cell.records_path, [{**record, "time": utc_now()}])
    else:
        failed = [
            {
                **cell.common,
                "kind": "image",
                "prompt_id": image["prompt_id"],
                "repeat": image["repeat"],
                "seed": image["seed"],
                "status": "failed",
                "error": record["error"],
                "image": None,
                "time": utc_now(),
            }
            for image in cell.job.images
        ]
        append_jsonl(cell.records_path, failed)
    cell.emit("cell_failed", error=record["error"])


def _record_cell(cell: _Cell) -> None:
    """The cell record, once loaded and warm (unless an earlier process of the cell wrote it)."""
    if cell.job.write_cell_record:
        cell.record["nvml"] = cell.sampler.describe()
        append_jsonl(cell.records_path, [{**cell.record, "time": utc_now()}])


def _generate(
    cell: _Cell, generate: _Generator, image: dict[str, Any]
) -> tuple[dict[str, Any], list[Any] | None]:
    """One owed image (or video) generated and measured: its record, and its frames unless it
    failed."""
    job, sampler = cell.job, cell.sampler
    record: dict[str, Any] = {
        **cell.common,
        "kind": "image",
        "prompt_id": image["prompt_id"],
        "repeat": image["repeat"],
        "seed": image["seed"],
        "status": "ok",
        "error": None,
        "image": None,
    }
    cpu = CpuMeter(harness_pids=(job.driver_pid,) if job.driver_pid else ())
    frames: list[Any] | None = None
    try:
        energy_before = sampler.energy_j()
        sampler.begin_phase()  # synchronizes: raises here once an error poisoned the context
        cpu.begin()
        counted = cell.probe() if cell.probe is not None else None
        frames = generate(image["prompt"], image["seed"])
        if cell.probe is not None:
            record["speedup"] = _probe_delta(counted or {}, cell.probe())
        if job.num_frames is not None and len(frames) != job.num_frames:
            raise RuntimeError(
                f"the pipeline returned {len(frames)} frames, {job.num_frames} were asked"
            )
        record.update(generate.timer.summary())
        record["cpu"] = cpu.end()
        record["memory"] = sampler.end_phase()
        energy_after = sampler.energy_j()
        record["energy_j"] = (
            energy_after - energy_before
            if energy_before is not None and energy_after is not None
            else None
        )
    except Exception as exc:
        # The error first: the cleanup below can raise again (a CUDA error poisons the
        # context), and then this image's record must still name the original one.
        record["status"] = "failed"
        record["error"] = _error(exc, "generate")
        record["memory"] = _after_failure(sampler.end_phase, record["error"])
        if cell.device.type == "cuda":
            _after_failure(torch.cuda.empty_cache, record["error"])
    record.update(sampler.problems())
    return record, frames


def _record_image(
    cell: _Cell, image: dict[str, Any], record: dict[str, Any], frames: list[Any] | None
) -> None:
    """The image's files, written whole before its record exists (a record never names a
    missing file), then the record."""
    job = cell.job
    if frames is not None and record["status"] == "ok":
        key = (job.cell["cell_id"], image["prompt_id"], image["repeat"])
        if job.num_frames is None:
            record["image"] = _save(cell.run_dir, image_relpath(*key), frames[0], "PNG")
        else:
            record.update(_save_video(cell.run_dir, key, frames, job.fps or 1))
    append_jsonl(cell.records_path, [{**record, "time": utc_now()}])
    cell.emit("image", status=record["status"], wall_s=record.get("wall_s"))


def _error(exc: BaseException, phase: str) -> dict[str, str]:
    message = str(exc) if str(exc) else repr(exc)
    return {"type": type(exc).__name__, "message": message.strip()[:2000], "phase": phase}


def _after_failure(cleanup: Callable[[], T], error: dict[str, str]) -> T | None:
    """`cleanup()` after a failure, which a CUDA error that poisoned the context (an illegal
    address, a device-side assert) makes raise again: that second exception is noted in
    `error["cleanup"]` instead of replacing the original one, or ending the process."""
    try:
        return cleanup()
    except Exception as exc:
        message = _error(exc, error.get("phase", ""))["message"][:500]
        error.setdefault("cleanup", f"{type(exc).__name__}: {message}")
        return None


def _save(run_dir: Path, rel: str, picture: Any, kind: str, **options: Any) -> str:
    """One file of the run folder, written whole (bench.results.write_file_atomic)."""
    path = run_dir / rel
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderWriteError.from_os_error(path.parent, exc) from exc
    write_file_atomic(path, partial(picture.save, format=kind, **options))
    return rel


def _save_video(
    run_dir: Path, key: tuple[str, str, int], frames: list[Any], fps: int
) -> dict[str, Any]:
    """A video's record fields: every frame as a lossless PNG (what is scored), then the video
    as an animated WebP at ``fps`` (what people watch; Pillow writes it), then the first
    frame as the record's ``image`` (the still that stages showing one picture use)."""
    names = [_save(run_dir, frame_relpath(*key, i), f, "PNG") for i, f in enumerate(frames)]
    video = _save(
        run_dir,
        video_relpath(*key),
        frames[0],
        "WEBP",
        save_all=True,
        append_images=frames[1:],
        duration=round(1000 / fps),
        loop=0,
        quality=90,
    )
    return {"image": names[0], "video": video, "num_frames": len(frames), "fps": fps}
