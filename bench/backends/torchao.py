"""torchao weight-only int8, float8 and int4, through diffusers' `TorchAoConfig`.

Loaded as diffusers documents it: `DiffusionPipeline.from_pretrained(base, torch_dtype=dtype,
quantization_config=PipelineQuantizationConfig(quant_mapping={component: TorchAoConfig(
Int8WeightOnlyConfig())}))`, with diffusers' `TorchAoConfig` for diffusers models and
transformers' own for the text encoders (bench/backends/pipeline_quant.py says why a mapping).
`TorchAoConfig` takes torchao config objects only: the string shortcuts ("int8wo") were
removed before diffusers 0.42, whose `post_init` raises TypeError for anything that is not an
`AOBaseConfig`.

What each scheme stores per quantized `nn.Linear` weight of shape (N, K) (torchao 0.18's tensor
subclasses, counted by bench.models.loading.component_weights through `__tensor_flatten__`):

- int8wo, `Int8Tensor` per row: int8 data (N*K), a fp32 scale and an int8 zero point per row.
- float8wo, `Float8Tensor` per row: float8_e4m3fn data (N*K), a fp32 scale per row.
- int4wo, `Int4Tensor` (plain packing): two weights per byte (N*K/2), a scale and a zero point
  per group of `group_size` weights of a row, both in the weight's dtype. A Linear whose K is
  not a multiple of `group_size` is left unquantized by torchao itself (it logs and skips).
  torchao 0.18's `Int4WeightOnlyConfig` packs `Int4PackingFormat.PLAIN` by default, whose
  `Int4Tensor.from_hp` quantizes with mslk's kernels on every device: without the `mslk`
  module (the `mslk-cuda` distribution) it raises `ImportError: Requires mslk >= 1.0.0`.
  The cell checks for it before loading (`runtime_modules`) and records `MissingPackages`
  naming it, instead of a half-run load. int8wo and float8wo use mslk only when it is there.

Which weights: diffusers quantizes the weight of every `nn.Linear` outside the model class's
`_keep_in_fp32_modules`; transformers every `nn.Linear` outside `get_keys_to_not_convert` and
`_keep_in_fp32_modules` (T5's `wo`), matched against the parameter name. Biases, norms,
convolutions and embeddings stay at `dtype`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from bench.backends import pipeline_quant
from bench.backends.pipeline_quant import ComponentQuantBackend, Components, ConvertedLayout
from bench.config_fields import Dtype, VariantConfig

Scheme = Literal["int8wo", "float8wo", "int4wo"]
#: group sizes torchao's Int4WeightOnlyConfig documents
INT4_GROUP_SIZES = (32, 64, 128, 256)
DEFAULT_INT4_GROUP_SIZE = 128


class TorchAoVariant(VariantConfig):
    """torchao weight-only quantization of the listed components; the rest load at `dtype`.

    `group_size` applies to int4wo only (default 128): set for another scheme it is an error
    naming the key.
    """

    kind: Literal["torchao"]
    scheme: Scheme
    group_size: Literal[32, 64, 128, 256] | None = Field(
        default=None, description="int4wo only: weights per scale and zero point (default 128)"
    )
    dtype: Dtype = "bfloat16"
    components: Components = Field(
        default_factory=lambda: ["transformer"],
        description="pipeline components to quantize (one TorchAoConfig each)",
    )

    @model_validator(mode="before")
    @classmethod
    def _group_size_for_int4(cls, data: Any) -> Any:
        """int4wo records its effective group size, so a manifest says what ran."""
        int4 = isinstance(data, dict) and data.get("scheme") == "int4wo"
        if int4 and data.get("group_size") is None:
            data = {**data, "group_size": DEFAULT_INT4_GROUP_SIZE}
        return data

    @field_validator("group_size")
    @classmethod
    def _group_size_only_for_int4(cls, value: int | None, info: ValidationInfo) -> int | None:
        scheme = info.data.get("scheme")
        if value is not None and scheme != "int4wo":
            raise ValueError(f"group_size applies only to scheme int4wo, not to scheme {scheme}")
        return value


def torchao_config(variant: TorchAoVariant) -> Any:
    """The torchao config object of the scheme (a fresh one per component)."""
    from torchao.quantization import (
        Float8WeightOnlyConfig,
        Int4WeightOnlyConfig,
        Int8WeightOnlyConfig,
    )

    if variant.scheme == "int8wo":
        return Int8WeightOnlyConfig()
    if variant.scheme == "float8wo":
        return Float8WeightOnlyConfig()
    return Int4WeightOnlyConfig(group_size=variant.group_size or DEFAULT_INT4_GROUP_SIZE)


def _diffusers_config(variant: TorchAoVariant) -> Any:
    from diffusers import TorchAoConfig

    return TorchAoConfig(torchao_config(variant))


def _transformers_config(variant: TorchAoVariant) -> Any:
    from transformers import TorchAoConfig

    return TorchAoConfig(torchao_config(variant))


def pipeline_quantization_config(variant: TorchAoVariant, libraries: dict[str, str]) -> Any:
    return pipeline_quant.quantization_config(
        variant, libraries, _diffusers_config, _transformers_config
    )


def is_torchao_tensor(tensor: Any) -> bool:
    from torchao.utils import TorchAOBaseTensor

    return isinstance(tensor, TorchAOBaseTensor)


# ---------------------------------------------------------------------------------------------
# Bytes stored


def stored_bytes(scheme: str, shape: tuple[int, ...], dtype_bytes: int, group_size: int) -> int:
    """Bytes torchao keeps for one quantized Linear weight of `shape` (N, K)."""
    n, k = shape
    if scheme == "int8wo":
        return n * k + n * (4 + 1)  # int8 data, fp32 scale and int8 zero point per row
    if scheme == "float8wo":
        return n * k + n * 4  # float8 data, fp32 scale per row
    groups = n * (k // group_size)
    return n * k // 2 + 2 * groups * dtype_bytes  # packed pairs, scale and zero point per group


def converted_weights(module: Any, scheme: str, group_size: int) -> frozenset[str]:
    """Qualified names of the weights torchao quantizes in this (meta) module, by the rule of
    the library that loads it, and torchao's own skip of int4 rows `group_size` does not divide."""
    import torch

    kept = pipeline_quant.kept_rule(
        module, lambda param, skip: any(key + "." in param or key == param for key in skip)
    )
    out: set[str] = set()
    for name, child in module.named_modules():
        if not name or not isinstance(child, torch.nn.Linear):
            continue
        param = f"{name}.weight"
        if kept(param):
            continue
        if scheme == "int4wo" and child.in_features % group_size != 0:
            continue
        out.add(param)
    return frozenset(out)


_FORMATS = {
    "int8wo": "int8 + fp32 scale and int8 zero point per row",
    "float8wo": "float8_e4m3fn + fp32 scale per row",
}


@dataclass(frozen=True)
class TorchAoLayout(ConvertedLayout):
    """The torchao layout of one component.

    Scratch: weight-only schemes widen the weight to the activations' dtype for the matmul
    (int8: `qdata.to(dtype)`, float8: `dequantize()`), one weight at the compute dtype.
    """

    scheme: str
    group_size: int

    def converted_bytes(self, tensor: Any, compute_bytes: int) -> tuple[int, int]:
        shape = tuple(tensor.shape)
        nbytes = stored_bytes(self.scheme, shape, compute_bytes, self.group_size)
        return nbytes, tensor.numel() * compute_bytes

    def tensor_format(self, full_name: str) -> str:
        if self.scheme == "int4wo":
            return f"int4 pairs + scale and zero point per {self.group_size}"
        return _FORMATS[self.scheme]


def layout_for(module: Any, variant: TorchAoVariant) -> TorchAoLayout:
    group = variant.group_size or DEFAULT_INT4_GROUP_SIZE
    return TorchAoLayout(
        label=TorchAoBackend().label(variant),
        scheme=variant.scheme,
        group_size=group,
        converted=converted_weights(module, variant.scheme, group),
    )


# ---------------------------------------------------------------------------------------------
# The backend

_SCHEME_WORDS = {
    "int8wo": "int8 weight-only",
    "float8wo": "float8 weight-only",
    "int4wo": "int4 weight-only",
}


class TorchAoBackend(ComponentQuantBackend):
    kind: ClassVar[str] = "torchao"
    config_model = TorchAoVariant
    packages: ClassVar[tuple[str, ...]] = ("torchao",)
    summary: ClassVar[str] = (
        "torchao weight-only int8/float8/int4: DiffusionPipeline.from_pretrained(quantization_"
        "config=PipelineQuantizationConfig(quant_mapping={c: TorchAoConfig(Int8WeightOnlyConfig()"
        " | Float8WeightOnlyConfig() | Int4WeightOnlyConfig(group_size))}))"
    )

    size_name: ClassVar[str] = "torchao"

    quantization_config = staticmethod(pipeline_quantization_config)
    is_quantized = staticmethod(is_torchao_tensor)
    layout = staticmethod(layout_for)

    def runtime_modules(self, variant: TorchAoVariant) -> dict[str, str]:
        """int4wo also needs mslk, on every device (see the module docstring)."""
        modules = super().runtime_modules(variant)
        if variant.scheme == "int4wo":
            modules["mslk"] = "mslk-cuda"
        return modules

    def scheme(self, variant: TorchAoVariant) -> str:
        words = _SCHEME_WORDS[variant.scheme]
        if variant.scheme == "int4wo":
            return f"{words} g{variant.group_size}"
        return words

    def label(self, variant: TorchAoVariant) -> str:
        suffix = f"-g{variant.group_size}" if variant.scheme == "int4wo" else ""
        return f"torchao {variant.scheme}{suffix}"

    def bits_per_weight(self, variant: TorchAoVariant) -> float:
        """Data bits plus the per-group scale and zero point (int4, at a 16-bit `dtype`; fp32
        doubles them). int8/float8 keep one scale per row, whose share depends on the row
        length (40 or 32 bits per row): the nominal figure leaves it out."""
        if variant.scheme == "int4wo":
            scale_bits = 16 if variant.dtype != "float32" else 32
            return 4 + 2 * scale_bits / (variant.group_size or DEFAULT_INT4_GROUP_SIZE)
        return 8.0

    def size_presets(self) -> list[dict[str, Any]]:
        """The HF blog's torchao row (transformer and T5), and the other two schemes."""
        both = ["transformer", "text_encoder_2"]
        return [
            {"kind": self.kind, "scheme": "int8wo", "components": both},
            {"kind": self.kind, "scheme": "float8wo", "components": both},
            {"kind": self.kind, "scheme": "int4wo", "group_size": 128, "components": both},
        ]
