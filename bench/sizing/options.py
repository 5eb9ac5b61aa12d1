"""What to run on a card: every variant × offload option of a model (or of runs), ranked.

`size_options` is the library form of `bench size --vram/--gpu` and of bench.size(): the
ranked options plus the budget they were judged against, without printing anything. Ranking
and verdicts are bench.sizing.recommend's; this module resolves the options people give.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bench import arguments, limits
from bench.errors import ArgumentError, ConfigError
from bench.families import get_family
from bench.families.base import UnsupportedOption
from bench.families.sizing import Base
from bench.results import read_manifest
from bench.sizing.recommend import Option, lookup_gpu, parse_offloads, read_measurements, recommend
from bench.sizing.sources import (
    BUILTIN_MODELS,
    builtin_variants,
    cell_variant,
    check_quants,
    resolve_base,
    run_base,
)
from bench.sizing.units import fmt_bytes, parse_size
from bench.speedups import SPEEDUPS, parse_speedup
from bench.speedups.cache import CACHE_METHODS

#: The built-in architecture sized when neither a model nor runs are named.
DEFAULT_MODEL = "flux-dev"
#: Images per prompt `bench size` sizes at most: one pipeline call holds them all at once, and
#: 64 images of FLUX at 1024² already need about 60 GiB of activations.
MAX_BATCH = 1024
#: The share of the memory kept free at most: more would leave nothing to fit.
MAX_MARGIN = 0.9


@dataclass
class SizeOptions:
    """Ranked options (fitting ones first) for a budget, or all predictions without one."""

    options: list[Option]
    settings: dict[str, Any]
    budget_bytes: int | None
    budget_label: str | None
    margin: float

    @property
    def fitting(self) -> list[Option]:
        return [o for o in self.options if o.fits]

    @property
    def not_fitting(self) -> list[Option]:
        return [o for o in self.options if not o.fits]

    def to_json(self) -> dict[str, Any]:
        """The payload `bench size --json` writes."""
        if self.budget_bytes is None:
            return {"settings": self.settings, "predictions": [o.to_json() for o in self.options]}
        return {
            "settings": self.settings,
            "vram_bytes": self.budget_bytes,
            "vram": self.budget_label,
            "margin": self.margin,
            "fits": [o.to_json() for o in self.fitting],
            "does_not_fit": [o.to_json() for o in self.not_fitting],
        }


def size_options(
    *,
    model: str | None = None,
    vram: str | None = None,
    gpu: str | None = None,
    quant: list[str] | None = None,
    runs: list[Path] | None = None,
    offload: list[str] | None = None,
    height: int | None = None,
    width: int | None = None,
    batch: int = 1,
    max_sequence_length: int = 512,
    margin: float = 0.1,
    num_frames: int | None = None,
    speedups: list[str] | None = None,
) -> SizeOptions:
    """Every option of `model` (or of the variants of `runs`, with their measurements) for the
    budget `vram` (e.g. "16GiB") or `gpu` (a card of the built-in table), ranked.

    ``num_frames`` sizes one video of a video family (None: the family's default count, 81 for
    Wan); an image family refuses it. ``speedups`` adds what each speed-up keeps on the device
    (`parse_speedup_option`: a kind, a cache method or a config's mapping). Without a budget
    every option is predicted and none fits. Raises UserInputError for bad input (both
    budgets, an unknown card or offload mode, a malformed size, a frame count the family does
    not make, a speed-up spec its model refuses).
    """

    # Every argument checked before the slow part (building meta models), each error naming it.
    if vram is not None and gpu is not None:
        raise ArgumentError("gpu", "give either a VRAM size or a GPU, not both")
    budget_label = None
    budget: int | None = None
    if vram is not None:
        budget, budget_label = parse_size(vram), vram
    elif gpu is not None:
        card, budget = lookup_gpu(arguments.text(gpu, "gpu"))
        budget_label = f"{card} ({fmt_bytes(budget)})"
    quant = arguments.names(quant, "quant")
    check_quants(quant)
    runs = arguments.paths(runs, "runs")
    if runs:  # the runs' own variants are sized: a model or types would be silently ignored
        for name, value in (("model", model), ("quant", quant)):
            if value is not None:
                raise ArgumentError(name, "not used with runs, which size their own variants")
    model = arguments.text(model, "model") if model is not None else DEFAULT_MODEL
    specs = parse_offloads(arguments.names(offload, "offload"))
    for key, side in (("height", height), ("width", width)):
        if side is not None:
            arguments.whole_number(side, key, limits.MIN_SIDE, limits.MAX_SIDE)
    if num_frames is not None:
        arguments.whole_number(num_frames, "num_frames", 1, limits.MAX_FRAMES, option="--frames")
    batch = arguments.whole_number(batch, "batch", 1, MAX_BATCH)
    max_sequence_length = arguments.whole_number(
        max_sequence_length, "max_sequence_length", 1, limits.MAX_SEQUENCE_LENGTH
    )
    margin = arguments.number(margin, "margin", 0.0, MAX_MARGIN)
    specs_added = tuple(
        parse_speedup_option(s)
        for s in arguments.names(speedups, "speedups", option="--speedup") or []
    )
    variants, measured = _variants(model, quant, runs)
    frames = _frames(variants, num_frames)
    height, width = _size(variants, height, width)
    options = recommend(
        variants, specs, budget or 0, margin, height, width, batch, max_sequence_length, measured,
        num_frames=frames, speedups=specs_added,
    )  # fmt: skip
    settings: dict[str, Any] = {
        "height": height,
        "width": width,
        "batch": batch,
        "max_sequence_length": max_sequence_length,
    }
    if frames is not None:
        settings["num_frames"] = frames
    if specs_added:
        settings["speedups"] = [s.model_dump(mode="json") for s in specs_added]
    return SizeOptions(options, settings, budget, budget_label, margin)


def parse_speedup_option(text: str) -> Any:
    """A `--speedup` value as its speed-up's config model: a kind ("lora"), a cache method
    ("first_block", "taylorseer"), or a config's mapping in YAML flow style
    ("{kind: lora, adapters: 2, rank: 32, fused: true}"); an ArgumentError names `speedups`
    (--speedup on the command line)."""
    if text in CACHE_METHODS:
        data: Any = {"kind": "cache", "cache": {"method": text}}
    elif text in SPEEDUPS:
        data = {"kind": text}
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            data = None
        if not isinstance(data, dict):
            raise ArgumentError(
                "speedups",
                f"{text!r}: expected a speed-up kind ({', '.join(SPEEDUPS)}), a cache method "
                f"({', '.join(CACHE_METHODS)}) or a mapping like '{{kind: lora, rank: 32}}'",
                option="--speedup",
            )
    default = data.get("cache", {}).get("method") if isinstance(data.get("cache"), dict) else None
    data = {"name": default or str(data.get("kind")), **data}
    try:
        return parse_speedup(data)
    except ConfigError as exc:
        raise ArgumentError("speedups", str(exc), option="--speedup") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"])
        raise ArgumentError(
            "speedups", f"{text!r}: {where}: {err['msg']}", option="--speedup"
        ) from None


def _size(variants: list[Any], height: int | None, width: int | None) -> tuple[int, int]:
    """The size asked for, else the pipeline's own default (the first family's: Wan 480×832,
    the image families 1024×1024), each side a multiple of what every variant's pipeline keeps
    (its family's rule from its VAE and transformer: Wan 2.2 needs 32): a prediction at a size
    the pipeline would round is a prediction of another size."""

    family = get_family(variants[0].pipe.family) if variants else get_family(None)
    height, width = height or family.default_height, width or family.default_width
    for variant in variants:
        pipe = variant.pipe
        fam = get_family(pipe.family)
        vae, denoiser = pipe.components.get("vae"), pipe.components.get(fam.denoiser)
        rule = fam.side_rule(
            vae.config if vae is not None else {}, denoiser.config if denoiser is not None else {}
        )
        for key, value in (("height", height), ("width", width)):
            problem = rule.problem(value, limits.MIN_SIDE, limits.MAX_SIDE)
            if problem:
                raise ArgumentError(key, f"{problem} (got {value}, {pipe.label})")
    return height, width


def _frames(variants: list[Any], num_frames: int | None) -> int | None:
    """The frame count to size: the one asked for, checked by the family of the variants'
    pipeline (its VAE's rule; an image family refuses any), else a video family's default."""

    families = {get_family(v.pipe.family) for v in variants}
    frames = num_frames
    for family in families:
        if frames is None and family.output == "video":
            frames = family.default_num_frames
        if frames is None:
            continue
        if family.output != "video":
            videos = [
                name
                for name, (f, _, _) in BUILTIN_MODELS.items()
                if get_family(f).output == "video"
            ]
            raise ArgumentError(
                "num_frames",
                f"{family.title} makes images, not videos (video models: {', '.join(videos)})",
                option="--frames",
            )
        try:
            family.check_num_frames(frames)
        except UnsupportedOption as exc:
            raise ArgumentError("num_frames", exc.problem, option="--frames") from None
    return frames


def _variants(model: str, quant: list[str] | None, runs: list[Path] | None) -> tuple[list, dict]:
    measured: dict[Any, Any] = {}
    if not runs:
        return builtin_variants(resolve_base(model), quant), measured
    variants = []
    seen: set[str] = set()
    bases: dict[str, Base] = {}  # runs of one model share its meta modules (seconds to build)
    for run_dir in runs:
        manifest = read_manifest(run_dir)
        model_key = json.dumps(
            [manifest.get("base_model"), (manifest.get("config") or {}).get("model")],
            sort_keys=True,
            default=str,
        )
        if model_key not in bases:
            bases[model_key] = run_base(manifest)
        for cell in manifest["cells"]:
            if cell["variant"] not in seen:
                seen.add(cell["variant"])
                variants.append(cell_variant(bases[model_key], cell))
        measured.update(read_measurements(run_dir, manifest))
    return variants, measured
