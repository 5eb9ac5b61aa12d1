"""A family's pipeline sized for `bench size`, the family named as a config names it, or found
from the pipeline's class or its denoiser's (FLUX when none matches: the harness's first
family, and what every folder was before families existed).

bench/size/components.py measures given the family's name, denoiser and GGUF tensor names; this
is the registry's side of it, what the size sources, the backends' `size_variant` and the tests
call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.families import Family, family_for_denoiser, family_for_pipeline, get_family
from bench.gguf.names import TensorNames
from bench.size.components import (
    GGUFLayout,
    PipelineComponents,
    TensorLayout,
    file_layout,
    measure_pipeline,
    recipe_layout,
    recipe_types,
)


def meta_modules_from_spec(spec: Any, family: str | Family | None = None) -> dict[str, Any]:
    """Meta-device modules of a family's synthetic spec (default FLUX), built exactly as the
    synthetic builder does (vocabulary sizes the spec does not name: the local tokenizers')."""
    return get_family(family).meta_components(spec)


def pipeline_components(
    modules: dict[str, Any],
    pipeline_class: str,
    label: str,
    dtype: str,
    compute_dtype: str | None = None,
    layout: TensorLayout | None = None,
    layouts: dict[str, TensorLayout] | None = None,
    family: str | Family | None = None,
) -> PipelineComponents:
    """Size every component: those in `layouts` (`layout` alone: the family's denoiser) as
    their backend stores them, at `compute_dtype` for what it leaves alone; the rest at
    `dtype`. No family named: the one that builds `pipeline_class`."""
    fam = get_family(family) if family else family_for_pipeline(pipeline_class) or get_family()
    layouts = dict(layouts or {})
    if layout is not None:
        layouts[fam.denoiser] = layout
    return measure_pipeline(
        modules,
        pipeline_class,
        label,
        dtype,
        family=fam.name,
        denoiser=fam.denoiser,
        compute_dtype=compute_dtype,
        layouts=layouts,
    )


def _names_of(transformer: Any) -> TensorNames:
    """The GGUF names of the family whose denoiser class the transformer is."""
    return (family_for_denoiser(type(transformer).__name__) or get_family()).gguf


def rule_types(transformer: Any, quant: str, source_dtype: str = "BF16") -> dict[str, str]:
    """ggml type of every parameter under the community recipe of the transformer's family."""
    return recipe_types(transformer, quant, _names_of(transformer), source_dtype)


def gguf_layout_from_rules(transformer: Any, quant: str, source_dtype: str = "BF16") -> GGUFLayout:
    """The transformer as a GGUF file of type `quant` would store it, by its family's recipe."""
    return recipe_layout(transformer, quant, _names_of(transformer), source_dtype)


def gguf_layout_from_file(path: Path, transformer: Any, compute_dtype: str) -> GGUFLayout:
    """The transformer as the GGUF file at `path` stores it: exact loaded bytes from the header
    (bench.size.components.file_layout)."""
    return file_layout(path, transformer, compute_dtype, _names_of(transformer))
