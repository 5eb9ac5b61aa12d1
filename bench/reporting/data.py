"""Everything a report needs from one run folder, read once.

The report never measures anything: it reads the run folder (manifest, records, images) and, when
`bench score` has been run, `scores_summary.json`. Reading it in one place means every section of
the report sees the same snapshot, even if the run is still appending records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.backends import variant_scheme
from bench.cell_summary import summarize
from bench.errors import UserInputError
from bench.metrics import run_view
from bench.reporting.fmt import missing
from bench.results import SCORES_SUMMARY, cell_records, image_records, read_manifest, read_records
from bench.run_schema import TWIN_REFERENCE

CELL_KEYS = ("cell_id", "variant", "offload", "height", "width")


@dataclass
class RunData:
    """One run folder as the report sees it."""

    run_dir: Path
    manifest: dict[str, Any]
    summary: pd.DataFrame
    images: dict[tuple[str, str, int], dict[str, Any]]
    scores: dict[str, Any] | None
    scores_note: str | None = None
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)
    cell_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    # scores_summary rows keyed by (cell_id, metric); empty when not scored
    quality: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.run_dir.name)

    @property
    def synthetic(self) -> bool:
        return bool((self.manifest.get("base_model") or {}).get("synthetic"))

    @property
    def video(self) -> bool:
        """A video family's run: its cells name a frame count (bench.runner.executor)."""
        return any(c.get("num_frames") for c in self.manifest.get("cells", []))

    @property
    def finished(self) -> bool:
        return self.manifest.get("finished_at") is not None

    @property
    def gpus(self) -> list[dict[str, Any]]:
        return list((self.manifest.get("environment") or {}).get("gpus") or [])

    @property
    def devices(self) -> list[str]:
        """Devices the cells ran on (from cell records), e.g. ['cpu'] or ['cuda:0']."""
        return sorted({r["device"] for r in self.cell_records.values() if r.get("device")})

    @property
    def on_gpu(self) -> bool:
        return any(d.startswith("cuda") for d in self.devices) or bool(self.gpus)

    def cell_record(self, cell_id: str) -> dict[str, Any]:
        return self.cell_records.get(cell_id, {})


def _read_scores(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The per-cell score summary, or None with the reason (not scored, unreadable)."""
    path = run_dir / SCORES_SUMMARY
    if not path.is_file():
        return None, f"not scored: no {SCORES_SUMMARY} (run `bench score {run_dir}`)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError) as exc:
        return None, f"not scored: {SCORES_SUMMARY} unreadable ({exc})"
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        return None, f"not scored: {SCORES_SUMMARY} has no 'cells' list"
    return data, None


def load_run(run_dir: Path) -> RunData:
    """Read a run folder; UserInputError (one line) when it is not one."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    for key in ("cells", "images", "prompts"):
        if not isinstance(manifest.get(key), list):
            raise UserInputError(f"{run_dir / 'manifest.json'}: '{key}' missing or not a list")
    for i, cell in enumerate(manifest["cells"]):
        absent = [k for k in CELL_KEYS if not isinstance(cell, dict) or k not in cell]
        if absent:
            raise UserInputError(
                f"{run_dir / 'manifest.json'}: cells[{i}] lacks {', '.join(absent)}"
            )
    records = read_records(run_dir)
    scores, note = _read_scores(run_dir)
    return RunData(
        run_dir=run_dir,
        manifest=manifest,
        summary=summarize(manifest, records),
        images=image_records(records),
        scores=scores,
        scores_note=note,
        cells={cell["cell_id"]: cell for cell in manifest["cells"]},
        cell_records=cell_records(records),
        quality={
            (row["cell_id"], row["metric"]): row
            for row in (scores or {}).get("cells", [])
            # a speed-up cell's row against its twin: the tables show every cell against full
            # precision, whatever order the summary lists the two in
            if "metric" in row and row.get("reference") != TWIN_REFERENCE
        },
    )


def ok_walls(run: RunData, cell_id: str) -> dict[tuple[str, int], float]:
    """(prompt, repeat) -> wall time of each ok image of a cell: what its time figures rest on,
    keyed so that a speed-up cell's images pair with its twin's."""
    return {
        (prompt, repeat): float(record["wall_s"])
        for (cid, prompt, repeat), record in run.images.items()
        if cid == cell_id and record.get("status") == "ok" and not missing(record.get("wall_s"))
    }


def reference_variant(run: RunData) -> str | None:
    """The full-precision variant fidelity is measured against (as `bench score` picks it)."""
    return run_view.reference_variant(run.manifest["cells"])


def speedup_of(cell: dict[str, Any]) -> str | None:
    """The name of a cell's speed-up (bench/speedups), None for a cell without one."""
    return cell.get("speedup") or None


def has_speedups(run: RunData) -> bool:
    """Whether any cell has a speed-up: only such a run gets the speed-up column, section and
    published tables, so a run without any reports as before speed-ups existed."""
    return any(speedup_of(cell) for cell in run.cells.values())


def cell_name(cell: dict[str, Any]) -> str:
    """A cell's variant, with its speed-up where it has one ("Q8_0 + compile-blocks"): a
    speed-up cell shares its variant and offload with its twin, so plots must say which."""
    speedup = speedup_of(cell)
    return f"{cell['variant']} + {speedup}" if speedup else str(cell["variant"])


def variant_order(run: RunData) -> list[str]:
    return list(dict.fromkeys(cell["variant"] for cell in run.manifest["cells"]))


def offload_order(run: RunData) -> list[str]:
    return list(dict.fromkeys(cell["offload"] for cell in run.manifest["cells"]))


def backend_of(cell: dict[str, Any]) -> str:
    """The backend (variant kind) of a cell, as its manifest entry records it."""
    return str((cell.get("variant_spec") or {}).get("kind") or "?")


def scheme_of(cell: dict[str, Any]) -> str:
    """The cell's quantization scheme in its backend's words ("Q4_K", "int8wo", "bf16")."""

    return variant_scheme(cell.get("variant_spec") or {})


def quant_of(cell: dict[str, Any]) -> str | None:
    """The GGUF quant type of a cell (None for full precision)."""
    spec = cell.get("variant_spec") or {}
    if spec.get("kind") != "gguf":
        return None
    return str(spec.get("quant") or cell.get("variant"))


def energy_reason(run: RunData) -> str:
    """Why a run has no energy figures, in words."""
    supported = [r.get("energy_supported") for r in run.cell_records.values()]
    if not run.on_gpu:
        return (
            "energy not measured: no NVML on this machine (no GPU; cells ran on "
            f"{', '.join(run.devices) or 'no device'})"
        )
    if supported and not any(supported):
        return "energy not measured: NVML's total-energy counter did not answer on this GPU"
    return "energy not measured: no ok image record carries an energy reading"
