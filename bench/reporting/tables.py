"""The main table: one row per cell (variant × offload × resolution), raw and for reading.

Two forms of the same rows: `raw_table` keeps bytes and seconds (plus GiB beside them) for
`table.csv`, so a spreadsheet can recompute anything; `display_table` is the blog's table with
units in the headers, spread and n beside every median, and the status of every cell, including
the ones that failed (a failure is a result, not a gap).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.cell_summary import MEMORY_COUNTERS
from bench.metrics.noise_floor import is_noise_floor
from bench.metrics.stats import MIN_INTERVAL_N
from bench.reporting.data import (
    RunData,
    backend_of,
    energy_reason,
    has_speedups,
    reference_variant,
    scheme_of,
    speedup_of,
)
from bench.reporting.fmt import DASH, GIB, gib, interval, missing, num

# Quality columns of the main table: (metric, header; `interval_label` follows it). Others stay
# in table.csv.
QUALITY_COLUMNS = (
    ("clip_score", "CLIP score"),
    ("psnr", "PSNR vs full (dB)"),
    ("ssim", "SSIM vs full"),
    ("lpips", "LPIPS vs full"),
)
BEFORE_FAILURE = "†"  # marks a peak reached before the cell failed: not what it needs to run
# NVML's "used" is the whole device: the cell's reserved memory, its CUDA context, and whatever
# else the card held before the cell began. The headline takes off what the card held then (the
# cell's baseline, read before its CUDA context), as `bench size --check` and `bench compare` do;
# the gross figure stays beside it. A quantized cell against full precision gross is pulled
# towards 1 by the memory both share and neither loaded.
NVML_GROSS = "nvml_used_peak_bytes"
NVML_NET = "nvml_used_net_peak_bytes"  # a report column, not a record key
COUNTER_LABEL = {NVML_NET: "NVML used net of the pre-cell baseline", **dict(MEMORY_COUNTERS)}
COUNTER_LABEL[NVML_GROSS] = "NVML device used, gross (whole device)"


def peak_bytes(row: pd.Series, counter: str) -> float | None:
    """Peak of one counter over loading and generation of a cell; NVML_NET is NVML's less the
    cell's baseline (None without one: a run recorded before baselines, or no NVML)."""
    if counter == NVML_NET:
        gross, baseline = peak_bytes(row, NVML_GROSS), row.get("baseline_nvml_used_bytes")
        return None if gross is None or missing(baseline) else gross - float(baseline)
    values = [row.get(f"{phase}_{counter}") for phase in ("load", "generate")]
    values = [float(v) for v in values if not missing(v)]
    return max(values) if values else None


def transformer_size(run: RunData, cell_id: str) -> tuple[float | None, float | None, str]:
    """Bytes and bits per weight of the transformer, and where the numbers come from.

    A GGUF cell has its file in the manifest; a full-precision cell has no file of its own in
    the run, so its tensors' bytes as loaded (from the cell record's `weights`, of any cell of
    the same variant: a cell that failed before loading has none) stand in.
    """
    cell = run.cells[cell_id]
    info = cell.get("transformer_file") or {}
    if info.get("bytes"):
        return float(info["bytes"]), info.get("bits_per_weight"), "GGUF file"
    same_variant = [c for c, v in run.cells.items() if v["variant"] == cell["variant"]]
    for candidate in [cell_id, *same_variant]:
        weights = (run.cell_record(candidate).get("weights") or {}).get("transformer") or {}
        if weights.get("bytes") and weights.get("parameters"):
            size = float(weights["bytes"])
            return size, 8.0 * size / float(weights["parameters"]), "tensors as loaded"
    return None, None, ""


def cell_role(run: RunData, cell: dict[str, Any]) -> str:
    if is_noise_floor(cell):
        return "noise_floor"
    if cell["variant"] == reference_variant(run):
        return "reference"
    return "candidate"


def status_text(run: RunData, row: pd.Series) -> str:
    """`ok`, `failed: RuntimeError`, `not run` ... (the message is in the notes section)."""
    status = str(row["status"])
    if status == "missing":
        return "not run (run unfinished)" if not run.finished else "not run"
    if status == "partial":
        return f"partial ({int(row['n'])} ok, {int(row['n_failed'])} failed: {row['error_type']})"
    if status != "ok" and not missing(row.get("error_type")):
        return f"{status}: {row['error_type']}"
    return status


def interval_methods(run: RunData) -> list[str]:
    """The methods of the run's quality intervals, as their rows name them (`t/bootstrap-t`;
    a summary written before says its own, e.g. `bootstrap-bca`)."""
    return sorted(
        {
            str(row["method"]).split(" ")[0]
            for row in run.quality.values()
            if not missing(row.get("ci_low")) and row.get("method") not in (None, "none")
        }
    )


def interval_label(run: RunData) -> str:
    """What the brackets of a quality cell are, for its column header."""
    methods = interval_methods(run)
    if not methods:
        return "(mean over prompts, no interval)"
    return f"[95% CI, {' or '.join(methods)}]"


def quality_text(run: RunData, cell_id: str, metric: str) -> str:
    """One score as `mean [low, high]`, or why there is none."""
    return score_text(run.quality.get((cell_id, metric)), metric)


def score_text(row: dict[str, Any] | None, metric: str) -> str:
    """A scores_summary row of `metric` as `mean [low, high]`, or why it has no figure."""
    if row is None:
        return "not scored"
    status = row.get("status")
    digits = 4 if metric in ("ssim", "ms_ssim") else 3
    if status == "identical":
        return "identical (∞)" if metric == "psnr" else "identical"
    if status == "reference":
        return "reference"
    if missing(row.get("mean")):
        return str(status or DASH).replace("_", " ")
    text = interval(row["mean"], row.get("ci_low"), row.get("ci_high"), digits)
    if status == "too_few_samples":
        text += f" (n={row.get('n')} prompts: no interval below {MIN_INTERVAL_N})"
    elif status not in ("ok", None):
        text += f" ({str(status).replace('_', ' ')}, n={row.get('n')})"
    if not missing(row.get("worst_frame")):  # a video: mean over frames, and its worst frame
        text += f", worst frame {row['worst_frame']:.{digits}g}"
    return text


def memory_columns(run: RunData) -> list[tuple[str, str]]:
    """(counter, header) for the memory columns this run has data for.

    Device counters when the run measured any; host RSS otherwise, labelled as host memory so a
    CPU run is never read as a VRAM figure. NVML first net of the cell's baseline (the
    headline), then gross, both labelled so; a run without baselines has the gross one only.
    """
    frame = run.summary
    present = [
        key
        for key, _ in MEMORY_COUNTERS
        if any(f"{phase}_{key}" in frame.columns for phase in ("load", "generate"))
        and frame[[c for c in frame.columns if c.endswith(key)]].notna().any().any()
    ]
    columns = []
    if NVML_GROSS in present:
        if any(peak_bytes(row, NVML_NET) is not None for _, row in frame.iterrows()):
            columns.append((NVML_NET, "peak VRAM, NVML net of the pre-cell baseline (GiB)"))
        columns.append((NVML_GROSS, "peak VRAM, NVML device used, gross (GiB)"))
    if "torch_max_allocated_bytes" in present:
        columns.append(("torch_max_allocated_bytes", "peak VRAM, torch allocated (GiB)"))
    if "host_rss_peak_bytes" in present:
        header = "peak host RSS (GiB)" if columns else "peak host RSS, CPU run: not VRAM (GiB)"
        columns.append(("host_rss_peak_bytes", header))
    return columns


def raw_table(run: RunData) -> pd.DataFrame:
    """Numbers as measured (bytes, seconds, joules) plus GiB, one row per cell: table.csv."""
    scores = run.quality
    metrics = list(dict.fromkeys(metric for _, metric in scores))
    # A speed-up column only where the run has speed-ups: other runs' table.csv is unchanged.
    speedups = has_speedups(run)
    rows = []
    for _, row in run.summary.iterrows():
        cell_id = row["cell_id"]
        cell = run.cells[cell_id]
        size, bpw, source = transformer_size(run, cell_id)
        out: dict[str, Any] = {
            "cell_id": cell_id,
            "variant": row["variant"],
            "backend": backend_of(cell),
            "quantization": scheme_of(cell),
            **({"speedup": speedup_of(cell)} if speedups else {}),
            "offload": row["offload"],
            "resolution": row["resolution"],
            "role": cell_role(run, cell),
            "status": row["status"],
            "error_type": row["error_type"],
            "error_message": row["error_message"],
            "device": row["device"],
            "n_images": row["n"],
            "n_failed": row["n_failed"],
            "median_s_per_image": row["median_s"],
            "iqr_s_per_image": row["iqr_s"],
            "median_s_per_step": row["median_step_s"],
            "num_frames": row.get("num_frames"),
            "median_s_per_frame": row.get("median_s_per_frame"),
            "load_s": row["load_s"],
            "first_call_s": row["first_call_s"],
            "median_energy_j_per_image": row["median_energy_j"],
        }
        for key, _label in MEMORY_COUNTERS:
            peak = peak_bytes(row, key)
            out[f"peak_{key}"] = peak
            out[f"peak_{key.removesuffix('_bytes')}_gib"] = None if peak is None else peak / GIB
            for phase in ("load", "generate"):
                out[f"{phase}_{key}"] = row.get(f"{phase}_{key}")
        net = peak_bytes(row, NVML_NET)
        out["baseline_nvml_used_bytes"] = row.get("baseline_nvml_used_bytes")
        out[f"peak_{NVML_NET}"] = net
        out["peak_nvml_used_net_peak_gib"] = None if net is None else net / GIB
        out["transformer_bytes"] = size
        out["transformer_gib"] = None if size is None else size / GIB
        out["transformer_size_source"] = source
        out["bits_per_weight"] = bpw
        for metric in metrics:
            score = scores.get((cell_id, metric), {})
            for key in ("mean", "ci_low", "ci_high", "n", "status"):
                out[f"{metric}_{key}"] = score.get(key)
        rows.append(out)
    return pd.DataFrame(rows)


def _has_value(run: RunData, metric: str) -> bool:
    """Whether any cell has a figure for `metric` (a number, or 'identical')."""
    return any(
        not missing(row.get("mean")) or row.get("status") == "identical"
        for (_, m), row in run.quality.items()
        if m == metric
    )


def display_table(run: RunData, raw: pd.DataFrame) -> pd.DataFrame:
    """The table people read (from `raw_table`'s rows): strings with units in the headers, in
    manifest order.

    Columns no cell has a value for (energy on a machine without NVML, a metric that could not
    be computed) are left out and explained by `omitted_columns`, so the table stays readable.
    """
    memory = memory_columns(run)
    energy_measured = raw["median_energy_j_per_image"].notna().any()
    resolutions = raw["resolution"].nunique() > 1
    video = run.video
    if run.scores is None:
        quality = [("quality", "quality vs full")]
    else:
        label = interval_label(run)
        quality = [(m, f"{h} {label}") for m, h in QUALITY_COLUMNS if _has_value(run, m)]
    rows = []
    for (_, row), (_, summary) in zip(raw.iterrows(), run.summary.iterrows(), strict=True):
        out: dict[str, str] = {
            "variant": str(row["variant"])
            + (" (noise floor)" if row["role"] == "noise_floor" else ""),
            "offload": str(row["offload"]),
        }
        if resolutions:
            out["resolution"] = str(row["resolution"])
        out["status"] = status_text(run, summary)
        out["backend"] = str(row["backend"])
        out["quantization"] = str(row["quantization"])
        if "speedup" in raw:
            out["speed-up"] = DASH if missing(row["speedup"]) else str(row["speedup"])
        ran = row["status"] in ("ok", "partial")
        for counter, header in memory:
            value = gib(row[f"peak_{counter}"])
            out[header] = value if ran or value == DASH else f"{value} {BEFORE_FAILURE}"
        median, iqr, n = row["median_s_per_image"], row["iqr_s_per_image"], row["n_images"]
        each = "video" if video else "image"
        out[f"s/{each}, median (IQR)"] = (
            DASH if missing(median) else f"{num(median)} ({num(iqr, 2)})"
        )
        if video:
            out["frames"] = DASH if missing(row["num_frames"]) else str(int(row["num_frames"]))
            out["s/frame"] = num(row["median_s_per_frame"])
        out[f"n {each}s"] = str(int(n)) if not missing(n) else "0"
        out["load (s)"] = num(row["load_s"])
        if energy_measured:
            out["energy/image (J)"] = num(row["median_energy_j_per_image"])
        out["transformer size (GiB)"] = gib(row["transformer_bytes"])
        out["bits/weight"] = num(row["bits_per_weight"])
        for metric, header in quality:
            text = quality_text(run, row["cell_id"], metric)
            out[header] = DASH if text == "cell failed" else text
        rows.append(out)
    return pd.DataFrame(rows)


def omitted_columns(run: RunData) -> list[str]:
    """Why a column of the blog's table is not in this one (no cell has a value for it)."""
    notes = []
    if run.summary["median_energy_j"].isna().all():
        notes.append(f"Energy per image: {energy_reason(run)}.")
    if run.scores is not None:
        for metric, header in QUALITY_COLUMNS:
            if not _has_value(run, metric):
                reasons = {
                    f"{str(r.get('status')).replace('_', ' ')}: {r.get('note')}"
                    for (_, m), r in run.quality.items()
                    if m == metric
                    and not str(r.get("status")).startswith("cell_")
                    and r.get("status") != "reference"
                }
                why = "; ".join(sorted(reasons)) or "no cell has a value"
                notes.append(f"{header}: not in the table ({why}).")
    if run.summary["resolution"].nunique() == 1 and len(run.summary):
        notes.append(f"Every cell at {run.summary['resolution'].iloc[0]} (height × width).")
    return notes


def failure_notes(run: RunData) -> list[str]:
    """One line per cell that did not run fully: its exception type, phase and message."""
    notes = []
    for _, row in run.summary.iterrows():
        if row["status"] == "ok":
            continue
        if row["status"] == "missing":
            why = "no record: the run ended before this cell" if not run.finished else "no record"
            notes.append(f"{row['cell_id']}: not run ({why})")
            continue
        record = run.cell_record(row["cell_id"])
        phase = ((record.get("error") or {}).get("phase")) or "generate"
        message = str(row["error_message"] or "").strip().splitlines()
        first = message[0] if message else ""
        if len(first) > 300:
            first = first[:297] + "..."
        notes.append(f"{row['cell_id']}: {row['status']} in {phase}: {row['error_type']}: {first}")
    return notes


def quality_gaps(run: RunData) -> list[str]:
    """Each distinct reason a quality column has no figure (unavailable metric, too small ...),
    once per metric, so "unavailable" in the table is never left unexplained."""
    seen: dict[str, str] = {}
    shown = {metric for metric, _ in QUALITY_COLUMNS if _has_value(run, metric)}
    for (_, metric), row in run.quality.items():
        status = str(row.get("status"))
        if metric not in shown:
            continue
        if status in ("ok", "reference", "identical", "constant"):
            continue
        if status.startswith("cell_") or metric in seen or not row.get("note"):
            continue
        seen[metric] = f"{metric}: {status.replace('_', ' ')}: {row['note']}"
    return list(seen.values())
