"""Resolve each variant to what a cell loads: the base pipeline and its backend's artifacts.

Runs in the parent before any cell, so the cost of building a synthetic pipeline or quantizing
its transformer is never charged to a cell's load time, and a variant that cannot be provided
becomes an `unavailable` record with its reason instead of a crash. What a variant needs is its
backend's to say (bench.backends).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.backends import backend_for
from bench.backends.base import Prepared
from bench.config import BenchConfig
from bench.errors import ConfigError
from bench.families import family_for_pipeline
from bench.families.synthetic import ensure_synthetic_pipeline
from bench.yamlfile import local_path


def resolve_base(config: BenchConfig) -> str:
    """Local folder or hub id of the base pipeline (built first for synthetic sources)."""
    if config.model.source == "synthetic":
        model = config.model
        return str(ensure_synthetic_pipeline(model.preset, model.seed, model.family))
    assert config.model.path is not None
    return config.model.path


def check_local_files(config: BenchConfig, config_dir: Path) -> None:
    """Config-time check: every local path the config names exists (URLs are checked at load)."""
    if config.model.source == "pretrained":
        path = config.model.path or ""
        folder = local_path(path, config_dir)
        looks_local = path.startswith((".", "/", "~")) or Path(path).exists()
        if looks_local and folder.is_file():
            raise ConfigError(
                f"model.path: {path!r} is a file; expected a diffusers pipeline folder "
                "(with model_index.json)"
            )
        if looks_local and not folder.is_dir():
            raise ConfigError(f"model.path: folder {path!r} not found")
        if looks_local and not (folder / "model_index.json").is_file():
            raise ConfigError(
                f"model.path: {path!r} is not a diffusers pipeline (no model_index.json)"
            )
        if looks_local:
            _check_folder_family(config, path, folder)
    for variant in config.variants:
        backend_for(variant).check_local_files(variant, config_dir)


def _check_folder_family(config: BenchConfig, path: str, folder: Path) -> None:
    """A folder whose pipeline another registered family builds would be called, timed and
    sized as the config's family: refused, naming both."""
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    holds = family_for_pipeline(str(index.get("_class_name")))
    if holds is not None and holds.name != config.model.family:
        raise ConfigError(
            f"model.family: {config.model.family!r}, but model.path {path!r} holds a "
            f"{index.get('_class_name')} (family {holds.name!r}); set model.family: {holds.name}"
        )


def prepare_variant(variant: Any, base: str, config_dir: Path) -> Prepared:
    """What the variant's backend makes or finds before its cells run."""
    return backend_for(variant).prepare(variant, base, config_dir)
