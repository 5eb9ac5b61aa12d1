"""Which variant × offload configurations fit a GPU, fastest first, with their quality.

A configuration fits when its peak (measured on a GPU where a run measured it, predicted
otherwise) stays under the card's memory less a safety margin. Fitting ones are ranked by
measured seconds per image; those never measured follow, marked as such, in the usual order of
speed of their offload mode (none, model, block groups, leaf groups, sequential) and, within a
mode, larger (higher-precision) transformers first. The others say which term overflows.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bench.errors import ArgumentError, UserInputError
from bench.families.sizing import Variant
from bench.offload import SEQUENTIAL_GGUF_NOTE, OffloadSpec, one_of_each_kind, parse_offload
from bench.results import SCORES_SUMMARY, cell_records, read_manifest, read_records
from bench.sizing.predict import predict
from bench.sizing.terms import Prediction, Scenario
from bench.sizing.units import fmt_bytes, parse_size

DEFAULT_OFFLOADS = one_of_each_kind()  # none, model, group-block1, group-leaf, sequential
QUALITY_METRICS = ("psnr", "ssim", "lpips", "clip_score_delta")


def gpu_table() -> dict[str, int]:
    """Card name -> bytes, from bench/data/gpus.yaml."""
    text = resources.files("bench").joinpath("data/gpus.yaml").read_text(encoding="utf-8")
    return {g["name"]: parse_size(str(g["memory"])) for g in yaml.safe_load(text)["gpus"]}


def lookup_gpu(name: str) -> tuple[str, int]:
    """A card by name (case and spacing ignored); an unknown name lists the close ones."""
    table = gpu_table()
    norm = {k.lower().replace(" ", ""): k for k in table}
    key = name.lower().replace(" ", "").replace("nvidia", "").replace("geforce", "")
    if key in norm:
        return norm[key], table[norm[key]]
    starts = [v for k, v in norm.items() if k.startswith(key)]
    if len(starts) == 1:
        return starts[0], table[starts[0]]
    close = starts or difflib.get_close_matches(name, list(table), n=4, cutoff=0.4)
    hint = f"close matches: {', '.join(close)}" if close else f"known: {', '.join(table)}"
    raise ArgumentError("gpu", f"{name!r}: not in the GPU table; {hint}")


@dataclass
class Measured:
    """What a run measured for one (variant, offload, resolution) cell."""

    cell_id: str
    run_id: str
    status: str
    median_s: float | None
    n: int
    peak_bytes: int | None  # NVML used minus baseline, GPU cells only
    on_gpu: bool = False
    error: str | None = None
    quality: dict[str, Any] = field(default_factory=dict)


@dataclass
class Option:
    variant: str
    offload: str
    prediction: Prediction
    fits: bool
    reason: str | None
    measured: Measured | None = None
    published_file_gb: float | None = None
    transformer_bytes: int = 0

    @property
    def peak_bytes(self) -> int:
        if self.measured is not None and self.measured.peak_bytes is not None:
            return self.measured.peak_bytes
        return self.prediction.total_bytes

    @property
    def speed_source(self) -> str:
        if self.measured is not None and self.measured.median_s is not None:
            return "measured"
        return "unknown"

    def to_json(self) -> dict[str, Any]:
        m = self.measured
        return {
            "variant": self.variant,
            "offload": self.offload,
            "fits": self.fits,
            "reason": self.reason,
            "predicted_peak_bytes": self.prediction.total_bytes,
            "measured_peak_bytes": m.peak_bytes if m else None,
            "peak_source": "measured" if m and m.peak_bytes is not None else "predicted",
            "s_per_image": m.median_s if m else None,
            "s_per_image_source": self.speed_source,
            "n_images": m.n if m else 0,
            "quality": m.quality if m else {},
            "measured_in": {"run_id": m.run_id, "cell_id": m.cell_id} if m else None,
            "published_file_gb": self.published_file_gb,
            "prediction": self.prediction.to_json(),
        }


def _speed_rank(offload: str) -> int:
    return parse_offload(offload).kind.speed_rank


def read_measurements(
    run_dir: Path, manifest: dict[str, Any] | None = None
) -> dict[tuple[str, str, str], Measured]:
    """(variant, offload, HxW) -> what the run measured, with scores when the run was scored."""
    from bench.cell_summary import net_memory_peaks, summarize  # deferred: loads pandas

    manifest = manifest or read_manifest(run_dir)
    run_id = manifest["run_id"]
    records = read_records(run_dir)
    cells = cell_records(records)
    quality = _quality(run_dir)
    out: dict[tuple[str, str, str], Measured] = {}
    for _, row in summarize(manifest, records).iterrows():
        row = row.astype(object).where(row.notna(), None)
        record = cells.get(row["cell_id"], {})
        on_gpu = str(record.get("device") or "").startswith("cuda")
        peak = net_memory_peaks(row).get("nvml_used_peak_bytes") if on_gpu else None
        out[(row["variant"], row["offload"], row["resolution"])] = Measured(
            cell_id=row["cell_id"],
            run_id=run_id,
            status=row["status"],
            median_s=row["median_s"] if on_gpu else None,
            n=int(row["n"] or 0),
            peak_bytes=peak,
            on_gpu=on_gpu,
            error=row["error_type"],
            quality=quality.get(row["cell_id"], {}),
        )
    return out


def _quality(run_dir: Path) -> dict[str, dict[str, Any]]:
    """cell id -> {metric: mean or status} from scores_summary.json (docs/scores.md)."""

    path = run_dir / SCORES_SUMMARY
    if not path.is_file():
        return {}
    out: dict[str, dict[str, Any]] = {}
    for row in json.loads(path.read_text()).get("cells", []):
        if row.get("metric") not in QUALITY_METRICS:
            continue
        value = row.get("mean") if row.get("status") == "ok" else row.get("status")
        out.setdefault(row["cell_id"], {})[row["metric"]] = value
    return out


def recommend(
    variants: list[Variant],
    offloads: list[OffloadSpec],
    vram: int,
    margin: float,
    height: int,
    width: int,
    batch: int = 1,
    max_sequence_length: int = 512,
    measured: dict[tuple[str, str, str], Measured] | None = None,
    num_frames: int | None = None,
    speedups: tuple[Any, ...] = (),
) -> list[Option]:
    """Every variant × offload option, fitting ones first in rank order (``num_frames``: the
    frames of one video, for a video family)."""
    budget = int(vram * (1 - margin))
    measured = measured or {}
    options: list[Option] = []
    for variant in variants:
        for spec in offloads:
            scenario = Scenario(
                spec, height, width, batch, max_sequence_length, num_frames, speedups
            )
            pred = predict(variant.pipe, scenario)
            m = measured.get((variant.name, spec.label, f"{height}x{width}"))
            option = Option(
                variant.name,
                spec.label,
                pred,
                fits=False,
                reason=None,
                measured=m,
                published_file_gb=variant.published_file_gb,
                transformer_bytes=variant.pipe.components["transformer"].bytes,
            )
            option.fits, option.reason = _verdict(option, budget, vram, margin)
            options.append(option)

    def key(o: Option) -> tuple[Any, ...]:
        s = o.measured.median_s if o.measured and o.measured.median_s is not None else None
        return (not o.fits, s is None, s or 0.0, _speed_rank(o.offload), -o.transformer_bytes)

    return sorted(options, key=key)


def _verdict(option: Option, budget: int, vram: int, margin: float) -> tuple[bool, str | None]:
    m = option.measured
    if m is not None and m.on_gpu and m.status not in ("ok", "partial", "missing"):
        return False, f"failed in run {m.run_id}: {m.error or m.status}"
    if SEQUENTIAL_GGUF_NOTE in option.prediction.notes and not (m and m.status == "ok"):
        return False, SEQUENTIAL_GGUF_NOTE
    peak = option.peak_bytes
    if peak <= budget:
        return True, None
    source = "measured" if m and m.peak_bytes is not None else "predicted"
    big = option.prediction.largest_term()
    return False, (
        f"{source} peak {fmt_bytes(peak)} > {fmt_bytes(budget)} usable "
        f"({fmt_bytes(vram)} less {margin:.0%}); in the {option.prediction.peak_phase} phase "
        f"{big.name} alone is {fmt_bytes(big.bytes)}"
    )


def parse_offloads(labels: list[str] | None) -> list[OffloadSpec]:
    """The offload modes asked for (default: one of each kind); ArgumentError naming `offload`."""
    try:
        return [parse_offload(label) for label in (labels or list(DEFAULT_OFFLOADS))]
    except UserInputError as exc:
        raise ArgumentError("offload", str(exc).removeprefix("offload ")) from None
