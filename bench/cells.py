"""Expand a config into cells and images, with stable ids and paired seeds.

A cell is one (variant, offload mode, resolution, speed-up or none): one fresh process, one
load. Its images are (prompt id, repeat) pairs; the seed of each depends only on those two and
the config's seed, so every variant (and speed-up) sees the same noise (paired comparisons)
and sharding or reordering the prompts never changes an image.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench import limits
from bench.config import (
    BenchConfig,
    OffloadSpec,
    Prompt,
    PromptFile,
    Resolution,
    check_run_size,
)
from bench.config_fields import VariantConfig
from bench.errors import ArgumentError, ConfigError
from bench.speedups.base import SpeedupConfig
from bench.yamlfile import load_yaml_file


class _PromptEntry(Prompt):
    """A prompt-file entry: a Prompt, plus descriptive keys (category, language) it ignores."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class _PromptFileModel(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    prompts: list[_PromptEntry] = Field(min_length=1, max_length=limits.MAX_PROMPTS)


def load_prompt_file(path: Path) -> list[Prompt]:
    """Read a prompt set: YAML with a `prompts:` list of `{id, text, ...}` (extra keys kept out)."""
    if path.is_dir():
        raise ConfigError(f"prompts.file: {path} is a folder, not a prompt file")
    if not path.is_file():
        raise ConfigError(f"prompts.file: {path} not found")
    data = load_yaml_file(path, limits.MAX_PROMPT_FILE_BYTES, "prompt file")
    try:
        parsed = _PromptFileModel.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "<top level>"
        message = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{path}: {where}: {message}") from exc
    ids = [p.id for p in parsed.prompts]
    folded = [i.casefold() for i in ids]
    duplicates = sorted({i for i, f in zip(ids, folded, strict=True) if folded.count(f) > 1})
    if duplicates:
        raise ConfigError(
            f"{path}: duplicate prompt ids {duplicates} (ids name image files, and ids that "
            "differ only in case are one file on some filesystems)"
        )
    return list(parsed.prompts)


def resolve_prompts(config: BenchConfig, config_dir: Path) -> list[Prompt]:
    """The prompts a run uses, from inline entries or a prompt file relative to the config."""
    if isinstance(config.prompts, list):
        return list(config.prompts)
    spec: PromptFile = config.prompts
    path = Path(spec.file)
    if not path.is_absolute():
        candidate = config_dir / path
        path = candidate if candidate.exists() else Path.cwd() / path
    prompts = load_prompt_file(path)
    if spec.ids is not None:
        known = {p.id for p in prompts}
        missing = [i for i in spec.ids if i not in known]
        if missing:
            raise ConfigError(f"prompts.ids: {missing} not in {path}")
        wanted = set(spec.ids)
        prompts = [p for p in prompts if p.id in wanted]
    if spec.limit is not None:
        prompts = prompts[: spec.limit]
    try:
        check_run_size(config, len(prompts))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return prompts


def derive_seed(base_seed: int, prompt_id: str, repeat: int, strategy: str = "hashed") -> int:
    """Seed of one image; `fixed` reproduces setups that use one seed for every prompt."""
    if strategy == "fixed":
        return base_seed + repeat
    digest = hashlib.sha256(f"{base_seed}:{prompt_id}:{repeat}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class ImageSpec:
    prompt_id: str
    prompt: str
    repeat: int
    seed: int

    def key(self) -> tuple[str, int]:
        return (self.prompt_id, self.repeat)


@dataclass(frozen=True)
class Cell:
    variant: VariantConfig  # a backend's variant model (bench.backends)
    offload: OffloadSpec
    resolution: Resolution
    speedup: SpeedupConfig | None = None  # a speed-up's model (bench.speedups); None: none

    @property
    def cell_id(self) -> str:
        base = f"{self.variant.name}__{self.offload.label}__{self.resolution.label}"
        # A cell without a speed-up keeps the id it had before speed-ups existed.
        return base if self.speedup is None else f"{base}__{self.speedup.name}"


def expand_cells(config: BenchConfig, only: list[str] | None = None) -> list[Cell]:
    """Cells in a stable order: resolution, then variant and offload (each as written in the
    config) nested as `cell_order` says."""
    if only:
        known = {v.name for v in config.variants}
        unknown = [name for name in only if name not in known]
        if unknown:
            raise ArgumentError(
                "only", f"unknown variant(s) {unknown}; the config has {sorted(known)}"
            )
    variants = [v for v in config.variants if not only or v.name in only]
    if config.cell_order == "offload":
        pairs = [(v, o) for o in config.offload_specs for v in variants]
    else:
        pairs = [(v, o) for v in variants for o in config.offload_specs]
    return [
        Cell(variant=v, offload=o, resolution=r, speedup=s)
        for r in config.resolution_list
        for v, o in pairs
        if v.offload_modes is None or o.mode in v.offload_modes
        for s in [None, *config.speedups_for(v.name)]
    ]


def expand_images(config: BenchConfig, prompts: list[Prompt]) -> list[ImageSpec]:
    """Measured images of every cell, repeat-major so a short run still covers every prompt.

    The run's size is checked against the documented limits before the list is built: prompts
    from a file are only known here.
    """
    try:
        check_run_size(config, len(prompts))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return [
        ImageSpec(
            prompt_id=p.id,
            prompt=p.text,
            repeat=r,
            seed=derive_seed(config.seed, p.id, r, config.seed_strategy),
        )
        for r in range(config.repeats)
        for p in prompts
    ]
