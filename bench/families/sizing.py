"""A family's pipeline sized for `bench size`, the family named as a config names it, or found
from the pipeline's class or its denoiser's (FLUX when none matches: the harness's first
family, and what every folder was before families existed); and the variants `bench size` and
the backends' `size_variant` size on one base's meta modules (full precision, a GGUF file).

bench/sizing/components.py measures given the family's name, denoiser and GGUF tensor names; this
is the registry's side of it, what the size sources, the backends' `size_variant` and the tests
call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from bench.families import family_for_denoiser, family_for_pipeline, get_family
from bench.families.base import Family
from bench.gguf.names import TensorNames
from bench.sizing.components import (
    Component,
    GGUFLayout,
    PipelineComponents,
    TensorLayout,
    file_layout,
    measure_pipeline,
    meta_modules_from_folder,
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
    (bench.sizing.components.file_layout)."""
    return file_layout(path, transformer, compute_dtype, _names_of(transformer))


#: The GGUF types shown by default: the four the harness quantizes (and city96 publishes) in
#: the community's _S form.
DEFAULT_GGUF_TYPES = ("Q8_0", "Q6_K", "Q5_K_S", "Q4_K_S")

#: city96/FLUX.1-dev-gguf file sizes in GB (published-figures.md), shown beside predictions.
PUBLISHED_GGUF_GB = {
    "F16": 23.8,
    "Q8_0": 12.7,
    "Q6_K": 9.86,
    "Q5_1": 9.01,
    "Q5_K_S": 8.29,
    "Q5_0": 8.27,
    "Q4_1": 7.53,
    "Q4_K_S": 6.81,
    "Q4_0": 6.79,
    "Q3_K_S": 5.23,
    "Q2_K": 4.03,
}
#: city96/Wan2.1-T2V-14B-gguf file sizes in GB (the repository's file list, docs/size.md "Wan
#: 2.1"). Made from Wan-AI's float32 weights: the tensors outside the blocks stay F32 there
#: (0.47 GB more than our bf16-sourced layout) and lcpp.patch raises ffn.2 in the _S/_0 mixes.
PUBLISHED_WAN21_14B_GGUF_GB = {
    "F16": 29.1,
    "BF16": 29.1,
    "Q5_1": 11.5,
    "Q5_0": 10.8,
    "Q4_K_M": 10.1,
    "Q4_1": 9.73,
    "Q4_K_S": 9.22,
    "Q4_0": 9.03,
    "Q3_K_M": 7.65,
    "Q3_K_S": 6.99,
}
#: Published community file sizes shown beside the predictions, by the base's label.
PUBLISHED_GGUF_BY_MODEL = {
    "FLUX.1-dev": PUBLISHED_GGUF_GB,
    "Wan2.1-T2V-14B": PUBLISHED_WAN21_14B_GGUF_GB,
}


@dataclass(frozen=True)
class Variant:
    """One thing a user can load: full precision or a GGUF transformer, sized."""

    name: str
    pipe: PipelineComponents
    kind: str  # "full" or "gguf"
    quant: str | None = None
    published_file_gb: float | None = None


@dataclass(frozen=True)
class StoredSizes:
    """A built-in model's variants as its meta build sizes them, read from a stored table
    (bench/data/component_sizes.json): sizing them again needs no torch. `variants` is keyed
    by `spec_key` of the spec `Backend.size_variant` sizes."""

    components: tuple[str, ...]  # the base's model components, in the build's order
    variants: dict[str, Variant]


@dataclass(frozen=True)
class Base:
    """Meta modules of one base pipeline and how to name it.

    The modules are built on first use: a built-in model's `stored` variants need none, and
    building them costs seconds (torch, diffusers, transformers)."""

    label: str
    pipeline_class: str
    dtype: str  # the dtype its full-precision variant loads in by default
    build: Callable[[], dict[str, Any]] = field(repr=False, compare=False)
    stored: StoredSizes | None = field(default=None, repr=False, compare=False)

    @cached_property
    def modules(self) -> dict[str, Any]:
        return self.build()

    def component_names(self) -> tuple[str, ...]:
        """Its model components, from the stored table when it has one (no build)."""
        return self.stored.components if self.stored is not None else tuple(self.modules)


def spec_key(spec: dict[str, Any]) -> str:
    """The stored table's key of a sizing spec (`{"kind": "gguf", "quant": "Q8_0"}`)."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


#: Component fields that are the same in every variant of a base (its module's own)
_MODULE_FIELDS = ("name", "class_name", "config", "modules")
#: PipelineComponents fields that are the same in every variant of a base
_BASE_FIELDS = ("label", "offload_order", "family")


def sizes_record(base: Base, variants: dict[str, Variant]) -> dict[str, Any]:
    """`variants` (by spec key) of `base` as a JSON-ready record, each component's sizes
    stored once per distinct value (`stored_sizes` reads it back)."""
    first = next(iter(variants.values())).pipe
    components: dict[str, Any] = {
        name: {
            "class_name": c.class_name,
            "config": _stable(c.config),
            "modules": c.modules,
            "sized": [],
        }
        for name, c in first.components.items()
    }
    shared = {key: getattr(first, key) for key in _BASE_FIELDS}
    records: dict[str, Any] = {}
    for key, variant in variants.items():
        pipe = variant.pipe
        if {k: getattr(pipe, k) for k in _BASE_FIELDS} != shared or list(pipe.components) != list(
            components
        ):
            raise ValueError(f"{base.label} {key}: not the same pipeline as the others")
        refs = {}
        for name, c in pipe.components.items():
            sized = {f.name: getattr(c, f.name) for f in fields(c) if f.name not in _MODULE_FIELDS}
            pool = components[name]["sized"]
            if sized not in pool:
                pool.append(sized)
            refs[name] = pool.index(sized)
        records[key] = {
            "name": variant.name,
            "kind": variant.kind,
            "quant": variant.quant,
            "published_file_gb": variant.published_file_gb,
            "transformer_format": pipe.transformer_format,
            "components": refs,
        }
    return {
        **{k: list(v) if isinstance(v, tuple) else v for k, v in shared.items()},
        "components": components,
        "variants": records,
    }


def _stable(config: dict[str, Any]) -> dict[str, Any]:
    """The config with diffusers' `_use_default_values` sorted: it lists a set, in an order
    that changes from one process to the next."""
    defaults = config.get("_use_default_values")
    return config if defaults is None else {**config, "_use_default_values": sorted(defaults)}


def stored_sizes(record: dict[str, Any]) -> StoredSizes:
    """The variants a `sizes_record` holds, as the meta build made them."""
    modules = record["components"]
    variants = {}
    for key, v in record["variants"].items():
        components = {
            name: Component(
                name=name,
                class_name=modules[name]["class_name"],
                config=modules[name]["config"],
                modules=tuple(
                    (t, tuple(tuple(r) for r in ranges), i, o)
                    for t, ranges, i, o in modules[name]["modules"]
                ),
                **modules[name]["sized"][index],
            )
            for name, index in v["components"].items()
        }
        pipe = PipelineComponents(
            label=record["label"],
            components=components,
            offload_order=tuple(record["offload_order"]),
            transformer_format=v["transformer_format"],
            family=record["family"],
        )
        variants[key] = Variant(v["name"], pipe, v["kind"], v["quant"], v["published_file_gb"])
    return StoredSizes(tuple(modules), variants)


def folder_base(folder: Path) -> Base:
    modules, pipeline_class = meta_modules_from_folder(folder)
    transformer = folder / "transformer" / "config.json"
    dtype = "bfloat16"
    if transformer.is_file():
        dtype = json.loads(transformer.read_text()).get("torch_dtype") or dtype
    if dtype not in ("float32", "bfloat16", "float16"):
        dtype = "bfloat16"
    return Base(folder.name, pipeline_class, dtype, build=lambda: modules)


def full_variant(base: Base, dtype: str | None = None) -> Variant:
    dtype = dtype or base.dtype
    pipe = pipeline_components(base.modules, base.pipeline_class, base.label, dtype)
    return Variant(f"full-{dtype}", pipe, "full")


def gguf_variant(
    base: Base,
    quant: str | None = None,
    file: Path | None = None,
    compute_dtype: str = "bfloat16",
    dtype: str | None = None,
    name: str | None = None,
) -> Variant:
    """A GGUF variant from its file header (exact) or from a quant type's layout (predicted)."""
    transformer = base.modules["transformer"]
    layout: GGUFLayout
    if file is not None:
        layout = gguf_layout_from_file(file, transformer, compute_dtype)
    elif quant is not None:
        layout = gguf_layout_from_rules(transformer, quant)
    else:  # pragma: no cover - callers pass one of them
        raise ValueError("a GGUF variant needs a file or a quant type")
    pipe = pipeline_components(
        base.modules,
        base.pipeline_class,
        base.label,
        dtype or compute_dtype,
        compute_dtype=compute_dtype,
        layout=layout,
    )
    label = name or (quant.upper() if quant else file.stem if file else "gguf")
    published = PUBLISHED_GGUF_BY_MODEL.get(base.label, {}).get(layout.quant)
    return Variant(label, pipe, "gguf", layout.quant, published)
