"""`bench score`: quality of every cell of a run, from its images, without regenerating any.

Reads the run folder (manifest, records, images) and appends one row per (image, metric) to
`scores.jsonl`; distribution metrics add one row per (cell, metric). Scoring is resumable: a
row that exists with status ok is never recomputed, and a failed one is retried but appended
again only if its outcome changed. Per-cell summaries (mean with a 95% interval over
prompts) are derived data, rewritten whole into `scores_summary.json` on every call, so re-runs
never duplicate them. Schema: docs/scores.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.metrics import METRICS, parse_metrics
from bench.metrics.base import (
    DistributionMetric,
    FeatureFn,
    MetricUnavailable,
    PairedMetric,
    PairFunction,
    PairScore,
    PromptMetric,
    PromptScorer,
    Resources,
    check_features,
)
from bench.metrics.images import LoadedImage
from bench.metrics.run_view import RunView, read_run
from bench.metrics.score_summary import write_summary
from bench.metrics.scorebook import ScoreBook, dist_row, image_row
from bench.results import SCORES, SCORES_SUMMARY
from bench.run_schema import TWIN_REFERENCE

INCEPTION_ENV = "BENCH_INCEPTION_WEIGHTS"


def _progress(items: list[Any], description: str, enabled: bool) -> Iterable[Any]:
    if not enabled or not items:
        return items
    from rich.progress import track

    return track(items, description=description, transient=True)


def score_paired(
    view: RunView,
    book: ScoreBook,
    functions: dict[str, tuple[PairedMetric, PairFunction]],
    progress: bool,
) -> None:
    """Fidelity of each image against the reference image of the same prompt, repeat, seed:
    full precision, and for a speed-up cell its un-sped twin as well (`Reference.paired_with`)."""
    work = []
    for cell in view.cells:
        if not view.cell_ok(cell["cell_id"]):
            continue
        for ref_id, label in view.references[cell["cell_id"]].paired_with():
            for image in view.images:
                key = (cell["cell_id"], image["prompt_id"], image["repeat"])
                todo = [m for m in functions if not book.done((*key, m, ref_id, None))]
                if todo and key in view.image_status:
                    work.append((cell, image, ref_id, label, todo))
    # Image-major order: each reference image is decoded once for all the cells paired with it;
    # a twin's rows before full precision's, so a reader that keeps the latest row per (cell,
    # image, metric) whatever its reference keeps full precision's, as before twins existed.
    work.sort(key=lambda w: (w[1]["prompt_id"], w[1]["repeat"], w[3] != TWIN_REFERENCE, w[2]))
    last: tuple[tuple[str, str, int], LoadedImage, list[Any]] | None = None
    for cell, image, ref_id, label, todo in _progress(work, "fidelity", progress):
        ref_key = (ref_id, image["prompt_id"], image["repeat"])
        if last is None or last[0] != ref_key:
            want = view.load(*ref_key)
            last = (ref_key, want, want.frame_tensors())
        _, want, want_frames = last
        got = view.load(cell["cell_id"], image["prompt_id"], image["repeat"])
        got_frames = got.frame_tensors()
        rows = []
        for name in todo:
            metric, function = functions[name]
            if not got.ok:
                score = PairScore(None, got.status, got.note)
            elif not want.ok:
                score = PairScore(None, f"reference_{want.status}", f"reference: {want.note}")
            elif not (got.is_video or want.is_video):
                score = function(got_frames[0], want_frames[0])
            elif len(got_frames) != len(want_frames):
                score = PairScore(
                    None,
                    "frames_mismatch",
                    f"{len(got_frames)} frames, the reference has {len(want_frames)}",
                )
            else:
                pairs = zip(got_frames, want_frames, strict=True)
                score = metric.video([function(a, b) for a, b in pairs])
            rows.append(image_row(cell, image, name, score, ref_id, reference=label))
        book.add_image_rows(rows)


def score_prompted(
    view: RunView, book: ScoreBook, metric: PromptMetric, scorer: PromptScorer, progress: bool
) -> None:
    """`metric` (the CLIP score) of every image of every ok cell with its own prompt."""
    work = []
    for cell in view.cells:
        if not view.cell_ok(cell["cell_id"]):
            continue
        for image in view.images:
            key = (cell["cell_id"], image["prompt_id"], image["repeat"])
            if key not in view.image_status:
                continue
            if not book.done((*key, metric.name, None, scorer.model)):
                work.append((cell, image))
    size = scorer.batch_size
    batches = [work[i : i + size] for i in range(0, len(work), size)]
    for batch in _progress(batches, metric.name.replace("_", " "), progress):
        rows: list[dict[str, Any]] = []
        ready = []
        pils: list[Image.Image] = []
        for cell, image in batch:
            loaded = view.load(cell["cell_id"], image["prompt_id"], image["repeat"])
            text = view.prompts.get(image["prompt_id"], "")
            if loaded.image is None:
                score = PairScore(None, loaded.status, loaded.note)
                rows.append(image_row(cell, image, metric.name, score, None, scorer.model))
            elif loaded.is_video:
                score = _video_prompted(metric, scorer, loaded, text)
                rows.append(image_row(cell, image, metric.name, score, None, scorer.model))
            else:
                ready.append((cell, image))
                pils.append(loaded.image)
        texts = [view.prompts.get(i["prompt_id"], "") for _, i in ready]
        scores = scorer.score(pils, texts)
        for (cell, image), score in zip(ready, scores, strict=True):
            rows.append(image_row(cell, image, metric.name, score, None, scorer.model))
        book.add_image_rows(rows)


def _video_prompted(
    metric: PromptMetric, scorer: PromptScorer, video: LoadedImage, text: str
) -> PairScore:
    """Every frame scored with the prompt: the mean, and the worst frame beside it."""
    scores: list[PairScore] = []
    for start in range(0, len(video.frames), scorer.batch_size):
        frames = list(video.frames[start : start + scorer.batch_size])
        scores += scorer.score(frames, [text] * len(frames))
    return metric.video(scores)


def _ok_images(view: RunView, cell_id: str) -> list[tuple[str, int]]:
    return [
        (i["prompt_id"], i["repeat"])
        for i in view.images
        if view.readable(cell_id, i["prompt_id"], i["repeat"])
    ]


def _sample_count(view: RunView, cell_id: str) -> int:
    """Samples a cell gives a distribution metric: its readable images, or their frames."""
    return sum(
        len(view.frame_files.get((cell_id, p, r), ())) or 1 for p, r in _ok_images(view, cell_id)
    )


def score_distribution(
    view: RunView,
    book: ScoreBook,
    spaces: dict[str, tuple[DistributionMetric, tuple[str, FeatureFn]]],
    progress: bool,
) -> None:
    """FID / KID / CMMD of each cell's image set against its reference cell's image set.

    `spaces[name]` is the metric and the (name, extractor) of the feature space it uses.
    Features are extracted only when both sets are large enough for the metric to mean
    anything.
    """
    cache: dict[tuple[str, str], np.ndarray] = {}

    def feats(space: tuple[str, FeatureFn], cell_id: str) -> np.ndarray:
        name, extractor = space
        if (name, cell_id) not in cache:
            features = []
            ok = _ok_images(view, cell_id)
            for start in range(0, len(ok), 64):  # bounded memory: decode 64 images at a time
                # A video gives every frame as a sample (frame-level statistics, docs/scores.md).
                loaded = [view.load(cell_id, p, r) for p, r in ok[start : start + 64]]
                features.append(extractor([im for one in loaded for im in one.pictures]))
            cache[(name, cell_id)] = np.concatenate(features)
        return cache[(name, cell_id)]

    cells = [
        (c, ref_id)
        for c in view.cells
        if (ref_id := view.references[c["cell_id"]].compared_to) is not None
        and view.cell_ok(c["cell_id"])
    ]
    for cell, ref_id in _progress(cells, "distribution", progress):
        n, n_ref = _sample_count(view, cell["cell_id"]), _sample_count(view, ref_id)
        for name, (metric, space) in spaces.items():
            if book.dist_done((cell["cell_id"], name, ref_id, space[0], n, n_ref)):
                continue
            # Checked before extracting features (FID's rank rule needs them: `compute`).
            result = metric.too_few(n, n_ref)
            if result is None:
                result = metric.compute(feats(space, cell["cell_id"]), feats(space, ref_id))
            book.add_dist_row(dist_row(cell, name, result, ref_id, space[0]))


def score_run(
    run_dir: Path,
    metrics: list[str] | None = None,
    progress: bool = True,
    *,
    clip_model: str | None = None,
    features: str = "clip",
    inception_weights: Path | None = None,
) -> Path:
    """Score a run folder into `scores.jsonl` and `scores_summary.json`; returns the scores path.

    `metrics` defaults to all of them. `clip_model` overrides the manifest's `config.clip_model`.
    `features` picks FID/KID's feature space (`clip`, or `inception` with `inception_weights`,
    default from $BENCH_INCEPTION_WEIGHTS). Raises UserInputError for bad input, before
    anything is written. Every metric is run through its registry entry, by scope: the paired
    ones, then those of one image and its prompt, then the distributions.
    """
    run_dir = Path(run_dir)
    names = parse_metrics(metrics)
    check_features(features)
    view = read_run(run_dir)
    book = ScoreBook(run_dir / SCORES)
    if inception_weights is None and os.environ.get(INCEPTION_ENV):
        inception_weights = Path(os.environ[INCEPTION_ENV])
    default_clip = (view.manifest.get("config") or {}).get("clip_model")
    resources = Resources(clip_model or default_clip, features, inception_weights)
    chosen = [METRICS[name] for name in names]
    unavailable: dict[str, str] = {}

    functions: dict[str, tuple[PairedMetric, PairFunction]] = {}
    for metric in chosen:
        if isinstance(metric, PairedMetric):
            try:
                functions[metric.name] = (metric, metric.load())
            except MetricUnavailable as exc:
                unavailable[metric.name] = str(exc)
    score_paired(view, book, functions, progress)

    for metric in chosen:
        if isinstance(metric, PromptMetric):
            try:
                scorer = metric.load(resources)
            except MetricUnavailable as exc:
                unavailable[metric.name] = str(exc)  # kept only where no earlier rows exist
                continue
            score_prompted(view, book, metric, scorer, progress)

    spaces: dict[str, tuple[DistributionMetric, tuple[str, FeatureFn]]] = {}
    for metric in chosen:
        if isinstance(metric, DistributionMetric):
            try:
                spaces[metric.name] = (metric, metric.feature_space(resources))
            except MetricUnavailable as exc:
                unavailable[metric.name] = str(exc)
    if spaces:
        score_distribution(view, book, spaces, progress)

    write_summary(run_dir / SCORES_SUMMARY, view, book, names, unavailable)
    return run_dir / SCORES
