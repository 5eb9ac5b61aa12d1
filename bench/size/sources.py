"""Which pipelines to size: a built-in architecture, a diffusers folder, or a run's variants.

Building meta models costs a second or two per pipeline (mostly imports), so each base is built
once and every variant of it (full precision, each GGUF file or quant type) reuses the modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import ArgumentError, UserInputError
from bench.size.components import (
    GGUFLayout,
    PipelineComponents,
    gguf_layout_from_file,
    gguf_layout_from_rules,
    meta_modules_from_folder,
    meta_modules_from_spec,
    pipeline_components,
)

#: Built-in architectures `--model` accepts, and the GGUF types shown for them by default: the
#: four the harness quantizes (and city96 publishes) in the community's _S form.
#: `--model` names: (family, preset with the real architecture, label in tables)
BUILTIN_MODELS = {
    "flux-dev": ("flux", "flux-dev", "FLUX.1-dev"),
    "qwen-image": ("qwen_image", "qwen-image", "Qwen-Image"),
    "sd3.5-large": ("sd3", "sd3.5-large", "Stable Diffusion 3.5 Large"),
    "wan2.1-t2v-14b": ("wan", "wan2.1-t2v-14b", "Wan2.1-T2V-14B"),
    "wan2.1-t2v-1.3b": ("wan", "wan2.1-t2v-1.3b", "Wan2.1-T2V-1.3B"),
    "wan2.2-ti2v-5b": ("wan", "wan2.2-ti2v-5b", "Wan2.2-TI2V-5B"),
}
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
class Base:
    """Meta modules of one base pipeline and how to name it."""

    label: str
    modules: dict[str, Any]
    pipeline_class: str
    dtype: str  # the dtype its full-precision variant loads in by default


@dataclass(frozen=True)
class Variant:
    """One thing a user can load: full precision or a GGUF transformer, sized."""

    name: str
    pipe: PipelineComponents
    kind: str  # "full" or "gguf"
    quant: str | None = None
    published_file_gb: float | None = None


def builtin_base(name: str) -> Base:
    """A published architecture sized from its family's spec (no weights, no folder)."""
    from bench.families import get_family

    if name not in BUILTIN_MODELS:
        raise ArgumentError(
            "model", f"{name!r}: expected one of {', '.join(BUILTIN_MODELS)} or a diffusers folder"
        )
    family_name, preset, label = BUILTIN_MODELS[name]
    family = get_family(family_name)
    spec = family.preset(preset)
    modules = meta_modules_from_spec(spec, family.name)
    return Base(label, modules, family.pipeline_class, spec.dtype)


def folder_base(folder: Path) -> Base:
    modules, pipeline_class = meta_modules_from_folder(folder)
    transformer = folder / "transformer" / "config.json"
    dtype = "bfloat16"
    if transformer.is_file():
        import json

        dtype = json.loads(transformer.read_text()).get("torch_dtype") or dtype
    if dtype not in ("float32", "bfloat16", "float16"):
        dtype = "bfloat16"
    return Base(folder.name, modules, pipeline_class, dtype)


def resolve_base(model: str) -> Base:
    if model in BUILTIN_MODELS:
        return builtin_base(model)
    path = Path(model).expanduser()
    if path.is_dir():
        return folder_base(path)
    raise ArgumentError(
        "model",
        f"{model!r}: not a built-in model ({', '.join(BUILTIN_MODELS)}) and not a diffusers folder",
    )


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


def check_quants(quants: list[str] | None) -> None:
    """Each entry of `quants` a GGUF type or a backend's preset (ArgumentError naming `quant`
    otherwise), checked from names alone: before any meta model is built."""
    from bench.backends import BACKENDS
    from bench.size.components import file_quant_type_of

    for entry in quants or []:
        kind, _, scheme = entry.partition(":")
        backend = BACKENDS.get(kind)
        if backend is None or not backend.quantized:
            file_quant_type_of(entry)
            continue
        presets = backend.size_presets()
        if scheme and not any(scheme in s.values() for s in presets):
            known = sorted({str(v) for s in presets for v in s.values()})
            raise ArgumentError(
                "quant",
                f"{entry!r}: {kind} has no preset {scheme!r} (its presets use: "
                f"{', '.join(known)})",
            )


def builtin_variants(base: Base, quants: list[str] | None = None) -> list[Variant]:
    """Full precision and what `quants` names, sized; by default every backend's presets.

    An entry of `quants` is a GGUF type ("Q4_K") or a backend and one of its preset schemes
    ("torchao:int8wo", "bitsandbytes:nf4", "layerwise"); UserInputError for anything else.
    """
    from bench.backends import BACKENDS

    out = [full_variant(base)]
    if not quants:
        for backend in BACKENDS.values():
            if not backend.quantized:
                continue
            for spec in _presets_for(base, backend.size_presets()):
                out.append(backend.size_variant(base, spec, None))
        return out
    for entry in quants:
        kind, _, scheme = entry.partition(":")
        backend = BACKENDS.get(kind)
        if backend is None or not backend.quantized:
            out.append(gguf_variant(base, quant=entry, compute_dtype=base.dtype))
            continue
        specs = [s for s in backend.size_presets() if not scheme or scheme in s.values()]
        if not specs:
            known = sorted({str(v) for s in backend.size_presets() for v in s.values()})
            raise ArgumentError(
                "quant",
                f"{entry!r}: {kind} has no preset {scheme!r} (its presets use: {', '.join(known)})",
            )
        out += [backend.size_variant(base, spec, None) for spec in _presets_for(base, specs)]
    return out


def _presets_for(base: Base, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A backend's presets with only the components this base has (FLUX's presets name T5,
    ``text_encoder_2``, which other families lack); a preset left with none is dropped."""
    out = []
    for spec in specs:
        if "components" in spec:
            kept = [c for c in spec["components"] if c in base.modules]
            if not kept:
                continue
            spec = {**spec, "components": kept}
        out.append(spec)
    return out


def run_base(manifest: dict[str, Any]) -> Base:
    """The base of a run folder: its pipeline folder if present here, else its preset spec."""
    base = manifest.get("base_model") or {}
    resolved = base.get("resolved_path")
    if resolved and Path(resolved).is_dir():
        return folder_base(Path(resolved))
    preset = base.get("preset")
    if base.get("synthetic") and preset:
        from bench.families import FAMILIES
        from bench.models.synthetic import ensure_synthetic_pipeline

        model = (manifest.get("config") or {}).get("model") or {}
        family = str(model.get("family") or "flux")
        for name, (f, p, _label) in BUILTIN_MODELS.items():
            if (f, p) == (family, preset):
                return builtin_base(name)
        # tiny: vocab sizes come from its tokenizers, so build the folder
        if family in FAMILIES and preset in FAMILIES[family].presets:
            seed = int(model.get("seed", 0))
            return folder_base(ensure_synthetic_pipeline(preset, seed, family))
    raise UserInputError(
        f"run {manifest.get('run_id')}: its base pipeline {resolved!r} is not on this machine"
    )


def cell_variant(base: Base, cell: dict[str, Any]) -> Variant:
    """The variant a run cell loaded, sized as the runner would load it (by its backend)."""
    from bench.backends import backend_for

    spec = cell.get("variant_spec") or {}
    return backend_for(spec).size_variant(base, spec, cell)
