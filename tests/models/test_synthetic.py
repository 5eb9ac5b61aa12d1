"""The synthetic pipeline: offline, deterministic, loadable as an ordinary diffusers folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from bench.families.synthetic import build_synthetic_pipeline, ensure_synthetic_pipeline

# Configs record the library version that wrote them; the cache may have been written by
# another diffusers release (bench matrix shares it), so those keys are not part of the build.
WRITER_VERSION_KEYS = {"_diffusers_version", "transformers_version"}


def folder_digest(folder: Path) -> dict[str, str]:
    digests = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or relative.parts[0] == "gguf":  # variants are made later
            continue
        data = path.read_bytes()
        if path.name.endswith("config.json") or path.name == "model_index.json":
            content = {k: v for k, v in json.loads(data).items() if k not in WRITER_VERSION_KEYS}
            data = json.dumps(content, sort_keys=True).encode()
        digests[str(relative)] = hashlib.sha256(data).hexdigest()
    return digests


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
