"""bitsandbytes backend: strict config, labels, exact bytes, and what loading does here.

What loading does depends on the machine: diffusers' bitsandbytes quantizers refuse without a
GPU (their `validate_environment`), transformers' quantize on the CPU. Each test asserts the
behaviour of the machine it runs on, taken from the library itself, never a constant.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bench.backends import BACKENDS, backend_for, parse_variant
from bench.backends.bitsandbytes import (
    BLOCKSIZE_4BIT,
    BitsAndBytesVariant,
    converted_weights,
    four_bit_bytes,
    int8_bytes,
    pipeline_quantization_config,
)
from bench.config import validate_config
from bench.errors import ConfigError
from tests.runner.sample_config import BASE_CONFIG

TEXT_ENCODERS = ["text_encoder", "text_encoder_2"]


def config_with(**fields: Any) -> dict[str, Any]:
    variant = {"name": "bnb", "kind": "bitsandbytes", **fields}
    return {**BASE_CONFIG, "variants": [BASE_CONFIG["variants"][0], variant]}


def variant(**fields: Any) -> BitsAndBytesVariant:
    return BitsAndBytesVariant.model_validate({"name": "bnb", "kind": "bitsandbytes", **fields})


def diffusers_refusal() -> BaseException | None:
    """What diffusers' own 4-bit quantizer says about this machine (None: it accepts it)."""
    from diffusers import BitsAndBytesConfig
    from diffusers.quantizers.bitsandbytes import BnB4BitDiffusersQuantizer

    try:
        BnB4BitDiffusersQuantizer(BitsAndBytesConfig(load_in_4bit=True)).validate_environment()
    except Exception as exc:  # the library's own refusal, whatever its type
        return exc
    return None


# --- config ----------------------------------------------------------------------------------


def test_registered_under_its_kind() -> None:
    assert isinstance(BACKENDS["bitsandbytes"], type(backend_for("bitsandbytes")))
    assert backend_for("bitsandbytes").packages == ("bitsandbytes",)


def test_four_bit_defaults_are_recorded() -> None:
    config = validate_config(config_with(scheme="nf4", dtype="float32"), "c.yaml")
    nf4 = config.variants[1]
    assert isinstance(nf4, BitsAndBytesVariant)
    assert nf4.double_quant is False
    assert nf4.compute_dtype == "float32"  # defaults to dtype
    assert nf4.components == ["transformer"]
    assert parse_variant(nf4.model_dump(mode="json")) == nf4


def test_int8_round_trips_without_four_bit_settings() -> None:
    int8 = variant(scheme="int8", components=["transformer", "text_encoder_2"])
    assert int8.double_quant is None and int8.compute_dtype is None
    assert parse_variant(int8.model_dump(mode="json")) == int8


@pytest.mark.parametrize(
    ("fields", "needles"),
    [
        ({"scheme": "int8", "double_quant": True}, ["variants.bnb.double_quant", "4-bit"]),
        ({"scheme": "int8", "double_quant": False}, ["variants.bnb.double_quant", "int8"]),
        ({"scheme": "int8", "compute_dtype": "bfloat16"}, ["variants.bnb.compute_dtype"]),
        ({"scheme": "nf8"}, ["variants.bnb.scheme", "'nf4'"]),
        ({"scheme": "nf4", "double_quant": "yes"}, ["variants.bnb.double_quant"]),
        ({"scheme": "nf4", "compute_dtype": "float8"}, ["variants.bnb.compute_dtype"]),
        ({"scheme": "nf4", "blocksize": 64}, ["variants.bnb.blocksize", "unknown key"]),
        ({"scheme": "nf4", "components": []}, ["variants.bnb.components"]),
        ({"scheme": "nf4", "components": ["vae", "vae"]}, ["variants.bnb.components", "dupl"]),
        ({"scheme": "nf4", "components": ["not a name"]}, ["variants.bnb.components"]),
        ({}, ["variants.bnb.scheme", "missing"]),
    ],
)
def test_settings_that_do_not_apply_are_errors_naming_the_key(
    fields: dict[str, Any], needles: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config(config_with(**fields), "c.yaml")
    message = str(caught.value)
    assert message.startswith("c.yaml: ")
    for needle in needles:
        assert needle in message, message


def test_quantization_config_is_diffusers_pipeline_level() -> None:
    """quant_backend + components_to_quantize: diffusers' config for diffusers models,
    transformers' own for the text encoders."""
    import diffusers
    import transformers

    nf4 = variant(scheme="nf4", double_quant=True, compute_dtype="bfloat16",
                  components=["transformer", "text_encoder_2"])  # fmt: skip
    config = pipeline_quantization_config(nf4)
    assert isinstance(config, diffusers.PipelineQuantizationConfig)
    assert config.quant_backend == "bitsandbytes_4bit"
    for_transformer = config._resolve_quant_config(is_diffusers=True, module_name="transformer")
    assert isinstance(for_transformer, diffusers.BitsAndBytesConfig)
    assert for_transformer.bnb_4bit_quant_type == "nf4"
    assert for_transformer.bnb_4bit_use_double_quant is True
    assert for_transformer.bnb_4bit_compute_dtype == torch.bfloat16
    for_t5 = config._resolve_quant_config(is_diffusers=False, module_name="text_encoder_2")
    assert isinstance(for_t5, transformers.BitsAndBytesConfig)
    assert for_t5.load_in_4bit and for_t5.bnb_4bit_quant_type == "nf4"
    assert config._resolve_quant_config(is_diffusers=True, module_name="vae") is None

    int8 = pipeline_quantization_config(variant(scheme="int8"))
    assert int8.quant_backend == "bitsandbytes_8bit"
    assert int8._resolve_quant_config(is_diffusers=True, module_name="transformer").load_in_8bit


def test_prepare_refuses_a_component_the_pipeline_lacks(tiny_pipeline: Path) -> None:
    backend = backend_for("bitsandbytes")
    with pytest.raises(ConfigError, match="text_encoder_3") as caught:
        backend.prepare(
            variant(scheme="nf4", components=["transformer", "text_encoder_3"]),
            str(tiny_pipeline),
            tiny_pipeline,
        )
    assert str(caught.value).startswith("variants.bnb.components: ")
    both = variant(scheme="int8", components=["transformer", "text_encoder_2"])
    assert backend.prepare(both, str(tiny_pipeline), tiny_pipeline).unavailable is None


# --- labels ----------------------------------------------------------------------------------


def test_labels_and_bits_per_weight() -> None:
    backend = backend_for("bitsandbytes")
    nf4, fp4 = variant(scheme="nf4"), variant(scheme="fp4")
    dq = variant(scheme="nf4", double_quant=True)
    int8 = variant(scheme="int8")
    assert backend.label(nf4) == "bitsandbytes NF4"
    assert backend.label(fp4) == "bitsandbytes FP4"
    assert backend.label(dq) == "bitsandbytes NF4 double-quant"
    assert backend.label(int8) == "bitsandbytes 8-bit"
    assert backend.quantized_components(int8) == ("transformer",)
    # Nominal bits agree with the exact bytes of a large tensor (tables amortised away).
    n = 3072 * 12288
    for v, dq_flag in ((nf4, False), (dq, True)):
        nominal = backend.bits_per_weight(v)
        assert nominal is not None
        assert 8 * four_bit_bytes(n, dq_flag) / n == pytest.approx(nominal, rel=1e-4)
    assert backend.bits_per_weight(int8) is None  # its row scale depends on the row length


# --- bytes by hand ---------------------------------------------------------------------------


def test_four_bit_bytes_by_hand() -> None:
    # 3072 x 3072 (a FLUX attention projection): 4718592 packed bytes, 147456 blocks of 64.
    n = 3072 * 3072
    blocks = n // BLOCKSIZE_4BIT
    assert four_bit_bytes(n, double_quant=False) == n // 2 + 4 * blocks + 16 * 4
    nested = math.ceil(blocks / 256)  # 576 fp32 absmax of the absmax
    assert four_bit_bytes(n, double_quant=True) == n // 2 + blocks + 4 + 4 * nested + 1024 + 64
    # An odd count: one padding nibble, one partial block.
    assert four_bit_bytes(65, double_quant=False) == 33 + 4 * 2 + 64


def test_int8_bytes_by_hand() -> None:
    assert int8_bytes((3072, 64)) == 3072 * 64 + 4 * 3072
    assert int8_bytes((10, 3, 7)) == 210 + 4 * 30


def test_diffusers_models_convert_every_linear(tiny_pipeline: Path) -> None:
    """diffusers' rule: every nn.Linear outside `_keep_in_fp32_modules` (FLUX has none), so
    proj_out and the norms' modulation Linears are converted too."""
    from bench.families.sizing import folder_base

    transformer = folder_base(tiny_pipeline).modules["transformer"]
    linears = {f"{n}.weight" for n, m in transformer.named_modules()
               if isinstance(m, torch.nn.Linear)}  # fmt: skip
    assert converted_weights(transformer) == frozenset(linears)
    assert "proj_out.weight" in linears


def test_transformers_models_keep_their_skips(tiny_pipeline: Path) -> None:
    """transformers' rule: T5's `_keep_in_fp32_modules` (`wo`) stays unconverted."""
    from bench.families.sizing import folder_base

    t5 = folder_base(tiny_pipeline).modules["text_encoder_2"]
    linears = {f"{n}.weight" for n, m in t5.named_modules() if isinstance(m, torch.nn.Linear)}
    kept = {name for name in linears if name.endswith(".wo.weight")}
    assert kept  # the tiny T5 has them, so the rule is exercised
    assert converted_weights(t5) == frozenset(linears - kept)


# --- loading here ----------------------------------------------------------------------------


def generate(pipe: Any, seed: int) -> np.ndarray:
    return pipe(
        "a futuristic city at sunset",
        height=64,
        width=64,
        num_inference_steps=2,
        max_sequence_length=16,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    ).images[0]


@pytest.mark.slow
def test_transformer_quantization_is_the_libraries_verdict_here(tiny_pipeline: Path) -> None:
    """Without a GPU, diffusers' refusal propagates unchanged; with one, the layers are 4-bit."""
    from bench.backends import load_pipeline

    nf4 = variant(scheme="nf4", dtype="float32")
    refusal = diffusers_refusal()
    if refusal is not None:
        with pytest.raises(type(refusal)) as caught:
            load_pipeline(str(tiny_pipeline), nf4)
        assert str(caught.value) == str(refusal)
    else:
        import bitsandbytes as bnb

        pipe = load_pipeline(str(tiny_pipeline), nf4)
        assert any(isinstance(m, bnb.nn.Linear4bit) for m in pipe.transformer.modules())


@pytest.mark.slow
@pytest.mark.parametrize(
    "fields",
    [
        {"scheme": "nf4"},
        {"scheme": "fp4", "compute_dtype": "bfloat16"},
        {"scheme": "nf4", "double_quant": True},
        {"scheme": "int8"},
    ],
    ids=["nf4", "fp4", "nf4-dq", "int8"],
)
def test_sizing_is_exact_against_loaded_text_encoders(
    tiny_pipeline: Path, fields: dict[str, Any]
) -> None:
    """transformers quantizes the text encoders wherever it runs (bitsandbytes' CPU kernels
    here): the bytes it keeps, quantization state included, are the predicted ones."""
    from bench.backends import load_pipeline
    from bench.families.sizing import folder_base
    from bench.models.loading import component_weights

    spec = variant(dtype="float32", components=TEXT_ENCODERS, **fields).model_dump(mode="json")
    loaded = component_weights(load_pipeline(str(tiny_pipeline), parse_variant(spec)))
    sized = backend_for("bitsandbytes").size_variant(folder_base(tiny_pipeline), spec, None)
    for name, weights in loaded.items():
        component = sized.pipe.components[name]
        assert (component.bytes, component.parameters) == (
            weights["bytes"],
            weights["parameters"],
        ), name
    full = backend_for("full").size_variant(folder_base(tiny_pipeline), {"dtype": "float32"}, None)
    for name in TEXT_ENCODERS:  # and smaller than unquantized
        assert loaded[name]["bytes"] < full.pipe.components[name].bytes


def as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float().clamp(0, 1)


@pytest.mark.slow
def test_quantized_text_encoders_change_images_slightly(tiny_pipeline: Path) -> None:
    from bench.backends import load_pipeline
    from bench.backends.full import FullVariant
    from bench.metrics.fidelity import psnr

    full = load_pipeline(str(tiny_pipeline), FullVariant(name="f", kind="full", dtype="float32"))
    nf4 = load_pipeline(
        str(tiny_pipeline), variant(scheme="nf4", dtype="float32", components=TEXT_ENCODERS)
    )
    reference = as_tensor(generate(full, seed=7))
    quantized = psnr(as_tensor(generate(nf4, seed=7)), reference)
    other_seed = psnr(as_tensor(generate(full, seed=8)), reference)
    assert not quantized.identical and quantized.value is not None
    assert other_seed.value is not None
    assert quantized.value > other_seed.value  # closer than another seed's image
