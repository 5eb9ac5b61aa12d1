"""FP8 storage with bf16/fp32 compute: diffusers' layerwise casting.

The pipeline is loaded with `DiffusionPipeline.from_pretrained(base, torch_dtype=
compute_dtype)`, then each listed component gets `enable_layerwise_casting(storage_dtype=...,
compute_dtype=...)`, as diffusers documents it: the weights of every Linear, Conv and Embedding
layer are kept in float8 and cast to the compute dtype for the duration of that layer's
forward. The model's default skip patterns stay in force (diffusers' DEFAULT_SKIP_MODULES_PATTERN
— pos_embed, patch_embed, norm, ^proj_in$, ^proj_out$ — plus the class's
`_skip_layerwise_casting_patterns` and `_keep_in_fp32_modules`); those layers stay at the
compute dtype. `enable_layerwise_casting` is a method of diffusers models only: a listed
transformers component (a text encoder) has none, and that is the cell's recorded failure.

Sizing (`LayerwiseLayout`) mirrors that rule on the meta module: one byte per weight for the
cast layers, the compute dtype for the rest; the scratch of a cast layer is its upcast copy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from bench.backends import pipeline_quant
from bench.backends.base import Backend, Prepared
from bench.backends.pipeline_quant import Components, ConvertedLayout
from bench.config_fields import VariantConfig
from bench.errors import ConfigError, UserInputError

StorageDtype = Literal["float8_e4m3fn", "float8_e5m2"]
ComputeDtype = Literal["bfloat16", "float32"]


class LayerwiseVariant(VariantConfig):
    """Weights stored as FP8 and upcast per layer; everything else at `compute_dtype`."""

    kind: Literal["layerwise"]
    storage_dtype: StorageDtype = "float8_e4m3fn"
    compute_dtype: ComputeDtype = "bfloat16"
    components: Components = Field(
        default_factory=lambda: ["transformer"],
        description="diffusers model components to cast (enable_layerwise_casting)",
    )

    @property
    def pipeline_dtype(self) -> str:
        return self.compute_dtype


def _torch_storage_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def skip_patterns(module: Any) -> tuple[str, ...]:
    """The patterns `enable_layerwise_casting` uses when none are given (ModelMixin's rule)."""
    from diffusers.hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN

    patterns = tuple(DEFAULT_SKIP_MODULES_PATTERN)
    patterns += tuple(getattr(module, "_keep_in_fp32_modules", None) or ())
    patterns += tuple(getattr(module, "_skip_layerwise_casting_patterns", None) or ())
    return tuple(sorted(set(patterns)))


def cast_weights(module: Any) -> frozenset[str]:
    """Qualified names of the tensors layerwise casting stores in FP8 in this (meta) module.

    diffusers' `_apply_layerwise_casting` walks the children from the root, stops at a module
    whose qualified name matches a skip pattern (re.search), and hooks a supported layer
    (Linear, Conv*, Embedding), whose own floating tensors `module.to(dtype)` then casts.
    """
    from diffusers.hooks._common import _GO_LC_SUPPORTED_PYTORCH_LAYERS

    patterns = skip_patterns(module)
    out: set[str] = set()

    def walk(mod: Any, prefix: str) -> None:
        if any(re.search(p, prefix) for p in patterns):
            return
        if isinstance(mod, _GO_LC_SUPPORTED_PYTORCH_LAYERS):
            for items in (mod.named_parameters(recurse=False), mod.named_buffers(recurse=False)):
                for name, tensor in items:
                    if tensor is not None and tensor.is_floating_point():
                        out.add(f"{prefix}.{name}" if prefix else name)
            return
        for name, child in mod.named_children():
            walk(child, f"{prefix}.{name}" if prefix else name)

    walk(module, "")
    return frozenset(out)


@dataclass(frozen=True)
class LayerwiseLayout(ConvertedLayout):
    """FP8 bytes for the cast tensors (`converted`); the rest None."""

    storage_dtype: str

    def converted_bytes(self, tensor: Any, compute_bytes: int) -> tuple[int, int]:
        numel = tensor.numel()
        return numel, numel * compute_bytes  # 1 byte per weight; its upcast copy while in use

    def tensor_format(self, full_name: str) -> str:
        return self.storage_dtype


_SHORT = {
    "float8_e4m3fn": "FP8 e4m3",
    "float8_e5m2": "FP8 e5m2",
    "bfloat16": "bf16",
    "float32": "fp32",
}


class LayerwiseBackend(Backend):
    kind: ClassVar[str] = "layerwise"
    config_model = LayerwiseVariant
    summary: ClassVar[str] = (
        "FP8 storage, upcast per layer: <component>.enable_layerwise_casting("
        "storage_dtype, compute_dtype) after DiffusionPipeline.from_pretrained"
    )

    def scheme(self, variant: LayerwiseVariant) -> str:
        return f"{_SHORT[variant.storage_dtype]} ({_SHORT[variant.compute_dtype]} compute)"

    def label(self, variant: LayerwiseVariant) -> str:
        return f"layerwise {self.scheme(variant)}"

    def bits_per_weight(self, variant: LayerwiseVariant) -> float:
        return 8.0

    def prepare(self, variant: LayerwiseVariant, base: str, config_dir: Path) -> Prepared:
        """A local base is checked here: every listed component must be a diffusers model
        (`enable_layerwise_casting` is a ModelMixin method)."""

        libraries = pipeline_quant.base_libraries(base)
        if libraries is None:
            return Prepared()
        try:
            pipeline_quant.check_components(
                variant.name, variant.components, libraries, Path(base).name
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        foreign = [c for c in variant.components if libraries[c] != "diffusers"]
        if foreign:
            raise ConfigError(
                f"variants.{variant.name}.components: {foreign} are "
                f"{', '.join(sorted({libraries[c] for c in foreign}))} models, which have no "
                "enable_layerwise_casting (a method of diffusers models)"
            )
        return Prepared()

    def load_pipeline(
        self, base: str, variant: LayerwiseVariant, artifacts: dict[str, str], revision: str | None
    ) -> Any:
        from bench.models.loading import from_pretrained, torch_dtype  # deferred: loads torch

        pipe = from_pretrained(base, variant.compute_dtype, revision)
        components = pipe.components
        for name in variant.components:
            module = components.get(name)
            if module is None:
                raise ValueError(
                    f"variant {variant.name}: components lists {name!r}, which this pipeline "
                    f"does not have (it has {', '.join(k for k, v in components.items() if v)})"
                )
            enable = getattr(module, "enable_layerwise_casting", None)
            if enable is None:
                raise TypeError(
                    f"variant {variant.name}: component {name!r} is a "
                    f"{type(module).__module__.split('.')[0]} {type(module).__name__}, which has "
                    "no enable_layerwise_casting (a method of diffusers models)"
                )
            enable(
                storage_dtype=_torch_storage_dtype(variant.storage_dtype),
                compute_dtype=torch_dtype(variant.compute_dtype),
            )
        return pipe

    def size_variant(self, base: Any, spec: dict[str, Any], cell: dict[str, Any] | None) -> Any:
        def layouts(variant: LayerwiseVariant) -> dict[str, Any]:
            from diffusers import ModelMixin

            for c in variant.components:
                if not isinstance(base.modules[c], ModelMixin):
                    raise UserInputError(
                        f"variant {variant.name}: component {c!r} is a "
                        f"{type(base.modules[c]).__name__}, not a diffusers model: layerwise "
                        "casting (enable_layerwise_casting) does not apply to it"
                    )
            label = self.label(variant)
            return {
                c: LayerwiseLayout(label, cast_weights(base.modules[c]), variant.storage_dtype)
                for c in variant.components
            }

        return pipeline_quant.sized_variant(
            self, base, spec, cell, layouts, "layerwise", lambda v: str(v.compute_dtype)
        )

    def size_presets(self) -> list[dict[str, Any]]:
        """The HF blog's row: FP8 (e4m3) layerwise casting of the transformer, bf16 compute."""
        return [{"kind": self.kind, "storage_dtype": "float8_e4m3fn"}]
