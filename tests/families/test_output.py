"""What a family's `generate` hands the runner: PIL images converted as diffusers converts them,
and no image at all when the pipeline's output is not finite (it would be cast to black and
scored as a drawing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.image_processor import VaeImageProcessor

from bench.families import FAMILIES
from bench.families.base import NonFiniteOutput, pictures


def test_pictures_convert_as_diffusers_numpy_to_pil() -> None:
    values = np.random.default_rng(0).random((2, 8, 12, 3), dtype=np.float32)
    ours = pictures(values)
    theirs = VaeImageProcessor.numpy_to_pil(values)
    assert len(ours) == len(theirs) == 2
    pairs = zip(ours, theirs, strict=True)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in pairs)
    assert ours[0].size == (12, 8) and len(pictures(values[None])) == 2  # a video's frames


def test_a_non_finite_value_is_refused_naming_how_many() -> None:
    values = np.zeros((1, 4, 4, 3), dtype=np.float32)
    values[0, 1, 2] = np.nan
    with pytest.raises(NonFiniteOutput, match="3 of 48 output values are NaN or infinite"):
        pictures(values)


def test_a_pipeline_that_returns_nan_is_a_failure_not_a_black_image() -> None:
    """QwenImagePipeline at one step: its schedule gives NaN latents even in full precision."""
    from bench.backends import load_pipeline, parse_variant
    from bench.families.synthetic import ensure_synthetic_pipeline

    family = FAMILIES["qwen_image"]
    base = str(ensure_synthetic_pipeline("tiny", 0, family.name))
    pipe = load_pipeline(base, parse_variant({"name": "full", "kind": "full"}))
    call = dict(
        height=64, width=64, guidance=1.0, max_sequence_length=16,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    with pytest.raises(NonFiniteOutput):
        family.generate(pipe, "a cat", steps=1, **call)  # type: ignore[arg-type]
    call["generator"] = torch.Generator().manual_seed(0)
    (image,) = family.generate(pipe, "a cat", steps=2, **call)  # type: ignore[arg-type]
    assert np.asarray(image).std() > 0
