"""Paired fidelity metrics against hand computations and known orderings."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.metrics.fidelity import MS_SSIM_MIN_SIDE, ms_ssim, psnr, ssim
from bench.metrics.images import load_image, pil_to_tensor


def _image(size: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_identical_images_psnr_inf_and_ssim_one() -> None:
    image = _image()
    result = psnr(image, image.clone())
    assert result.value is None and result.identical and result.status == "ok"
    assert "inf" in result.note
    same = ssim(image, image.clone())
    assert same.value == pytest.approx(1.0, abs=1e-6)
    assert same.identical


def test_psnr_matches_hand_computation() -> None:
    reference = _image(seed=1)
    image = (reference + 0.05 * _image(seed=2)).clamp(0, 1)
    mse = float(((image - reference) ** 2).mean())
    assert psnr(image, reference).value == pytest.approx(10 * math.log10(1 / mse), rel=1e-5)


def test_more_noise_scores_worse() -> None:
    reference = _image(64, seed=3)
    values = []
    for sigma in (0.01, 0.05, 0.2):
        noise = torch.randn(reference.shape, generator=torch.Generator().manual_seed(4))
        noisy = (reference + sigma * noise).clamp(0, 1)
        values.append((psnr(noisy, reference).value, ssim(noisy, reference).value))
    assert values[0][0] > values[1][0] > values[2][0]
    assert values[0][1] > values[1][1] > values[2][1]


def test_size_mismatch_is_a_status() -> None:
    result = psnr(_image(32), _image(48))
    assert (result.value, result.status) == (None, "size_mismatch")


def test_ms_ssim_skips_small_images_with_reason_and_runs_on_large_ones() -> None:
    small = ms_ssim(_image(MS_SSIM_MIN_SIDE - 16), _image(MS_SSIM_MIN_SIDE - 16, seed=1))
    assert small.status == "too_small" and str(MS_SSIM_MIN_SIDE) in small.note
    big = _image(MS_SSIM_MIN_SIDE)
    assert ms_ssim(big, big.clone()).value == pytest.approx(1.0, abs=1e-5)
    worse = ms_ssim((big + 0.1).clamp(0, 1), big)
    assert worse.status == "ok" and 0 < worse.value < 1


def test_load_image_statuses(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    array = (np.arange(4 * 5 * 3) % 256).astype(np.uint8).reshape(4, 5, 3)
    Image.fromarray(array).save(good)
    loaded = load_image(good)
    assert loaded.ok and loaded.tensor.shape == (1, 3, 4, 5)
    assert torch.allclose(loaded.tensor, pil_to_tensor(Image.fromarray(array)))
    assert float(loaded.tensor[0, 2, 0, 0]) == pytest.approx(2 / 255)
    assert load_image(tmp_path / "nope.png").status == "image_missing"
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good.read_bytes()[:40])
    bad = load_image(corrupt)
    assert bad.status == "image_unreadable" and bad.tensor is None
