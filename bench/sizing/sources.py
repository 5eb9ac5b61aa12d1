"""Which pipelines to size: a built-in architecture, a diffusers folder, or a run's variants.

Building meta models costs seconds per pipeline (torch, diffusers, transformers), so each base
is built once, on first use, and every variant of it (full precision, each GGUF file or quant
type) reuses the modules. A built-in model's variants that `bench size --model` can ask for
are stored as their meta build sizes them (bench/data/component_sizes.json, written by
`python -m bench.sizing.regenerate`; tests/size/test_stored_sizes.py rebuilds it and compares),
so sizing one imports no torch; any other spec builds the modules.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from bench.backends import BACKENDS, backend_for
from bench.errors import ArgumentError, UserInputError
from bench.families import FAMILIES, get_family
from bench.families.sizing import (
    Base,
    StoredSizes,
    Variant,
    folder_base,
    meta_modules_from_spec,
    spec_key,
    stored_sizes,
)
from bench.families.synthetic import ensure_synthetic_pipeline
from bench.sizing.components import file_quant_type_of

#: `--model` names: (family, preset with the real architecture, label in tables)
BUILTIN_MODELS = {
    "flux-dev": ("flux", "flux-dev", "FLUX.1-dev"),
    "qwen-image": ("qwen_image", "qwen-image", "Qwen-Image"),
    "sd3.5-large": ("sd3", "sd3.5-large", "Stable Diffusion 3.5 Large"),
    "wan2.1-t2v-14b": ("wan", "wan2.1-t2v-14b", "Wan2.1-T2V-14B"),
    "wan2.1-t2v-1.3b": ("wan", "wan2.1-t2v-1.3b", "Wan2.1-T2V-1.3B"),
    "wan2.2-ti2v-5b": ("wan", "wan2.2-ti2v-5b", "Wan2.2-TI2V-5B"),
}


#: Where the stored sizes of the built-in models are, inside the package
STORED_SIZES = "data/component_sizes.json"


def builtin_base(name: str, *, stored: bool = True) -> Base:
    """A published architecture sized from its family's spec (no weights, no folder); with
    `stored`, its variants from the stored table where it has them."""
    if name not in BUILTIN_MODELS:
        raise ArgumentError(
            "model", f"{name!r}: expected one of {', '.join(BUILTIN_MODELS)} or a diffusers folder"
        )
    family_name, preset, label = BUILTIN_MODELS[name]
    family = get_family(family_name)
    spec = family.preset(preset)
    return Base(
        label,
        family.pipeline_class,
        spec.dtype,
        build=lambda: meta_modules_from_spec(spec, family.name),
        stored=_stored(name) if stored else None,
    )


@cache
def _stored_records() -> dict[str, Any]:
    """The stored table's records by model, read once per process."""
    text = resources.files("bench").joinpath(STORED_SIZES).read_text(encoding="utf-8")
    return json.loads(text)["models"]


@cache
def _stored(name: str) -> StoredSizes | None:
    """One model's stored variants: a query turns only its own model's record into variants,
    not all six (a `bench size` query is start-up time)."""
    record = _stored_records().get(name)
    return None if record is None else stored_sizes(record)


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


def check_quants(quants: list[str] | None) -> None:
    """Each entry of `quants` a GGUF type or a backend's preset (ArgumentError naming `quant`
    otherwise), checked from names alone: before any meta model is built."""
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
                f"{entry!r}: {kind} has no preset {scheme!r} (its presets use: {', '.join(known)})",
            )


def builtin_variants(base: Base, quants: list[str] | None = None) -> list[Variant]:
    """Full precision and what `quants` names, sized; by default every backend's presets.

    An entry of `quants` is a GGUF type ("Q4_K") or a backend and one of its preset schemes
    ("torchao:int8wo", "bitsandbytes:nf4", "layerwise"); UserInputError for anything else.
    """
    return [sized(base, spec) for spec in size_specs(base, quants)]


def size_specs(base: Base, quants: list[str] | None = None) -> list[dict[str, Any]]:
    """The specs `builtin_variants` sizes (each a backend's `size_variant` spec)."""
    specs: list[dict[str, Any]] = [{"kind": "full"}]
    if not quants:
        for backend in BACKENDS.values():
            if backend.quantized:
                specs += _presets_for(base, backend.size_presets())
        return specs
    for entry in quants:
        kind, _, scheme = entry.partition(":")
        backend = BACKENDS.get(kind)
        if backend is None or not backend.quantized:
            # the GGUF backend's own spec: `gguf_variant` reads a type only through .upper()
            specs.append({"kind": "gguf", "quant": entry.upper()})
            continue
        presets = [s for s in backend.size_presets() if not scheme or scheme in s.values()]
        if not presets:
            known = sorted({str(v) for s in backend.size_presets() for v in s.values()})
            raise ArgumentError(
                "quant",
                f"{entry!r}: {kind} has no preset {scheme!r} (its presets use: {', '.join(known)})",
            )
        specs += _presets_for(base, presets)
    return specs


def sized(base: Base, spec: dict[str, Any]) -> Variant:
    """The variant `spec` describes: stored for a built-in model, else sized on its modules."""
    stored = base.stored.variants.get(spec_key(spec)) if base.stored is not None else None
    return stored or backend_for(spec).size_variant(base, spec, None)


def _presets_for(base: Base, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A backend's presets with only the components this base has (FLUX's presets name T5,
    ``text_encoder_2``, which other families lack); a preset left with none is dropped."""
    names = base.component_names()
    out = []
    for spec in specs:
        if "components" in spec:
            kept = [c for c in spec["components"] if c in names]
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
    spec = cell.get("variant_spec") or {}
    return backend_for(spec).size_variant(base, spec, cell)
