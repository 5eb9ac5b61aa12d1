"""The report's opening: what was run, where, and the warnings a reader must see before any
number (random weights, an unfinished run, a CPU-only machine, scores missing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.reporting.data import RunData, has_speedups, speedup_of
from bench.reporting.fmt import DASH, GIB, gib, missing, num
from bench.reporting.model import run_model
from bench.reporting.published import (
    SPEEDUP_TABLES,
    TABLES,
    PublishedRow,
    PublishedTable,
    differences,
    matches,
)
from bench.reporting.tables import NVML_GROSS, NVML_NET, memory_columns, peak_bytes


@dataclass(frozen=True)
class PublishedSection:
    """Published rows beside measured cells, or a note on why they are not comparable."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str


def facts(run: RunData) -> list[tuple[str, str]]:
    """(label, value) lines describing the run."""
    m = run.manifest
    config = m.get("config") or {}
    env = m.get("environment") or {}
    packages = env.get("packages") or {}
    base = m.get("base_model") or {}
    gpus = run.gpus
    gpu = ", ".join(
        f"{g.get('name')} ({num((g.get('total_memory_bytes') or 0) / GIB)} GiB)" for g in gpus
    )
    resolutions = ", ".join(dict.fromkeys(f"{c['height']}×{c['width']}" for c in m["cells"]))
    videos = sorted({(c["num_frames"], c.get("fps")) for c in m["cells"] if c.get("num_frames")})
    if videos:  # a video family's run: each generation is a video of this many frames
        resolutions += "; " + ", ".join(f"{n} frames at {fps} fps" for n, fps in videos)
    family = run_model(m)
    model = f"{family.title}: {base.get('path') or base.get('preset') or base.get('source')}"
    if family.synthetic:
        model = f"{family.title}, synthetic {family.preset!r} (random weights)"
    return [
        ("run", run.run_id),
        ("config", f"{config.get('name')}: {config.get('description') or ''}".strip(": ")),
        ("config hash", str(m.get("config_hash"))),
        ("started / finished", f"{m.get('created_at')} / {m.get('finished_at') or 'not finished'}"),
        ("model", str(model)),
        (
            "settings",
            f"{resolutions}, {config.get('steps')} steps, guidance {config.get('guidance')}, "
            f"{len(m['prompts'])} prompts × {config.get('repeats')} repeats, "
            f"warm-up {config.get('warmup')}",
        ),
        ("device", f"{', '.join(run.devices) or 'none recorded'}; GPU: {gpu or 'none'}"),
        (
            "versions",
            ", ".join(
                f"{k} {packages.get(k)}" for k in ("torch", "diffusers", "gguf") if packages.get(k)
            ),
        ),
        ("scores", "from scores_summary.json" if run.scores else str(run.scores_note)),
        *_speedup_fact(run),
    ]


def _speedup_fact(run: RunData) -> list[tuple[str, str]]:
    """The run's speed-ups by name, each with how many cells it has (a run without: none)."""
    counts: dict[str, int] = {}
    for cell in run.cells.values():
        name = speedup_of(cell)
        if name:
            counts[name] = counts.get(name, 0) + 1
    if not counts:
        return []
    listed = ", ".join(f"{name} ({n} cell{'s' if n > 1 else ''})" for name, n in counts.items())
    return [("speed-ups", f"{listed}; each beside its twin in the Speed-ups section")]


def warnings(run: RunData) -> list[str]:
    """What changes how every number below is read."""
    out = []
    if run.synthetic:
        model = run_model(run.manifest)
        out.append(
            "Synthetic run: the images come from random weights. Timings and memory show the "
            f"harness and {model.shape()}, not the trained {model.real_model}; "
            "fidelity figures (PSNR, SSIM, LPIPS) measure quantization error only, and the CLIP "
            "score means nothing."
        )
    if not run.finished:
        out.append(
            f"Unfinished run (finished_at is null): {len(run.cell_records)} of "
            f"{len(run.manifest['cells'])} cells have a record. "
            "The run is still going or was killed; "
            f"`bench run --resume {run.run_dir}` completes it."
        )
    if not run.on_gpu:
        out.append(
            "No GPU: memory is the host process's RSS, not VRAM; offload modes that need an "
            "accelerator are recorded as failed; energy is not measured."
        )
    if run.scores is None:
        out.append(f"Quality: {run.scores_note}.")
    return out


def memory_note(run: RunData) -> str:
    columns = memory_columns(run)
    if not columns:
        return "No memory counter was recorded."
    parts = {
        NVML_NET: "NVML net = NVML device used less the cell's baseline (what the GPU had in use "
        "before the cell created its CUDA context): what the cell added, its CUDA context included",
        NVML_GROSS: "NVML device used, gross = all memory in use on the GPU (every process), "
        "sampled every 5 ms",
        "torch_max_allocated_bytes": "torch allocated = torch.cuda.max_memory_allocated",
        "host_rss_peak_bytes": "host RSS = resident memory of the cell's process",
    }
    return (
        "Memory: peak over loading and generation, GiB = 2^30 bytes; "
        + "; ".join(parts[c] for c, _ in columns)
        + "."
    )


def published_sections(run: RunData) -> list[PublishedSection]:
    """Each published table beside the cells with its settings, or why none is; the speed-up
    tables for a run with speed-ups only."""
    speedup_tables = SPEEDUP_TABLES if has_speedups(run) else ()
    return [_published(run, table) for table in (*TABLES, *speedup_tables)]


def _measured_memory(run: RunData, row: pd.Series) -> str:
    """The cell's peak on the report's headline counter (NVML net with gross beside it)."""
    headline = next(iter(memory_columns(run)), None)
    if headline is None:
        return DASH
    peak = peak_bytes(row, headline[0])
    label = headline[1].removesuffix(" (GiB)")
    memory = DASH if peak is None else f"{gib(peak)} GiB ({label})"
    gross = peak_bytes(row, NVML_GROSS) if headline[0] == NVML_NET else None
    if peak is not None and gross is not None:
        memory += f"; gross {gib(gross)} GiB"
    return memory


def _compile_seconds(run: RunData, cell_id: str) -> str:
    """What a compiled cell's warm-up spent compiling (its cell record), in seconds."""
    value = ((run.cell_record(cell_id).get("speedup") or {}).get("compile") or {}).get("compile_s")
    return DASH if missing(value) else f"{num(value)} s"


def _published(run: RunData, table: PublishedTable) -> PublishedSection:
    title = f"{table.source} ({table.hardware}, {table.height}×{table.width}, {table.steps} steps)"
    pairs = matches(run, table)
    if not pairs:
        diff = differences(run, table)
        return PublishedSection(
            title,
            [],
            [],
            f"A published table of {table.model} exists but is not shown beside this run: "
            + ("; ".join(diff) if diff else "no cell has a matching variant and offload")
            + ".",
        )
    after_load = any(pub.after_load for _cell, pub in pairs)
    speedup = any(pub.speedup is not None for pub in table.rows)
    compiled = any(pub.compile_s for pub in table.rows)
    header = ["variant", "offload"] + (["speed-up", "*published* as"] if speedup else [])
    header += [
        "measured memory",
        f"*published* {table.memory_label}",
        "measured s/image",
        "*published* s/image",
    ]
    header += [f"*published* {table.memory_label} after load"] if after_load else []
    header += ["measured compile (warm-up)", "*published* compile"] if compiled else []
    rows = [_published_row(run, cell, pub, speedup, after_load, compiled) for cell, pub in pairs]
    return PublishedSection(
        title,
        header,
        rows,
        "Published figures are quoted, never measured here; hardware may differ "
        f"(published: {table.hardware}).",
    )


def _published_row(
    run: RunData,
    cell: dict[str, Any],
    pub: PublishedRow,
    speedup: bool,
    after_load: bool,
    compiled: bool,
) -> list[str]:
    row = run.summary[run.summary["cell_id"] == cell["cell_id"]].iloc[0]
    seconds = DASH if missing(row["median_s"]) else f"{num(row['median_s'])} s"
    out = [cell["variant"], cell["offload"]]
    out += [speedup_of(cell) or DASH, pub.variant] if speedup else []
    out += [_measured_memory(run, row), pub.memory, seconds, pub.seconds]
    out += [pub.after_load or DASH] if after_load else []
    out += [_compile_seconds(run, cell["cell_id"]), pub.compile_s or DASH] if compiled else []
    return out
