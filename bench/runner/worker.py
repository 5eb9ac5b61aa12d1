"""One cell in one fresh process: load, apply offload, warm up, generate, measure, record.

Runs in its own child (forked from the warm server of bench.runner.processes, or `spawn`ed) so
peak-memory counters, the CUDA context and allocator caches start from nothing and never leak
into the next cell. Every record is appended and flushed the moment it exists; the parent only
reads the file and the event pipe.

What becomes a record and what does not: an exception of the measured work (loading, offload,
warm-up, a generation) is a failure and is recorded. An interruption is not a result: SIGINT is
ignored here and the parent stops the process itself, so nothing is written for the image in
flight, which stays missing for `--resume`. Nor is a run folder that cannot be written (a full
disk): the cell stops, says so on the pipe and exits with WRITE_FAILED_EXIT, without recording
anything about the cell, whose measurements were fine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

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

T = TypeVar("T")
WRITE_FAILED_EXIT = 75  # EX_TEMPFAIL: the run folder could not be written; try again later
PARENT_GONE_EXIT = 3  # nobody is left to read it: the sweep's process ended first


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


def _exit_with_parent() -> None:
    """End this process if the sweep's process dies, so a killed run leaves no writer behind.

    Watched through multiprocessing's parent sentinel, which closes when the process that
    started this cell ends; the parent pid would not do: a forked cell's parent is the server.
    """
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(PARENT_GONE_EXIT)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_cell(job: CellJob, events: Any) -> None:
    """Entry point of the child process. Failures become records; a folder that cannot be
    written ends the process with WRITE_FAILED_EXIT after saying why on `events`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # already so when forked from the warm server
    _exit_with_parent()
    try:
        _run_cell(job, events)
    except RunFolderWriteError as exc:
        with contextlib.suppress(OSError):
            events.send(
                {"kind": "write_failed", "cell_id": job.cell["cell_id"], "message": str(exc)}
            )
        sys.exit(WRITE_FAILED_EXIT)


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


def _run_cell(job: CellJob, events: Any) -> None:
    import torch

    import bench.runner.preload  # noqa: F401  (done in the server; a `spawn`ed cell does it now)
    from bench.environment import quiet_library_output

    quiet_library_output()

    from bench.backends import backend_for, parse_variant
    from bench.config import OffloadSpec
    from bench.families import get_family
    from bench.models.loading import (
        apply_offload,
        component_weights,
        import_pipeline_classes,
        load_pipeline,
        resolve_device,
    )
    from bench.runner.memory import MemorySampler, monotonic, synchronize
    from bench.runner.timing import CallTimer, CpuMeter

    run_dir = Path(job.run_dir)
    records_path = run_dir / RECORDS
    cell = job.cell
    common = record_header(job.run_id, cell)
    offload = OffloadSpec(**cell["offload_spec"])
    device = resolve_device(job.device)

    def emit(kind: str, **payload: Any) -> None:
        try:
            events.send({"kind": kind, "cell_id": cell["cell_id"], **payload})
        except OSError:  # the sweep's process is gone: not a failure of the cell (see above)
            os._exit(PARENT_GONE_EXIT)

    cell_record: dict[str, Any] = {
        **common,
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

    # Before anything creates this process's CUDA context: NVML's baseline must not hold it.
    sampler = MemorySampler(device).start()
    cell_record["memory"]["baseline"] = sampler.baseline()
    phase = "load"
    pipe = None
    try:
        # Inside the try: a variant this process cannot read is the cell's failure, recorded.
        variant = parse_variant(cell["variant_spec"])
        # Every module the backend needs, named in one line before anything loads.
        backend_for(variant).check_runtime(variant)
        import_pipeline_classes(job.base_model, job.revision)
        if device.type == "cuda":
            # Libraries place weights on the current device, not the configured one (diffusers'
            # bitsandbytes quantizer: cuda:{torch.cuda.current_device()}). Creates the context.
            torch.cuda.set_device(device)
        sampler.attach()
        cell_record["memory"]["baseline"] = sampler.baseline()
        cell_record["energy_supported"] = sampler.energy_j() is not None
        cell_record["nvml"] = sampler.describe()  # after the energy read: with its reason
        if cell_record["nvml"] is not None:
            emit("device", nvml=cell_record["nvml"])
        sampler.begin_phase()
        started = monotonic()
        pipe = load_pipeline(job.base_model, variant, job.artifacts, job.revision)
        phase = "offload"
        apply_offload(pipe, offload, device)
        # Copies to the device are asynchronous (and bitsandbytes quantizes on it): load time
        # ends when they have, not when the last one was queued.
        synchronize(device)
        cell_record["load_s"] = monotonic() - started
        cell_record["memory"]["load"] = sampler.end_phase()
        cell_record["weights"] = component_weights(pipe)
        emit("loaded", load_s=cell_record["load_s"])

        family = get_family(job.family)
        timer = CallTimer(device)
        timer.watch(family.denoiser_module(pipe))

        numeric_change = contextlib.nullcontext
        noise_floor = getattr(variant, "noise_floor", None)
        if noise_floor:
            from bench.metrics.noise_floor import floor_record, harmless_change

            numeric_change = partial(harmless_change, noise_floor)
            cell_record["noise_floor"] = floor_record(noise_floor, device.type, variant.dtype)

        options = {"num_frames": job.num_frames} if job.num_frames is not None else None

        def generate(prompt: str, seed: int) -> list[Any]:
            timer.reset()
            with numeric_change():
                frames = family.generate(
                    pipe,
                    prompt,
                    height=cell["height"],
                    width=cell["width"],
                    steps=job.steps,
                    guidance=job.guidance,
                    max_sequence_length=job.max_sequence_length,
                    # A CPU generator gives the same initial noise on every device (paired).
                    generator=torch.Generator("cpu").manual_seed(seed),
                    callback_on_step_end=timer.on_step_end,
                    options=options,
                )
            timer.finish()
            return frames

        phase = "warmup"
        sampler.begin_phase()
        for _ in range(job.warmup):
            generate(job.warmup_prompt, 0)
            cell_record["warmup_s"].append(timer.summary()["wall_s"])
        if job.warmup:
            cell_record["first_call_s"] = cell_record["warmup_s"][0]
            cell_record["memory"]["warmup"] = sampler.end_phase()
        emit("warm")
    except Exception as exc:
        # The error first: the cleanup below can raise again (a CUDA error poisons the context).
        cell_record["status"] = "failed"
        cell_record["error"] = _error(exc, phase)
        cell_record["traceback"] = traceback.format_exc(limit=8)[-4000:]
        if phase in ("load", "offload"):
            cell_record["memory"]["load"] = _after_failure(sampler.end_phase, cell_record["error"])
        sampler.stop()
        cell_record["nvml"] = sampler.describe()
        if job.write_cell_record:
            append_jsonl(records_path, [{**cell_record, "time": utc_now()}])
        else:
            # The cell's `ok` record is from an earlier process, stopped part-way; this one could
            # not get as far, so the images it owed are recorded as failed with the reason.
            append_jsonl(
                records_path,
                [
                    {
                        **common,
                        "kind": "image",
                        "prompt_id": image["prompt_id"],
                        "repeat": image["repeat"],
                        "seed": image["seed"],
                        "status": "failed",
                        "error": cell_record["error"],
                        "image": None,
                        "time": utc_now(),
                    }
                    for image in job.images
                ],
            )
        emit("cell_failed", error=cell_record["error"])
        return

    if job.write_cell_record:
        cell_record["nvml"] = sampler.describe()
        append_jsonl(records_path, [{**cell_record, "time": utc_now()}])

    for image in job.images:
        record: dict[str, Any] = {
            **common,
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
            frames = generate(image["prompt"], image["seed"])
            if job.num_frames is not None and len(frames) != job.num_frames:
                raise RuntimeError(
                    f"the pipeline returned {len(frames)} frames, {job.num_frames} were asked"
                )
            record.update(timer.summary())
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
            if device.type == "cuda":
                _after_failure(torch.cuda.empty_cache, record["error"])
        record.update(sampler.problems())
        if frames is not None and record["status"] == "ok":
            # Written whole before its record exists: a record never names a missing image.
            key = (cell["cell_id"], image["prompt_id"], image["repeat"])
            if job.num_frames is None:
                record["image"] = _save(run_dir, image_relpath(*key), frames[0], "PNG")
            else:
                record.update(_save_video(run_dir, key, frames, job.fps or 1))
        append_jsonl(records_path, [{**record, "time": utc_now()}])
        emit("image", status=record["status"], wall_s=record.get("wall_s"))
    sampler.stop()
