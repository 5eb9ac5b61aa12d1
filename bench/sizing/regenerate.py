"""Write the stored sizes of the built-in models (bench/data/component_sizes.json).

`bench size --model <built-in>` reads a model's variants from that table instead of building
its meta modules (torch, diffusers and transformers: seconds). This builds them, sizes every
variant `bench size --model` can ask for (full precision, every backend's presets, every GGUF
type the recipe can make) and writes what the table holds. Run it after a change to a family's
architecture, a backend's layout or the sizing formulas of the components:

    python -m bench.sizing.regenerate

tests/size/test_stored_sizes.py rebuilds the table and fails while the file differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T

from bench.backends import BACKENDS
from bench.errors import UserInputError
from bench.families.sizing import PUBLISHED_GGUF_BY_MODEL, Variant, sizes_record, spec_key
from bench.gguf.qtypes import supported_quant_types
from bench.sizing.sources import BUILTIN_MODELS, STORED_SIZES, builtin_base, size_specs

#: ggml type names that are block-quantized weights (not F64 or the integer types)
_QUANTIZED = ("Q", "IQ", "TQ", "MXFP", "NVFP")
TABLE = Path(__file__).resolve().parents[1] / STORED_SIZES


def gguf_type_names() -> list[str]:
    """The GGUF types stored: the converter's file types, the published files' types, every
    block-quantized ggml type and F32, and the K types with the `_S` suffix the community's
    file names carry. Any other name `--quant` takes (I8, F64_S, ...) builds the modules."""
    pure = [t.name for t in T if t in GGML_QUANT_SIZES and t.name.startswith(_QUANTIZED)]
    published = [q for table in PUBLISHED_GGUF_BY_MODEL.values() for q in table]
    mixes = [f"{n}_S" for n in pure if n.endswith("_K")]
    return list(dict.fromkeys([*supported_quant_types(), *published, "F32", *pure, *mixes]))


def model_variants(name: str) -> tuple[Any, dict[str, Variant]]:
    """Every variant of a built-in model `bench size --model` can ask for, sized on its meta
    modules, by spec key. A GGUF type the recipe cannot make is left out (asking for it
    builds the modules and reports the same error)."""
    base = builtin_base(name, stored=False)
    specs = size_specs(base)
    specs += [{"kind": "gguf", "quant": q} for q in gguf_type_names()]
    out: dict[str, Variant] = {}
    for spec in specs:
        key = spec_key(spec)
        if key in out:
            continue
        try:
            out[key] = BACKENDS[spec["kind"]].size_variant(base, spec, None)
        except UserInputError:
            continue
    return base, out


def table() -> dict[str, Any]:
    """The stored table as the meta builds make it now."""
    models = {}
    for name in BUILTIN_MODELS:
        base, variants = model_variants(name)
        models[name] = sizes_record(base, variants)
    return {
        "about": "bench size's built-in models, sized on meta modules: python -m "
        "bench.sizing.regenerate writes it (bench/sizing/regenerate.py)",
        "models": models,
    }


def render(data: dict[str, Any]) -> str:
    """The file's text: a record (a variant, a component's sizes in one variant, a config)
    per line, so a change reads as a small diff."""
    return _render(json.loads(json.dumps(data)), "") + "\n"  # tuples as the lists JSON has


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list):
        return 0
    return 1 + max((_depth(v) for v in value), default=0)


def _render(value: Any, indent: str) -> str:
    records = isinstance(value, list) and any(isinstance(v, dict | list) for v in value)
    if _depth(value) <= 2 and not records:
        return json.dumps(value)
    inner = indent + " "
    if isinstance(value, list):  # a record per line
        items = [inner + (json.dumps(v) if _depth(v) <= 3 else _render(v, inner)) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    items = [
        f"{inner}{json.dumps(k)}: {json.dumps(v) if k == 'config' else _render(v, inner)}"
        for k, v in value.items()
    ]
    return "{\n" + ",\n".join(items) + "\n" + indent + "}"


def main() -> None:
    TABLE.write_text(render(table()), encoding="utf-8")
    print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
