"""A Q8_0 variant loads through from_single_file and stays close to full precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.backends import load_pipeline
from bench.backends.full import FullVariant
from bench.backends.gguf import GGUFVariant, make_gguf_from_base


def generate(pipe, seed: int) -> np.ndarray:
    return pipe(
        "a futuristic city at sunset",
        height=64,
        width=64,
        num_inference_steps=3,
        max_sequence_length=16,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    ).images[0]


def test_q8_0_loads_as_gguf_and_differs_slightly(tiny_pipeline: Path) -> None:
    from diffusers.quantizers.gguf.utils import GGUFParameter

    gguf_file = make_gguf_from_base(tiny_pipeline, "Q8_0")
    full = load_pipeline(str(tiny_pipeline), FullVariant(name="f", kind="full", dtype="float32"))
    q8 = load_pipeline(
        str(tiny_pipeline),
        GGUFVariant(name="q", kind="gguf", quant="Q8_0", compute_dtype="float32"),
        artifacts={"gguf_file": str(gguf_file)},
    )
    quantized = [p for p in q8.transformer.parameters() if isinstance(p, GGUFParameter)]
    assert quantized, "no GGUF-quantized parameters in the loaded transformer"

    reference = generate(full, seed=7)
    quantized_image = generate(q8, seed=7)
    other_seed = generate(full, seed=8)
    quant_error = np.abs(quantized_image - reference).mean()
    seed_change = np.abs(other_seed - reference).mean()
    assert quant_error > 0
    assert quant_error < 0.1 * seed_change
