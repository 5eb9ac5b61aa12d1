"""Every backend that runs on a CPU, on every model family: the variant loads through the
backend's own path and the family's denoiser comes back quantized (some weight of another type
or dtype than the full-precision load's), and the quantized pipeline makes the family's output.

bitsandbytes and torchao's int4 schemes need a GPU (their libraries refuse here:
docs/backends.md, "Every backend on every family"); they are exercised on every family by
benchmarks/family_backends.py, whose failures are recorded cells.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bench.backends import load_pipeline, parse_variant
from bench.families import FAMILIES
from bench.families.synthetic import ensure_synthetic_pipeline
from bench.models.variants import prepare_variant

VARIANTS = {
    "gguf-Q4_K": {"kind": "gguf", "quant": "Q4_K", "compute_dtype": "float32"},
    "torchao-int8wo": {
        "kind": "torchao", "scheme": "int8wo", "dtype": "float32", "components": ["transformer"]
    },
    "quanto-int8": {
        "kind": "quanto", "scheme": "int8", "dtype": "float32", "components": ["transformer"]
    },
    "layerwise-e4m3": {
        "kind": "layerwise", "storage_dtype": "float8_e4m3fn", "compute_dtype": "float32"
    },
}  # fmt: skip


def _weights(module: torch.nn.Module) -> dict[str, tuple[type, torch.dtype]]:
    return {name: (type(p), p.dtype) for name, p in module.named_parameters()}


@pytest.fixture(scope="module")
def full_weights() -> dict[str, dict[str, tuple[type, torch.dtype]]]:
    out = {}
    for family in FAMILIES.values():
        base = str(ensure_synthetic_pipeline("tiny", 0, family.name))
        full = load_pipeline(base, parse_variant({"name": "full", "kind": "full"}))
        out[family.name] = _weights(family.denoiser_module(full))
    return out


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_backend_quantizes_the_familys_denoiser(
    family: str, variant: str, full_weights: dict[str, Any], tmp_path: Path
) -> None:
    entry = FAMILIES[family]
    base = str(ensure_synthetic_pipeline("tiny", 0, family))
    spec = parse_variant({"name": variant, **VARIANTS[variant]})
    prepared = prepare_variant(spec, base, tmp_path)
    pipe = load_pipeline(base, spec, prepared.artifacts)
    got = _weights(entry.denoiser_module(pipe))
    changed = [name for name, kind in got.items() if full_weights[family].get(name) != kind]
    assert changed, f"{variant} on {family}: every denoiser weight is as in full precision"
    options = {"num_frames": 5} if entry.output == "video" else None
    # Two steps: with one, QwenImagePipeline's schedule gives NaN latents (black images) even in
    # full precision.
    frames = entry.generate(
        pipe, "a cat", height=64, width=64, steps=2, guidance=1.0, max_sequence_length=16,
        generator=torch.Generator().manual_seed(0), options=options,
    )  # fmt: skip
    assert len(frames) == (5 if options else 1) and frames[0].size == (64, 64)
    assert all(np.asarray(f).std() > 0 for f in frames), "a blank frame (NaN before the cast?)"
