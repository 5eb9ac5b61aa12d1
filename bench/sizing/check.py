"""Predicted against measured, for every cell of a run folder (`bench size --check RUN_DIR`).

The run folder is the only input (docs/architecture.md): the manifest says what each cell
loaded and where, the cell and image records what it measured. On a GPU run two peaks are
compared: NVML device used minus the cell's baseline (what the whole process added, CUDA
context included) against the predicted total, and torch's max reserved against the
prediction without the context. On any run the weights term is compared with the bytes the
cell really loaded (record `weights`), which must match exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cell_summary import net_memory_peaks, summarize
from bench.families.sizing import Variant
from bench.offload import OffloadSpec
from bench.results import cell_records, read_manifest, read_records
from bench.sizing.predict import parse_offload, predict
from bench.sizing.sources import cell_variant, run_base
from bench.sizing.terms import Prediction, Scenario
from bench.speedups import parse_speedup


@dataclass
class CellCheck:
    cell_id: str
    variant: str
    offload: str
    resolution: str
    status: str
    prediction: Prediction | None = None
    weights_predicted: dict[str, int] = field(default_factory=dict)
    weights_loaded: dict[str, int] = field(default_factory=dict)
    nvml_measured: int | None = None  # NVML used peak minus baseline
    reserved_measured: int | None = None  # torch max reserved
    host_rss_measured: int | None = None
    note: str | None = None

    @property
    def weights_match(self) -> bool | None:
        if not self.weights_loaded:
            return None
        return all(self.weights_predicted.get(k) == v for k, v in self.weights_loaded.items())

    @property
    def nvml_error(self) -> float | None:
        return _rel(self.prediction.total_bytes if self.prediction else None, self.nvml_measured)

    @property
    def reserved_error(self) -> float | None:
        pred = self.prediction.reserved_bytes if self.prediction else None
        return _rel(pred, self.reserved_measured)

    def to_json(self) -> dict[str, Any]:
        return {
            "cell_id": self.cell_id,
            "variant": self.variant,
            "offload": self.offload,
            "resolution": self.resolution,
            "status": self.status,
            "predicted_total_bytes": self.prediction.total_bytes if self.prediction else None,
            "predicted_reserved_bytes": (
                self.prediction.reserved_bytes if self.prediction else None
            ),
            "nvml_used_minus_baseline_bytes": self.nvml_measured,
            "torch_max_reserved_bytes": self.reserved_measured,
            "host_rss_peak_bytes": self.host_rss_measured,
            "nvml_relative_error": self.nvml_error,
            "reserved_relative_error": self.reserved_error,
            "weights_predicted": self.weights_predicted,
            "weights_loaded": self.weights_loaded,
            "weights_match": self.weights_match,
            "prediction": self.prediction.to_json() if self.prediction else None,
            "note": self.note,
        }


def _rel(predicted: int | None, measured: int | None) -> float | None:
    if predicted is None or not measured:
        return None
    return (predicted - measured) / measured


def check_run(run_dir: Path) -> list[CellCheck]:
    """One CellCheck per manifest cell; cells that did not run say so in `status`."""
    manifest = read_manifest(run_dir)
    records = read_records(run_dir)
    cells = cell_records(records)
    rows = {row["cell_id"]: row for _, row in summarize(manifest, records).iterrows()}
    config = manifest.get("config") or {}
    seq_len = int(config.get("max_sequence_length", 512))
    base = run_base(manifest)
    variants: dict[str, Variant] = {}
    out: list[CellCheck] = []
    for cell in manifest["cells"]:
        record = cells.get(cell["cell_id"], {})
        check = CellCheck(
            cell_id=cell["cell_id"],
            variant=cell["variant"],
            offload=cell["offload"],
            resolution=f"{cell['height']}x{cell['width']}",
            status=record.get("status", "missing"),
        )
        out.append(check)
        if cell["variant"] not in variants:
            variants[cell["variant"]] = cell_variant(base, cell)
        variant = variants[cell["variant"]]
        offload = cell.get("offload_spec")
        spec = (
            parse_offload(cell["offload"])
            if offload is None
            else OffloadSpec.model_validate(offload)
        )
        speedup = cell.get("speedup_spec")
        scenario = Scenario(
            spec, cell["height"], cell["width"], 1, seq_len, _num_frames(cell),
            (parse_speedup(speedup),) if speedup else (),
        )  # fmt: skip
        check.prediction = predict(variant.pipe, scenario)
        check.weights_predicted = {k: c.bytes for k, c in variant.pipe.components.items()}
        if check.status != "ok":
            error = record.get("error") or {}
            check.note = error.get("message")
            continue
        check.weights_loaded = {
            k: int(v["bytes"]) for k, v in (record.get("weights") or {}).items()
        }
        peaks = net_memory_peaks(rows[cell["cell_id"]])
        check.nvml_measured = peaks.get("nvml_used_peak_bytes")
        check.reserved_measured = peaks.get("torch_max_reserved_bytes")
        check.host_rss_measured = peaks.get("host_rss_peak_bytes")
        if str(record.get("device", "")).startswith("cpu"):
            check.note = "CPU cell: no VRAM to compare; weights checked against the loaded bytes"
    return out


def _num_frames(cell: dict[str, Any]) -> int | None:
    """A video cell's frame count (the manifest's ``num_frames``; None: an image cell)."""
    frames = cell.get("num_frames")
    return int(frames) if frames else None
