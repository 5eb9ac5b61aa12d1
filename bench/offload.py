"""Offload modes, in one place: the spec a config writes, its label, applying it with diffusers'
own calls, and the facts about each mode that other stages need.

The modes are diffusers' own: `none` (`pipe.to`), `model` (`enable_model_cpu_offload`),
`sequential` (`enable_sequential_cpu_offload`) and `group` (`enable_group_offload`, with a
level, blocks per group and CUDA streams). A new mode is a name in `OffloadMode`, an entry of
`MODES` (how it is applied, whether it needs an accelerator, what it is known to fail with) and
of `KINDS` (what it keeps on the device, how fast it usually is); bench size's residency
arithmetic (`bench.sizing.predict.resident`) reads `KINDS` and needs its own formula only for a
new kind of residency.

Imported by the config and by stages that never load torch: torch is imported only when a mode
is applied.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import Discriminator, Tag, model_validator

from bench import limits
from bench.config_base import Strict, int_range
from bench.errors import UserInputError

if TYPE_CHECKING:
    import torch

OffloadMode = Literal["none", "model", "sequential", "group"]
#: Modes without settings, which a config may write as a bare string (`offload: [none, model]`).
BareMode = Literal["none", "model", "sequential"]
#: What stays on the device while one component computes (bench size: docs/size.md).
Keeps = Literal["all", "component", "leaf", "blocks"]

SEQUENTIAL_GGUF_NOTE = (
    "sequential offload fails with GGUF transformers (KeyError: None, diffusers issue #14691)"
)
#: The words of diffusers' own error when model or sequential offload finds no accelerator
#: ("`enable_model_cpu_offload` requires accelerator, but not found").
NO_ACCELERATOR = "requires accelerator"


class OffloadUnavailable(RuntimeError):
    """The offload mode cannot do anything meaningful on this device."""


class OffloadSpec(Strict):
    """How weights move between host and accelerator during generation.

    `group` is diffusers' group offloading (`enable_group_offload`), applied to every model
    component; `level` and `use_stream` are passed through.
    """

    mode: OffloadMode
    level: Literal["leaf", "block"] = "leaf"
    blocks_per_group: Annotated[int, int_range(1, limits.MAX_BLOCKS_PER_GROUP)] = 1
    use_stream: bool = False

    @model_validator(mode="after")
    def _settings_that_apply(self) -> OffloadSpec:
        """A setting the mode ignores would be recorded as if it had been used."""
        ignored = []
        has_settings = MODES[self.mode].settings
        if not has_settings:
            ignored = [
                key
                for key, default in (("level", "leaf"), ("use_stream", False))
                if getattr(self, key) != default
            ]
        if self.blocks_per_group != 1 and not (has_settings and self.level == "block"):
            ignored.append("blocks_per_group")
        if ignored:
            where = "level leaf" if has_settings else f"mode {self.mode!r}"
            raise ValueError(f"{', '.join(ignored)}: not used with {where}")
        return self

    @property
    def label(self) -> str:
        """The name of the spec in cell ids and records: none, group-leaf, group-block2-stream."""
        if not MODES[self.mode].settings:
            return self.mode
        label = f"{self.mode}-{self.level}"
        if self.level == "block":
            label += f"{self.blocks_per_group}"
        return label + ("-stream" if self.use_stream else "")

    @property
    def kind(self) -> Kind:
        """What this spec keeps on the device and how fast it usually is (its `KINDS` entry)."""
        return KINDS[f"{self.mode}-{self.level}" if MODES[self.mode].settings else self.mode]

    @property
    def copies(self) -> int:
        """Copies of the onloaded unit on the device: use_stream prefetches the next one while
        the current one computes."""
        return 2 if self.use_stream else 1

    @property
    def needs_accelerator(self) -> bool:
        return MODES[self.mode].needs_accelerator

    def fails_with(self, weights_format: str) -> str | None:
        """The known failure of this mode with a transformer of `weights_format`, if any."""
        for prefix, note in MODES[self.mode].fails_with:
            if weights_format.startswith(prefix):
                return note
        return None


@dataclass(frozen=True)
class Mode:
    """One offload mode as data: what applying it calls and what the other stages need."""

    #: The pipeline method diffusers applies it with.
    call: str
    #: True when, with only a host, the mode has nothing to do: diffusers refuses (model,
    #: sequential) or would silently move nothing (group), so the cell cannot run there.
    needs_accelerator: bool
    apply: Callable[[Any, OffloadSpec, torch.device], None]
    #: Takes level, blocks_per_group and use_stream (and is written as a mapping in a config).
    settings: bool = False
    #: (transformer weights format prefix, note): combinations known to fail in diffusers.
    fails_with: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Kind:
    """A mode, or for a mode with levels one level of it: the unit bench size's residency
    arithmetic works on, and the words its explanations use."""

    keeps: Keeps
    #: How a prediction names it: "leaf group offload".
    words: str
    #: The usual order of speed, fastest first: bench size ranks options never measured by it.
    speed_rank: int


def _target(device: torch.device) -> dict[str, Any]:
    # With no accelerator, model and sequential offload are called as users call them, without
    # a device: diffusers then refuses with its own error. Passing device="cpu" would make it
    # "offload" from the host to the host and the cell would measure nothing it is named for.
    return {"device": device} if device.type != "cpu" else {}


def _apply_none(pipe: Any, offload: OffloadSpec, device: torch.device) -> None:
    pipe.to(device)


def _apply_cpu_offload(pipe: Any, offload: OffloadSpec, device: torch.device) -> None:
    """Model and sequential offload: the mode's own pipeline method (`Mode.call`)."""
    getattr(pipe, MODES[offload.mode].call)(**_target(device))


def _apply_group(pipe: Any, offload: OffloadSpec, device: torch.device) -> None:
    import torch

    if device.type == "cpu":
        # diffusers accepts an onload device of "cpu" and then moves nothing: a cell that
        # measured that would be mislabelled, so it is reported as not runnable here.
        raise OffloadUnavailable(
            "group offload needs an accelerator to onload to; this cell's device is cpu"
        )
    kwargs: dict[str, Any] = {
        "onload_device": device,
        "offload_device": torch.device("cpu"),
        "offload_type": f"{offload.level}_level",
        "use_stream": offload.use_stream,
    }
    if offload.level == "block":
        kwargs["num_blocks_per_group"] = offload.blocks_per_group
    pipe.enable_group_offload(**kwargs)


MODES: dict[str, Mode] = {
    "none": Mode("to", needs_accelerator=False, apply=_apply_none),
    "model": Mode("enable_model_cpu_offload", needs_accelerator=True, apply=_apply_cpu_offload),
    "sequential": Mode(
        "enable_sequential_cpu_offload",
        needs_accelerator=True,
        apply=_apply_cpu_offload,
        fails_with=(("GGUF", SEQUENTIAL_GGUF_NOTE),),
    ),
    "group": Mode(
        "enable_group_offload", needs_accelerator=True, apply=_apply_group, settings=True
    ),
}

KINDS: dict[str, Kind] = {
    "none": Kind("all", "no offload", speed_rank=0),
    "model": Kind("component", "model offload", speed_rank=1),
    "group-block": Kind("blocks", "block group offload", speed_rank=2),
    "group-leaf": Kind("leaf", "leaf group offload", speed_rank=3),
    "sequential": Kind("leaf", "sequential offload", speed_rank=4),
}

if set(MODES) != set(get_args(OffloadMode)) or {m for m in MODES if not MODES[m].settings} != set(
    get_args(BareMode)
):
    raise AssertionError("bench.offload: MODES, OffloadMode and BareMode name different modes")


def apply_offload(pipe: Any, offload: OffloadSpec, device: torch.device) -> None:
    """Move the pipeline to `device` under the given offload mode, with diffusers' own methods."""
    MODES[offload.mode].apply(pipe, offload, device)


_GROUP = re.compile(r"^group-(leaf|block(\d*))(-stream)?$")


def parse_offload(label: str) -> OffloadSpec:
    """OffloadSpec of a cell label: none, model, sequential, group-leaf, group-block2-stream."""
    if label in get_args(BareMode):
        return OffloadSpec(mode=label)
    match = _GROUP.match(label)
    if match is None:
        raise UserInputError(
            f"offload {label!r}: expected {', '.join(get_args(BareMode))}, group-leaf or "
            "group-blockN"
        )
    level = "leaf" if match.group(1) == "leaf" else "block"
    blocks = int(match.group(2) or 1)
    if not 1 <= blocks <= limits.MAX_BLOCKS_PER_GROUP:  # else a pydantic traceback
        raise UserInputError(
            f"offload {label!r}: blocks per group expected from 1 to {limits.MAX_BLOCKS_PER_GROUP}"
        )
    return OffloadSpec(
        mode="group", level=level, blocks_per_group=blocks, use_stream=bool(match.group(3))
    )


def one_of_each_kind() -> tuple[str, ...]:
    """A label of every kind in its default settings, fastest first (bench size's default)."""
    return tuple(parse_offload(k).label for k in sorted(KINDS, key=lambda k: KINDS[k].speed_rank))


def _entry_tag(value: Any) -> str:
    return "Literal[str]" if isinstance(value, str) else "OffloadSpec"


#: One entry of a config's `offload` list: a bare mode name or a spec mapping. The tag picks the
#: member by the input's type, so an error names what is wrong with that member (bench.config
#: leaves the tags out of the key path it reports).
OffloadEntry = Annotated[
    Annotated[BareMode, Tag("Literal[str]")] | Annotated[OffloadSpec, Tag("OffloadSpec")],
    Discriminator(_entry_tag),
]


def spec_of(entry: str | OffloadSpec) -> OffloadSpec:
    """The spec of a config's offload entry (a bare name is the mode with its defaults)."""
    return entry if isinstance(entry, OffloadSpec) else OffloadSpec(mode=entry)
