"""The speed-up section: each speed-up cell beside its twin (the same variant, offload mode and
resolution without the speed-up, run on the same paired seeds in the same run).

A speed-up is judged against its twin, not against full precision: the time ratio is over the
images the two cells share (same prompt, repeat and seed), memory is the difference on every
counter the main table shows, and fidelity is given against both the twin (what the speed-up
itself changed) and full precision (where the variant stands overall), where `bench score`
wrote each. A speed-up that failed is a row with its exception and message, never dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.metrics.run_view import twin_of
from bench.reporting.data import (
    RunData,
    ok_walls,
    reference_variant,
    speedup_of,
    variant_order,
)
from bench.reporting.fmt import DASH, missing, num
from bench.reporting.tables import (
    BEFORE_FAILURE,
    memory_columns,
    peak_bytes,
    score_text,
    status_text,
)
from bench.run_schema import FULL_REFERENCE, TWIN_REFERENCE
from bench.sizing.units import fmt_bytes

# The fields of a cell record's `speedup` that name it rather than measure it.
NAMING_FIELDS = ("name", "kind", "label")
FIDELITY_METRIC = "psnr"
MESSAGE_CHARS = 200


@dataclass(frozen=True)
class SpeedupCell:
    """One speed-up cell against its twin, as measured."""

    cell_id: str
    twin_id: str | None
    variant: str
    offload: str
    resolution: str
    speedup: str
    label: str
    status: str  # in the main table's words: `ok`, `failed: RuntimeError` ...
    ran: bool  # ok or partial: its peaks are what it needs, not what it reached before failing
    message: str  # the first line of the failure's message; empty when it ran
    ratios: list[float]  # per shared image: this cell's wall time over the twin's
    median_s: float | None
    twin_median_s: float | None
    first_call_s: float | None
    twin_first_call_s: float | None
    memory: list[tuple[str, float | None, float | None]]  # (header, twin bytes, cell bytes)
    psnr_twin: str
    psnr_full: str
    psnr_twin_db: float | None  # the mean PSNR against the twin where finite, for the plot
    recorded: str

    @property
    def ratio(self) -> float | None:
        """Median over the shared images of the paired wall-time ratio (< 1: faster)."""
        return float(np.median(self.ratios)) if self.ratios else None

    @property
    def ratio_iqr(self) -> tuple[float, float] | None:
        if not self.ratios:
            return None
        low, high = np.percentile(self.ratios, [25, 75])
        return float(low), float(high)


def paired_ratios(run: RunData, cell_id: str, twin_id: str | None) -> list[float]:
    """Per image both cells made (same prompt, repeat, seed): cell wall time / twin's."""
    if twin_id is None:
        return []
    mine, theirs = ok_walls(run, cell_id), ok_walls(run, twin_id)
    return [mine[key] / theirs[key] for key in mine if key in theirs and theirs[key] > 0]


def _summary_row(run: RunData, cell_id: str | None) -> pd.Series | None:
    if cell_id is None:
        return None
    hit = run.summary[run.summary["cell_id"] == cell_id]
    return None if hit.empty else hit.iloc[0]


def _value(row: pd.Series | None, key: str) -> float | None:
    return None if row is None or missing(row.get(key)) else float(row[key])


def _flat(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [item for key, v in value.items() for item in _flat(v, f"{prefix}{key}.")]
    return [(prefix.rstrip("."), value)]


def recorded_text(record: dict[str, Any]) -> str:
    """What the speed-up recorded about itself (compile time, graph breaks, cache calls ...),
    in the entry's own field names, so a new entry's fields show without a change here."""
    probe = {k: v for k, v in (record.get("speedup") or {}).items() if k not in NAMING_FIELDS}
    parts = []
    for key, value in _flat(probe):
        name = key.rsplit(".", 1)[-1]
        if isinstance(value, float):
            parts.append(f"{name} {num(value)}")
        else:  # counts stay whole numbers
            parts.append(f"{name} {DASH if value is None else value}")
    return ", ".join(parts) or DASH


def _score_rows(run: RunData, cell_id: str, metric: str) -> list[dict[str, Any]]:
    return [
        row
        for row in (run.scores or {}).get("cells", [])
        if row.get("cell_id") == cell_id and row.get("metric") == metric
    ]


def fidelity_rows(
    run: RunData, cell_id: str, twin_id: str | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The PSNR summary rows against the twin and against full precision (None: no such row).

    `bench score` labels a speed-up cell's rows `reference: twin` and `reference: full`; a
    summary without labels is read by each row's reference cell. On a full-precision variant the
    twin is the full-precision cell, so both are the same comparison.
    """
    rows = _score_rows(run, cell_id, FIDELITY_METRIC)
    full_variant = reference_variant(run)

    def labelled(label: str) -> dict[str, Any] | None:
        return next((r for r in rows if r.get("reference") == label), None)

    twin_row = labelled(TWIN_REFERENCE) or next(
        (r for r in rows if twin_id and r.get("reference_cell_id") == twin_id), None
    )
    full_row = labelled(FULL_REFERENCE) or next(
        (
            r
            for r in rows
            if r is not twin_row
            and run.cells.get(str(r.get("reference_cell_id")), {}).get("variant") == full_variant
        ),
        None,
    )
    if full_row is None and run.cells[cell_id]["variant"] == full_variant:
        full_row = twin_row
    return twin_row, full_row


def fidelity_text(run: RunData, cell_id: str, row: dict[str, Any] | None) -> str:
    if run.scores is None:
        return "not scored"
    if row is not None:
        return score_text(row, FIDELITY_METRIC)
    if any(r.get("status") == "reference" for r in _score_rows(run, cell_id, FIDELITY_METRIC)):
        return "not scored against it (scored as a reference itself)"
    return "not scored against it"


def finite_mean(row: dict[str, Any] | None) -> float | None:
    """A row's mean where it is a finite number (not identical, not failed)."""
    mean = None if row is None else row.get("mean")
    return None if missing(mean) or not math.isfinite(float(mean)) else float(mean)


def speedup_cells(run: RunData) -> list[SpeedupCell]:
    """Every speed-up cell of the run, in manifest order."""
    memory = memory_columns(run)
    out = []
    for cell_id, cell in run.cells.items():
        name = speedup_of(cell)
        if name is None:
            continue
        twin_id = twin_of(cell, run.cells.values())
        row, twin = _summary_row(run, cell_id), _summary_row(run, twin_id)
        record = run.cell_record(cell_id)
        spec = cell.get("speedup_spec") or {}
        label = str((record.get("speedup") or {}).get("label") or spec.get("kind") or name)
        lines: list[str] = []
        if row is not None and row["status"] != "ok" and not missing(row.get("error_message")):
            lines = str(row["error_message"]).strip().splitlines()
        message = lines[0][:MESSAGE_CHARS] if lines else ""
        twin_row, full_row = fidelity_rows(run, cell_id, twin_id)
        out.append(
            SpeedupCell(
                cell_id=cell_id,
                twin_id=twin_id,
                variant=str(cell["variant"]),
                offload=str(cell["offload"]),
                resolution=f"{cell['height']}x{cell['width']}",
                speedup=name,
                label=label,
                status=status_text(run, row) if row is not None else "not run",
                ran=row is not None and row["status"] in ("ok", "partial"),
                message=message,
                ratios=paired_ratios(run, cell_id, twin_id),
                median_s=_value(row, "median_s"),
                twin_median_s=_value(twin, "median_s"),
                first_call_s=_value(row, "first_call_s"),
                twin_first_call_s=_value(twin, "first_call_s"),
                memory=[
                    (
                        header,
                        None if twin is None else peak_bytes(twin, counter),
                        None if row is None else peak_bytes(row, counter),
                    )
                    for counter, header in memory
                ],
                psnr_twin=fidelity_text(run, cell_id, twin_row),
                psnr_full=fidelity_text(run, cell_id, full_row),
                psnr_twin_db=finite_mean(twin_row),
                recorded=recorded_text(record),
            )
        )
    return out


def ratio_text(cell: SpeedupCell) -> str:
    ratio, iqr = cell.ratio, cell.ratio_iqr
    if ratio is None or iqr is None:
        return DASH
    return f"×{num(ratio)} [{num(iqr[0])}, {num(iqr[1])}] (n={len(cell.ratios)})"


def memory_delta_text(twin: float | None, mine: float | None, ran: bool) -> str:
    """`+40.6 MiB (511.4 MiB → 552.0 MiB)`; a cell that failed is marked as the main table
    marks it: its peak is what it reached before failing, not what it needs."""
    if twin is None or mine is None:
        return DASH
    delta = mine - twin
    sign = "+" if delta >= 0 else "-"
    text = f"{sign}{fmt_bytes(abs(delta))} ({fmt_bytes(twin)} → {fmt_bytes(mine)})"
    return text if ran else f"{text} {BEFORE_FAILURE}"


def _pair(mine: float | None, twin: float | None) -> str:
    return f"{num(mine)} (twin {num(twin)})"


@dataclass(frozen=True)
class SpeedupTable:
    """The speed-ups of one variant, as one table."""

    variant: str
    header: list[str]
    rows: list[list[str]]
    statuses: list[str]


def speedup_tables(run: RunData, cells: list[SpeedupCell]) -> list[SpeedupTable]:
    """One table per variant with a speed-up, its rows in manifest order."""
    offloads = len({c.offload for c in cells}) > 1
    resolutions = len({c.resolution for c in cells}) > 1
    memory_headers = (
        [f"Δ {h.removesuffix(' (GiB)')}" for h, _, _ in cells[0].memory] if cells else []
    )
    header = ["speed-up", "applied"]
    header += ["offload"] if offloads else []
    header += ["resolution"] if resolutions else []
    header += [
        "status",
        "s/image ratio to twin, median [IQR] of pairs",
        "s/image (s)",
        "first call (s)",
        *memory_headers,
        "PSNR vs twin (dB)",
        "PSNR vs full (dB)",
        "recorded",
        "message",
    ]
    tables = []
    for variant in variant_order(run):
        mine = [c for c in cells if c.variant == variant]
        if not mine:
            continue
        rows = []
        for c in mine:
            row = [c.speedup, c.label]
            row += [c.offload] if offloads else []
            row += [c.resolution] if resolutions else []
            row += [
                c.status,
                ratio_text(c),
                _pair(c.median_s, c.twin_median_s),
                _pair(c.first_call_s, c.twin_first_call_s),
                *(memory_delta_text(twin, value, c.ran) for _, twin, value in c.memory),
                c.psnr_twin,
                c.psnr_full,
                c.recorded,
                c.message or DASH,
            ]
            rows.append(row)
        tables.append(SpeedupTable(variant, header, rows, [c.status for c in mine]))
    return tables


def speedup_notes(run: RunData, cells: list[SpeedupCell]) -> list[str]:
    """How to read the speed-up tables."""
    notes = [
        "Twin = the same variant, offload mode and resolution without the speed-up, run in "
        "this run on the same prompts and seeds. Ratio = the speed-up cell's wall time over "
        "its twin's, image by image (same prompt, repeat and seed), median and interquartile "
        "range over those pairs, n = pairs; below 1 is faster.",
        "first call = the warm-up generation, which pays compilation (the images' times are "
        "steady state). Δ memory = the speed-up cell's peak less its twin's, per counter of "
        "the main table (a cache's stored activations, a compiled graph's buffers); "
        f"{BEFORE_FAILURE} = the peak a failed cell reached before failing.",
        "PSNR vs twin = what the speed-up changed in the images; PSNR vs full = against the "
        "full-precision cell, as in the main table. On the full-precision variant the two are "
        "the same comparison.",
        "recorded = what the speed-up recorded in its cell record after the warm-up "
        "(compile seconds, graphs, graph breaks, recompiles; a cache's denoiser calls and the "
        "calls it skipped), in its own field names (docs/speedups.md).",
    ]
    missing_twin = [c.cell_id for c in cells if c.twin_id is None]
    if missing_twin:
        notes.append(
            "No twin in this run (no cell of the same variant, offload and resolution without "
            f"a speed-up): {', '.join(missing_twin)}."
        )
    if run.synthetic:
        notes.append(
            "Random weights: PSNR measures how far the speed-up moves the output, not image "
            "quality."
        )
    return notes
