"""What the pipeline-level backends (torchao, quanto) share: one quantization config per component.

diffusers quantizes a whole pipeline with `DiffusionPipeline.from_pretrained(...,
quantization_config=PipelineQuantizationConfig(...))`. Its shorthand, `quant_backend=` plus
`quant_kwargs=`, builds both libraries' config classes from the same keyword arguments and
refuses when their signatures differ: diffusers' `TorchAoConfig(quant_type, modules_to_not_convert)`
is not transformers' (which adds `include_input_output_embeddings`, `untie_embedding_weights`),
and diffusers' `QuantoConfig(weights_dtype=)` is transformers' `QuantoConfig(weights=)`. So these
backends pass `quant_mapping={component: config}`, diffusers' own config for a diffusers model
(the transformer, the VAE) and transformers' own for a transformers model (the CLIP and T5 text
encoders), which is what diffusers' documentation does for mixed pipelines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field

from bench.backends.base import Backend, Prepared
from bench.config_base import unique
from bench.config_fields import ComponentName
from bench.errors import ConfigError, UserInputError
from bench.families.sizing import Variant, pipeline_components

#: The pipeline components a variant converts (each backend's `components` key).
Components = Annotated[
    list[ComponentName], Field(min_length=1, max_length=16), AfterValidator(unique)
]


def component_libraries(base: str, revision: str | None = None) -> dict[str, str]:
    """Library of every model component the pipeline names (model_index.json): a diffusers
    `ModelMixin` or a transformers `PreTrainedModel`, not a scheduler or a tokenizer."""
    import importlib

    from diffusers import ModelMixin
    from transformers import PreTrainedModel

    from bench.models.loading import model_index  # deferred: loads torch

    bases = {"diffusers": ModelMixin, "transformers": PreTrainedModel}
    out: dict[str, str] = {}
    for name, entry in model_index(base, revision).items():
        if name.startswith("_") or not isinstance(entry, list) or len(entry) != 2:
            continue
        library, class_name = entry
        if library not in bases:
            continue
        cls = getattr(importlib.import_module(library), str(class_name), None)
        if isinstance(cls, type) and issubclass(cls, bases[library]):
            out[name] = str(library)
    return out


def check_components(
    variant: str, components: Sequence[str], libraries: dict[str, str], where: str
) -> None:
    """Every listed component must be a model of the pipeline; ValueError naming the key.

    diffusers silently leaves a mapping entry that names no component unused, and a cell
    labelled with a quantization it did not have would be a false figure."""
    missing = [c for c in components if c not in libraries]
    if missing:
        raise ValueError(
            f"variants.{variant}.components: {missing} are not model components of {where} "
            f"(its models: {', '.join(libraries) or 'none'})"
        )


def quantization_config(
    variant: Any,
    libraries: dict[str, str],
    diffusers_config: Callable[[Any], Any],
    transformers_config: Callable[[Any], Any],
) -> Any:
    """`PipelineQuantizationConfig(quant_mapping=...)` for the variant's components, each
    component's config made by the factory of its library (`diffusers_config(variant)` or
    `transformers_config(variant)`)."""
    from diffusers import PipelineQuantizationConfig

    check_components(variant.name, variant.components, libraries, "this pipeline")
    configs = {"diffusers": diffusers_config, "transformers": transformers_config}
    return PipelineQuantizationConfig(
        quant_mapping={c: configs[libraries[c]](variant) for c in variant.components}
    )


def check_quantized(
    pipe: Any, variant: str, components: Sequence[str], quantized: Callable[[Any], bool]
) -> None:
    """Each listed component must hold at least one quantized tensor after loading."""
    for name in components:
        module = pipe.components.get(name)
        tensors = list(module.parameters()) if module is not None else []
        if not any(quantized(t) for t in tensors):
            raise ValueError(
                f"variant {variant}: component {name!r} was loaded without quantized weights"
            )


def base_libraries(base: str) -> dict[str, str] | None:
    """Component libraries of a local base (None for a hub id: checked when a cell loads)."""
    if not (Path(base) / "model_index.json").is_file():
        return None
    return component_libraries(base)


def is_transformers_model(module: Any) -> bool:
    from transformers import PreTrainedModel

    return isinstance(module, PreTrainedModel)


def transformers_skip_patterns(model: Any) -> list[str]:
    """Module patterns transformers' quantizers leave alone when a config names none:
    `get_keys_to_not_convert` (tied and output layers, the last parameter's module) plus the
    model's `_keep_in_fp32_modules` (T5's `wo`), exactly as their
    `_process_model_before_weight_loading` computes them."""
    from transformers.quantizers.base import HfQuantizer

    keep = list(getattr(model, "_keep_in_fp32_modules", None) or [])
    return list(HfQuantizer.get_modules_to_not_convert(model, None, keep))


def diffusers_skip_modules(model: Any) -> list[str]:
    """What diffusers' quantizers leave alone when a config names none: the model class's
    `_keep_in_fp32_modules` (None for FLUX's transformer and VAE)."""
    return list(getattr(type(model), "_keep_in_fp32_modules", None) or [])


def kept_rule(
    module: Any, diffusers_keeps: Callable[[str, list[str]], bool]
) -> Callable[[str], bool]:
    """Whether the library that loads `module` leaves a layer (or weight) name unconverted:
    transformers' `should_convert_module` against `transformers_skip_patterns` for a
    transformers model; for a diffusers one, `diffusers_keeps(name, diffusers_skip_modules)`,
    the matching rule of the backend's own diffusers quantizer."""
    if is_transformers_model(module):
        from transformers.quantizers.quantizers_utils import should_convert_module

        patterns = transformers_skip_patterns(module)
        return lambda name: not should_convert_module(name, patterns)
    skip = diffusers_skip_modules(module)
    return lambda name: diffusers_keeps(name, skip)


@dataclass(frozen=True)
class ConvertedLayout:
    """How a backend stores one component (a bench.sizing.components.TensorLayout) when it
    converts a known set of tensors (`converted`, qualified names) and loads the rest at the
    component's dtype: a subclass gives a converted tensor's bytes (`converted_bytes`) and its
    format in words. `loaded_bytes` stays None: the bytes come from this recipe, not a file."""

    label: str
    converted: frozenset[str]
    loaded_bytes: int | None = field(default=None, kw_only=True)

    def stored(
        self, full_name: str, owner: Any, tensor: Any, compute_bytes: int
    ) -> tuple[int, int] | None:
        if full_name not in self.converted:
            return None
        return self.converted_bytes(tensor, compute_bytes)

    def converted_bytes(self, tensor: Any, compute_bytes: int) -> tuple[int, int]:
        """(bytes stored, scratch bytes while the tensor is in use) of one converted tensor."""
        raise NotImplementedError

    def tensor_format(self, full_name: str) -> str:
        raise NotImplementedError


def check_local_base(variant: Any, base: str) -> dict[str, str] | None:
    """`prepare` of a component-quantizing backend: on a local base, every listed component
    must be one of its models, so a misspelt component stops the run at once (ConfigError).
    Returns the base's component libraries (None for a hub id, checked at load instead)."""

    libraries = base_libraries(base)
    if libraries is not None:
        try:
            check_components(variant.name, variant.components, libraries, Path(base).name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    return libraries


def sized_variant(
    backend: Any,
    base: Any,
    spec: dict[str, Any],
    cell: dict[str, Any] | None,
    layouts_for: Callable[[Any], dict[str, Any]],
    default_name: str,
    dtype_of: Callable[[Any], str] = lambda variant: str(variant.dtype),
) -> Any:
    """`size_variant` of a component-quantizing backend: its spec validated, the components it
    names checked against the base, each sized by the layout `layouts_for(variant)` gives, the
    rest at `dtype_of(variant)` (bench.families.sizing.pipeline_components)."""

    variant = backend.config_model.model_validate(
        {"name": spec.get("name") or default_name, **spec, "kind": backend.kind}
    )
    missing = [c for c in variant.components if c not in base.modules]
    if missing:
        raise UserInputError(
            f"variant {variant.name}: components {missing} are not in {base.label} "
            f"(it has {', '.join(base.modules)})"
        )
    dtype = dtype_of(variant)
    pipe = pipeline_components(
        base.modules,
        base.pipeline_class,
        base.label,
        dtype,
        compute_dtype=dtype,
        layouts=layouts_for(variant),
    )
    name = cell["variant"] if cell is not None else spec.get("name") or backend.label(variant)
    return Variant(name, pipe, backend.kind, backend.scheme(variant))


class ComponentQuantBackend(Backend):
    """A backend that quantizes the pipeline components a variant lists, through diffusers'
    `PipelineQuantizationConfig` (bitsandbytes, torchao, quanto): preparing, loading and sizing
    are the same for each; a subclass says how a component is configured, what a quantized
    tensor of it looks like, and how it stores a module's weights."""

    #: the variant name `bench size` gives a preset without one
    size_name: ClassVar[str]

    def quantization_config(self, variant: Any, libraries: dict[str, str]) -> Any:
        """diffusers' `PipelineQuantizationConfig` for the variant's components."""
        raise NotImplementedError

    def is_quantized(self, tensor: Any) -> bool:
        """Whether a loaded parameter is one of this backend's quantized tensors."""
        raise NotImplementedError

    def layout(self, module: Any, variant: Any) -> Any:
        """How this backend stores `module`'s weights, for `bench size`."""
        raise NotImplementedError

    def prepare(self, variant: Any, base: str, config_dir: Path) -> Prepared:
        """A local base is checked here, so a misspelt component stops the run at once."""
        check_local_base(variant, base)
        return Prepared()

    def load_pipeline(
        self, base: str, variant: Any, artifacts: dict[str, str], revision: str | None
    ) -> Any:
        from bench.models.loading import from_pretrained  # deferred: loads torch

        libraries = component_libraries(base, revision)
        check_components(variant.name, variant.components, libraries, base)
        pipe = from_pretrained(
            base,
            variant.dtype,
            revision,
            quantization_config=self.quantization_config(variant, libraries),
        )
        check_quantized(pipe, variant.name, variant.components, self.is_quantized)
        return pipe

    def size_variant(self, base: Any, spec: dict[str, Any], cell: dict[str, Any] | None) -> Any:
        return sized_variant(
            self,
            base,
            spec,
            cell,
            lambda v: {c: self.layout(base.modules[c], v) for c in v.components},
            self.size_name,
        )
