"""The scores file: rows, their keys, and append-only writing where the latest row per key wins.

Scoring is resumable because every row has a key; an ok row is never recomputed, and a failure
that is retried is written again only if its outcome changed. Schema: docs/scores.md.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.metrics import METRICS
from bench.metrics.base import DistributionResult, PairScore
from bench.results import append_jsonl, iter_jsonl, repair_torn_tail, utc_now

SCHEMA = 1

# (cell, prompt, repeat, metric, reference cell, model) and (cell, metric, ref, features, n, n_ref)
ImageKey = tuple[str, str, int, str, str | None, str | None]
DistKey = tuple[str, str, str | None, str, int, int]


class ScoreBook:
    """The scores file: what is there (latest row per key wins) and what to append."""

    def __init__(self, path: Path) -> None:
        """Read the rows (each checked: a damaged line is a RunFolderError naming it).

        A last line left unfinished by a killed `bench score` is cut first: the next append
        would otherwise be glued to it, and both rows lost.
        """
        self.path = path
        self.image_rows: dict[ImageKey, dict[str, Any]] = {}
        self.dist_rows: dict[DistKey, dict[str, Any]] = {}
        repair_torn_tail(path)
        for row in iter_jsonl(path):
            if row.get("kind") == "image_score":
                self.image_rows[image_key(row)] = row
            elif row.get("kind") == "distribution_score":
                self.dist_rows[dist_key(row)] = row

    def done(self, key: ImageKey) -> bool:
        row = self.image_rows.get(key)
        return row is not None and row.get("status") == "ok"

    def dist_done(self, key: DistKey) -> bool:
        """A distribution row is final when ok, or too few samples for the same (n, n_ref)."""
        row = self.dist_rows.get(key)
        return row is not None and row.get("status") in ("ok", "too_few_samples")

    def add_image_rows(self, rows: list[dict[str, Any]]) -> None:
        self._add(self.image_rows, image_key, rows)

    def add_dist_row(self, row: dict[str, Any]) -> None:
        self._add(self.dist_rows, dist_key, [row])

    def _add(
        self,
        table: dict[Any, dict[str, Any]],
        key_of: Callable[[dict[str, Any]], Any],
        rows: list[dict[str, Any]],
    ) -> None:
        """Append rows whose outcome is new; an unchanged failure is not written twice."""
        new = []
        for row in rows:
            key = key_of(row)
            old = table.get(key)
            if old is not None and _outcome(old) == _outcome(row):
                continue
            table[key] = row
            new.append(row)
        if new:
            append_jsonl(self.path, new)


def image_key(row: dict[str, Any]) -> ImageKey:
    return (
        row["cell_id"],
        row["prompt_id"],
        int(row["repeat"]),
        row["metric"],
        row.get("reference_cell_id"),
        row.get("model"),
    )


def dist_key(row: dict[str, Any]) -> DistKey:
    return (
        row["cell_id"],
        row["metric"],
        row.get("reference_cell_id"),
        row.get("features") or "",
        int(row.get("n") or 0),
        int(row.get("n_reference") or 0),
    )


def _outcome(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row.get("status"), row.get("value"), row.get("note"))


def _cell_fields(cell: dict[str, Any]) -> dict[str, Any]:
    return {k: cell[k] for k in ("cell_id", "variant", "offload", "height", "width")}


def image_row(
    cell: dict[str, Any],
    image: dict[str, Any],
    metric: str,
    score: PairScore,
    reference_cell_id: str | None,
    model: str | None = None,
    reference: str | None = None,
) -> dict[str, Any]:
    """One image's score. `reference`: on a speed-up cell's paired rows, which reference the
    row is against, `full` (full precision) or `twin` (the same variant without the speed-up);
    absent elsewhere, so rows of other cells are as they were before twins existed."""
    row: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": "image_score",
        **_cell_fields(cell),
        "prompt_id": image["prompt_id"],
        "repeat": image["repeat"],
        "seed": image.get("seed"),
        "metric": metric,
        "value": score.value,
        "higher_is_better": METRICS[metric].higher_is_better,
        "reference_cell_id": reference_cell_id,
        **({"reference": reference} if reference is not None else {}),
        "status": score.status,
        "note": score.note,
        "time": utc_now(),
    }
    if score.identical:
        row["identical"] = True
    if score.frames is not None:  # a video: value pools its frames (`pooling`)
        row["frames"] = score.frames
        row["worst_frame"] = score.worst
        if score.pooling is not None:
            row["pooling"] = score.pooling
    if model is not None:
        row["model"] = model
    return row


def dist_row(
    cell: dict[str, Any],
    metric: str,
    result: DistributionResult,
    reference_cell_id: str,
    features: str,
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "kind": "distribution_score",
        **_cell_fields(cell),
        "metric": metric,
        "value": result.value,
        "higher_is_better": METRICS[metric].higher_is_better,
        "reference_cell_id": reference_cell_id,
        "features": features,
        "n": result.n,
        "n_reference": result.n_reference,
        "minimum": result.minimum,
        "status": result.status,
        "note": result.note,
        **result.extra,
        "time": utc_now(),
    }
