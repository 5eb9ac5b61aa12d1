"""A run folder reduced to what a comparison needs, per cell: status, raw samples, peaks, scores.

Only the run folder is read (manifest, records.jsonl, scores.jsonl), through `bench.results` and
`bench.cell_summary`, so a run copied from another machine compares the same as one made here.
Raw values are kept in measurement order: the stability warnings need to know which image came
first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cell_summary import MEMORY_COUNTERS, net_memory_peaks, summarize
from bench.metrics.stats import prompt_means
from bench.results import (
    SCORES,
    cell_records,
    image_records,
    iter_jsonl,
    read_manifest,
    read_records,
)
from bench.run_schema import TWIN_REFERENCE

# Image-level metrics are paired per prompt and judged; distribution metrics have one value per
# cell and are only shown (with their floor and n).
SCORE_KIND = "image_score"
DISTRIBUTION_KIND = "distribution_score"
NVML_KEY = "nvml_used_peak_bytes"
CELL_PHASES = ("load", "warmup")


@dataclass
class PromptScores:
    """One metric of one cell: the mean over repeats per prompt, and which prompts were identical.

    `bench.metrics.stats.prompt_means` makes both: an identical image's finite value (SSIM 1,
    LPIPS 0) is averaged like any other; PSNR of an image equal to its reference is +inf and
    stored as null with `identical: true` (docs/scores.md), so a prompt with only such images
    has no value and is kept apart rather than given an invented one.
    """

    metric: str
    higher_is_better: bool
    values: dict[str, float] = field(default_factory=dict)
    identical: set[str] = field(default_factory=set)


@dataclass
class CellData:
    cell_id: str
    variant: str
    offload: str
    resolution: str
    status: str
    error: str | None
    wall_s: list[float]
    energy_j: list[float] | None
    memory: dict[str, int]
    scores: dict[str, PromptScores]
    # Each ok image's denoising step times, in the order of `wall_s`.
    step_s: list[list[float]] = field(default_factory=list)
    # Record key -> the counter's peak of every ok image, in measurement order; NVML net of
    # the cell's baseline (absent without one), like `memory`.
    image_memory: dict[str, list[int]] = field(default_factory=dict)
    # "load"/"warmup" -> record key -> the cell record's peak of that phase (NVML net).
    cell_memory: dict[str, dict[str, int]] = field(default_factory=dict)
    # Readings per second the memory sampler achieved during each ok image (its `samples`
    # over `wall_s`): it wakes every 5 ms, so it falls behind when other work holds the CPU.
    sampler_hz: list[float] = field(default_factory=list)
    # Share of the machine's processors other processes used during each ok image (its `cpu`
    # record: others_s / (wall_s x cpus)); empty for runs recorded before it existed.
    others_share: list[float] = field(default_factory=list)
    # The device the cell ran on ("cpu", "cuda:0"), from its cell record; None if unrecorded.
    device: str | None = None
    # Metric -> the cell's latest distribution row (FID, KID, CMMD) from scores.jsonl.
    distribution: dict[str, dict[str, Any]] = field(default_factory=dict)
    # A speed-up cell's speed-up in words ("fbc-0.05: cache(first_block)"); None for others.
    # Its cell id ends in `__<name>`, so it pairs only with the same speed-up in the other run.
    speedup: str | None = None


@dataclass
class ComparedRun:
    """One side of a comparison: a run folder reduced to its cells' raw samples and scores.

    Named apart from the report's reading of a run (`bench.reporting.data`), which keeps tables
    and images instead: the two readers need different things from the same folder.
    """

    run_dir: Path
    manifest: dict[str, Any]
    cells: dict[str, CellData]

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id", self.run_dir.name))


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _read_scores(run_dir: Path) -> dict[str, dict[str, PromptScores]]:
    """Latest row per (cell, prompt, repeat, metric), reduced to prompts by the same
    `prompt_means` the score summary uses (so both average identical rows alike)."""
    latest: dict[tuple[str, str, int, str], dict[str, Any]] = {}
    for row in iter_jsonl(run_dir / SCORES):
        # A speed-up cell's rows against its twin: the comparison judges quality against full
        # precision for every cell alike.
        if row.get("kind") != SCORE_KIND or row.get("reference") == TWIN_REFERENCE:
            continue
        key = (row["cell_id"], row["prompt_id"], int(row["repeat"]), row["metric"])
        latest[key] = row  # later rows supersede earlier ones (docs/scores.md: latest per key)
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (cell_id, _prompt, _repeat, metric), row in latest.items():
        grouped.setdefault((cell_id, metric), []).append(row)
    out: dict[str, dict[str, PromptScores]] = {}
    for (cell_id, metric), rows in grouped.items():
        ok = [r for r in rows if r.get("status") == "ok"]
        if not ok:
            continue
        prompts = prompt_means(ok)
        if not prompts.values and not prompts.identical:
            continue
        higher = bool(ok[-1].get("higher_is_better", True))
        out.setdefault(cell_id, {})[metric] = PromptScores(
            metric, higher, prompts.values, set(prompts.identical)
        )
    return out


def _read_distribution(run_dir: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Cell -> metric -> the latest distribution row (a rescore with more images or another
    reference appends a newer one)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in iter_jsonl(run_dir / SCORES):
        if row.get("kind") == DISTRIBUTION_KIND:
            out.setdefault(row["cell_id"], {})[row["metric"]] = row
    return out


def _net_peaks(phase: dict[str, Any] | None, baseline: Any) -> dict[str, int]:
    """The counters of one memory phase; NVML less the cell's baseline, or left out without
    one (NVML sees the whole device, other processes included)."""
    out: dict[str, int] = {}
    for key, _label in MEMORY_COUNTERS:
        value = (phase or {}).get(key)
        if not _present(value):
            continue
        if key == NVML_KEY:
            if not _present(baseline):
                continue
            value = int(value) - int(baseline)
        out[key] = int(value)
    return out


def _image_memory(images: list[dict[str, Any]], baseline: Any) -> dict[str, list[int]]:
    """Per-image peaks per counter; a counter missing from any image is left out, so the
    peaks stay aligned with the images."""
    peaks = [_net_peaks(r.get("memory"), baseline) for r in images]
    keys = set.intersection(*(set(p) for p in peaks)) if peaks else set()
    return {key: [p[key] for p in peaks] for key, _label in MEMORY_COUNTERS if key in keys}


def speedup_words(cell: dict[str, Any], record: dict[str, Any]) -> str | None:
    """`name: label` of a manifest cell's speed-up (the label from its cell record, where it
    has one), None for a cell without a speed-up."""
    name = cell.get("speedup")
    if not name:
        return None
    label = (record.get("speedup") or {}).get("label")
    return f"{name}: {label}" if label else str(name)


def load_run(run_dir: Path) -> ComparedRun:
    """Read one run folder; raises UserInputError (one line) when it is not one."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)  # its lists checked there (bench.run_schema)
    records = read_records(run_dir)
    summary = summarize(manifest, records)
    # The cell's ok image records in measurement order, the first record per image only.
    ok_images: dict[str, list[dict[str, Any]]] = {}
    for image in image_records(records).values():
        if image.get("status") == "ok":
            ok_images.setdefault(image["cell_id"], []).append(image)
    scores = _read_scores(run_dir)
    distribution = _read_distribution(run_dir)
    cell_rows = cell_records(records)
    manifest_cells = {cell["cell_id"]: cell for cell in manifest["cells"]}
    cells: dict[str, CellData] = {}
    for _, row in summary.iterrows():
        cell_id = str(row["cell_id"])
        images = [r for r in ok_images.get(cell_id, []) if _present(r.get("wall_s"))]
        walls = [float(r["wall_s"]) for r in images]
        energies = [r.get("energy_j") for r in images]
        measured = bool(energies) and all(_present(e) for e in energies)
        energy = [float(e) for e in energies] if measured else None
        cell_memory = (cell_rows.get(cell_id) or {}).get("memory") or {}
        baseline = (cell_memory.get("baseline") or {}).get("nvml_used_bytes")
        error = None
        if _present(row.get("error_type")):
            error = f"{row['error_type']}: {row.get('error_message') or ''}".rstrip(": ")
        cells[cell_id] = CellData(
            cell_id=cell_id,
            variant=str(row["variant"]),
            offload=str(row["offload"]),
            resolution=str(row["resolution"]),
            status=str(row["status"]),
            error=error,
            wall_s=walls,
            energy_j=energy,
            memory=net_memory_peaks(row),
            scores=scores.get(cell_id, {}),
            distribution=distribution.get(cell_id, {}),
            step_s=[[float(s) for s in r.get("step_s") or []] for r in images],
            image_memory=_image_memory(images, baseline),
            sampler_hz=[
                float((r.get("memory") or {})["samples"]) / float(r["wall_s"])
                for r in images
                if _present((r.get("memory") or {}).get("samples")) and float(r["wall_s"]) > 0
            ],
            device=(cell_rows.get(cell_id) or {}).get("device"),
            speedup=speedup_words(manifest_cells[cell_id], cell_rows.get(cell_id) or {}),
            others_share=[
                float(r["cpu"]["others_s"]) / (float(r["wall_s"]) * int(r["cpu"]["cpus"]))
                for r in images
                if isinstance(r.get("cpu"), dict)
                and _present(r["cpu"].get("others_s"))
                and int(r["cpu"].get("cpus") or 0) > 0
                and float(r["wall_s"]) > 0
            ],
            cell_memory={
                phase: peaks
                for phase in CELL_PHASES
                if (peaks := _net_peaks(cell_memory.get(phase), baseline))
            },
        )
    return ComparedRun(run_dir, manifest, cells)
