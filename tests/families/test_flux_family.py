"""FLUX, the first family: what moving it behind the family interface must not have changed.

Caches built before families existed must still be found (same folder names), the quantizer's
bytes must not depend on whether the family is named, `generate` must return what the
worker's own pipeline call returns, and the old import paths must give the family's objects.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.families import flux as flux_module
from bench.families import get_family
from bench.families.base import UnsupportedOption

FLUX = get_family("flux")


def test_identity() -> None:
    assert FLUX.name == "flux"
    assert FLUX.pipeline_class == "FluxPipeline"
    assert FLUX.denoiser == "transformer"
    assert FLUX.denoiser_class == "FluxTransformer2DModel"
    assert FLUX.output == "image"
    assert FLUX.gguf.architecture == "flux"
    assert FLUX.gguf.original_scheme == "bfl"


def test_cache_folder_names_are_those_of_the_builder_before_families() -> None:
    """The hash formula and folder layout the builder had (commit b641105): spec, seed and
    builder version, no family prefix, so every existing FLUX cache is still found."""
    from bench.families.synthetic import synthetic_dir
    from bench.models.synthetic import BUILDER_VERSION, cache_root

    for preset, seed in [("tiny", 0), ("tiny", 3), ("flux-dev", 0)]:
        spec = FLUX.preset(preset)
        blob = json.dumps(
            {"spec": asdict(spec), "seed": seed, "builder": BUILDER_VERSION}, sort_keys=True
        )
        digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
        assert spec.digest(seed) == digest
        assert synthetic_dir(preset, seed) == cache_root() / "synthetic" / (
            f"{preset}-seed{seed}-{digest}"
        )
    # the name a cache of the tiny preset, seed 0, was given before this change
    assert synthetic_dir("tiny", 0).name == "tiny-seed0-3dfe36d75e06"


def test_offload_order_is_flux_pipelines() -> None:
    names = ["vae", "transformer", "text_encoder_2", "text_encoder"]
    assert FLUX.offload_order(names) == ("text_encoder", "text_encoder_2", "transformer", "vae")


def test_takes_no_generation_options() -> None:
    with pytest.raises(UnsupportedOption, match=r"num_frames.*accepted: none"):
        FLUX.check_options({"num_frames": 9})


def test_meta_components_of_the_tiny_preset_are_the_built_models(tiny_pipeline: Path) -> None:
    """Sized without a build, the tiny preset has the shapes its built folder has."""
    from safetensors import safe_open

    modules = FLUX.meta_components(FLUX.preset("tiny"))
    for name, module in modules.items():
        files = sorted((tiny_pipeline / name).glob("*.safetensors"))
        shapes: dict[str, tuple[int, ...]] = {}
        for file in files:
            with safe_open(file, "pt") as f:
                shapes |= {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
        state = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        assert {k: state[k] for k in shapes} == shapes, name


def test_activation_terms_are_flux_formulas() -> None:
    from bench.sizing.predict import parse_offload
    from bench.sizing.terms import Scenario
    from tests.size.test_offload_arithmetic import _pipe

    pipe = _pipe()
    scenario = Scenario(parse_offload("model"), 512, 768, 1, 64)
    name, work, why = FLUX.activations(pipe.components["transformer"], pipe, scenario, "bfloat16")
    tokens = flux_module.image_tokens(pipe.components["vae"], 512, 768)
    expected, formula = flux_module.transformer_activations(
        pipe.components["transformer"], tokens + 64, 1, "bfloat16"
    )
    assert (name, work) == ("transformer activations", expected)
    assert why == f"{tokens} image + 64 text tokens; {formula}"
    assert FLUX.activations(pipe.components["vae"], pipe, scenario, "bfloat16")[0] == (
        "VAE decode activations"
    )
    assert FLUX.activations(pipe.components["text_encoder_2"], pipe, scenario, "bfloat16")[0] == (
        "text_encoder_2 activations"
    )


def test_quantizer_bytes_do_not_depend_on_naming_the_family(
    tiny_pipeline: Path, tmp_path: Path
) -> None:
    from bench.families.gguf import quantize_checkpoint

    src = tiny_pipeline / "transformer"
    for key_names in ("auto", "bfl"):
        default = quantize_checkpoint(src, tmp_path / f"d-{key_names}.gguf", "Q4_K_M", key_names)
        named = quantize_checkpoint(
            src, tmp_path / f"n-{key_names}.gguf", "Q4_K_M", key_names, family="flux"
        )
        assert default.key_names == named.key_names
        assert default.out.read_bytes() == named.out.read_bytes()


@pytest.mark.slow
def test_generate_is_the_worker_pipeline_call(tiny_pipeline: Path) -> None:
    """FLUX.generate(...)[0] is the image the worker's own `pipe(...)` call gives."""
    import torch
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(tiny_pipeline)
    pipe.set_progress_bar_config(disable=True)
    settings: dict[str, Any] = dict(height=64, width=96, max_sequence_length=16)

    def step(_p: Any, _i: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        return kwargs

    direct = pipe(
        "a cat",
        num_inference_steps=2,
        guidance_scale=3.5,
        generator=torch.Generator("cpu").manual_seed(7),
        callback_on_step_end=step,
        output_type="pil",
        **settings,
    ).images[0]
    images = FLUX.generate(
        pipe,
        "a cat",
        steps=2,
        guidance=3.5,
        generator=torch.Generator("cpu").manual_seed(7),
        callback_on_step_end=step,
        **settings,
    )
    assert len(images) == 1
    assert np.array_equal(np.asarray(images[0]), np.asarray(direct))
    assert FLUX.denoiser_module(pipe) is pipe.transformer
