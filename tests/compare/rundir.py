"""Hand-written run folders that follow docs/run-folder.md and docs/scores.md key for key.

Tests plant known distributions (per-image times, memory peaks, scores) and check that the
comparison finds exactly what was planted, without running a pipeline.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PROMPTS = [{"id": f"p{i:02d}", "text": f"prompt number {i}"} for i in range(10)]
CPU_ENV: dict[str, Any] = {
    "python": "3.11.7",
    "packages": {
        "bench": "0.1.0",
        "torch": "2.13.0",
        "diffusers": "0.41.0",
        "transformers": "5.24.0",
        "accelerate": "1.15.0",
        "gguf": "0.19.0",
        "safetensors": "0.8.0",
        "numpy": "2.4.6",
        "torchmetrics": "1.9.0",
        "nvidia-ml-py": "13.615.71",
    },
    "os": "Linux 6.1",
    "platform": "Linux-6.1-x86_64",
    "cpu": {"model": "Test CPU", "logical_cores": 16, "torch_threads": 16},
    "host_memory_bytes": 128 << 30,
    "cuda": {"available": True, "torch_cuda": "12.8", "cudnn": 91000},
    "gpus": [
        {
            "index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "total_memory_bytes": 80 << 30,
            "compute_capability": "9.0",
            "uuid": "GPU-0",
            "driver": "570.1",
        }
    ],
    "env": {},
}
GIB = 1 << 30
SAMPLER_HZ = 190.0


@dataclass
class CellPlan:
    """What one cell measured: per-image wall times in order, memory, energy, scores, status."""

    variant: str
    offload: str = "none"
    status: str = "ok"
    wall_s: Sequence[float] = ()
    energy_j: Sequence[float] | None = None
    nvml_peak: int | None = 20 * GIB
    nvml_baseline: int = 1 * GIB
    # metric -> per-prompt value (every repeat gets it, or a list: one per repeat); `None` =
    # identical to the reference (PSNR's +inf).
    scores: dict[str, dict[str, float | list[float | None] | None]] = field(default_factory=dict)
    # metric -> the value of an identical image (SSIM 1.0, LPIPS 0.0): rows with exactly that
    # value are marked `identical` and keep it, as `bench score` writes them.
    identical_value: dict[str, float] = field(default_factory=dict)
    error: dict[str, str] | None = None
    sampler_hz: float = SAMPLER_HZ  # readings per second the memory sampler achieved


def cell_id(variant: str, offload: str, height: int = 512, width: int = 512) -> str:
    return f"{variant}__{offload}__{height}x{width}"


def write_run(
    root: Path,
    name: str,
    cells: list[CellPlan],
    prompts: list[dict[str, str]] | None = None,
    repeats: int = 1,
    environment: dict[str, Any] | None = None,
    config_hash: str = "abc123def4567890",
    config_changes: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Write `root/name/` with manifest.json, records.jsonl and (if any cell has scores)
    scores.jsonl. Image i of a cell is (prompt i // repeats ... ) in manifest order."""
    prompts = prompts or PROMPTS
    run_dir = root / name
    run_dir.mkdir(parents=True)
    images = [
        {"prompt_id": p["id"], "repeat": r, "seed": 1000 + 7 * i + r}
        for r in range(repeats)
        for i, p in enumerate(prompts)
    ]
    config: dict[str, Any] = {
        "name": name,
        "description": "synthetic test run",
        "model": {"source": "synthetic", "preset": "tiny", "seed": 0},
        "variants": [{"name": c.variant, "kind": "full"} for c in cells],
        "offload": sorted({c.offload for c in cells}),
        "height": 512,
        "width": 512,
        "steps": 20,
        "repeats": repeats,
        "warmup": 1,
        "device": "cuda",
    }
    if config_changes is not None:
        config_changes(config)
    manifest = {
        "schema": 1,
        "run_id": name,
        "created_at": "2026-01-01T00:00:00.000+00:00",
        "finished_at": "2026-01-01T01:00:00.000+00:00",
        "config": config,
        "config_hash": config_hash,
        "config_path": "configs/test.yaml",
        "prompts": prompts,
        "images": images,
        "cells": [
            {
                "cell_id": cell_id(c.variant, c.offload),
                "variant": c.variant,
                "offload": c.offload,
                "height": 512,
                "width": 512,
                "variant_spec": {"name": c.variant, "kind": "full"},
                "offload_spec": {"mode": c.offload},
                "transformer_file": None,
            }
            for c in cells
        ],
        "base_model": {
            "source": "synthetic",
            "preset": "tiny",
            "path": None,
            "resolved_path": "/cache/tiny",
            "synthetic": True,
        },
        "environment": copy.deepcopy(environment or CPU_ENV),
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    records: list[dict[str, Any]] = []
    scores: list[dict[str, Any]] = []
    for c in cells:
        records += _cell_records(name, c, images)
        scores += _score_rows(c, images)
    (run_dir / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if scores:
        (run_dir / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in scores))
    return run_dir


def _common(run_id: str, c: CellPlan) -> dict[str, Any]:
    return {
        "schema": 1,
        "run_id": run_id,
        "cell_id": cell_id(c.variant, c.offload),
        "variant": c.variant,
        "offload": c.offload,
        "height": 512,
        "width": 512,
    }


def _cell_records(run_id: str, c: CellPlan, images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    memory = {
        "baseline": {"nvml_used_bytes": c.nvml_baseline, "host_rss_bytes": GIB},
        "load": {"nvml_used_peak_bytes": c.nvml_baseline + GIB, "samples": 10},
        "warmup": {"samples": 10},
    }
    if c.nvml_peak is not None:
        memory["warmup"]["nvml_used_peak_bytes"] = c.nvml_peak
    error = c.error
    if c.status != "ok" and error is None:
        error = {"type": "OutOfMemoryError", "message": "CUDA out of memory", "phase": "load"}
    cell = {
        **_common(run_id, c),
        "kind": "cell",
        "status": c.status,
        "error": error,
        "device": "cuda:0",
        "load_s": 3.0,
        "first_call_s": 2.0,
        "warmup_s": [2.0],
        "memory": memory,
        "weights": {"transformer": {"parameters": 10, "bytes": 40}},
        "energy_supported": c.energy_j is not None,
        "time": "2026-01-01T00:00:01.000+00:00",
    }
    out = [cell]
    if c.status != "ok":
        return out
    for index, (image, wall) in enumerate(zip(images, c.wall_s, strict=False)):
        # The sampler reads every 5 ms: on an equally loaded machine its readings grow with the
        # image's time (what bench.comparison reads as the machine's load).
        peak = {"host_rss_peak_bytes": 2 * GIB, "samples": round(float(wall) * c.sampler_hz)}
        if c.nvml_peak is not None:
            peak["nvml_used_peak_bytes"] = c.nvml_peak
        out.append(
            {
                **_common(run_id, c),
                "kind": "image",
                "prompt_id": image["prompt_id"],
                "repeat": image["repeat"],
                "seed": image["seed"],
                "status": "ok",
                "error": None,
                "image": f"images/{cell_id(c.variant, c.offload)}/"
                f"{image['prompt_id']}__r{image['repeat']}.png",
                "wall_s": float(wall),
                "encode_s": 0.01,
                "step_s": [float(wall) / 20] * 20,
                "decode_s": 0.01,
                "energy_j": float(c.energy_j[index]) if c.energy_j is not None else None,
                "memory": peak,
                "time": f"2026-01-01T00:{index // 60:02d}:{index % 60:02d}.000+00:00",
            }
        )
    return out


def _score_rows(c: CellPlan, images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for metric, per_prompt in c.scores.items():
        for image in images:
            if image["prompt_id"] not in per_prompt:
                continue
            value = per_prompt[image["prompt_id"]]
            if isinstance(value, list):
                value = value[image["repeat"]]
            row = {
                "schema": 1,
                "kind": "image_score",
                "cell_id": cell_id(c.variant, c.offload),
                "variant": c.variant,
                "offload": c.offload,
                "height": 512,
                "width": 512,
                "prompt_id": image["prompt_id"],
                "repeat": image["repeat"],
                "seed": image["seed"],
                "metric": metric,
                "value": None if value is None else float(value),
                "higher_is_better": metric != "lpips",
                "reference_cell_id": cell_id("full", c.offload),
                "status": "ok",
                "note": None,
                "time": "2026-01-01T00:00:00.000+00:00",
            }
            if value is None or value == c.identical_value.get(metric):
                row["identical"] = True
            rows.append(row)
    return rows


def lognormal_times(
    rng: np.random.Generator, n: int, median: float = 2.0, cv: float = 0.04
) -> np.ndarray:
    """Per-image times: lognormal with the given median and (approximately) coefficient of
    variation, the shape GPU kernel timings have (bounded below, a long right tail)."""
    sigma = float(np.sqrt(np.log1p(cv**2)))
    return median * rng.lognormal(0.0, sigma, n)
