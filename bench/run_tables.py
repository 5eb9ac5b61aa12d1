"""A run folder as pandas tables: one row per cell, per image record, per score row.

What `bench.load_run` returns. Read from the run folder only (manifest.json, records.jsonl,
scores.jsonl), through bench.results, so it answers the same for a run copied from elsewhere.
The cell table is bench.cell_summary's (medians, IQR, n and peaks per cell, every manifest cell
including ones with no records); the image table keeps the raw values of every image record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.cell_summary import summarize
from bench.errors import RunFolderError
from bench.results import MANIFEST, SCORES, image_records, iter_jsonl, read_manifest, read_records

CELL_KEYS = ("cell_id", "variant", "offload", "height", "width")
IMAGE_COLUMNS = (
    "cell_id", "variant", "offload", "height", "width", "prompt_id", "repeat", "seed", "status",
    "error_type", "error_message", "image", "wall_s", "encode_s", "decode_s", "step_s", "energy_j",
)  # fmt: skip
# The keys every score row has (docs/scores.md), so an unscored run's empty table has them too.
SCORE_COLUMNS = (
    "kind", "cell_id", "variant", "offload", "height", "width", "prompt_id", "repeat", "seed",
    "metric", "value", "higher_is_better", "reference_cell_id", "status", "note",
)  # fmt: skip


@dataclass
class RunTables:
    """`cells`, `images` and `scores` of one run folder; `scores` is empty if it is unscored."""

    run_dir: Path
    manifest: dict[str, Any]
    cells: pd.DataFrame
    images: pd.DataFrame
    scores: pd.DataFrame

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id", self.run_dir.name))


def _image_row(record: dict[str, Any]) -> dict[str, Any]:
    error = record.get("error") or {}
    row = {key: record.get(key) for key in IMAGE_COLUMNS}
    row["error_type"], row["error_message"] = error.get("type"), error.get("message")
    for key, value in (record.get("memory") or {}).items():
        row[f"memory_{key}"] = value
    return row


def read_tables(run_dir: Path) -> RunTables:
    """Read a run folder into tables; RunFolderError (one line) when it is not a readable one."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    cells = manifest.get("cells")
    if not isinstance(cells, list):
        raise RunFolderError(f"{run_dir / MANIFEST}: 'cells' missing or not a list")
    for i, cell in enumerate(cells):
        absent = [k for k in CELL_KEYS if not isinstance(cell, dict) or k not in cell]
        if absent:
            raise RunFolderError(f"{run_dir / MANIFEST}: cells[{i}] lacks {', '.join(absent)}")
    records = read_records(run_dir)
    images = [_image_row(r) for r in image_records(records).values()]
    scores = list(iter_jsonl(run_dir / SCORES))
    return RunTables(
        run_dir=run_dir,
        manifest=manifest,
        cells=summarize(manifest, records),
        images=pd.DataFrame(images, columns=None if images else list(IMAGE_COLUMNS)),
        scores=pd.DataFrame(scores, columns=None if scores else list(SCORE_COLUMNS)),
    )
