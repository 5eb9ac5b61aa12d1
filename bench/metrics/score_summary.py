"""Per-cell figures from the raw score rows: a mean with a 95% interval, or a status.

Derived data: recomputed whole from `scores.jsonl` on every `bench score`, written to
`scores_summary.json`, never appended. Schema: docs/scores.md.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.metrics import METRICS
from bench.metrics.run_view import Reference, RunView
from bench.metrics.scorebook import SCHEMA, ScoreBook
from bench.metrics.stats import Interval, mean_interval, per_prompt_means, prompt_means
from bench.results import SCORES, utc_now, write_json_atomic
from bench.run_schema import FULL_REFERENCE, TWIN_REFERENCE


def _summary_row(
    cell: dict[str, Any], ref: Reference, metric: str, interval: Interval, **extra: Any
) -> dict[str, Any]:
    spec = METRICS.get(metric)
    return {
        "kind": "cell_score",
        "cell_id": cell["cell_id"],
        "variant": cell["variant"],
        "offload": cell["offload"],
        "height": cell["height"],
        "width": cell["width"],
        "role": ref.role,
        "metric": metric,
        "higher_is_better": spec.higher_is_better if spec else True,
        **interval.as_dict(),
        **extra,
    }


def _status_only(status: str, note: str | None) -> Interval:
    return Interval(None, None, None, 0, "none", status, note)


def _cell_status_only(view: RunView, cell_id: str) -> Interval:
    """The row of a cell that did not run ok: its status, for every metric and reference."""
    status = view.cell_status.get(cell_id, "not_run")
    return _status_only(f"cell_{status}", f"the cell's status is {status!r}")


def _or_unavailable(interval: Interval, metric: str, unavailable: dict[str, str]) -> Interval:
    """A metric that was not scored because this `bench score` could not compute it says why."""
    if interval.status == "not_scored" and metric in unavailable:
        return _status_only("unavailable", unavailable[metric])
    return interval


def write_summary(
    path: Path, view: RunView, book: ScoreBook, metrics: list[str], unavailable: dict[str, str]
) -> None:
    """Rewrite `scores_summary.json` whole (atomically) from the rows in `book`."""
    write_json_atomic(
        path,
        {
            "schema": SCHEMA,
            "kind": "scores_summary",
            "run_id": view.manifest.get("run_id"),
            "created_at": utc_now(),
            "references": {cid: _reference_entry(r) for cid, r in view.references.items()},
            "cells": summarize(view, book, metrics, unavailable),
        },
    )


def _reference_entry(ref: Reference) -> dict[str, Any]:
    """A cell's references as the summary names them; a speed-up cell's twin beside them."""
    entry = {"reference_cell_id": ref.cell_id, "role": ref.role, "note": ref.note}
    if ref.speedup:
        entry.update(twin_cell_id=ref.twin, twin_note=ref.twin_note)
    return entry


def summarize(
    view: RunView, book: ScoreBook, metrics: list[str], unavailable: dict[str, str]
) -> list[dict[str, Any]]:
    """One row per (cell, metric): a mean with an interval over prompts, or a status."""
    names = list(dict.fromkeys([*metrics, *(k[3] for k in book.image_rows)]))
    names += [k[1] for k in book.dist_rows if k[1] not in names]
    rows: list[dict[str, Any]] = []
    for cell in view.cells:
        cell_id = cell["cell_id"]
        ref = view.references[cell_id]
        cell_ok = view.cell_ok(cell_id)
        for metric in names:
            scope = METRICS[metric].scope if metric in METRICS else "image"
            ref_id = None if scope == "image" else ref.cell_id
            extra: dict[str, Any] = {"reference_cell_id": ref_id}
            if scope != "image" and ref.note:
                extra["reference_note"] = ref.note
            if not cell_ok:
                interval = _cell_status_only(view, cell_id)
            elif scope != "image" and ref.role == "reference":
                interval = _status_only("reference", "this cell is the full-precision reference")
            elif scope != "image" and ref.cell_id is None:
                interval = _status_only("no_reference", ref.note)
            elif scope == "distribution":
                interval, more = _distribution_summary(book, cell_id, metric, ref.cell_id)
                extra.update(more)
            else:
                model = book_model(book, cell_id, metric)
                interval, more = _image_summary(view, book, cell_id, metric, ref_id, model)
                extra.update(more)
            interval = _or_unavailable(interval, metric, unavailable)
            if ref.speedup and scope == "paired":
                # The twin's row first: a reader that keys rows by (cell, metric) alone keeps
                # the last, full precision's, as before twins existed.
                twin, more = _twin_summary(view, book, cell_id, metric, ref, unavailable)
                rows.append(_summary_row(cell, ref, metric, twin, **more))
                extra["reference"] = FULL_REFERENCE
            rows.append(_summary_row(cell, ref, metric, interval, **extra))
        if cell_ok and ref.compared_to and "clip_score" in names:
            model = book_model(book, cell_id, "clip_score")
            if model is not None:
                interval = _clip_delta(view, book, cell_id, ref.compared_to, model)
                rows.append(
                    _summary_row(
                        cell,
                        ref,
                        "clip_score_delta",
                        interval,
                        reference_cell_id=ref.compared_to,
                        model=model,
                    )
                )
    return rows


def book_model(book: ScoreBook, cell_id: str, metric: str) -> str | None:
    """The model of the latest rows of a model-based metric (CLIP) for a cell."""
    models = [k[5] for k in book.image_rows if k[0] == cell_id and k[3] == metric]
    return models[-1] if models else None


def _rows_for(
    view: RunView, book: ScoreBook, cell_id: str, metric: str, ref_id: str | None, model: str | None
) -> list[dict[str, Any]]:
    rows = []
    for image in view.images:
        key = (cell_id, image["prompt_id"], image["repeat"], metric, ref_id, model)
        if key in book.image_rows:
            rows.append(book.image_rows[key])
    return rows


def _image_summary(
    view: RunView,
    book: ScoreBook,
    cell_id: str,
    metric: str,
    ref_id: str | None,
    model: str | None,
) -> tuple[Interval, dict[str, Any]]:
    rows = _rows_for(view, book, cell_id, metric, ref_id, model)
    ok = [r for r in rows if r["status"] == "ok"]
    prompts = prompt_means(ok)
    identical = prompts.n_identical
    failed: dict[str, int] = {}
    for r in rows:
        if r["status"] != "ok":
            failed[r["status"]] = failed.get(r["status"], 0) + 1
    extra: dict[str, Any] = {
        "n_images": prompts.n_values,
        "n_expected": len(view.images),
        "n_identical": identical,
        "failed": failed,
    }
    if model is not None:
        extra["model"] = model
    worst = [r["worst_frame"] for r in ok if r.get("worst_frame") is not None]
    if worst or any("frames" in r for r in ok):
        # Videos: the mean is over per-video means; the worst single frame of any video beside it
        # (lowest where higher is better), with its frame count per video.
        better_high = METRICS[metric].higher_is_better if metric in METRICS else True
        extra["worst_frame"] = (min(worst) if better_high else max(worst)) if worst else None
        extra["frames"] = sorted({int(r["frames"]) for r in ok if "frames" in r})
    if not rows:
        return _status_only("not_scored", f"no {metric} rows in {SCORES}"), extra
    interval = mean_interval(prompts.values)
    notes = [interval.note] if interval.note else []
    if identical:
        notes.append(f"{identical} image(s) identical to the reference (PSNR +inf), not averaged")
        if not prompts.values:
            interval = _status_only("identical", None)
    if failed and not prompts.values and not identical:
        notes.append(f"every image failed: {failed}")
        interval = _status_only(next(iter(failed)), None)
    elif failed:
        notes.append(f"image failures left out: {failed}")
    return replace(interval, note="; ".join(notes) or None), extra


def _twin_summary(
    view: RunView,
    book: ScoreBook,
    cell_id: str,
    metric: str,
    ref: Reference,
    unavailable: dict[str, str],
) -> tuple[Interval, dict[str, Any]]:
    """A speed-up cell's paired metric against its un-sped twin, as its other row is against
    full precision: what the speed-up alone changed (docs/speedups.md)."""
    extra: dict[str, Any] = {}
    if not view.cell_ok(cell_id):
        interval = _cell_status_only(view, cell_id)
    elif ref.twin is None:
        interval = _status_only("no_twin", ref.twin_note)
    else:
        interval, extra = _image_summary(view, book, cell_id, metric, ref.twin, None)
    interval = _or_unavailable(interval, metric, unavailable)
    return interval, {"reference_cell_id": ref.twin, "reference": TWIN_REFERENCE, **extra}


def _clip_delta(view: RunView, book: ScoreBook, cell_id: str, ref_id: str, model: str) -> Interval:
    """Paired CLIP-score difference to the reference images (same prompt, repeat, seed)."""
    diffs = []
    for image in view.images:
        key = (image["prompt_id"], image["repeat"], "clip_score", None, model)
        mine, theirs = book.image_rows.get((cell_id, *key)), book.image_rows.get((ref_id, *key))
        if mine and theirs and mine["value"] is not None and theirs["value"] is not None:
            diffs.append((image["prompt_id"], mine["value"] - theirs["value"]))
    if not diffs:
        return _status_only("no_data", "no image has a CLIP score in both cells")
    return mean_interval(per_prompt_means(diffs))


def _distribution_summary(
    book: ScoreBook, cell_id: str, metric: str, ref_id: str | None
) -> tuple[Interval, dict[str, Any]]:
    rows = [
        row
        for key, row in book.dist_rows.items()
        if key[0] == cell_id and key[1] == metric and key[2] == ref_id
    ]
    if not rows:
        return _status_only("not_scored", f"no {metric} row in {SCORES}"), {}
    row = max(rows, key=lambda r: r.get("time", ""))
    keys = ("features", "n_reference", "minimum", "std", "floor", "floor_method")
    extra = {k: row[k] for k in keys if row.get(k) is not None}
    interval = Interval(
        row["value"],
        None,
        None,
        int(row["n"]),
        "point estimate (no interval)",
        row["status"],
        row.get("note"),
    )
    return interval, extra


def figure(row: dict[str, Any]) -> str:
    """A summary row as text: mean [interval], a distribution metric's value beside its
    same-distribution floor, or the status where there is no number."""
    if row["mean"] is None:
        return row["status"]
    if row.get("floor") is not None:
        return f"{row['mean']:.4g} (floor {row['floor']:.3g} at n={row['n']})"
    if row["ci_low"] is None:
        return (
            f"{row['mean']:.4g} ({row['status']})"
            if row["status"] != "ok"
            else f"{row['mean']:.4g}"
        )
    return f"{row['mean']:.4g} [{row['ci_low']:.4g}, {row['ci_high']:.4g}]"
