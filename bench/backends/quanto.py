"""optimum-quanto int8, float8 and int4 weights, through diffusers' `QuantoConfig` (deprecated).

diffusers deprecated this backend: `QuantoConfig` and the quanto quantizer "will be removed in
version 1.0.0" (diffusers 0.42.1 says so in both docstrings and emits a FutureWarning from the
config, "`QuantoConfig` is deprecated and will be removed in version 1.0.0.", and another from
the quantizer when a model loads, "The Quanto quantizer is deprecated and will be removed in
version 1.0.0."). It is kept as a row because the HF blog's table has one; the warnings go to
the cell's log like every library warning.

Loaded as diffusers documents it: `DiffusionPipeline.from_pretrained(base, torch_dtype=dtype,
quantization_config=PipelineQuantizationConfig(quant_mapping={component: QuantoConfig(
weights_dtype="int8")}))`; a transformers text encoder gets transformers' own
`QuantoConfig(weights="int8")` (bench/backends/pipeline_quant.py says why a mapping).

Each converted `nn.Linear` becomes a quanto `QLinear` whose weight, for shape (N, K) at the
component's dtype (c bytes), stores (counted by bench.models.loading.component_weights through
`__tensor_flatten__`):

- int8 / float8 (`WeightQBytesTensor`): int8 or float8_e4m3fn data (N*K) and a scale per row
  at the weight's dtype (N*c).
- int4 (`WeightQBitsTensor`): groups of g weights per row, g = 128, lowered by 32 down to 32
  until it divides K (`QModuleMixin`); K <= 128 or no such g: one group per row. Two weights per
  byte, a scale and a shift per group at the weight's dtype. With bf16 weights and g = 128 the
  weight is repacked for the tinygemm kernel (`TinyGemmWeightQBitsTensor`, on the CPU and on
  CUDA sm80+): the same bytes, scale and shift interleaved.

Every `QLinear` also has two scalar buffers, `input_scale` and `output_scale`: at the weight's
dtype in a diffusers model, float32 in a transformers one (`buffer_dtype` says why). The size
layout charges them to the weight, so its byte totals are exact while its parameter count is two
per converted layer lower than the loaded model's.

Which layers: diffusers replaces every `nn.Linear` whose own name is not in the model class's
`_keep_in_fp32_modules`; transformers every `nn.Linear` outside `get_keys_to_not_convert` and
`_keep_in_fp32_modules` (T5's `wo`), matched against the module name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from bench.backends import pipeline_quant
from bench.backends.pipeline_quant import ComponentQuantBackend, Components, ConvertedLayout
from bench.config_fields import Dtype, VariantConfig
from bench.sizing.components import DTYPE_BYTES

Scheme = Literal["int8", "float8", "int4"]


class QuantoVariant(VariantConfig):
    """quanto weights of the listed components; everything else loads at `dtype`."""

    kind: Literal["quanto"]
    scheme: Scheme
    dtype: Dtype = "bfloat16"
    components: Components = Field(
        default_factory=lambda: ["transformer"],
        description="pipeline components to quantize (one QuantoConfig each)",
    )


def _diffusers_config(variant: QuantoVariant) -> Any:
    from diffusers import QuantoConfig

    return QuantoConfig(weights_dtype=variant.scheme)


def _transformers_config(variant: QuantoVariant) -> Any:
    from transformers import QuantoConfig

    return QuantoConfig(weights=variant.scheme)


def pipeline_quantization_config(variant: QuantoVariant, libraries: dict[str, str]) -> Any:
    return pipeline_quant.quantization_config(
        variant, libraries, _diffusers_config, _transformers_config
    )


def is_quanto_tensor(tensor: Any) -> bool:
    from optimum.quanto import QTensor

    return isinstance(tensor, QTensor)


# ---------------------------------------------------------------------------------------------
# Bytes stored

#: QLinear's `input_scale` and `output_scale` buffers: one scalar each
SCALAR_BUFFERS = 2


def int4_group_size(in_features: int) -> int | None:
    """quanto's group size for an int4 weight with this row length (QModuleMixin.__init__);
    None: one group per row."""
    group = 128
    if in_features > group:
        while in_features % group != 0 and group > 32:
            group -= 32
        if in_features % group == 0:
            return group
    return None


def uses_tinygemm(scheme: str, shape: tuple[int, ...], dtype: str) -> bool:
    """quanto repacks int4 for the tinygemm kernel at bf16 with groups of 128
    (`WeightQBitsTensor.create`: on the CPU, and on CUDA sm80+ with CUDA >= 12.1)."""
    return scheme == "int4" and dtype == "bfloat16" and int4_group_size(shape[1]) == 128


def stored_bytes(
    scheme: str, shape: tuple[int, ...], dtype: str, buffer_dtype: str | None = None
) -> int:
    """Bytes of one QLinear's weight of `shape` (N, K) at `dtype` and its two scalar buffers
    (at `buffer_dtype`, default `dtype`)."""

    n, k = shape
    c = DTYPE_BYTES[dtype]
    buffers = SCALAR_BUFFERS * DTYPE_BYTES[buffer_dtype or dtype]
    if scheme in ("int8", "float8"):
        return n * k + n * c + buffers
    group = int4_group_size(k)
    if group is None:  # (N, K) packed along the rows, a scale and a shift per row
        return (n + 1) // 2 * k + 2 * n * c + buffers
    rows = n * k // group
    if uses_tinygemm(scheme, shape, dtype):  # (N, K/2) bytes, scale and shift interleaved
        return n * k // 2 + 2 * rows * c + buffers
    # (N*K/g, g) packed along the rows, a scale and a shift per group
    return (rows + 1) // 2 * group + 2 * rows * c + buffers


def converted_modules(module: Any) -> frozenset[str]:
    """Names of the Linear layers quanto replaces in this (meta) module, by the rule of the
    library that loads it."""
    import torch

    kept = pipeline_quant.kept_rule(module, lambda name, skip: name.rsplit(".", 1)[-1] in skip)
    return frozenset(
        name
        for name, child in module.named_modules()
        if name and isinstance(child, torch.nn.Linear) and not kept(name)
    )


@dataclass(frozen=True)
class QuantoLayout(ConvertedLayout):
    """The quanto layout of one component: `converted` holds the weights of the layers it
    replaces.

    Scratch: quanto's weight-only matmul on the CPU (`qbytes_mm`) and its int4 fallback widen
    the weight to the activations' dtype, one weight at the compute dtype; the tinygemm int4
    kernel reads packed weights (no scratch).
    """

    scheme: str
    dtype: str  # the component's dtype: the weight's and its scales'
    buffer_dtype: str  # QLinear's scalar buffers': see `buffer_dtype`

    def converted_bytes(self, tensor: Any, compute_bytes: int) -> tuple[int, int]:
        shape = tuple(tensor.shape)
        nbytes = stored_bytes(self.scheme, shape, self.dtype, self.buffer_dtype)
        tinygemm = uses_tinygemm(self.scheme, shape, self.dtype)
        return nbytes, 0 if tinygemm else tensor.numel() * compute_bytes

    def tensor_format(self, full_name: str) -> str:
        if self.scheme == "int4":
            return "int4 pairs + scale and shift per group"
        return f"{self.scheme} + scale per row"


def buffer_dtype(module: Any, dtype: str) -> str:
    """dtype of QLinear's `input_scale`/`output_scale`: the weight's dtype when the layer is
    created (`QModuleMixin.__init__`). diffusers replaces the layers of a model already at the
    load dtype; transformers 5 replaces them while the model's weights are still float32 and
    then loads only the checkpoint's tensors at the load dtype, so these two buffers, absent
    from the checkpoint, stay float32 (measured: tests/backends/test_quanto.py)."""
    return "float32" if pipeline_quant.is_transformers_model(module) else dtype


def layout_for(module: Any, variant: QuantoVariant) -> QuantoLayout:
    return QuantoLayout(
        label=QuantoBackend().label(variant),
        scheme=variant.scheme,
        dtype=variant.dtype,
        buffer_dtype=buffer_dtype(module, variant.dtype),
        converted=frozenset(f"{name}.weight" for name in converted_modules(module)),
    )


# ---------------------------------------------------------------------------------------------
# The backend

_SCHEME_WORDS = {"int8": "INT8", "float8": "FP8", "int4": "INT4"}


class QuantoBackend(ComponentQuantBackend):
    kind: ClassVar[str] = "quanto"
    config_model = QuantoVariant
    packages: ClassVar[tuple[str, ...]] = ("optimum-quanto",)
    summary: ClassVar[str] = (
        "optimum-quanto int8/float8/int4 weights (deprecated by diffusers): DiffusionPipeline."
        "from_pretrained(quantization_config=PipelineQuantizationConfig(quant_mapping="
        "{c: QuantoConfig(weights_dtype=...)}))"
    )

    size_name: ClassVar[str] = "quanto"

    quantization_config = staticmethod(pipeline_quantization_config)
    is_quantized = staticmethod(is_quanto_tensor)
    layout = staticmethod(layout_for)

    def runtime_modules(self, variant: Any) -> dict[str, str]:
        return {"optimum.quanto": "optimum-quanto"}

    def scheme(self, variant: QuantoVariant) -> str:
        return _SCHEME_WORDS[variant.scheme]

    def label(self, variant: QuantoVariant) -> str:
        return f"quanto {variant.scheme}"

    def bits_per_weight(self, variant: QuantoVariant) -> float:
        """Data bits, plus for int4 a scale and a shift per 128 weights at a 16-bit `dtype`
        (fp32 doubles them). int8/float8's scale per row depends on the row length: left
        out of the nominal figure."""
        if variant.scheme == "int4":
            scale_bits = 16 if variant.dtype != "float32" else 32
            return 4 + 2 * scale_bits / 128
        return 8.0

    def size_presets(self) -> list[dict[str, Any]]:
        """The HF blog's quanto row (int8, transformer and T5), and the other two schemes."""
        both = ["transformer", "text_encoder_2"]
        return [
            {"kind": self.kind, "scheme": scheme, "components": both}
            for scheme in ("int8", "float8", "int4")
        ]
