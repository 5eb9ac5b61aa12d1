"""The noise floor: full precision against itself under a harmless numeric change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.metrics.noise_floor import (
    altered_settings,
    floor_record,
    harmless_change,
    is_noise_floor,
    noise_floor_scores,
)


def _pair(seed: int, sigma: float, size: int = 24) -> tuple[Image.Image, Image.Image]:
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
    alt = np.clip(ref + rng.normal(0, sigma, ref.shape), 0, 255).round().astype(np.uint8)
    return Image.fromarray(ref), Image.fromarray(alt)


def test_noise_floor_scores_summarises_pairs(tmp_path: Path) -> None:
    pairs = [_pair(seed, 1.0) for seed in range(5)]
    ref_paths = []
    for i, (ref, _) in enumerate(pairs):
        ref.save(tmp_path / f"{i}.png")
        ref_paths.append(tmp_path / f"{i}.png")
    result = noise_floor_scores(ref_paths, [alt for _, alt in pairs], metrics=("psnr", "ssim"))
    psnr = result["psnr"]
    assert psnr["status"] == "ok" and psnr["n"] == 5 and psnr["n_identical"] == 0
    assert psnr["ci_low"] <= psnr["mean"] <= psnr["ci_high"]
    assert psnr["mean"] > 40  # one 8-bit level of noise
    assert len(result["ssim"]["values"]) == 5


def test_identical_sets_are_an_exact_floor() -> None:
    images = [_pair(seed, 0.0)[0] for seed in range(3)]
    result = noise_floor_scores(images, [im.copy() for im in images])
    assert result["psnr"]["status"] == "identical" and result["psnr"]["n_identical"] == 3
    assert result["psnr"]["values"] == [None, None, None]
    assert result["ssim"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert result["ms_ssim"]["status"] == "no_data" and "176" in result["ms_ssim"]["note"]


def test_harmless_change_keeps_attention_equivalent() -> None:
    q, k, v = (
        torch.randn(1, 2, 8, 4, generator=torch.Generator().manual_seed(i)) for i in range(3)
    )
    default = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    with harmless_change("sdpa-math"):
        math_out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(default, math_out, atol=1e-5)
    with harmless_change("no-tf32"):
        assert torch.backends.cuda.matmul.allow_tf32 is False
    with pytest.raises(ValueError), harmless_change("bogus"):  # type: ignore[arg-type]
        pass


def test_noise_floor_cells_are_recognised() -> None:
    assert is_noise_floor({"variant": "full__noise", "variant_spec": {"kind": "full"}})
    assert is_noise_floor({"variant": "fp", "variant_spec": {"kind": "full", "noise_floor": True}})
    assert not is_noise_floor({"variant": "full", "variant_spec": {"kind": "full"}})


def test_no_tf32_changes_nothing_of_a_bf16_pipeline_and_the_record_says_so() -> None:
    # torch leaves matmul TF32 off and bf16 never uses TF32: on a bf16 pipeline the images of
    # this "noise floor" are full precision's own.
    assert torch.backends.cuda.matmul.allow_tf32 is False
    record = floor_record("no-tf32", "cuda", "bfloat16")
    assert record["altered"] == [] and record["exact"] is True
    assert "exact by construction" in record["note"] and "bfloat16" in record["note"]
    # cuDNN's TF32 (on by default) does bear on a float32 pipeline's convolutions.
    assert floor_record("no-tf32", "cuda", "float32")["altered"] == [
        "torch.backends.cudnn.allow_tf32: True -> False"
    ]


def test_no_reduced_precision_perturbs_bf16_and_fp16_matmuls() -> None:
    matmul = torch.backends.cuda.matmul
    assert matmul.allow_bf16_reduced_precision_reduction is True  # torch's default
    for dtype, flag in (("bfloat16", "bf16"), ("float16", "fp16")):
        record = floor_record("no-reduced-precision", "cuda", dtype)
        assert record["exact"] is False and "note" not in record
        assert record["altered"] == [
            f"torch.backends.cuda.matmul.allow_{flag}_reduced_precision_reduction: True -> False"
        ]
    with harmless_change("no-reduced-precision"):
        assert matmul.allow_bf16_reduced_precision_reduction is False
        assert matmul.allow_fp16_reduced_precision_reduction is False
        assert altered_settings("no-reduced-precision", "cuda", "bfloat16") == []  # already off
    assert matmul.allow_bf16_reduced_precision_reduction is True  # restored
    assert matmul.allow_fp16_reduced_precision_reduction is True


def test_cuda_settings_alter_nothing_on_a_cpu_but_the_attention_kernel_does() -> None:
    for kind in ("no-tf32", "no-reduced-precision"):
        assert floor_record(kind, "cpu", "float32")["exact"] is True  # cuBLAS/cuDNN settings
    assert floor_record("sdpa-math", "cpu", "float32")["altered"] == [
        "scaled_dot_product_attention: math kernel only"
    ]
