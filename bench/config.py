"""Typed benchmark configuration.

The YAML file is the contract between a user and a run: everything that can change a measured
number is in it, and everything in it is validated before any run folder exists, so a typo costs
one clear line instead of a half-finished sweep.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bench.errors import ConfigError

# GGUF types a variant may name. Which of them can be *made* here depends on the quantizer
# (bench.gguf); which can be *loaded* depends on diffusers. Both are checked later, per cell.
GGUF_TYPES = (
    "F16",
    "BF16",
    "Q8_0",
    "Q6_K",
    "Q5_K",
    "Q5_K_S",
    "Q5_K_M",
    "Q4_K",
    "Q4_K_S",
    "Q4_K_M",
    "Q5_0",
    "Q5_1",
    "Q4_0",
    "Q4_1",
    "Q3_K",
    "Q3_K_S",
    "Q2_K",
)
DTYPES = ("float32", "bfloat16", "float16")
SYNTHETIC_PRESETS = ("tiny", "flux-dev")


class _Strict(BaseModel):
    """Unknown keys are errors: a misspelt key silently ignored would change what is measured."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(_Strict):
    """Where the base pipeline comes from.

    `synthetic` builds a FLUX pipeline offline with random weights (`preset` picks the size);
    `pretrained` loads a real diffusers pipeline from a local folder or a hub id.
    """

    source: Literal["synthetic", "pretrained"] = "synthetic"
    preset: Literal["tiny", "flux-dev"] = "tiny"
    path: str | None = Field(
        default=None, description="local diffusers folder or hub id (pretrained only)"
    )
    revision: str | None = None
    seed: int = Field(default=0, description="seed of the random weights (synthetic only)")

    @model_validator(mode="after")
    def _path_matches_source(self) -> ModelSource:
        if self.source == "pretrained" and not self.path:
            raise ValueError("model.path is required when model.source is 'pretrained'")
        if self.source == "synthetic" and self.path:
            raise ValueError("model.path is only allowed when model.source is 'pretrained'")
        return self


class _VariantBase(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    offload_modes: list[Literal["none", "model", "sequential", "group"]] | None = Field(
        default=None,
        description="run this variant only under these offload modes (default: all of them)",
    )


class FullVariant(_VariantBase):
    """The unquantized pipeline in one dtype: the reference every other variant is paired with."""

    kind: Literal["full"]
    dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    noise_floor: Literal["sdpa-math", "no-tf32"] | None = Field(
        default=None,
        description="generate under this harmless numeric change: a second full-precision "
        "image set that shows how far 'identical' moves on this stack (the noise floor)",
    )


class GGUFVariant(_VariantBase):
    """A GGUF-quantized transformer; the rest of the pipeline stays at `dtype`.

    `file` is a local path or a hub URL (`https://huggingface.co/<repo>/blob/<rev>/<file>`);
    when omitted the harness makes the file from the base model with its own quantizer.
    """

    kind: Literal["gguf"]
    quant: str
    file: str | None = None
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        default=None, description="dtype of the non-transformer components; default compute_dtype"
    )

    @field_validator("quant")
    @classmethod
    def _known_quant(cls, value: str) -> str:
        if value not in GGUF_TYPES:
            raise ValueError(f"expected one of {', '.join(GGUF_TYPES)}, got {value!r}")
        return value

    @property
    def pipeline_dtype(self) -> str:
        return self.dtype or self.compute_dtype


Variant = Annotated[FullVariant | GGUFVariant, Field(discriminator="kind")]


class OffloadSpec(_Strict):
    """How weights move between host and accelerator during generation.

    `group` is diffusers' group offloading (`enable_group_offload`), applied to every model
    component; `level` and `use_stream` are passed through.
    """

    mode: Literal["none", "model", "sequential", "group"]
    level: Literal["leaf", "block"] = "leaf"
    blocks_per_group: int = Field(default=1, ge=1)
    use_stream: bool = False

    @property
    def label(self) -> str:
        if self.mode != "group":
            return self.mode
        label = f"group-{self.level}"
        if self.level == "block":
            label += f"{self.blocks_per_group}"
        return label + ("-stream" if self.use_stream else "")


class Prompt(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    text: str


class PromptFile(_Strict):
    file: str
    ids: list[str] | None = Field(default=None, description="subset of prompt ids to use")
    limit: int | None = Field(default=None, ge=1)


class Resolution(_Strict):
    height: int = Field(ge=16)
    width: int = Field(ge=16)

    @property
    def label(self) -> str:
        return f"{self.height}x{self.width}"


class BenchConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    model: ModelSource = ModelSource()
    variants: list[Variant] = Field(min_length=1)
    offload: list[Literal["none", "model", "sequential"] | OffloadSpec] = Field(
        default_factory=lambda: ["none"], min_length=1
    )
    prompts: list[Prompt] | PromptFile
    repeats: int = Field(default=1, ge=1)
    seed: int = 42
    seed_strategy: Literal["hashed", "fixed"] = Field(
        default="hashed",
        description="hashed: one seed per (prompt id, repeat) derived from `seed`; "
        "fixed: `seed` + repeat for every prompt (the blog's setup)",
    )
    height: int = Field(default=512, ge=16)
    width: int = Field(default=512, ge=16)
    resolutions: list[Resolution] | None = Field(
        default=None, description="several resolutions instead of height/width"
    )
    steps: int = Field(default=28, ge=1)
    guidance: float = 3.5
    max_sequence_length: int = Field(default=512, ge=1, le=512)
    warmup: int = Field(default=1, ge=0)
    device: Literal["auto", "cpu", "cuda"] | str = "auto"
    clip_model: str | None = Field(
        default=None, description="CLIP model for prompt alignment (local folder or hub id)"
    )

    @field_validator("device")
    @classmethod
    def _device_form(cls, value: str) -> str:
        if value in ("auto", "cpu", "cuda") or value.startswith("cuda:"):
            return value
        raise ValueError(f"expected auto, cpu, cuda or cuda:N, got {value!r}")

    @model_validator(mode="after")
    def _cross_checks(self) -> BenchConfig:
        names = [v.name for v in self.variants]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"variants: duplicate names {duplicates}")
        if isinstance(self.prompts, list):
            ids = [p.id for p in self.prompts]
            dup_ids = sorted({i for i in ids if ids.count(i) > 1})
            if dup_ids:
                raise ValueError(f"prompts: duplicate ids {dup_ids}")
        for variant in self.variants:
            if (
                isinstance(variant, GGUFVariant)
                and variant.file is None
                and self.model.source != "synthetic"
            ):
                raise ValueError(
                    f"variants.{variant.name}.file: a GGUF file path or URL is required when "
                    "model.source is 'pretrained' (quantize it first with `bench quantize`)"
                )
        return self

    @property
    def resolution_list(self) -> list[Resolution]:
        return self.resolutions or [Resolution(height=self.height, width=self.width)]

    @property
    def offload_specs(self) -> list[OffloadSpec]:
        return [o if isinstance(o, OffloadSpec) else OffloadSpec(mode=o) for o in self.offload]


def _format_location(loc: tuple[Any, ...], data: Any) -> str:
    """Turn pydantic's location into the YAML path a user would look for.

    List indices of named entries become their names (`variants.Q8_0.quant`), and the
    discriminated-union tag pydantic inserts (`gguf`, `full`) is dropped.
    """
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int) and isinstance(node, list) and item < len(node):
            entry = node[item]
            name = entry.get("name") if isinstance(entry, dict) else None
            parts.append(str(name) if name else str(item))
            node = entry
            continue
        if isinstance(node, dict) and item in node:
            parts.append(str(item))
            node = node[item]
            continue
        # A union tag or a model name pydantic added: not part of the user's file.
        if isinstance(item, str) and (
            item in ("full", "gguf") or "[" in item or item[:1].isupper()
        ):
            continue
        parts.append(str(item))
        node = None
    return ".".join(parts) or "<top level>"


def _first_error(error: ValidationError, data: Any) -> str:
    err = error.errors()[0]
    where = _format_location(tuple(err["loc"]), data)
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    if err["type"] == "missing":
        return f"{where}: required key is missing"
    message = message.removeprefix("Value error, ")
    if (
        "input" in err
        and err["type"] not in ("model_type",)
        and not isinstance(err["input"], dict | list)
    ):
        message += f" (got {err['input']!r})"
    return f"{where}: {message}"


def load_config(path: Path) -> tuple[BenchConfig, Path]:
    """Read and validate a YAML config; returns the config and its folder (for relative paths)."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(
            f"{path}:{where} not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    try:
        config = BenchConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_error(exc, data)}") from exc
    return config, path.parent.resolve()


def config_hash(config: BenchConfig) -> str:
    """Hash of everything that changes what is measured; names and descriptions excluded."""
    payload = config.model_dump(mode="json", exclude={"name", "description"})
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
