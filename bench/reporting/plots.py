"""The report's plots (matplotlib, Agg, PNG): sizing, quality against size, step latency, load
time, energy, and for a run with speed-ups each one's time ratio to its twin and its fidelity.

Each function returns a `Picture`; where the run has nothing to draw it returns the reason
instead of an empty axis, because an empty plot reads as "zero" and a sentence reads as "not
measured".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.metrics.noise_floor import is_noise_floor
from bench.reporting.artifacts import Picture
from bench.reporting.data import (
    RunData,
    cell_name,
    energy_reason,
    has_speedups,
    offload_order,
    ok_walls,
    speedup_of,
    variant_order,
)
from bench.reporting.fmt import GIB, missing
from bench.reporting.speedup_table import SpeedupCell
from bench.reporting.tables import (
    COUNTER_LABEL,
    interval_methods,
    memory_columns,
    peak_bytes,
    status_text,
    transformer_size,
)

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
DPI = 110


def _style(run: RunData) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    """Marker per variant; colour and line style per offload mode (stable across plots)."""
    colors = plt.get_cmap("tab10").colors
    variants = variant_order(run)
    offloads = offload_order(run)
    marker = {v: MARKERS[i % len(MARKERS)] for i, v in enumerate(variants)}
    color = {o: colors[i % len(colors)] for i, o in enumerate(offloads)}
    line = {o: LINESTYLES[i % len(LINESTYLES)] for i, o in enumerate(offloads)}
    return marker, color, line


def _save(fig: Figure, out_dir: Path, filename: str, extra: list[Any] | None = None) -> str:
    fig.savefig(out_dir / filename, dpi=DPI, bbox_inches="tight", bbox_extra_artists=extra)
    plt.close(fig)
    return filename


def _cell_label(run: RunData, row: Any) -> str:
    label = f"{cell_name(run.cells[row['cell_id']])}\n{row['offload']}"
    if run.summary["resolution"].nunique() > 1:
        label += f"\n{row['resolution']}"
    return label


def _not_shown(run: RunData, shown: set[str]) -> str:
    """Caption text naming the cells left out of a plot, grouped by why."""
    groups: dict[str, list[str]] = {}
    for _, row in run.summary.iterrows():
        if row["cell_id"] not in shown:
            reason = status_text(run, row)
            name = cell_name(run.cells[row["cell_id"]])
            groups.setdefault(reason, []).append(f"{name}/{row['offload']}")
    if not groups:
        return ""
    return "Not shown: " + "; ".join(f"{why}: {', '.join(c)}" for why, c in groups.items()) + "."


def sizing_plot(run: RunData, out_dir: Path) -> Picture:
    """Peak memory against median seconds per image: which variant and offload fits, how fast."""
    key, title = "sizing", "Peak memory against time per image"
    columns = memory_columns(run)
    if not columns:
        return Picture(key, title, reason="no memory counter was recorded in this run")
    counter, header = columns[0]
    marker, color, line = _style(run)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    # (right end of the IQR bar, memory) per offload mode, for the axis limits and legend
    shown: set[str] = set()
    by_offload: dict[str, list[tuple[float, float]]] = {}
    for _, row in run.summary.iterrows():
        peak = peak_bytes(row, counter)
        walls = list(ok_walls(run, row["cell_id"]).values())
        if peak is None or not walls:
            continue
        x, y = float(np.median(walls)), peak / GIB
        q25, q75 = np.percentile(walls, [25, 75])
        bars = ax.errorbar(
            x,
            y,
            xerr=[[x - q25], [q75 - x]],
            fmt=marker[row["variant"]],
            color=color[row["offload"]],
            markersize=9,
            capsize=3,
        )
        bars[2][0].set_linestyle(line[row["offload"]])
        by_offload.setdefault(row["offload"], []).append((float(q75), y))
        shown.add(row["cell_id"])
    if not shown:
        plt.close(fig)
        return Picture(
            key, title, reason="no cell produced a timed image with a memory reading to plot"
        )
    ax.set_xlabel("median time per image (s); bars: interquartile range, styled by offload")
    ax.set_ylabel(header.replace(" (GiB)", "") + " (GiB)")
    ax.set_title(f"{title} ({run.run_id})")
    ax.grid(True, alpha=0.3)
    top = max(y for points in by_offload.values() for _, y in points)
    right = max(x for points in by_offload.values() for x, _ in points)
    ax.set_ylim(0, top * 1.15)
    ax.set_xlim(0, right * 1.1)
    drawn = {run.cells[c]["variant"] for c in shown}
    variants = [v for v in variant_order(run) if v in drawn]
    offloads = [o for o in offload_order(run) if o in by_offload]
    first = ax.legend(
        handles=[
            Line2D([], [], marker=marker[v], color="0.25", linestyle="none", markersize=8, label=v)
            for v in variants
        ],
        title="variant",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
    )
    ax.add_artist(first)
    second = ax.legend(
        handles=[Line2D([], [], color=color[o], linestyle=line[o], label=o) for o in offloads],
        title="offload",
        loc="lower left",
        bbox_to_anchor=(1.01, 0.0),
    )
    caption = (
        f"Each point is one cell: peak {COUNTER_LABEL[counter]} over loading and generation "
        f"against the median wall time per image. {_not_shown(run, shown)}"
    )
    return Picture(key, title, _save(fig, out_dir, "sizing.png", [first, second]), caption.strip())


def _finite_score(row: dict[str, Any] | None) -> bool:
    return row is not None and not missing(row.get("mean")) and math.isfinite(float(row["mean"]))


def quality_plot(run: RunData, out_dir: Path) -> Picture:
    """PSNR, SSIM (and LPIPS where computed) against full precision over bits per weight, with
    95% intervals: how much fidelity each bit buys."""
    key, title = "quality", "Fidelity to full precision against bits per weight"
    if run.scores is None:
        return Picture(key, title, reason=run.scores_note or "not scored")
    scores = run.quality
    marker, color, _ = _style(run)
    metrics = [("psnr", "PSNR vs full precision (dB), higher = closer")]
    metrics.append(("ssim", "SSIM vs full precision, higher = closer"))
    if any(m == "lpips" and _finite_score(row) for (_, m), row in scores.items()):
        metrics.append(("lpips", "LPIPS vs full precision, lower = closer"))
    points = []
    floors: list[tuple[str, str, float]] = []  # (metric, variant, value): drawn as lines
    notes = []
    for _, row in run.summary.iterrows():
        if speedup_of(run.cells[row["cell_id"]]):
            continue  # same bits per weight as its twin: the speed-up section plots it
        _size, bpw, _source = transformer_size(run, row["cell_id"])
        noise = is_noise_floor(run.cells[row["cell_id"]])
        for metric, _label in metrics:
            score = scores.get((row["cell_id"], metric))
            if noise and _finite_score(score):
                floors.append((metric, row["variant"], float(score["mean"])))
            elif _finite_score(score) and bpw is not None:
                points.append((metric, row, float(bpw), score))
            elif score is not None and score.get("status") == "identical":
                notes.append(f"{row['variant']}/{row['offload']}: {metric} identical to full")
    if not points:
        return Picture(
            key,
            title,
            reason="no quantized cell has a finite PSNR, SSIM or LPIPS against full precision "
            "(no quantized cell ran, or no full-precision reference ran)",
        )
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4.2), squeeze=False)
    axes = axes[0]
    for ax, (metric, label) in zip(axes, metrics, strict=True):
        for m, row, bpw, score in points:
            if m != metric:
                continue
            mean = float(score["mean"])
            low = score.get("ci_low")
            high = score.get("ci_high")
            yerr = None
            if not missing(low) and not missing(high):
                yerr = [[mean - float(low)], [float(high) - mean]]
            ax.errorbar(
                bpw,
                mean,
                yerr=yerr,
                fmt=marker[row["variant"]],
                color=color[row["offload"]],
                markersize=8,
                capsize=4,
            )
            ax.annotate(
                f"{cell_name(run.cells[row['cell_id']])}\n{row['offload']}",
                (bpw, mean),
                textcoords="offset points",
                xytext=(6, 2),
                fontsize=7,
            )
        for m, variant, value in floors:
            if m == metric:
                ax.axhline(value, color="0.4", linestyle="--", linewidth=1)
                ax.annotate(
                    f"noise floor ({variant}): {value:.4g}",
                    (0.02, value),
                    xycoords=("axes fraction", "data"),
                    textcoords="offset points",
                    xytext=(0, -10),
                    fontsize=7,
                    color="0.3",
                )
        ax.set_xlabel("transformer bits per weight")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    methods = " or ".join(interval_methods(run))
    bars = f"95% interval over prompts, {methods}" if methods else "none (too few prompts)"
    fig.suptitle(f"{title} ({run.run_id}); bars: {bars}")
    fig.tight_layout()
    caption = (
        "Paired against the full-precision image of the same prompt and seed. "
        + ("Speed-up cells are in the speed-up section. " if has_speedups(run) else "")
        + ("; ".join(notes) + "." if notes else "")
    )
    if run.synthetic:
        caption += " Random weights: this measures quantization error only, not image quality."
    return Picture(key, title, _save(fig, out_dir, "quality.png"), caption.strip())


def step_latency_plot(run: RunData, out_dir: Path) -> Picture:
    """Distribution of per-step wall times of each cell (box plot over every step of every
    ok image), which shows offload stalls and warm-up stragglers a median hides."""
    key, title = "steps", "Denoising step latency per cell"
    _, color, _ = _style(run)
    data, labels, colors, shown = [], [], [], set()
    for _, row in run.summary.iterrows():
        steps = [
            float(s)
            for (cid, _, _), r in run.images.items()
            if cid == row["cell_id"] and r.get("status") == "ok"
            for s in (r.get("step_s") or [])
        ]
        if steps:
            data.append(steps)
            labels.append(_cell_label(run, row))
            colors.append(color[row["offload"]])
            shown.add(row["cell_id"])
    if not data:
        return Picture(key, title, reason="no image record with per-step times (no cell ran ok)")
    fig, ax = plt.subplots(figsize=(min(16.0, max(5.0, 1.0 * len(data) + 2)), 4.2))
    boxes = ax.boxplot(data, showfliers=True, patch_artist=True)
    for box, face in zip(boxes["boxes"], colors, strict=True):
        box.set_facecolor((*face[:3], 0.35))
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
    ax.set_ylabel("time per denoising step (s)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{title} ({run.run_id})")
    ax.grid(True, axis="y", alpha=0.3)
    caption = (
        "Every step of every ok image (steps × images per box), coloured by offload mode. "
        f"{_not_shown(run, shown)}"
    )
    return Picture(key, title, _save(fig, out_dir, "steps.png"), caption.strip())


@dataclass(frozen=True)
class BarPlot:
    """A plot of one horizontal bar per cell with a value in a summary column."""

    column: str
    key: str
    title: str
    xlabel: str
    about: str  # the caption: what the value is
    reason: Callable[[RunData], str]  # why there is no plot when no cell has a value


LOAD = BarPlot(
    "load_s",
    "load",
    "Load time per cell",
    "load time (s)",
    "From the first from_pretrained/from_single_file call until the pipeline is ready with "
    "offload applied.",
    lambda _run: "no cell recorded a load time (no cell loaded)",
)
ENERGY = BarPlot(
    "median_energy_j",
    "energy",
    "Energy per image",
    "median energy per image (J)",
    "NVML total-energy difference over each pipeline call.",
    energy_reason,
)


def bar_plot(run: RunData, out_dir: Path, plot: BarPlot) -> Picture:
    """One horizontal bar per cell with a value in `plot.column`; the reason when none has."""
    column, key, title = plot.column, plot.key, plot.title
    values = [
        (row, float(row[column])) for _, row in run.summary.iterrows() if not missing(row[column])
    ]
    if not values:
        return Picture(key, title, reason=plot.reason(run))
    _, color, _ = _style(run)
    fig, ax = plt.subplots(figsize=(7.0, max(2.0, 0.45 * len(values) + 1.2)))
    names = [f"{cell_name(run.cells[row['cell_id']])} / {row['offload']}" for row, _ in values]
    ax.barh(names, [v for _, v in values], color=[color[row["offload"]] for row, _ in values])
    ax.invert_yaxis()
    ax.set_xlabel(plot.xlabel)
    ax.set_title(f"{title} ({run.run_id})")
    ax.grid(True, axis="x", alpha=0.3)
    shown = {row["cell_id"] for row, _ in values}
    caption = f"{plot.about} {_not_shown(run, shown)}"
    return Picture(key, title, _save(fig, out_dir, f"{key}.png"), caption.strip())


def all_plots(run: RunData, out_dir: Path) -> list[Picture]:
    return [
        sizing_plot(run, out_dir),
        quality_plot(run, out_dir),
        step_latency_plot(run, out_dir),
        bar_plot(run, out_dir, LOAD),
        bar_plot(run, out_dir, ENERGY),
    ]


def speedup_plot(run: RunData, cells: list[SpeedupCell], out_dir: Path) -> Picture:
    """Per variant, each speed-up's paired time ratio to its twin (bars: IQR of the pairs);
    a speed-up that did not run is named at 0 with its status, never left out."""
    key, title = "speedups", "Time per image against the twin, per speed-up"
    variants = [v for v in variant_order(run) if any(c.variant == v for c in cells)]
    if not any(c.ratios for c in cells):
        return Picture(key, title, reason="no speed-up cell has an image shared with its twin")
    _, color, _ = _style(run)
    heights = [sum(c.variant == v for c in cells) for v in variants]
    fig, axes = plt.subplots(
        len(variants),
        1,
        figsize=(7.5, 0.42 * sum(heights) + 1.3 * len(variants)),
        squeeze=False,
        sharex=True,
        gridspec_kw={"height_ratios": heights},
    )
    for ax, variant in zip(axes[:, 0], variants, strict=True):
        mine = [c for c in cells if c.variant == variant]
        names = [f"{c.speedup} / {c.offload}" for c in mine]
        ratios = [c.ratio or 0.0 for c in mine]
        errors = np.array(
            [
                [c.ratio - c.ratio_iqr[0], c.ratio_iqr[1] - c.ratio]
                if c.ratio is not None and c.ratio_iqr is not None
                else [0.0, 0.0]
                for c in mine
            ]
        ).T
        ax.barh(names, ratios, xerr=errors, capsize=3, color=[color[c.offload] for c in mine])
        for i, c in enumerate(mine):
            text = f"×{c.ratio:.2f}" if c.ratio is not None else c.status
            right = c.ratio_iqr[1] if c.ratio_iqr is not None else 0.0  # past the IQR bar
            ax.annotate(text, (right, i), xytext=(4, -3), textcoords="offset points", fontsize=7)
        ax.axvline(1.0, color="0.3", linestyle="--", linewidth=1)
        ax.invert_yaxis()
        ax.set_title(f"{variant} (twin = 1)", fontsize=9, loc="left")
        ax.grid(True, axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("s/image of the speed-up cell / s/image of its twin (paired images)")
    fig.suptitle(f"{title} ({run.run_id})")
    fig.tight_layout()
    caption = (
        "Below 1 (left of the dashed line) the speed-up is faster than its twin; bars: "
        "interquartile range of the per-image ratios. A speed-up with no shared image is at 0 "
        "with its status."
    )
    return Picture(key, title, _save(fig, out_dir, "speedups.png"), caption)


def speedup_fidelity_plot(run: RunData, cells: list[SpeedupCell], out_dir: Path) -> Picture:
    """Each speed-up's time ratio against what it changed in the images (PSNR against its
    twin): the trade a cache or a lossy kernel makes, one point per cell."""
    key, title = "speedup-fidelity", "Time ratio against fidelity to the twin, per speed-up"
    points = [c for c in cells if c.ratio is not None and c.psnr_twin_db is not None]
    if not points:
        return Picture(
            key,
            title,
            reason="no speed-up cell has both a time ratio and a finite PSNR against its twin "
            + ("(not scored)" if run.scores is None else "(identical images, or not scored)"),
        )
    marker, color, _ = _style(run)
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for c in points:
        ax.plot(c.ratio, c.psnr_twin_db, marker[c.variant], color=color[c.offload], markersize=8)
        ax.annotate(
            c.speedup,
            (c.ratio, c.psnr_twin_db),
            xytext=(5, 2),
            fontsize=7,
            textcoords="offset points",
        )
    ax.axvline(1.0, color="0.3", linestyle="--", linewidth=1)
    ax.set_xlabel("s/image over the twin's (median of paired images; below 1 = faster)")
    ax.set_ylabel("PSNR against the twin (dB), higher = closer")
    ax.set_title(f"{title} ({run.run_id})")
    ax.grid(True, alpha=0.3)
    legend = ax.legend(
        handles=[
            Line2D([], [], marker=marker[v], color="0.25", linestyle="none", label=v)
            for v in variant_order(run)
            if any(c.variant == v for c in points)
        ],
        title="variant",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
    )
    left_out = sorted({c.speedup for c in cells if c not in points})
    caption = "One point per speed-up cell with a time ratio and a finite PSNR against its twin. "
    if left_out:
        caption += (
            f"Not shown (no ratio, or identical to or not scored against the twin): "
            f"{', '.join(left_out)}."
        )
    return Picture(key, title, _save(fig, out_dir, "speedup-fidelity.png", [legend]), caption)
