"""The speed-ups axis: what can be applied to a loaded pipeline to make it faster or smaller in
memory without changing its weights (docs/speedups.md).

`SPEEDUPS` maps a speed-up's `kind` to its entry (bench/speedups/base.py says what one owns).
The config's speed-up union, the cell ids and the worker's application all ask this registry,
so adding a speed-up is one module here plus its entry below.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from bench.config_fields import entry_of
from bench.speedups.attention import AttentionSpeedup
from bench.speedups.base import Speedup
from bench.speedups.cache import CacheSpeedup
from bench.speedups.compile import CompileSpeedup
from bench.speedups.gguf_kernels import GgufKernelsSpeedup
from bench.speedups.lora import LoraSpeedup

__all__ = ["SPEEDUPS", "SpeedupSpec", "parse_speedup", "speedup_for"]

SPEEDUPS: dict[str, Speedup] = {
    entry.kind: entry
    for entry in (
        CompileSpeedup(),
        CacheSpeedup(),
        AttentionSpeedup(),
        GgufKernelsSpeedup(),
        LoraSpeedup(),
    )
}

# One member per registered entry, told apart by `kind`.
SpeedupSpec = Annotated[
    Union[tuple(s.config_model for s in SPEEDUPS.values())],  # noqa: UP007
    Field(discriminator="kind"),
]


def speedup_for(kind_or_spec: str | dict[str, Any] | Any) -> Speedup:
    """The entry of a kind, a recorded spec (a dict) or a spec model."""
    return entry_of(SPEEDUPS, kind_or_spec, "speed-up", "speed-up")


def parse_speedup(spec: dict[str, Any]) -> Any:
    """A recorded speed-up spec (a manifest cell's `speedup_spec`) as its entry's model."""
    return speedup_for(spec).config_model.model_validate(spec)
