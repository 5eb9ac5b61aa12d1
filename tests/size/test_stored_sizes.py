"""The stored sizes of the built-in models (bench/data/component_sizes.json) are what their meta
builds size now (that sizing from them imports no torch: tests/test_cli_startup.py)."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from bench.families.sizing import sizes_record, spec_key, stored_sizes
from bench.sizing.regenerate import model_variants, render
from bench.sizing.sources import BUILTIN_MODELS, STORED_SIZES, builtin_base, builtin_variants


def _stored_text() -> str:
    return resources.files("bench").joinpath(STORED_SIZES).read_text(encoding="utf-8")


def _plain(value: object) -> object:
    """As JSON holds it (tuples as lists)."""
    return json.loads(json.dumps(value))


def test_the_file_is_what_regenerate_writes_and_lists_every_builtin_model() -> None:
    text = _stored_text()
    data = json.loads(text)
    assert render(data) == text
    assert list(data["models"]) == list(BUILTIN_MODELS)


@pytest.mark.parametrize("name", list(BUILTIN_MODELS))
def test_stored_sizes_equal_a_meta_build(name: str) -> None:
    """Every stored variant is what `Backend.size_variant` makes of the meta modules now:
    regenerate (python -m bench.sizing.regenerate) when a family, a backend's layout or the
    component measure changes."""
    base, variants = model_variants(name)
    stored = json.loads(_stored_text())["models"][name]
    built = _plain(sizes_record(base, variants))
    assert built["components"] == stored["components"]
    assert built == stored


def test_a_stored_record_reads_back_to_the_same_record() -> None:
    record = json.loads(_stored_text())["models"]["flux-dev"]
    sizes = stored_sizes(record)
    base = builtin_base("flux-dev", stored=False)
    assert _plain(sizes_record(base, sizes.variants)) == record
    assert sizes.components == tuple(record["components"])


def test_a_builtin_query_uses_the_stored_variants_and_any_other_spec_builds() -> None:
    base = builtin_base("flux-dev")
    assert base.stored is not None
    variants = builtin_variants(base, ["q4_k_s", "bitsandbytes:nf4"])
    keys = [{"kind": "full"}, {"kind": "gguf", "quant": "Q4_K_S"}]
    for variant, spec in zip(variants, keys, strict=False):
        assert variant is base.stored.variants[spec_key(spec)]
    assert "modules" not in vars(base)  # nothing built
    built = builtin_variants(base, ["I8"])[1]  # a type the table leaves out: built on meta
    assert "modules" in vars(base)
    assert built.pipe.components["transformer"].weights_format == "GGUF I8 (from type layouts)"
