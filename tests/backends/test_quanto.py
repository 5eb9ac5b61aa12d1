"""quanto backend: strict config, the deprecation diffusers announces, exact bytes of quanto's
QLinear weights, and what each scheme does on this machine (measured, never a constant)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.backends import backend_for, parse_variant
from bench.backends.quanto import (
    QuantoVariant,
    converted_modules,
    int4_group_size,
    is_quanto_tensor,
    pipeline_quantization_config,
    stored_bytes,
    uses_tinygemm,
)
from bench.config import validate_config
from bench.errors import ConfigError
from tests.backends.loaded import generate, load, raised_within, sized, weights
from tests.runner.sample_config import BASE_CONFIG

ALL_MODELS = ["transformer", "text_encoder", "text_encoder_2", "vae"]


def config_with(**fields: Any) -> dict[str, Any]:
    variant = {"name": "q", "kind": "quanto", **fields}
    return {**BASE_CONFIG, "variants": [BASE_CONFIG["variants"][0], variant]}


def variant(**fields: Any) -> QuantoVariant:
    return QuantoVariant.model_validate({"name": "q", "kind": "quanto", **fields})


# --- config ----------------------------------------------------------------------------------


def test_defaults_and_round_trip() -> None:
    int4 = validate_config(config_with(scheme="int4"), "c.yaml").variants[1]
    assert isinstance(int4, QuantoVariant)
    assert int4.dtype == "bfloat16" and int4.components == ["transformer"]
    assert parse_variant(int4.model_dump(mode="json")) == int4


@pytest.mark.parametrize(
    ("fields", "needles"),
    [
        ({"scheme": "int2"}, ["variants.q.scheme", "'int8'"]),
        ({"scheme": "int8", "weights_dtype": "int8"}, ["variants.q.weights_dtype", "unknown key"]),
        ({"scheme": "int4", "group_size": 128}, ["variants.q.group_size", "unknown key"]),
        ({"scheme": "int8", "components": ["vae", "vae"]}, ["variants.q.components", "dupl"]),
        ({"scheme": "int8", "dtype": "int8"}, ["variants.q.dtype"]),
        ({}, ["variants.q.scheme", "missing"]),
    ],
)
def test_settings_that_do_not_apply_are_errors_naming_the_key(
    fields: dict[str, Any], needles: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config(config_with(**fields), "c.yaml")
    message = str(caught.value)
    for needle in needles:
        assert needle in message, message


def test_labels_and_bits_per_weight() -> None:
    backend = backend_for("quanto")
    assert backend.label(variant(scheme="float8")) == "quanto float8"
    assert backend.scheme(variant(scheme="int8")) == "INT8"  # the HF blog's word
    assert backend.bits_per_weight(variant(scheme="int4")) == 4 + 2 * 16 / 128
    assert backend.bits_per_weight(variant(scheme="float8")) == 8.0
    assert backend.packages == ("optimum-quanto",)
    assert "deprecated" in backend.summary


# --- diffusers' API and its deprecation ------------------------------------------------------


def test_diffusers_announces_the_deprecation() -> None:
    """The docs quote this warning; diffusers emitting another one should be noticed."""
    from diffusers import QuantoConfig

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        QuantoConfig(weights_dtype="int8")
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert any("`QuantoConfig` is deprecated" in m and "1.0.0" in m for m in messages), messages


def test_quant_mapping_gives_each_library_its_own_config() -> None:
    import diffusers
    import transformers

    libraries = {"transformer": "diffusers", "text_encoder_2": "transformers"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        config = pipeline_quantization_config(
            variant(scheme="float8", components=["transformer", "text_encoder_2"]), libraries
        )
    diffusers_config = config.quant_mapping["transformer"]
    transformers_config = config.quant_mapping["text_encoder_2"]
    assert isinstance(diffusers_config, diffusers.QuantoConfig)
    assert diffusers_config.weights_dtype == "float8"
    assert isinstance(transformers_config, transformers.QuantoConfig)
    assert transformers_config.weights == "float8"


def test_prepare_refuses_a_component_the_pipeline_lacks(
    tiny_pipeline: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"variants\.q\.components.*unet"):
        backend_for("quanto").prepare(
            variant(scheme="int8", components=["unet"]), str(tiny_pipeline), tmp_path
        )


# --- bytes -----------------------------------------------------------------------------------


def test_int4_group_size_follows_qmodule() -> None:
    assert int4_group_size(256) == 128
    assert int4_group_size(3072) == 128
    assert int4_group_size(192) == 96  # 128 does not divide it: lowered by 32
    assert int4_group_size(160) == 32
    assert int4_group_size(200) is None  # nothing from 128 down to 32 divides it
    assert int4_group_size(128) is None and int4_group_size(16) is None  # one group per row


@pytest.mark.parametrize("scheme", ["int8", "float8", "int4"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("shape", [(384, 256), (256, 16), (96, 192), (33, 160), (7, 200), (5, 128)])
def test_single_layer_storage_matches_quanto(
    scheme: str, dtype: str, shape: tuple[int, int]
) -> None:
    """The per-layer formula against quanto's own QLinear, frozen as diffusers freezes it."""
    from optimum.quanto import QLinear, qfloat8, qint4, qint8

    from bench.models.loading import storage_bytes

    qtype = {"int8": qint8, "float8": qfloat8, "int4": qint4}[scheme]
    linear = torch.nn.Linear(shape[1], shape[0], dtype=getattr(torch, dtype))
    qlinear = QLinear.from_module(linear, weights=qtype)
    qlinear.freeze()
    assert is_quanto_tensor(qlinear.weight)
    held = storage_bytes(qlinear.weight) + sum(storage_bytes(b) for b in qlinear.buffers())
    assert held == stored_bytes(scheme, shape, dtype)
    tinygemm = type(qlinear.weight).__name__.startswith("TinyGemm")
    assert tinygemm == uses_tinygemm(scheme, shape, dtype)


def test_transformers_keeps_t5_wo_and_diffusers_converts_every_linear(tiny_pipeline: Path) -> None:
    from bench.families.sizing import folder_base

    modules = folder_base(tiny_pipeline).modules
    t5 = modules["text_encoder_2"]
    t5_linears = {n for n, m in t5.named_modules() if isinstance(m, torch.nn.Linear)}
    kept = t5_linears - converted_modules(t5)
    assert kept and all(n.endswith(".wo") for n in kept)  # T5's _keep_in_fp32_modules
    flux = modules["transformer"]
    assert converted_modules(flux) == {
        n for n, m in flux.named_modules() if isinstance(m, torch.nn.Linear)
    }


# --- a tiny CPU load -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["int8", "float8", "int4"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_loaded_bytes_are_sized_exactly_or_quanto_refuses(
    tiny_pipeline: Path, scheme: str, dtype: str
) -> None:
    from bench.families.sizing import folder_base

    spec = variant(scheme=scheme, dtype=dtype, components=ALL_MODELS)
    try:
        pipe = load(tiny_pipeline, spec)
    except Exception as exc:  # the library's own verdict about this machine
        assert raised_within(exc, "quanto", "transformers", "diffusers"), exc
        return
    meta = folder_base(tiny_pipeline).modules
    loaded = weights(pipe)
    predicted = sized(tiny_pipeline, spec).pipe.components
    for name in ALL_MODELS:
        module = pipe.components[name]
        converted = {n.removesuffix(".weight") for n, p in module.named_parameters()
                     if is_quanto_tensor(p)}  # fmt: skip
        assert converted == converted_modules(meta[name]), name
        assert loaded[name]["bytes"] == predicted[name].bytes, name
        # each QLinear's two scalar buffers are charged to its weight's bytes, not counted
        extra = 2 * len(converted)
        assert loaded[name]["parameters"] == predicted[name].parameters + extra, name


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["int8", "float8", "int4"])
def test_images_differ_slightly_from_full_precision(tiny_pipeline: Path, scheme: str) -> None:
    from bench.backends.full import FullVariant
    from bench.metrics.fidelity import psnr

    spec = variant(scheme=scheme, dtype="float32", components=["transformer", "text_encoder_2"])
    try:
        quantized_pipe = load(tiny_pipeline, spec)
        image = generate(quantized_pipe)
    except Exception as exc:
        assert raised_within(exc, "quanto", "transformers", "diffusers"), exc
        return
    full = load(tiny_pipeline, FullVariant(name="f", kind="full", dtype="float32"))
    reference = generate(full)
    score = psnr(image, reference)
    other_seed = psnr(generate(full, seed=8), reference)
    assert not score.identical and score.value is not None
    assert other_seed.value is not None and score.value > other_seed.value + 10
