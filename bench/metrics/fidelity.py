"""Paired fidelity: one image against the full-precision image of the same prompt, repeat, seed.

Quantization changes the denoiser a little; with the same noise the image should stay close.
Paired metrics see small changes that distribution metrics (FID) cannot at a few hundred
images, so these are the main quality figures of the harness (see published-figures.md).
Values are per image, never pooled, so a summary can carry an interval over prompts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure,
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

# torchmetrics' MS-SSIM with 5 scales and an 11 px window checks `side // (5 - 1)**2 > 11 - 1`,
# so both sides must be at least 176 px (its message says "larger than 160").
MS_SSIM_MIN_SIDE = 176


@dataclass(frozen=True)
class PairScore:
    """One metric of one image pair. `value` is None when `status` is not ok or for identity."""

    value: float | None
    status: str = "ok"
    note: str | None = None
    identical: bool = False
    #: a video's: the worst frame's value (lowest where higher is better) and the frame count
    worst: float | None = None
    frames: int | None = None
    #: a video's: how its frames make `value` ("mean" of the frames' values, or "mse": PSNR
    #: of the mean squared error over all frames)
    pooling: str | None = None


def check_pair(image: torch.Tensor, reference: torch.Tensor) -> PairScore | None:
    """`size_mismatch` when the two images differ in shape, else None."""
    if image.shape != reference.shape:
        return PairScore(
            None,
            "size_mismatch",
            f"image {tuple(image.shape[-2:])} vs reference {tuple(reference.shape[-2:])}",
        )
    return None


def psnr(image: torch.Tensor, reference: torch.Tensor) -> PairScore:
    """PSNR in dB with data range 1. Identical images have PSNR = +inf: reported as
    value None with identical=True, because JSON has no infinity and a cap would be invented."""
    bad = check_pair(image, reference)
    if bad:
        return bad
    if torch.equal(image, reference):
        return PairScore(None, "ok", "identical images: PSNR is +inf", identical=True)
    value = float(peak_signal_noise_ratio(image, reference, data_range=1.0))
    if not math.isfinite(value):
        return PairScore(None, "ok", "identical images: PSNR is +inf", identical=True)
    return PairScore(value)


def ssim(image: torch.Tensor, reference: torch.Tensor) -> PairScore:
    bad = check_pair(image, reference)
    if bad:
        return bad
    value = float(structural_similarity_index_measure(image, reference, data_range=1.0))
    return PairScore(value, identical=torch.equal(image, reference))


def ms_ssim(image: torch.Tensor, reference: torch.Tensor) -> PairScore:
    """MS-SSIM, or status `too_small` for images whose smaller side is below 176 px."""
    bad = check_pair(image, reference)
    if bad:
        return bad
    side = min(image.shape[-2:])
    if side < MS_SSIM_MIN_SIDE:
        return PairScore(
            None,
            "too_small",
            f"MS-SSIM with 5 scales needs both sides >= {MS_SSIM_MIN_SIDE} px, got {side}",
        )
    value = float(multiscale_structural_similarity_index_measure(image, reference, data_range=1.0))
    return PairScore(value, identical=torch.equal(image, reference))


def pooled_psnr(scores: list[PairScore]) -> float | None:
    """A video's PSNR as one signal: from the mean squared error over all its frames (data
    range 1, so each frame's MSE is 10^(-PSNR/10)), an identical frame counting as error 0.
    None when every frame is identical (+inf)."""
    errors = [0.0 if s.value is None else 10.0 ** (-s.value / 10.0) for s in scores]
    mse = sum(errors) / len(errors)
    return None if mse == 0.0 else -10.0 * math.log10(mse)


def video_score(
    scores: list[PairScore],
    higher_is_better: bool,
    what: str = "frames",
    pool: Callable[[list[PairScore]], float | None] | None = None,
) -> PairScore:
    """One video's score from its frames' scores, with the worst frame beside it, since one
    bad frame is visible in a video that averages well.

    The value is the mean of the frames' values, or `pool` of them where the metric has one
    (VIDEO_POOLING: PSNR's pooled error, which counts an identical frame as no error rather
    than leaving it out). A video whose every frame is identical is identical. The first
    frame that could not be scored makes the video's status.
    """
    count = len(scores)
    failed = next((s for s in scores if s.status != "ok"), None)
    if failed is not None:
        return PairScore(None, failed.status, failed.note, frames=count)
    values = [s.value for s in scores if s.value is not None]
    if not values:
        return PairScore(None, "ok", f"all {count} {what} identical", identical=True, frames=count)
    worst = min(values) if higher_is_better else max(values)
    identical = all(s.identical for s in scores)
    if pool is not None:
        same = count - len(values)
        note = f"{same} of {count} {what} identical (error 0 in the pooled error)" if same else None
        return PairScore(pool(scores), "ok", note, identical, worst, count, "mse")
    mean = float(sum(values) / len(values))
    return PairScore(mean, "ok", None, identical, worst, count, "mean")


# How a video's frames make one value, where not their mean. PSNR: 15 identical frames and one
# at 30 dB give 42.0 dB (the video's error as a whole), where the mean over the frames that
# have a PSNR gave 30.0 dB, and a mean of per-frame PSNRs could not include identical frames
# at all; the worst frame stays beside it. ffmpeg's psnr filter summarises a video the same way.
VIDEO_POOLING: dict[str, Callable[[list[PairScore]], float | None]] = {"psnr": pooled_psnr}


PAIRED_FUNCTIONS = {"psnr": psnr, "ssim": ssim, "ms_ssim": ms_ssim}
