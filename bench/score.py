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
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.errors import UserInputError
from bench.metrics.clip import BATCH_SIZE as CLIP_BATCH
from bench.metrics.clip import ClipBundle, ClipUnavailable, clip_scores, load_clip
from bench.metrics.contracts import METRICS, parse_metrics
from bench.metrics.distribution import (
    MIN_SAMPLES,
    FeatureFn,
    FeaturesUnavailable,
    clip_features,
    distribution_metric,
    inception_features,
    too_few_samples,
)
from bench.metrics.fidelity import PAIRED_FUNCTIONS, VIDEO_POOLING, PairScore, video_score
from bench.metrics.images import LoadedImage
from bench.metrics.lpips import MetricUnavailable, load_lpips
from bench.metrics.run_view import RunView, read_run
from bench.metrics.score_summary import write_summary
from bench.metrics.scorebook import ScoreBook, dist_row, image_row
from bench.results import SCORES, SCORES_SUMMARY

INCEPTION_ENV = "BENCH_INCEPTION_WEIGHTS"


def _progress(items: list[Any], description: str, enabled: bool) -> Iterable[Any]:
    if not enabled or not items:
        return items
    from rich.progress import track

    return track(items, description=description, transient=True)


def score_paired(
    view: RunView,
    book: ScoreBook,
    functions: dict[str, Callable[[Any, Any], PairScore]],
    progress: bool,
) -> None:
    """Fidelity of each image against the reference image of the same prompt, repeat, seed."""
    work = []
    for cell in view.cells:
        ref_id = view.references[cell["cell_id"]].compared_to
        if ref_id is None or not view.cell_ok(cell["cell_id"]):
            continue
        for image in view.images:
            key = (cell["cell_id"], image["prompt_id"], image["repeat"])
            todo = [m for m in functions if not book.done((*key, m, ref_id, None))]
            if todo and key in view.image_status:
                work.append((cell, image, ref_id, todo))
    # Image-major order: each reference image is decoded once for all the cells paired with it.
    work.sort(key=lambda item: (item[1]["prompt_id"], item[1]["repeat"], item[2]))
    last: tuple[tuple[str, str, int], LoadedImage, list[Any]] | None = None
    for cell, image, ref_id, todo in _progress(work, "fidelity", progress):
        ref_key = (ref_id, image["prompt_id"], image["repeat"])
        if last is None or last[0] != ref_key:
            want = view.load(*ref_key)
            last = (ref_key, want, want.frame_tensors())
        _, want, want_frames = last
        got = view.load(cell["cell_id"], image["prompt_id"], image["repeat"])
        got_frames = got.frame_tensors()
        rows = []
        for metric in todo:
            if not got.ok:
                score = PairScore(None, got.status, got.note)
            elif not want.ok:
                score = PairScore(None, f"reference_{want.status}", f"reference: {want.note}")
            elif not (got.is_video or want.is_video):
                score = functions[metric](got_frames[0], want_frames[0])
            elif len(got_frames) != len(want_frames):
                score = PairScore(
                    None,
                    "frames_mismatch",
                    f"{len(got_frames)} frames, the reference has {len(want_frames)}",
                )
            else:
                per_frame = [
                    functions[metric](a, b) for a, b in zip(got_frames, want_frames, strict=True)
                ]
                score = video_score(
                    per_frame, METRICS[metric].higher_is_better, pool=VIDEO_POOLING.get(metric)
                )
            rows.append(image_row(cell, image, metric, score, ref_id))
        book.add_image_rows(rows)


def score_clip(view: RunView, book: ScoreBook, bundle: ClipBundle, progress: bool) -> None:
    """CLIP score of every image of every ok cell with its own prompt."""
    work = []
    for cell in view.cells:
        if not view.cell_ok(cell["cell_id"]):
            continue
        for image in view.images:
            key = (cell["cell_id"], image["prompt_id"], image["repeat"])
            if key not in view.image_status:
                continue
            if not book.done((*key, "clip_score", None, bundle.name)):
                work.append((cell, image))
    batches = [work[i : i + CLIP_BATCH] for i in range(0, len(work), CLIP_BATCH)]
    for batch in _progress(batches, "clip score", progress):
        rows: list[dict[str, Any]] = []
        ready = []
        pils: list[Image.Image] = []
        for cell, image in batch:
            loaded = view.load(cell["cell_id"], image["prompt_id"], image["repeat"])
            if loaded.image is None:
                score = PairScore(None, loaded.status, loaded.note)
                rows.append(image_row(cell, image, "clip_score", score, None, bundle.name))
            elif loaded.is_video:
                score = _video_clip_score(bundle, loaded, view.prompts.get(image["prompt_id"], ""))
                rows.append(image_row(cell, image, "clip_score", score, None, bundle.name))
            else:
                ready.append((cell, image))
                pils.append(loaded.image)
        texts = [view.prompts.get(i["prompt_id"], "") for _, i in ready]
        values, truncated = clip_scores(bundle, pils, texts)
        for (cell, image), value, cut in zip(ready, values, truncated, strict=True):
            note = f"prompt truncated to {bundle.max_text_tokens} tokens" if cut else None
            score = PairScore(value, "ok", note)
            rows.append(image_row(cell, image, "clip_score", score, None, bundle.name))
        book.add_image_rows(rows)


def _video_clip_score(bundle: ClipBundle, video: LoadedImage, text: str) -> PairScore:
    """CLIP score of every frame with the prompt: the mean, and the worst frame beside it."""
    values: list[float] = []
    truncated = False
    for start in range(0, len(video.frames), CLIP_BATCH):
        frames = list(video.frames[start : start + CLIP_BATCH])
        got, cut = clip_scores(bundle, frames, [text] * len(frames))
        values += got
        truncated = truncated or any(cut)
    scores = [PairScore(v) for v in values]
    score = video_score(scores, METRICS["clip_score"].higher_is_better)
    if truncated:
        return replace(score, note=f"prompt truncated to {bundle.max_text_tokens} tokens")
    return score


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
    spaces: dict[str, tuple[str, FeatureFn]],
    progress: bool,
) -> None:
    """FID / KID / CMMD of each cell's image set against its reference cell's image set.

    `spaces[metric]` is the (name, extractor) of the feature space the metric uses. Features
    are extracted only when both sets are large enough for the metric to mean anything.
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
        for metric, space in spaces.items():
            if book.dist_done((cell["cell_id"], metric, ref_id, space[0], n, n_ref)):
                continue
            # Checked before extracting features (FID's rank rule needs them: distribution_metric).
            result = too_few_samples(metric, n, n_ref, MIN_SAMPLES[metric])
            if result is None:
                x, y = feats(space, cell["cell_id"]), feats(space, ref_id)
                result = distribution_metric(metric, x, y)
            book.add_dist_row(dist_row(cell, metric, result, ref_id, space[0]))


def _feature_spaces(
    metrics: list[str],
    clip: ClipBundle | str,
    features: str,
    inception_weights: Path | None,
    unavailable: dict[str, str],
) -> dict[str, tuple[str, FeatureFn]]:
    """The feature space of each distribution metric; reasons for those that cannot run."""
    if features not in ("clip", "inception"):
        raise UserInputError(f"--features: expected clip or inception, got {features!r}")
    clip_space: tuple[str, FeatureFn] | str = (
        clip if isinstance(clip, str) else (f"clip:{clip.name}", clip_features(clip))
    )
    primary: tuple[str, FeatureFn] | str = clip_space
    if features == "inception":
        try:
            primary = (f"inception:{inception_weights}", inception_features(inception_weights))
        except FeaturesUnavailable as exc:
            primary = str(exc)
    spaces: dict[str, tuple[str, FeatureFn]] = {}
    for metric in metrics:
        space = clip_space if metric == "cmmd" else primary
        if isinstance(space, str):
            unavailable[metric] = space
        else:
            spaces[metric] = space
    return spaces


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
    default from $BENCH_INCEPTION_WEIGHTS). Raises UserInputError for bad input.
    """
    run_dir = Path(run_dir)
    names = parse_metrics(metrics)
    view = read_run(run_dir)
    book = ScoreBook(run_dir / SCORES)
    unavailable: dict[str, str] = {}

    functions: dict[str, Callable[[Any, Any], PairScore]] = {}
    for m in names:
        if m in PAIRED_FUNCTIONS:
            functions[m] = PAIRED_FUNCTIONS[m]
        elif m == "lpips":
            try:
                functions[m] = load_lpips()
            except MetricUnavailable as exc:
                unavailable[m] = str(exc)
    score_paired(view, book, functions, progress)

    needs_clip = [m for m in names if m == "clip_score" or METRICS[m].scope == "distribution"]
    clip: ClipBundle | str = "not needed"
    if needs_clip:
        name = clip_model or (view.manifest.get("config") or {}).get("clip_model")
        try:
            clip = load_clip(name)
        except ClipUnavailable as exc:
            clip = str(exc)
    if "clip_score" in names:
        if isinstance(clip, str):
            unavailable["clip_score"] = clip  # kept only where no earlier rows exist
        elif clip.tokenizer is None:
            unavailable["clip_score"] = f"{clip.name}: the CLIP folder has no tokenizer"
        else:
            score_clip(view, book, clip, progress)
    dist = [m for m in names if METRICS[m].scope == "distribution"]
    if dist:
        if inception_weights is None and os.environ.get(INCEPTION_ENV):
            inception_weights = Path(os.environ[INCEPTION_ENV])
        spaces = _feature_spaces(dist, clip, features, inception_weights, unavailable)
        score_distribution(view, book, spaces, progress)

    write_summary(run_dir / SCORES_SUMMARY, view, book, names, unavailable)
    return run_dir / SCORES
