"""Scoring a video run: per-video fidelity (PSNR of the pooled error, other metrics' mean over
frames; the worst frame beside it), frame counts in the rows and summaries, frame-level
distribution samples, damaged frames as statuses.

The hand-made runs (conftest.write_run with ``frames``) make every frame the reference plus a
known noise, and one frame of each candidate four times noisier, so the ordering and the worst
frame are known by construction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bench.metrics.base import PairScore, video_score
from bench.metrics.fidelity import PSNR, pooled_psnr, psnr
from bench.metrics.images import load_image
from bench.results import frame_relpath, iter_jsonl
from bench.scoring import SCORES_SUMMARY, score_run

FRAMES = 5


def summary(run_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    data = json.loads((run_dir / SCORES_SUMMARY).read_text())
    return {(row["cell_id"], row["metric"]): row for row in data["cells"]}


def psnr_rows(run_dir: Path, cell_id: str) -> list[dict[str, Any]]:
    return [
        r
        for r in iter_jsonl(run_dir / "scores.jsonl")
        if r.get("metric") == "psnr" and r["cell_id"] == cell_id
    ]


def test_video_fidelity_is_the_mean_over_frames_with_the_worst_frame_beside_it(
    make_run: Callable[..., Path],
) -> None:
    run = make_run(frames=FRAMES, bad_frame=3)
    score_run(run, ["psnr", "ssim"], progress=False)
    table = summary(run)
    for metric in ("psnr", "ssim"):
        q8, q4 = (table[(f"{v}__none__32x32", metric)] for v in ("Q8_0", "Q4_K"))
        assert q8["mean"] > q4["mean"]
        assert q8["frames"] == [FRAMES] and q8["n"] == 4
        assert q8["worst_frame"] < q8["mean"] and q4["worst_frame"] < q4["mean"]
    # Each row: PSNR of its frames' pooled squared error, recomputed here from the frame files.
    cell, ref = "Q4_K__none__32x32", "full__none__32x32"
    for row in psnr_rows(run, cell):
        per_frame, mse = [], []
        for i in range(FRAMES):
            got, want = (
                load_image(run / frame_relpath(c, row["prompt_id"], row["repeat"], i)).tensor
                for c in (cell, ref)
            )
            per_frame.append(psnr(got, want).value)
            mse.append(float(((got.double() - want.double()) ** 2).mean()))
        assert row["frames"] == FRAMES
        assert row["value"] == pytest.approx(-10 * np.log10(np.mean(mse)))
        assert row["pooling"] == "mse"
        assert row["worst_frame"] == pytest.approx(min(per_frame))
        assert int(np.argmin(per_frame)) == 3  # the four-times-noisier frame


def test_a_damaged_frame_fails_only_its_video(make_run: Callable[..., Path]) -> None:
    run = make_run(frames=FRAMES)
    cell = "Q8_0__none__32x32"
    (run / frame_relpath(cell, "p1", 0, 2)).write_bytes(b"not a png")
    (run / frame_relpath(cell, "p2", 0, 4)).unlink()
    score_run(run, ["psnr"], progress=False)
    status = {r["prompt_id"]: r for r in psnr_rows(run, cell)}
    assert status["p1"]["status"] == "image_unreadable" and "p1__r0/" in status["p1"]["note"]
    assert status["p2"]["status"] == "image_missing"
    assert status["p0"]["status"] == status["p3"]["status"] == "ok"
    row = summary(run)[(cell, "psnr")]
    assert row["n"] == 2 and row["failed"] == {"image_unreadable": 1, "image_missing": 1}


def test_identical_frames_count_as_no_error_in_a_videos_psnr() -> None:
    """Issue 27's case: 15 identical frames and one at 30 dB are 42.0 dB as one video (the
    mean squared error over 16 frames), not the 30.0 dB of the frames that have a PSNR."""
    frames = [PairScore(None, identical=True)] * 15 + [PairScore(30.0)]
    score = video_score(frames, higher_is_better=True, pool=PSNR.video_pool)
    assert score.value == pytest.approx(30.0 + 10 * np.log10(16))
    assert round(score.value, 1) == 42.0
    assert (score.worst, score.frames, score.pooling) == (30.0, 16, "mse")
    assert score.note == "15 of 16 frames identical (error 0 in the pooled error)"
    every = video_score([PairScore(None, identical=True)] * 2, True, pool=pooled_psnr)
    assert every.value is None and every.identical
    # Other metrics (SSIM, LPIPS, CLIP) average their frames.
    lower = video_score([PairScore(0.1), PairScore(0.3)], higher_is_better=False)
    assert (lower.value, lower.worst, lower.pooling) == (pytest.approx(0.2), 0.3, "mean")


def test_distribution_metrics_take_every_frame_as_a_sample(
    make_run: Callable[..., Path], tiny_clip: Path
) -> None:
    run = make_run(frames=FRAMES, clip_model=str(tiny_clip), prompts=("p0", "p1"), repeats=1)
    score_run(run, ["kid"], progress=False)
    rows = [r for r in iter_jsonl(run / "scores.jsonl") if r.get("kind") == "distribution_score"]
    assert rows and all(r["n"] == 2 * FRAMES and r["n_reference"] == 2 * FRAMES for r in rows)


def test_clip_score_of_a_video_is_its_frames_mean(
    make_run: Callable[..., Path], tiny_clip: Path
) -> None:
    from bench.metrics.clip import load_clip
    from bench.metrics.clip_score import CLIP_SCORE

    run = make_run(frames=3, clip_model=str(tiny_clip), prompts=("p0",))
    score_run(run, ["clip_score"], progress=False)
    row = next(
        r
        for r in iter_jsonl(run / "scores.jsonl")
        if r.get("metric") == "clip_score" and r["cell_id"] == "Q4_K__none__32x32"
    )
    bundle = load_clip(str(tiny_clip))
    frames = [
        Image.open(run / frame_relpath("Q4_K__none__32x32", "p0", 0, i)).convert("RGB")
        for i in range(3)
    ]
    values, _ = CLIP_SCORE.values(bundle, frames, ["a photo of p0"] * 3)
    assert row["frames"] == 3
    assert row["value"] == pytest.approx(np.mean(values), rel=1e-5)
    assert row["worst_frame"] == pytest.approx(min(values), rel=1e-5)
