"""The model-families axis: every kind of diffusion pipeline the harness can build, run and size.

`FAMILIES` maps a family's name (the config's ``model.family``) to its entry
(bench/families/base.py says what one owns). The engines below (the synthetic builder, the GGUF
converter, the size terms) take a family as an argument; the look-ups by name live here and
beside it (synthetic.py, gguf.py, sizing.py), so adding a family is one module plus its entry
below.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.errors import UserInputError
from bench.families.base import Family
from bench.families.flux import FLUX
from bench.families.qwen_image import QWEN_IMAGE_FAMILY
from bench.families.sd3 import SD3
from bench.families.wan import WAN

#: The family of configs, files and calls that name none: FLUX was the only one before.
DEFAULT_FAMILY = "flux"

FAMILIES: dict[str, Family] = {
    family.name: family for family in (FLUX, SD3, QWEN_IMAGE_FAMILY, WAN)
}


class UnknownFamily(UserInputError):
    """A family name that is not registered; the message lists the registered ones."""


def available() -> list[str]:
    """Registered family names, in registry order (the first is the default)."""
    return list(FAMILIES)


def get_family(name: str | Family | None = None) -> Family:
    """The family of a name (None: the default); a Family is returned as it is."""
    if isinstance(name, Family):
        return name
    key = DEFAULT_FAMILY if name is None else name
    try:
        return FAMILIES[key]
    except KeyError:
        raise UnknownFamily(
            f"model family {key!r}: not a known family (known: {', '.join(FAMILIES)})"
        ) from None


def family_for_pipeline(pipeline_class: str) -> Family | None:
    """The family whose pipeline class a diffusers folder names (model_index.json's
    ``_class_name``), or None when no registered family builds it."""
    return next((f for f in FAMILIES.values() if f.pipeline_class == pipeline_class), None)


def family_for_denoiser(class_name: str) -> Family | None:
    """The family whose denoiser is this diffusers class (a transformer's config.json
    ``_class_name``, or a loaded module's type name), or None."""
    return next((f for f in FAMILIES.values() if f.denoiser_class == class_name), None)


def family_for_architecture(architecture: str) -> Family | None:
    """The family whose GGUF files declare this ``general.architecture``, or None."""
    return next((f for f in FAMILIES.values() if f.gguf.architecture == architecture), None)


def family_of_folder(base_dir: Path) -> Family:
    """The family whose pipeline class a diffusers folder names (FLUX when none matches:
    the harness's first family, and what every folder was before families existed)."""
    index = base_dir / "model_index.json"
    name = json.loads(index.read_text()).get("_class_name") if index.is_file() else None
    return (family_for_pipeline(str(name)) if name else None) or get_family()


__all__ = [
    "DEFAULT_FAMILY",
    "FAMILIES",
    "UnknownFamily",
    "available",
    "family_for_architecture",
    "family_for_denoiser",
    "family_for_pipeline",
    "family_of_folder",
    "get_family",
]
