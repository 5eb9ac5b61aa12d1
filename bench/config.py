"""Typed benchmark configuration.

The YAML file is the contract between a user and a run: everything that can change a measured
number is in it, and everything in it is validated before any run folder exists, so a typo costs
one clear line instead of a half-finished sweep.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bench import limits
from bench.backends import BACKENDS
from bench.config_base import RECORDED, Strict, float_range, int_range, unique
from bench.config_fields import Name, Text
from bench.errors import ConfigError
from bench.families import FAMILIES
from bench.families.base import UnsupportedOption
from bench.offload import OffloadEntry, OffloadSpec, spec_of
from bench.speedups import SpeedupSpec
from bench.yamlfile import load_yaml_file


def _side(value: int) -> int:
    """An image side within the limits; the multiple it must be is the model family's rule
    (BenchConfig._check_sides), which needs the config's model."""
    low, high = limits.MIN_SIDE, limits.MAX_SIDE
    if not low <= value <= high:
        raise ValueError(f"expected a whole number of pixels from {low} to {high}")
    return value


Seed = Annotated[int, int_range(0, limits.MAX_SEED)]
Side = Annotated[int, AfterValidator(_side)]
_DEVICE = re.compile(r"^(auto|cpu|cuda(:(0|[1-9][0-9]{0,2}))?)$")


class ModelSource(Strict):
    """Where the base pipeline comes from.

    `synthetic` builds a FLUX pipeline offline with random weights (`preset` picks the size);
    `pretrained` loads a real diffusers pipeline from a local folder or a hub id.
    """

    source: Literal["synthetic", "pretrained"] = "synthetic"
    family: str = Field(
        default="flux",
        description="model family (bench/families): its synthetic presets, pipeline call, GGUF "
        "names and size formulas",
    )
    preset: str = "tiny"
    path: Text | None = Field(
        default=None, description="local diffusers folder or hub id (pretrained only)"
    )
    revision: Text | None = None
    seed: Seed = Field(default=0, description="seed of the random weights (synthetic only)")

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str) -> str:
        if value not in FAMILIES:
            raise ValueError(f"expected one of {', '.join(FAMILIES)}")
        return value

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str, info: ValidationInfo) -> str:
        family = FAMILIES.get(info.data.get("family", "flux"))
        if family is not None and value not in family.presets:
            raise ValueError(
                f"expected one of {', '.join(family.presets)} (presets of family {family.name!r})"
            )
        return value

    @model_validator(mode="after")
    def _path_matches_source(self) -> ModelSource:
        if self.source == "pretrained" and not self.path:
            raise ValueError("model.path is required when model.source is 'pretrained'")
        if self.source == "synthetic" and self.path:
            raise ValueError("model.path is only allowed when model.source is 'pretrained'")
        if self.source == "synthetic" and self.revision:
            raise ValueError("model.revision is only allowed when model.source is 'pretrained'")
        return self


# One member per registered backend, told apart by `kind` (bench/backends/__init__.py).
Variant = Annotated[
    Union[tuple(b.config_model for b in BACKENDS.values())],  # noqa: UP007
    Field(discriminator="kind"),
]


class Prompt(Strict):
    id: Name
    text: Annotated[Text, Field(max_length=limits.MAX_PROMPT_CHARS)]


class PromptFile(Strict):
    file: Text
    ids: (
        Annotated[
            list[str], Field(min_length=1, max_length=limits.MAX_PROMPTS), AfterValidator(unique)
        ]
        | None
    ) = Field(default=None, description="subset of prompt ids to use")
    limit: Annotated[int, int_range(1, limits.MAX_PROMPTS)] | None = None


class Resolution(Strict):
    height: Side
    width: Side

    @property
    def label(self) -> str:
        return f"{self.height}x{self.width}"


def _prompts_tag(value: Any) -> str:
    return "PromptFile" if isinstance(value, dict | PromptFile) else "list[Prompt]"


# A tag picks the member by the input's type, so an error names what is wrong with that member
# (not that a mapping is not a list); _format_location leaves the tags out of the key path.
Prompts = Annotated[
    Annotated[list[Prompt], Field(min_length=1, max_length=limits.MAX_PROMPTS), Tag("list[Prompt]")]
    | Annotated[PromptFile, Tag("PromptFile")],
    Discriminator(_prompts_tag),
]


class BenchConfig(Strict):
    name: Name
    description: Annotated[str, Field(max_length=limits.MAX_PROMPT_CHARS)] = ""
    model: ModelSource = ModelSource()
    variants: list[Variant] = Field(min_length=1, max_length=limits.MAX_VARIANTS)
    offload: list[OffloadEntry] = Field(
        default_factory=lambda: ["none"], min_length=1, max_length=limits.MAX_OFFLOAD_MODES
    )
    speedups: list[SpeedupSpec] | None = Field(
        default=None,
        min_length=1,
        max_length=limits.MAX_SPEEDUPS,
        description="speed-ups (bench/speedups): each adds a cell per variant, offload mode and "
        "resolution beside the variant without it, with the same paired seeds",
    )
    prompts: Prompts
    repeats: Annotated[int, int_range(1, limits.MAX_REPEATS)] = 1
    seed: Seed = 42
    seed_strategy: Literal["hashed", "fixed"] = Field(
        default="hashed",
        description="hashed: one seed per (prompt id, repeat) derived from `seed`; "
        "fixed: `seed` + repeat for every prompt (the blog's setup)",
    )
    height: Side = 512
    width: Side = 512
    resolutions: list[Resolution] | None = Field(
        default=None,
        min_length=1,
        max_length=limits.MAX_RESOLUTIONS,
        description="several resolutions instead of height/width",
    )
    steps: Annotated[int, int_range(1, limits.MAX_STEPS)] = 28
    guidance: Annotated[float, float_range(0.0, limits.MAX_GUIDANCE)] = 3.5
    max_sequence_length: Annotated[int, int_range(1, limits.MAX_SEQUENCE_LENGTH)] = 512
    num_frames: Annotated[int, int_range(1, limits.MAX_FRAMES)] | None = Field(
        default=None,
        description="frames per video (video families only; default the family's own, "
        "Wan: 81); the family's VAE decides which counts are valid",
    )
    fps: Annotated[int, int_range(1, limits.MAX_FPS)] | None = Field(
        default=None,
        description="frame rate of the saved videos (video families only; default the "
        "family's own, Wan: 16). Not part of the config hash: it changes the file, never "
        "what is measured",
    )
    warmup: Annotated[int, int_range(0, limits.MAX_WARMUP)] = 1
    cell_order: Literal["variant", "offload"] = Field(
        default="variant",
        description="variant: each variant under every offload mode before the next variant; "
        "offload: every variant under the first offload mode before the next mode, so a run "
        "cut short has the most comparable cells first. Not part of the config hash: the order "
        "changes when a cell is measured, never what",
    )
    device: str = "auto"
    clip_model: Text | None = Field(
        default=None, description="CLIP model for prompt alignment (local folder or hub id)"
    )

    @field_validator("device")
    @classmethod
    def _device_form(cls, value: str) -> str:
        """The devices the runner can use, spelt as torch.device parses them (no import here:
        run folders are validated by stages that never load torch)."""
        match = _DEVICE.match(value)
        if match is None or int(match.group(3) or "0") > limits.MAX_DEVICE_INDEX:
            raise ValueError(
                f"expected auto, cpu, cuda or cuda:N with N from 0 to {limits.MAX_DEVICE_INDEX}"
            )
        return value

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> BenchConfig:
        if not (info.context or {}).get(RECORDED):
            self._check_sides()  # first: before the sizes took part in a field's own check
        # Names become folder and file names, which differ only in case on some filesystems.
        _no_duplicates("variants: duplicate names", [v.name for v in self.variants], fold=True)
        if isinstance(self.prompts, list):
            _no_duplicates("prompts: duplicate ids", [p.id for p in self.prompts], fold=True)
        # Equal entries would give two cells one id, and their records would mix.
        _no_duplicates("offload: duplicate modes", [o.label for o in self.offload_specs])
        if self.resolutions is not None:
            _no_duplicates("resolutions: duplicate sizes", [r.label for r in self.resolutions])
            defaults = (
                BenchConfig.model_fields["height"].default,
                BenchConfig.model_fields["width"].default,
            )
            if (self.height, self.width) != defaults and not (info.context or {}).get(RECORDED):
                raise ValueError("height/width: not used when resolutions is given; drop them")
        self._check_speedups()
        modes = {o.mode for o in self.offload_specs}
        for variant in self.variants:
            absent = [m for m in variant.offload_modes or [] if m not in modes]
            if absent:
                raise ValueError(
                    f"variants.{variant.name}.offload_modes: {absent} not among the config's "
                    f"offload modes {sorted(modes)}"
                )
            BACKENDS[variant.kind].check_model_source(variant, self.model.source)
        self._check_frames()
        if self.seed_strategy == "fixed" and self.seed + self.repeats - 1 > limits.MAX_SEED:
            raise ValueError(
                f"seed: with seed_strategy fixed, seed + repeats - 1 must be at most "
                f"{limits.MAX_SEED} (the generator's range)"
            )
        if isinstance(self.prompts, list):
            check_run_size(self, len(self.prompts))
        return self

    @property
    def _family(self) -> Any:
        return FAMILIES[self.model.family]

    def _check_sides(self) -> None:
        """Every side a multiple of what the family's pipeline keeps (FLUX 16, Wan 2.2 32):
        any other size it would silently round down, and the record would name a size the
        image is not. A pretrained model's VAE is only known when it loads: its cells check
        the same rule (Family.check_generation_size)."""
        family = self._family
        if self.model.source == "synthetic":
            rule = family.preset_side_rule(self.model.preset)
        else:
            rule = family.side_rule({}, {})
        if self.resolutions is None:
            sides = [("height", self.height), ("width", self.width)]
        else:
            sides = [
                (f"resolutions.{i}.{key}", getattr(r, key))
                for i, r in enumerate(self.resolutions)
                for key in ("height", "width")
            ]
        for key, value in sides:
            problem = rule.problem(value, limits.MIN_SIDE, limits.MAX_SIDE)
            if problem:
                raise ValueError(f"{key}: {problem} (got {value})")

    def _check_speedups(self) -> None:
        """Speed-up names are unique (they end cell ids) and name only the config's variants."""
        speedups = self.speedups or []
        _no_duplicates("speedups: duplicate names", [s.name for s in speedups], fold=True)
        names = {v.name for v in self.variants}
        for speedup in speedups:
            absent = [v for v in speedup.variants or [] if v not in names]
            if absent:
                raise ValueError(
                    f"speedups.{speedup.name}.variants: {absent} not among the config's "
                    f"variants {sorted(names)}"
                )

    def speedups_for(self, variant: str) -> list[Any]:
        """The speed-ups a variant runs with (each one cell beside the variant without it)."""
        return [s for s in self.speedups or [] if s.variants is None or variant in s.variants]

    def _check_frames(self) -> None:
        """num_frames and fps only for a video family (an image family's refusal names the
        registered video families), num_frames as its VAE allows."""
        try:
            if self.num_frames is not None:
                self._family.check_num_frames(self.num_frames)
            if self.fps is not None:
                self._family.check_video_option("fps")
        except UnsupportedOption as exc:
            message = str(exc)
            if self._family.output != "video":
                videos = ", ".join(f.name for f in FAMILIES.values() if f.output == "video")
                message += f" (video families: model.family {videos or 'none registered'})"
            raise ValueError(message) from None

    @property
    def frames(self) -> int | None:
        """Frames per generation: None for an image family, else the config's or the family's."""
        if self._family.output != "video":
            return None
        return self.num_frames or self._family.default_num_frames

    @property
    def frame_rate(self) -> int | None:
        """Frame rate of saved videos: None for an image family, else the config's or the
        family's."""
        if self._family.output != "video":
            return None
        return self.fps or self._family.default_fps

    @property
    def resolution_list(self) -> list[Resolution]:
        # height and width are validated already (under this validation's context).
        return self.resolutions or [
            Resolution.model_construct(height=self.height, width=self.width)
        ]

    @property
    def offload_specs(self) -> list[OffloadSpec]:
        return [spec_of(o) for o in self.offload]

    def cell_count(self) -> int:
        """Cells of the whole config (every variant, whatever `--only` selects)."""
        specs = self.offload_specs
        per_resolution = sum(
            1 + len(self.speedups_for(v.name))
            for v in self.variants
            for o in specs
            if v.offload_modes is None or o.mode in v.offload_modes
        )
        return per_resolution * len(self.resolution_list)


def _no_duplicates(what: str, names: list[str], fold: bool = False) -> None:
    """`fold`: names that differ only in case count as equal (they name files)."""
    keys = [n.casefold() for n in names] if fold else names
    dup = sorted({n for n, k in zip(names, keys, strict=True) if keys.count(k) > 1})
    if not dup:
        return
    note = ""
    if len({n.casefold() for n in dup}) < len(dup):
        note = " (names that differ only in case are one file on some filesystems)"
    raise ValueError(f"{what} {dup}{note}")


def check_run_size(config: BenchConfig, n_prompts: int) -> None:
    """Refuse a run larger than the documented limits, before any list of it is built.

    Raises ValueError naming the key to change; the caller adds the file.
    """
    per_cell = n_prompts * config.repeats
    if per_cell > limits.MAX_IMAGES_PER_CELL:
        raise ValueError(
            f"repeats: {n_prompts} prompts x {config.repeats} repeats = {per_cell} images per "
            f"cell, more than the limit of {limits.MAX_IMAGES_PER_CELL} (docs/limits.md)"
        )
    cells = config.cell_count()
    total = cells * per_cell
    if total > limits.MAX_RUN_IMAGES:
        raise ValueError(
            f"variants/offload/speedups/resolutions: {cells} cells x {per_cell} images = "
            f"{total} images, more than the limit of {limits.MAX_RUN_IMAGES} per run "
            "(docs/limits.md)"
        )
    resolutions = config.resolution_list
    megapixels = sum(r.height * r.width for r in resolutions) / len(resolutions) / 1e6
    work = total * config.steps * megapixels * (config.frames or 1)
    if work > limits.MAX_RUN_MEGAPIXEL_STEPS:
        raise ValueError(
            f"steps: {total} images x {config.steps} steps x {megapixels:.3g} megapixels per "
            f"image{f' x {config.frames} frames' if config.frames else ''} = {work:.3g} "
            "megapixel-steps, more than the limit of "
            f"{limits.MAX_RUN_MEGAPIXEL_STEPS:g} per run (docs/limits.md)"
        )


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
        if isinstance(item, str) and (item in BACKENDS or "[" in item or item[:1].isupper()):
            continue
        parts.append(str(item))
        node = None
    return ".".join(parts) or "<top level>"


def _first_error(error: ValidationError, data: Any) -> str:
    return _describe_error(error.errors()[0], data)


def _describe_error(err: Any, data: Any) -> str:
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
        shown = repr(err["input"])
        message += f" (got {shown if len(shown) <= 80 else shown[:77] + '...'})"
    if not err["loc"]:  # a cross-check: its message starts with the key it is about
        return message
    return f"{where}: {message}"


def validate_config(data: Any, source: str, *, recorded: bool = False) -> BenchConfig:
    """Validate config data; ConfigError naming `source` and the key at fault.

    `recorded` validates a config stored in a run folder (see RECORDED).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level")
    try:
        return BenchConfig.model_validate(data, context={RECORDED: recorded})
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_first_error(exc, data)}") from exc


def check_recorded_keys(data: Any, source: str) -> None:
    """Each key a recorded config has must be valid; keys may be missing (stages need few).

    For readers of run folders: a config from another version of the harness, or a
    hand-written test run, may lack keys or add new ones, but a key it has must mean what the
    config would mean (`steps` an integer in range, `model` an object, ...). Cross-checks
    between keys are left to `validate_config`, which a resume uses. ConfigError naming
    `source` and the key.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected an object, found {type(data).__name__}")
    try:
        BenchConfig.model_validate(data, context={RECORDED: True})
    except ValidationError as exc:
        for err in exc.errors():
            top_level = len(err["loc"]) == 1 and err["type"] in ("missing", "extra_forbidden")
            if err["loc"] and not top_level:
                raise ConfigError(f"{source}.{_describe_error(err, data)}") from exc


def load_config(path: Path) -> tuple[BenchConfig, Path]:
    """Read and validate a YAML config; returns the config and its folder (for relative paths)."""
    if path.is_dir():
        raise ConfigError(f"{path}: a folder, not a config file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    data = load_yaml_file(path, limits.MAX_CONFIG_BYTES, "config file")
    return validate_config(data, str(path)), path.parent.resolve()


def config_hash(config: BenchConfig) -> str:
    """Hash of everything that changes what is measured; names and descriptions excluded."""
    payload = config.model_dump(mode="json", exclude={"name", "description", "cell_order", "fps"})
    # Keys added later leave the hash of configs that keep their default as it was, so a run
    # made before they existed still resumes with the same config.
    if payload["model"].get("family") == "flux":
        del payload["model"]["family"]
    # A video family's default frame count is what it measures: hashed as the count itself.
    if config.frames is None:
        del payload["num_frames"]
    else:
        payload["num_frames"] = config.frames
    # Speed-ups came later: a config without them hashes as it did before they existed.
    if payload.get("speedups") is None:
        payload.pop("speedups", None)
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
