"""The families registry: look-ups by name, by pipeline class and by GGUF architecture."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.errors import UserInputError
from bench.families import (
    DEFAULT_FAMILY,
    FAMILIES,
    UnknownFamily,
    available,
    family_for_architecture,
    family_for_pipeline,
    get_family,
)
from bench.families.base import UnknownPreset


def test_default_is_flux_and_listed_first() -> None:
    assert DEFAULT_FAMILY == "flux" == available()[0]
    assert get_family() is get_family("flux") is FAMILIES["flux"]
    assert get_family(get_family("flux")) is FAMILIES["flux"]


def test_unknown_family_is_a_user_error_naming_the_known_ones() -> None:
    with pytest.raises(UnknownFamily, match=r"'sdxl'.*known: flux") as caught:
        get_family("sdxl")
    assert isinstance(caught.value, UserInputError)


def test_unknown_preset_names_the_family_presets() -> None:
    with pytest.raises(UnknownPreset, match=r"'huge'.*tiny, flux-dev"):
        get_family("flux").preset("huge")


def test_lookups_by_pipeline_class_and_gguf_architecture() -> None:
    for family in FAMILIES.values():
        assert family_for_pipeline(family.pipeline_class) is family
        assert family_for_architecture(family.gguf.architecture) is family
    assert family_for_pipeline("NoSuchPipeline") is None
    assert family_for_architecture("llama") is None


def test_looking_up_a_family_imports_no_model_libraries() -> None:
    """The config and the CLI look families up by name; that must stay cheap. (The GGUF tensor
    names a family carries are bench.gguf's, imported with it, as the layers have it.)"""
    code = (
        "import sys; import bench.families as f; f.get_family('flux').preset('tiny'); "
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_family_names_the_real_model_bench_size_knows_it_as() -> None:
    """The report's words for a family's real model and `bench size --model`'s label agree."""
    from bench.families import FAMILIES
    from bench.sizing.sources import BUILTIN_MODELS

    labels = {(family, preset): label for family, preset, label in BUILTIN_MODELS.values()}
    for family in FAMILIES.values():
        assert family.real_model, family.name
        assert labels[(family.name, family.real_preset)] == family.real_model
