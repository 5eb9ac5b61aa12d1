"""Paired fidelity: one image against the full-precision image of the same prompt, repeat, seed.

Quantization changes the denoiser a little; with the same noise the image should stay close.
Paired metrics see small changes that distribution metrics (FID) cannot at a few hundred
images, so these are the main quality figures of the harness (see published-figures.md).
Values are per image, never pooled, so a summary can carry an interval over prompts.
PSNR, SSIM and MS-SSIM are torchmetrics' functions as they are.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from bench.metrics.base import MetricInputError, PairedMetric, PairScore

if TYPE_CHECKING:
    import torch

# torchmetrics' MS-SSIM with 5 scales and an 11 px window checks `side // (5 - 1)**2 > 11 - 1`,
# so both sides must be at least 176 px (its message says "larger than 160").
MS_SSIM_MIN_SIDE = 176


def check_pair(image: torch.Tensor, reference: torch.Tensor) -> PairScore | None:
    """`size_mismatch` (data: a variant may make another size) when the two images differ in
    size, else None. Anything but two (1, 3, H, W) tensors is a MetricInputError."""
    for what, tensor in (("image", image), ("reference", reference)):
        shape = tuple(getattr(tensor, "shape", ()))
        if len(shape) != 4 or shape[:2] != (1, 3):
            raise MetricInputError(f"{what}: expected a (1, 3, H, W) tensor, got shape {shape}")
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
    import torch  # torch: only when scoring (the registry is read without it)
    from torchmetrics.functional.image import peak_signal_noise_ratio  # torchmetrics: as torch

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
    import torch  # torch: only when scoring (the registry is read without it)
    from torchmetrics.functional.image import structural_similarity_index_measure  # as torch

    bad = check_pair(image, reference)
    if bad:
        return bad
    value = float(structural_similarity_index_measure(image, reference, data_range=1.0))
    return PairScore(value, identical=torch.equal(image, reference))


def ms_ssim(image: torch.Tensor, reference: torch.Tensor) -> PairScore:
    """MS-SSIM, or status `too_small` for images whose smaller side is below 176 px."""
    import torch  # torch: only when scoring (the registry is read without it)
    from torchmetrics.functional.image import (  # torchmetrics: as torch
        multiscale_structural_similarity_index_measure,
    )

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
    None when every frame is identical (+inf).

    15 identical frames and one at 30 dB give 42.0 dB (the video's error as a whole), where
    the mean over the frames that have a PSNR gave 30.0 dB, and a mean of per-frame PSNRs
    could not include identical frames at all; the worst frame stays beside it. ffmpeg's psnr
    filter summarises a video the same way."""
    errors = [0.0 if s.value is None else 10.0 ** (-s.value / 10.0) for s in scores]
    mse = sum(errors) / len(errors)
    return None if mse == 0.0 else -10.0 * math.log10(mse)


PSNR = PairedMetric(
    name="psnr",
    higher_is_better=True,
    lower_bound=0.0,
    upper_bound=None,
    units="dB",
    identity=math.inf,
    reference="torchmetrics.functional.image.peak_signal_noise_ratio(data_range=1)",
    description="peak signal-to-noise ratio in dB (data range 1); +inf for identical images",
    margin=0.5,
    function=psnr,
    video_pool=pooled_psnr,
)
SSIM = PairedMetric(
    name="ssim",
    higher_is_better=True,
    lower_bound=-1.0,
    upper_bound=1.0,
    units="index",
    identity=1.0,
    reference="torchmetrics.functional.image.structural_similarity_index_measure(data_range=1)",
    description="structural similarity (Gaussian window 11, sigma 1.5); 1 for identical images",
    margin=0.005,
    function=ssim,
)
MS_SSIM = PairedMetric(
    name="ms_ssim",
    higher_is_better=True,
    lower_bound=0.0,
    upper_bound=1.0,
    units="index",
    identity=1.0,
    reference="torchmetrics.functional.image.multiscale_structural_similarity_index_measure"
    "(data_range=1)",
    description="multi-scale SSIM, 5 scales; needs both sides of at least 176 px",
    margin=0.005,
    function=ms_ssim,
)
