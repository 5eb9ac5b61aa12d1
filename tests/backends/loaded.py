"""Helpers for backend tests: load a variant on the tiny pipeline, size it, make an image."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import torch

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def load(tiny_pipeline: Path, variant: Any) -> Any:
    """The pipeline as a cell loads it (the variant's backend, diffusers' own API)."""
    from bench.backends import load_pipeline

    return load_pipeline(str(tiny_pipeline), variant)


def sized(tiny_pipeline: Path, variant: Any) -> Any:
    """`bench size`'s prediction of the variant from the tiny pipeline's configs (meta)."""
    from bench.backends import backend_for
    from bench.families.sizing import folder_base

    spec = variant.model_dump(mode="json")
    return backend_for(variant).size_variant(folder_base(tiny_pipeline), spec, None)


def weights(pipe: Any) -> dict[str, dict[str, int]]:
    from bench.models.loading import component_weights

    return component_weights(pipe)


def generate(pipe: Any, seed: int = 7) -> torch.Tensor:
    image = pipe(
        "a futuristic city at sunset",
        height=64,
        width=64,
        num_inference_steps=3,
        max_sequence_length=16,
        generator=torch.Generator().manual_seed(seed),
        output_type="pt",
    ).images
    return image.float().clamp(0, 1)


def raised_in(exc: BaseException) -> str:
    """The file of the innermost frame that raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    return frames[-1].filename if frames else ""


def raised_within(exc: BaseException, *packages: str) -> bool:
    """Whether one of `packages` raised this exception or one it chains from. transformers 5
    collects a quantizer's failure into its loading report and raises its own RuntimeError
    (no chained cause) when a text encoder loads before the diffusers models."""
    seen: BaseException | None = exc
    while seen is not None:
        if any(f"/{package}/" in raised_in(seen) for package in packages):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def raised_inside_bench(exc: BaseException) -> bool:
    """Whether the innermost frame that raised is the harness's own code."""
    filename = raised_in(exc)
    return bool(filename) and Path(filename).resolve().is_relative_to(BENCH_DIR)
