"""A family's synthetic builds, the family named as a config names it (``model.family``; None:
FLUX, the harness's first family) or given as its entry.

bench/models/synthetic.py builds and caches them, given the family; this is the registry's side
of it, what the composition (a run's base, `bench size`'s runs) and the tests call.
"""

from __future__ import annotations

from pathlib import Path

from bench.families import get_family
from bench.families.base import Family
from bench.models.synthetic import build_folder, cache_folder, ensure_folder


def synthetic_dir(preset: str, seed: int, family: str | Family | None = None) -> Path:
    """The cache folder of a family's preset and seed (FLUX's: ``<preset>-seed<seed>-<hash>``)."""
    return cache_folder(get_family(family), preset, seed)


def build_synthetic_pipeline(
    preset: str, seed: int, out_dir: Path, family: str | Family | None = None
) -> Path:
    """Build a family's preset (default FLUX) and save it as an ordinary diffusers folder."""
    return build_folder(get_family(family), preset, seed, out_dir)


def ensure_synthetic_pipeline(preset: str, seed: int, family: str | Family | None = None) -> Path:
    """The cached pipeline folder of a family's preset (default FLUX), built first if absent
    (atomically: a crash leaves none)."""
    return ensure_folder(get_family(family), preset, seed)
