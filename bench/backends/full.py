"""The unquantized pipeline in one dtype: the reference every other variant is paired with.

`DiffusionPipeline.from_pretrained(base, torch_dtype=...)`, nothing else. A `noise_floor`
variant generates under a harmless numeric change (bench.metrics.noise_floor), giving a second
full-precision image set that shows how far "identical" moves on this stack.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from bench.backends.base import Backend
from bench.config_fields import Dtype, VariantConfig
from bench.families.sizing import Variant, full_variant


class FullVariant(VariantConfig):
    """The unquantized pipeline in one dtype."""

    kind: Literal["full"]
    dtype: Dtype = "bfloat16"
    noise_floor: Literal["sdpa-math", "no-tf32", "no-reduced-precision"] | None = Field(
        default=None,
        description="generate under this harmless numeric change: a second full-precision "
        "image set that shows how far 'identical' moves on this stack (the noise floor); "
        "no-tf32 bears on float32 only, no-reduced-precision on bf16 and fp16 too",
    )


_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


class FullBackend(Backend):
    kind: ClassVar[str] = "full"
    config_model = FullVariant
    quantized: ClassVar[bool] = False
    summary: ClassVar[str] = "no quantization: DiffusionPipeline.from_pretrained(torch_dtype=...)"

    def scheme(self, variant: FullVariant) -> str:
        return _SHORT[variant.dtype]

    def label(self, variant: FullVariant) -> str:
        return "full"

    def bits_per_weight(self, variant: FullVariant) -> float:
        return {"float32": 32.0, "bfloat16": 16.0, "float16": 16.0}[variant.dtype]

    def load_pipeline(
        self, base: str, variant: FullVariant, artifacts: dict[str, str], revision: str | None
    ) -> Any:
        from bench.models.loading import from_pretrained  # deferred: loads torch

        return from_pretrained(base, variant.dtype, revision)

    def size_variant(self, base: Any, spec: dict[str, Any], cell: dict[str, Any] | None) -> Any:
        sized = full_variant(base, spec.get("dtype") or base.dtype)
        if cell is None:
            return sized
        return Variant(cell["variant"], sized.pipe, self.kind)

    def size_presets(self) -> list[dict[str, Any]]:
        return [{"kind": "full"}]
