"""The synthetic pipeline: offline, deterministic, loadable as an ordinary diffusers folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from bench.models.synthetic import build_synthetic_pipeline, ensure_synthetic_pipeline


def folder_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).parts[0] != "gguf"  # variants made later
    }


def test_build_is_deterministic(tmp_path: Path, tiny_pipeline: Path) -> None:
    again = build_synthetic_pipeline("tiny", 0, tmp_path / "again")
    other_seed = build_synthetic_pipeline("tiny", 1, tmp_path / "other")
    cached = folder_digest(tiny_pipeline)
    assert folder_digest(again) == cached
    weights = "transformer/diffusion_pytorch_model.safetensors"
    assert folder_digest(other_seed)[weights] != cached[weights]


def test_cache_is_reused(tiny_pipeline: Path) -> None:
    marker = tiny_pipeline / "model_index.json"
    stamp = marker.stat().st_mtime_ns
    assert ensure_synthetic_pipeline("tiny", 0) == tiny_pipeline
    assert marker.stat().st_mtime_ns == stamp


def test_loads_and_generates_offline(tiny_pipeline: Path) -> None:
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(tiny_pipeline)
    assert {"tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2", "vae"} <= set(
        pipe.components
    )
    # Widths that admit K-quants: every quantizable matrix has a multiple of 256 inputs.
    for name, module in pipe.transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and name.startswith(
            ("transformer_blocks", "single_transformer_blocks")
        ):
            assert module.in_features % 256 == 0, name
    image = pipe(
        "a cat",
        height=64,
        width=64,
        num_inference_steps=2,
        max_sequence_length=16,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images[0]
    assert image.shape == (64, 64, 3)
    assert image.min() >= 0.0 and image.max() <= 1.0 and image.std() > 0.01
