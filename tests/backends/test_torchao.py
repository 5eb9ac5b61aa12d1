"""torchao backend: strict config, diffusers' TorchAoConfig with config objects, exact bytes,
and what each scheme does on this machine (its library's verdict, never a constant)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from bench.backends import backend_for, parse_variant
from bench.backends.torchao import (
    TorchAoVariant,
    converted_weights,
    is_torchao_tensor,
    pipeline_quantization_config,
    stored_bytes,
    torchao_config,
)
from bench.config import validate_config
from bench.errors import ConfigError
from tests.backends.loaded import generate, load, raised_within, sized, weights
from tests.runner.sample_config import BASE_CONFIG

ALL_MODELS = ["transformer", "text_encoder", "text_encoder_2", "vae"]


def config_with(**fields: Any) -> dict[str, Any]:
    variant = {"name": "ao", "kind": "torchao", **fields}
    return {**BASE_CONFIG, "variants": [BASE_CONFIG["variants"][0], variant]}


def variant(**fields: Any) -> TorchAoVariant:
    return TorchAoVariant.model_validate({"name": "ao", "kind": "torchao", **fields})


# --- config ----------------------------------------------------------------------------------


def test_defaults_and_round_trip() -> None:
    int8 = variant(scheme="int8wo")
    assert int8.dtype == "bfloat16" and int8.components == ["transformer"]
    assert int8.group_size is None
    int4 = validate_config(config_with(scheme="int4wo"), "c.yaml").variants[1]
    assert isinstance(int4, TorchAoVariant)
    assert int4.group_size == 128  # the effective group size is recorded
    assert parse_variant(int4.model_dump(mode="json")) == int4


@pytest.mark.parametrize(
    ("fields", "needles"),
    [
        ({"scheme": "int8wo", "group_size": 128}, ["variants.ao.group_size", "int4wo"]),
        ({"scheme": "float8wo", "group_size": 64}, ["variants.ao.group_size"]),
        ({"scheme": "int4wo", "group_size": 100}, ["variants.ao.group_size"]),
        ({"scheme": "int4wo", "group_size": "128"}, ["variants.ao.group_size"]),
        ({"scheme": "int8"}, ["variants.ao.scheme", "'int8wo'"]),
        ({"scheme": "int8wo", "dtype": "float8"}, ["variants.ao.dtype"]),
        ({"scheme": "int8wo", "granularity": "row"}, ["variants.ao.granularity", "unknown key"]),
        ({"scheme": "int8wo", "components": []}, ["variants.ao.components"]),
        ({"scheme": "int8wo", "components": ["vae", "vae"]}, ["variants.ao.components", "dupl"]),
        ({}, ["variants.ao.scheme", "missing"]),
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
    backend = backend_for("torchao")
    assert backend.label(variant(scheme="int8wo")) == "torchao int8wo"
    assert backend.scheme(variant(scheme="float8wo")) == "float8 weight-only"
    int4 = variant(scheme="int4wo", group_size=64)
    assert backend.label(int4) == "torchao int4wo-g64"
    assert backend.bits_per_weight(int4) == 4 + 2 * 16 / 64
    assert backend.bits_per_weight(variant(scheme="int4wo", dtype="float32")) == 4 + 2 * 32 / 128
    assert backend.bits_per_weight(variant(scheme="int8wo")) == 8.0
    assert backend.quantized_components(variant(scheme="int8wo", components=ALL_MODELS)) == (
        tuple(ALL_MODELS)
    )


# --- diffusers' API --------------------------------------------------------------------------


def test_torchao_config_objects_not_strings() -> None:
    """diffusers 0.42's TorchAoConfig takes AOBaseConfig objects; the old strings are refused."""
    from diffusers import TorchAoConfig
    from torchao.core.config import AOBaseConfig
    from torchao.quantization import Int4WeightOnlyConfig

    for scheme in ("int8wo", "float8wo", "int4wo"):
        assert isinstance(torchao_config(variant(scheme=scheme)), AOBaseConfig)
    int4 = torchao_config(variant(scheme="int4wo", group_size=32))
    assert isinstance(int4, Int4WeightOnlyConfig) and int4.group_size == 32
    with pytest.raises(TypeError, match="AOBaseConfig"):
        TorchAoConfig("int8wo")


def test_quant_mapping_gives_each_library_its_own_config() -> None:
    import diffusers
    import transformers

    libraries = {"transformer": "diffusers", "text_encoder_2": "transformers", "vae": "diffusers"}
    config = pipeline_quantization_config(
        variant(scheme="float8wo", components=["transformer", "text_encoder_2"]), libraries
    )
    assert isinstance(config, diffusers.PipelineQuantizationConfig)
    assert config.is_granular and config.quant_backend is None
    assert isinstance(config.quant_mapping["transformer"], diffusers.TorchAoConfig)
    assert isinstance(config.quant_mapping["text_encoder_2"], transformers.TorchAoConfig)
    assert "vae" not in config.quant_mapping
    with pytest.raises(ValueError, match="components"):
        pipeline_quantization_config(variant(scheme="int8wo", components=["unet"]), libraries)


def test_prepare_refuses_a_component_the_pipeline_lacks(
    tiny_pipeline: Path, tmp_path: Path
) -> None:
    backend = backend_for("torchao")
    for name in ("text_encoder_3", "scheduler", "tokenizer"):
        with pytest.raises(ConfigError, match=rf"variants\.ao\.components.*{name}"):
            backend.prepare(
                variant(scheme="int8wo", components=[name]), str(tiny_pipeline), tmp_path
            )
    assert backend.prepare(
        variant(scheme="int8wo", components=ALL_MODELS), str(tiny_pipeline), tmp_path
    )


# --- bytes -----------------------------------------------------------------------------------


def test_stored_bytes_by_hand() -> None:
    assert stored_bytes("int8wo", (512, 256), 2, 128) == 512 * 256 + 512 * 4 + 512
    assert stored_bytes("float8wo", (512, 256), 4, 128) == 512 * 256 + 512 * 4
    assert stored_bytes("int4wo", (512, 256), 2, 128) == 512 * 128 + 2 * 512 * 2 * 2


def test_int4_skips_rows_the_group_size_does_not_divide(tiny_pipeline: Path) -> None:
    from bench.families.sizing import folder_base

    transformer = folder_base(tiny_pipeline).modules["transformer"]
    linears = {
        f"{n}.weight": m.in_features
        for n, m in transformer.named_modules()
        if isinstance(m, torch.nn.Linear)
    }
    int8 = converted_weights(transformer, "int8wo", 128)
    int4 = converted_weights(transformer, "int4wo", 128)
    assert int8 == set(linears)  # every Linear of a diffusers model
    assert int4 == {n for n, k in linears.items() if k % 128 == 0}
    assert int4 < int8  # the tiny x_embedder (16 inputs) is one torchao leaves alone


def test_single_tensor_storage_matches_torchao() -> None:
    """The per-tensor formula against torchao's own subclasses (CPU-capable schemes)."""
    from torchao.quantization import quantize_

    from bench.models.loading import storage_bytes

    for scheme in ("int8wo", "float8wo"):
        for dtype, nbytes in ((torch.bfloat16, 2), (torch.float32, 4)):
            linear = torch.nn.Linear(256, 384, dtype=dtype)
            quantize_(linear, torchao_config(variant(scheme=scheme)))
            assert is_torchao_tensor(linear.weight)
            assert storage_bytes(linear.weight) == stored_bytes(scheme, (384, 256), nbytes, 128)


# --- a tiny CPU load -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["int8wo", "float8wo", "int4wo"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_loaded_bytes_are_sized_exactly_or_torchao_refuses(
    tiny_pipeline: Path, scheme: str, dtype: str
) -> None:
    spec = variant(scheme=scheme, dtype=dtype, components=ALL_MODELS)
    try:
        pipe = load(tiny_pipeline, spec)
    except Exception as exc:  # torchao's own verdict about this machine
        assert raised_within(exc, "torchao", "transformers"), exc
        assert scheme == "int4wo", f"{scheme} should load on any machine: {exc!r}"
        return
    loaded = weights(pipe)
    predicted = sized(tiny_pipeline, spec).pipe.components
    for name in ALL_MODELS:
        module = pipe.components[name]
        quantized = {n for n, p in module.named_parameters() if is_torchao_tensor(p)}
        assert quantized == converted_weights(
            predicted[name] and _meta(tiny_pipeline, name), scheme, 128
        )
        assert loaded[name]["bytes"] == predicted[name].bytes, name
        assert loaded[name]["parameters"] == predicted[name].parameters, name


def _meta(tiny_pipeline: Path, name: str) -> Any:
    from bench.families.sizing import folder_base

    return folder_base(tiny_pipeline).modules[name]


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["int8wo", "float8wo", "int4wo"])
def test_images_differ_slightly_from_full_precision(tiny_pipeline: Path, scheme: str) -> None:
    from bench.backends.full import FullVariant
    from bench.metrics.fidelity import psnr

    spec = variant(scheme=scheme, dtype="float32", components=["transformer", "text_encoder_2"])
    try:
        quantized_pipe = load(tiny_pipeline, spec)
    except Exception as exc:
        assert raised_within(exc, "torchao", "transformers"), exc
        return
    full = load(tiny_pipeline, FullVariant(name="f", kind="full", dtype="float32"))
    reference = generate(full)
    score = psnr(generate(quantized_pipe), reference)
    other_seed = psnr(generate(full, seed=8), reference)
    assert not score.identical and score.value is not None
    assert other_seed.value is not None and score.value > other_seed.value + 10
