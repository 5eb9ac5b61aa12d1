"""Per-cell summaries derived from raw records (never stored instead of them).

Medians with the interquartile range and n, because a handful of images per cell is the norm and
a mean would hide the first-image outliers that warm-up does not always remove.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.results import cell_records, image_records, read_manifest, read_records

GIB = float(1 << 30)

# Which counter to headline, most to least representative of "does it fit on the device".
MEMORY_COUNTERS = (
    ("nvml_used_peak_bytes", "NVML device used"),
    ("torch_max_reserved_bytes", "torch reserved"),
    ("torch_max_allocated_bytes", "torch allocated"),
    ("host_rss_peak_bytes", "host RSS"),
)


def _phase_peaks(cell: dict[str, Any], images: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Peak of each counter over loading and over generation (warm-up and images)."""
    memory = cell.get("memory") or {}
    out: dict[str, dict[str, int]] = {"load": {}, "generate": {}}
    for key, _label in MEMORY_COUNTERS:
        load = (memory.get("load") or {}).get(key)
        if load is not None:
            out["load"][key] = int(load)
        gen = [
            phase[key]
            for phase in [memory.get("warmup") or {}] + [img.get("memory") or {} for img in images]
            if phase.get(key) is not None
        ]
        if gen:
            out["generate"][key] = int(max(gen))
    return out


def summarize_run(run_dir: Path) -> pd.DataFrame:
    """One row per cell of the manifest, in manifest order, including cells with no records."""
    return summarize(read_manifest(run_dir), read_records(run_dir))


def summarize(manifest: dict[str, Any], records: list[dict[str, Any]]) -> pd.DataFrame:
    """`summarize_run` for a manifest and records already read (one snapshot of a live run)."""
    cells = cell_records(records)
    images_by_cell: dict[str, list[dict[str, Any]]] = {}
    for image in image_records(records).values():
        images_by_cell.setdefault(image["cell_id"], []).append(image)
    rows = []
    for cell in manifest["cells"]:
        cell_id = cell["cell_id"]
        record = cells.get(cell_id, {})
        images = images_by_cell.get(cell_id, [])
        ok = [r for r in images if r["status"] == "ok"]
        walls = np.array([r["wall_s"] for r in ok], dtype=float)
        steps = np.array([s for r in ok for s in r.get("step_s", [])], dtype=float)
        energy = [r["energy_j"] for r in ok if r.get("energy_j") is not None]
        peaks = _phase_peaks(record, ok)
        error = record.get("error") or {}
        failed = [r for r in images if r["status"] != "ok"]
        if not error and failed:
            error = failed[0].get("error") or {}
        status = record.get("status", "missing")
        if status == "ok" and failed:
            status = "partial" if ok else "failed"
        file_info = cell.get("transformer_file") or {}
        row: dict[str, Any] = {
            "cell_id": cell_id,
            "variant": cell["variant"],
            "offload": cell["offload"],
            "resolution": f"{cell['height']}x{cell['width']}",
            "status": status,
            "error_type": error.get("type"),
            "error_message": error.get("message"),
            "device": record.get("device"),
            "n": len(ok),
            "n_failed": len(failed),
            "median_s": float(np.median(walls)) if walls.size else None,
            "iqr_s": float(np.subtract(*np.percentile(walls, [75, 25]))) if walls.size else None,
            "median_step_s": float(np.median(steps)) if steps.size else None,
            # A video family's frames per generation (manifest); None for images.
            "num_frames": cell.get("num_frames"),
            "median_s_per_frame": (
                float(np.median(walls)) / cell["num_frames"]
                if walls.size and cell.get("num_frames")
                else None
            ),
            "load_s": record.get("load_s"),
            "first_call_s": record.get("first_call_s"),
            "median_energy_j": float(np.median(energy)) if energy else None,
            "file_bytes": file_info.get("bytes"),
            "bits_per_weight": file_info.get("bits_per_weight"),
        }
        baseline = ((record.get("memory") or {}).get("baseline") or {}).get("nvml_used_bytes")
        row["baseline_nvml_used_bytes"] = baseline
        for phase, values in peaks.items():
            for key, value in values.items():
                row[f"{phase}_{key}"] = value
        rows.append(row)
    return pd.DataFrame(rows)


def headline_memory(row: pd.Series) -> tuple[float | None, str]:
    """Peak over load and generation of the most device-relevant counter present, in GiB:
    NVML net of the cell's pre-cell baseline (what the report heads its table with), else the
    first other counter recorded; never NVML gross, which counts what the card held before."""
    peaks = net_memory_peaks(row)
    for key, label in MEMORY_COUNTERS:
        if key in peaks:
            net = key == "nvml_used_peak_bytes"
            return peaks[key] / GIB, f"{label}, net of baseline" if net else label
    return None, ""


def net_memory_peaks(row: pd.Series | dict[str, Any]) -> dict[str, int]:
    """Peak of each counter over loading and generation, NVML net of the cell's baseline.

    NVML reports the whole device, other processes included, so the baseline read before the
    cell loaded anything is subtracted: what is left is what the cell itself added. Without a
    baseline there is no such figure, and NVML is left out rather than reported gross.
    """

    def present(value: Any) -> bool:
        return value is not None and not pd.isna(value)

    baseline = row.get("baseline_nvml_used_bytes")
    peaks: dict[str, int] = {}
    for key, _label in MEMORY_COUNTERS:
        phases = (row.get(f"{phase}_{key}") for phase in ("load", "generate"))
        values = [int(v) for v in phases if present(v)]
        if not values:
            continue
        if key == "nvml_used_peak_bytes":
            if not present(baseline):
                continue
            peaks[key] = max(values) - int(baseline)
        else:
            peaks[key] = max(values)
    return peaks
