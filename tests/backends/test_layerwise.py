"""Layerwise casting backend: strict config, labels, exact FP8 bytes, and a tiny CPU run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from bench.backends import backend_for, parse_variant
from bench.backends.layerwise import LayerwiseVariant, cast_weights, skip_patterns
from bench.config import validate_config
from bench.errors import ConfigError, UserInputError
from tests.runner.sample_config import BASE_CONFIG


def config_with(**fields: Any) -> dict[str, Any]:
    variant = {"name": "fp8", "kind": "layerwise", **fields}
    return {**BASE_CONFIG, "variants": [BASE_CONFIG["variants"][0], variant]}


def variant(**fields: Any) -> LayerwiseVariant:
    return LayerwiseVariant.model_validate({"name": "fp8", "kind": "layerwise", **fields})


# --- config ----------------------------------------------------------------------------------


def test_defaults_and_round_trip() -> None:
    config = validate_config(config_with(), "c.yaml")
    fp8 = config.variants[1]
    assert isinstance(fp8, LayerwiseVariant)
    assert (fp8.storage_dtype, fp8.compute_dtype) == ("float8_e4m3fn", "bfloat16")
    assert fp8.components == ["transformer"]
    assert fp8.pipeline_dtype == "bfloat16"
    assert parse_variant(fp8.model_dump(mode="json")) == fp8


@pytest.mark.parametrize(
    ("fields", "needles"),
    [
        ({"storage_dtype": "float8"}, ["variants.fp8.storage_dtype", "float8_e4m3fn"]),
        ({"storage_dtype": "bfloat16"}, ["variants.fp8.storage_dtype"]),
        ({"compute_dtype": "float16"}, ["variants.fp8.compute_dtype"]),
        ({"dtype": "float32"}, ["variants.fp8.dtype", "unknown key"]),
        ({"components": []}, ["variants.fp8.components"]),
        ({"components": ["transformer", "transformer"]}, ["variants.fp8.components", "dupl"]),
    ],
)
def test_bad_settings_name_the_key(fields: dict[str, Any], needles: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config(config_with(**fields), "c.yaml")
    for needle in needles:
        assert needle in str(caught.value), str(caught.value)


def test_labels() -> None:
    backend = backend_for("layerwise")
    assert backend.label(variant()) == "layerwise FP8 e4m3 (bf16 compute)"
    e5 = variant(storage_dtype="float8_e5m2", compute_dtype="float32")
    assert backend.label(e5) == "layerwise FP8 e5m2 (fp32 compute)"
    assert backend.bits_per_weight(e5) == torch.finfo(torch.float8_e5m2).bits
    assert backend.packages == ()


# --- which tensors are cast ------------------------------------------------------------------


def test_cast_tensors_follow_diffusers_skip_patterns(tiny_pipeline: Path) -> None:
    from bench.families.sizing import folder_base

    transformer = folder_base(tiny_pipeline).modules["transformer"]
    patterns = skip_patterns(transformer)
    # The model's own patterns are kept, as diffusers documents.
    assert set(type(transformer)._skip_layerwise_casting_patterns) <= set(patterns)
    cast = cast_weights(transformer)
    assert cast
    assert not any(".norm" in f".{name}" or name.startswith("proj_out") for name in cast)
    assert any(name.startswith("x_embedder") for name in cast)  # not a skip pattern


def test_meta_modules_and_a_real_cast_agree(tiny_pipeline: Path) -> None:
    """The FP8 tensors of a really cast transformer are exactly the predicted ones."""
    from bench.backends import load_pipeline

    pipe = load_pipeline(str(tiny_pipeline), variant(compute_dtype="float32"))
    fp8 = {
        name
        for name, tensor in list(pipe.transformer.named_parameters())
        + list(pipe.transformer.named_buffers())
        if tensor.dtype == torch.float8_e4m3fn
    }
    from bench.families.sizing import folder_base

    assert fp8 == set(cast_weights(folder_base(tiny_pipeline).modules["transformer"]))


# --- sizing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["float8_e4m3fn", "float8_e5m2"])
def test_sizing_is_exact_against_a_loaded_pipeline(tiny_pipeline: Path, storage: str) -> None:
    from bench.backends import load_pipeline
    from bench.families.sizing import folder_base
    from bench.models.loading import component_weights

    spec = variant(storage_dtype=storage, compute_dtype="float32").model_dump(mode="json")
    pipe = load_pipeline(str(tiny_pipeline), parse_variant(spec))
    loaded = component_weights(pipe)
    sized = backend_for("layerwise").size_variant(folder_base(tiny_pipeline), spec, None)
    for name, weights in loaded.items():
        component = sized.pipe.components[name]
        assert (component.bytes, component.parameters) == (
            weights["bytes"],
            weights["parameters"],
        ), name
    # and the cast transformer is smaller than the same one in fp32
    assert loaded["transformer"]["bytes"] < 4 * loaded["transformer"]["parameters"]


def test_sizing_refuses_a_transformers_component(tiny_pipeline: Path) -> None:
    from bench.families.sizing import folder_base

    spec = variant(components=["text_encoder_2"]).model_dump(mode="json")
    with pytest.raises(UserInputError, match="text_encoder_2"):
        backend_for("layerwise").size_variant(folder_base(tiny_pipeline), spec, None)


# --- a tiny CPU run --------------------------------------------------------------------------


def generate(pipe: Any, seed: int) -> torch.Tensor:
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


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["float8_e4m3fn", "float8_e5m2"])
def test_images_differ_slightly_from_full_precision(tiny_pipeline: Path, storage: str) -> None:
    from bench.backends import load_pipeline
    from bench.backends.full import FullVariant
    from bench.metrics.fidelity import psnr

    full = load_pipeline(str(tiny_pipeline), FullVariant(name="f", kind="full", dtype="float32"))
    cast = load_pipeline(
        str(tiny_pipeline), variant(storage_dtype=storage, compute_dtype="float32")
    )
    reference = generate(full, seed=7)
    quantized = psnr(generate(cast, seed=7), reference)
    other_seed = psnr(generate(full, seed=8), reference)
    assert not quantized.identical and quantized.value is not None  # changed, measurably
    assert other_seed.value is not None
    assert quantized.value > other_seed.value + 10  # far closer than another seed's image


def test_prepare_refuses_components_that_cannot_be_cast(tiny_pipeline: Path) -> None:
    backend = backend_for("layerwise")
    for components, needle in ((["text_encoder_2"], "transformers"), (["unet"], "unet")):
        with pytest.raises(ConfigError, match=needle) as caught:
            backend.prepare(variant(components=components), str(tiny_pipeline), tiny_pipeline)
        assert str(caught.value).startswith("variants.fp8.components: ")
    assert backend.prepare(variant(), str(tiny_pipeline), tiny_pipeline).unavailable is None


def test_a_text_encoder_has_no_layerwise_casting(tiny_pipeline: Path) -> None:
    """Loaded anyway (a hub base is not checked beforehand): transformers models lack the
    method, and the cell fails saying so rather than casting by other means."""
    from bench.backends import load_pipeline

    with pytest.raises(TypeError, match="no enable_layerwise_casting"):
        load_pipeline(str(tiny_pipeline), variant(components=["text_encoder_2"]))
