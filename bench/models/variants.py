"""Resolve each variant to what a cell loads: the base pipeline and its backend's artifacts.

Runs in the parent before any cell, so the cost of building a synthetic pipeline or quantizing
its transformer is never charged to a cell's load time, and a variant that cannot be provided
becomes an `unavailable` record with its reason instead of a crash. What a variant needs is its
backend's to say (bench.backends); the GGUF file helpers shared with `bench size` live here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from bench.backends import Prepared, backend_for
from bench.backends.gguf import is_url
from bench.config import BenchConfig
from bench.errors import ConfigError
from bench.models.synthetic import ensure_synthetic_pipeline

__all__ = ["Prepared", "is_url"]


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
    import json

    from bench.families import family_for_pipeline

    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    holds = family_for_pipeline(str(index.get("_class_name")))
    if holds is not None and holds.name != config.model.family:
        raise ConfigError(
            f"model.family: {config.model.family!r}, but model.path {path!r} holds a "
            f"{index.get('_class_name')} (family {holds.name!r}); set model.family: {holds.name}"
        )


def local_path(path: str, config_dir: Path) -> Path:
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    return p if p.exists() else config_dir / p


def _quick_digest(path: Path) -> str:
    """sha256 of the size and first 64 MiB: identifies a multi-GB file in well under a second."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(64 << 20))
    return digest.hexdigest()[:16]


def describe_gguf(path: Path) -> dict[str, Any]:
    from bench.gguf.inspect import inspect_gguf

    info = inspect_gguf(path)
    return {
        "path": str(path),
        "bytes": info.file_bytes,
        "sha256_quick": _quick_digest(path),
        "tensor_types": dict(info.tensors_per_type),
        "bytes_per_type": dict(info.bytes_per_type),
        "parameters": info.parameters,
        "bits_per_weight": info.bits_per_weight,
        "key_names": info.key_names,
        "architecture": info.metadata.get("general.architecture"),
    }


def make_gguf_from_base(base_dir: Path, quant: str) -> Path:
    """Quantize the base's transformer once and cache the file beside the base pipeline."""
    from bench.gguf import quantize_checkpoint

    out = base_dir / "gguf" / f"transformer-{quant}.gguf"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        family = family_of_folder(base_dir)
        quantize_checkpoint(
            base_dir / family.denoiser, out, quant, key_names="auto", family=family.name
        )
    return out


def family_of_folder(base_dir: Path) -> Any:
    """The family whose pipeline class a diffusers folder names (FLUX when none matches:
    the harness's first family, and what every folder was before families existed)."""
    import json

    from bench.families import family_for_pipeline, get_family

    index = base_dir / "model_index.json"
    name = json.loads(index.read_text()).get("_class_name") if index.is_file() else None
    return (family_for_pipeline(str(name)) if name else None) or get_family()


def prepare_variant(variant: Any, base: str, config_dir: Path) -> Prepared:
    """What the variant's backend makes or finds before its cells run."""
    return backend_for(variant).prepare(variant, base, config_dir)
