"""Predictions follow their formulas as resolution and sequence length change."""

from __future__ import annotations

from dataclasses import replace

from bench.blocks.vaes import autoencoder_kl_decode_activations as vae_decode_activations
from bench.families.flux import LIVE_UNITS_HALF, image_tokens, transformer_activations
from bench.sizing.predict import parse_offload, predict
from bench.sizing.terms import Scenario
from tests.size.test_offload_arithmetic import _pipe


def _act(pred) -> int:
    return pred.term("transformer activations").bytes


def test_image_tokens_are_pixels_over_16_squared_for_flux() -> None:
    vae = _pipe().components["vae"]  # four levels: VAE factor 8, then 2×2 packing
    assert image_tokens(vae, 1024, 1024) == 64 * 64
    assert image_tokens(vae, 496, 680) == 31 * 42


def test_transformer_activations_follow_tokens_times_hidden() -> None:
    pipe = _pipe()
    hidden = 2 * 64
    for h, w, seq in [(256, 256, 64), (512, 512, 64), (1024, 768, 512), (512, 512, 256)]:
        pred = predict(pipe, Scenario(parse_offload("model"), h, w, 1, seq))
        tokens = (h // 16) * (w // 16) + seq
        assert _act(pred) == LIVE_UNITS_HALF * tokens * hidden * 2
    one = predict(pipe, Scenario(parse_offload("model"), 512, 512, 1, 64))
    two = predict(pipe, Scenario(parse_offload("model"), 512, 512, 2, 64))
    assert _act(two) == 2 * _act(one)


def test_float32_compute_counts_fewer_live_tensors_of_twice_the_size() -> None:
    transformer = _pipe().components["transformer"]
    half, _ = transformer_activations(transformer, 1000, 1, "bfloat16")
    full, _ = transformer_activations(transformer, 1000, 1, "float32")
    assert full / half == 14 * 4 / (17 * 2)


def test_vae_decode_grows_with_pixels_at_its_full_resolution_peak() -> None:
    vae = replace(_pipe().components["vae"], config={"block_out_channels": [128, 256, 512, 512]})
    small, _ = vae_decode_activations(vae, 512, 512, 1)
    big, why_big = vae_decode_activations(vae, 1024, 1024, 1)
    # FLUX's decoder peaks in the last up block's first resnet: 3 × 256 channels × pixels, bf16
    assert big == 3 * 256 * 1024 * 1024 * 2
    assert big == 4 * small
    assert "up block 3 first resnet (256 ch)" in why_big


def test_total_rises_by_exactly_the_activation_terms_under_model_offload() -> None:
    pipe = _pipe()
    lo = predict(pipe, Scenario(parse_offload("model"), 512, 512, 1, 64))
    hi = predict(pipe, Scenario(parse_offload("model"), 1024, 1024, 1, 64))
    assert lo.peak_phase == hi.peak_phase == "transformer"
    assert hi.weights_bytes == lo.weights_bytes
    extra = (1024 * 1024 - 512 * 512) // 256 * 128 * 2 * LIVE_UNITS_HALF
    assert _act(hi) - _act(lo) == extra
