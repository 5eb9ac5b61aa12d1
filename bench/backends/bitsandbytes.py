"""bitsandbytes NF4, FP4 and LLM.int8 through diffusers' pipeline-level quantization.

The pipeline is loaded as diffusers documents it:
`DiffusionPipeline.from_pretrained(base, torch_dtype=dtype, quantization_config=
PipelineQuantizationConfig(quant_backend="bitsandbytes_4bit" | "bitsandbytes_8bit",
quant_kwargs={...}, components_to_quantize=[...]))`. With `quant_backend`, diffusers builds its
own `BitsAndBytesConfig` for diffusers models (the transformer) and transformers' own
`BitsAndBytesConfig` for transformers models (the T5 and CLIP text encoders), so a listed text
encoder is quantized by transformers exactly as a user of transformers would get it.

diffusers' bitsandbytes quantizers refuse to run without a GPU (`validate_environment`:
"No GPU found. A GPU is needed for quantization."), while transformers' quantize on the CPU
with bitsandbytes' CPU kernels. A refusal is the cell's measurement, recorded with the
library's own message; nothing here works around it (docs/backends.md).

Sizing (`BnbLayout`) gives the bytes bitsandbytes stores per tensor, counted the way
bench.models.loading.component_weights counts a loaded model:

- 4-bit (NF4/FP4), blocks of 64 weights: ceil(n/2) packed bytes, fp32 absmax per block, the
  16-entry fp32 code table of the tensor's QuantState; with double quantization the absmax is
  8-bit (1 byte per block) plus a fp32 offset, a fp32 absmax per 256 blocks and the nested
  state's 256-entry fp32 code table.
- int8 (LLM.int8): one int8 per weight plus a fp32 scale per output row (`SCB`).

Which Linear layers are converted follows each library's own rule: diffusers converts every
`nn.Linear` outside the model's `_keep_in_fp32_modules`; transformers skips
`get_keys_to_not_convert` (tied and output layers) and `_keep_in_fp32_modules` (T5's `wo`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from bench.backends import pipeline_quant
from bench.backends.pipeline_quant import ComponentQuantBackend, Components, ConvertedLayout
from bench.config_fields import Dtype, VariantConfig
from bench.sizing.components import DTYPE_BYTES

Scheme = Literal["nf4", "fp4", "int8"]
FOUR_BIT = ("nf4", "fp4")

#: bitsandbytes' defaults that `Linear4bit` (and so diffusers and transformers) use.
BLOCKSIZE_4BIT = 64
NESTED_BLOCKSIZE = 256
CODE_4BIT_BYTES = 16 * 4  # get_4bit_type: a fresh 16-entry fp32 table per quantized tensor
CODE_NESTED_BYTES = 256 * 4  # quantize_blockwise copies the 256-entry dynamic map per tensor
OFFSET_BYTES = 4  # the fp32 mean subtracted from absmax before it is quantized


class BitsAndBytesVariant(VariantConfig):
    """bitsandbytes 4-bit (NF4, FP4) or 8-bit (LLM.int8) weights for the listed components.

    `double_quant` and `compute_dtype` (bnb_4bit_use_double_quant, bnb_4bit_compute_dtype)
    apply to the 4-bit schemes only: set for int8 they are an error naming the key. For 4-bit
    they default to false and to `dtype`, the dtype everything left unquantized loads in.
    """

    kind: Literal["bitsandbytes"]
    scheme: Scheme
    dtype: Dtype = "bfloat16"
    double_quant: bool | None = Field(
        default=None, description="4-bit only: bnb_4bit_use_double_quant (default false)"
    )
    compute_dtype: Dtype | None = Field(
        default=None, description="4-bit only: bnb_4bit_compute_dtype (default dtype)"
    )
    components: Components = Field(
        default_factory=lambda: ["transformer"],
        description="pipeline components to quantize (components_to_quantize)",
    )

    @model_validator(mode="before")
    @classmethod
    def _four_bit_defaults(cls, data: Any) -> Any:
        """Record the 4-bit settings' effective values, so a manifest says what ran."""
        if isinstance(data, dict) and data.get("scheme") in FOUR_BIT:
            data = dict(data)
            if data.get("double_quant") is None:
                data["double_quant"] = False
            if data.get("compute_dtype") is None:
                data["compute_dtype"] = data.get("dtype") or "bfloat16"
        return data

    @field_validator("double_quant", "compute_dtype")
    @classmethod
    def _four_bit_only(cls, value: Any, info: ValidationInfo) -> Any:
        scheme = info.data.get("scheme")
        if value is not None and scheme == "int8":
            raise ValueError("applies only to the 4-bit schemes (nf4, fp4), not to int8")
        return value


def quant_kwargs(variant: BitsAndBytesVariant) -> dict[str, Any]:
    """`BitsAndBytesConfig` keyword arguments, the same for diffusers' and transformers'."""
    from bench.models.loading import torch_dtype  # deferred: loads torch

    if variant.scheme == "int8":
        return {"load_in_8bit": True}
    return {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": variant.scheme,
        "bnb_4bit_compute_dtype": torch_dtype(variant.compute_dtype or variant.dtype),
        "bnb_4bit_use_double_quant": bool(variant.double_quant),
    }


def pipeline_quantization_config(variant: BitsAndBytesVariant) -> Any:
    from diffusers import PipelineQuantizationConfig

    return PipelineQuantizationConfig(
        quant_backend="bitsandbytes_8bit" if variant.scheme == "int8" else "bitsandbytes_4bit",
        quant_kwargs=quant_kwargs(variant),
        components_to_quantize=list(variant.components),
    )


# ---------------------------------------------------------------------------------------------
# Bytes stored


def four_bit_bytes(numel: int, double_quant: bool) -> int:
    """Bytes of one 4-bit weight as bitsandbytes keeps it (data plus QuantState tensors)."""
    blocks = math.ceil(numel / BLOCKSIZE_4BIT)
    packed = (numel + 1) // 2
    if not double_quant:
        return packed + 4 * blocks + CODE_4BIT_BYTES
    nested = math.ceil(blocks / NESTED_BLOCKSIZE)
    return packed + blocks + OFFSET_BYTES + 4 * nested + CODE_NESTED_BYTES + CODE_4BIT_BYTES


def int8_bytes(shape: tuple[int, ...]) -> int:
    """Bytes of one LLM.int8 weight: int8 values and a fp32 scale per row (`SCB`)."""
    numel = math.prod(shape)
    rows = numel // shape[-1] if shape else 1
    return numel + 4 * rows


def converted_weights(module: Any) -> frozenset[str]:
    """Qualified names of the weights bitsandbytes converts in this (meta) module, by the rule
    of the library that loads it (diffusers' or transformers' `replace_with_bnb_linear`)."""
    import torch

    if pipeline_quant.is_transformers_model(module):
        from transformers.pytorch_utils import Conv1D
        from transformers.quantizers.quantizers_utils import should_convert_module

        skip = pipeline_quant.transformers_skip_patterns(module)
        return frozenset(
            f"{name}.weight"
            for name, child in module.named_modules()
            if (type(child) is torch.nn.Linear or isinstance(child, Conv1D))
            and should_convert_module(name, skip)
        )
    # diffusers' _replace_with_bnb_linear: a Linear whose own name or qualified path is not
    # one of the modules kept out (the class's `_keep_in_fp32_modules`)
    keep = pipeline_quant.diffusers_skip_modules(module)
    return frozenset(
        f"{name}.weight"
        for name, child in module.named_modules()
        if name
        and isinstance(child, torch.nn.Linear)
        and name.rsplit(".", 1)[-1] not in keep
        and not any(key + "." in name or key == name for key in keep)
    )


@dataclass(frozen=True)
class BnbLayout(ConvertedLayout):
    """The bitsandbytes layout of one component.

    Scratch is what a forward pass unpacks at once: a 4-bit weight is dequantized to the
    compute dtype before its matmul; LLM.int8 multiplies int8 by int8 and unpacks no weight
    (only the outlier columns of a call, which depend on the activations: not counted).
    """

    scheme: str
    double_quant: bool
    compute_bytes: int  # of bnb_4bit_compute_dtype, which the 4-bit weights dequantize to

    def converted_bytes(self, tensor: Any, compute_bytes: int) -> tuple[int, int]:
        if self.scheme == "int8":
            return int8_bytes(tuple(tensor.shape)), 0
        numel = tensor.numel()
        return four_bit_bytes(numel, self.double_quant), numel * self.compute_bytes

    def tensor_format(self, full_name: str) -> str:
        if self.scheme == "int8":
            return "int8 + fp32 row scale"
        stats = "8-bit absmax (double quant)" if self.double_quant else "fp32 absmax"
        return f"{self.scheme.upper()} + {stats} per {BLOCKSIZE_4BIT}"


def layout_for(module: Any, variant: BitsAndBytesVariant) -> BnbLayout:
    backend = BitsAndBytesBackend()
    return BnbLayout(
        label=backend.label(variant),
        scheme=variant.scheme,
        double_quant=bool(variant.double_quant),
        compute_bytes=DTYPE_BYTES[variant.compute_dtype or variant.dtype],
        converted=converted_weights(module),
    )


# ---------------------------------------------------------------------------------------------
# The backend

_SCHEME_WORDS = {"nf4": "NF4", "fp4": "FP4", "int8": "8-bit"}


class BitsAndBytesBackend(ComponentQuantBackend):
    kind: ClassVar[str] = "bitsandbytes"
    config_model = BitsAndBytesVariant
    packages: ClassVar[tuple[str, ...]] = ("bitsandbytes",)
    summary: ClassVar[str] = (
        "bitsandbytes NF4/FP4/LLM.int8: DiffusionPipeline.from_pretrained(quantization_config="
        "PipelineQuantizationConfig(quant_backend='bitsandbytes_4bit'|'bitsandbytes_8bit'))"
    )

    size_name: ClassVar[str] = "bnb"

    def quantization_config(self, variant: Any, libraries: dict[str, str]) -> Any:
        return pipeline_quantization_config(variant)

    def is_quantized(self, tensor: Any) -> bool:
        return is_bnb_weight(tensor)

    def layout(self, module: Any, variant: Any) -> Any:
        return layout_for(module, variant)

    def scheme(self, variant: BitsAndBytesVariant) -> str:
        words = _SCHEME_WORDS[variant.scheme]
        return f"{words} double-quant" if variant.double_quant else words

    def label(self, variant: BitsAndBytesVariant) -> str:
        return f"bitsandbytes {self.scheme(variant)}"

    def bits_per_weight(self, variant: BitsAndBytesVariant) -> float | None:
        """4-bit: 4 plus the absmax per block (the per-tensor tables left out). int8's fp32 row
        scale depends on the row length, so it has no fixed figure."""
        if variant.scheme == "int8":
            return None
        if variant.double_quant:
            return 4 + 8 / BLOCKSIZE_4BIT + 32 / (BLOCKSIZE_4BIT * NESTED_BLOCKSIZE)
        return 4 + 32 / BLOCKSIZE_4BIT

    def size_presets(self) -> list[dict[str, Any]]:
        """The HF blog's bitsandbytes rows: transformer and T5 quantized."""
        both = ["transformer", "text_encoder_2"]
        return [
            {"kind": self.kind, "scheme": "nf4", "components": both},
            {"kind": self.kind, "scheme": "int8", "components": both},
        ]


def is_bnb_weight(tensor: Any) -> bool:
    """A weight bitsandbytes quantized: a 4-bit Params4bit with its state, or int8 values."""
    import bitsandbytes as bnb
    import torch

    if isinstance(tensor, bnb.nn.Params4bit):
        return tensor.quant_state is not None
    return isinstance(tensor, bnb.nn.Int8Params) and tensor.dtype == torch.int8
