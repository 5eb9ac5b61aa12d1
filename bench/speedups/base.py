"""What a speed-up is to the harness: one class per entry, one module each.

A speed-up is something applied to a loaded pipeline, after its offload, that changes how fast
it runs (or how much memory it holds) without changing which weights it has: torch.compile, a
diffusers cache, an attention backend, the GGUF CUDA kernels, LoRA adapters. Each entry owns its
config model (strict, bounded, like a backend's variant model), its label, the combinations it
knows to fail before anything loads, how it is applied through diffusers' own API, what it adds
to the cell record, and what it keeps on the device for `bench size --speedup` (`size_terms`,
from the engines' formulas in bench/blocks). The rest of the harness asks the registry
(bench/speedups/__init__.py) and never tests an entry's kind; tests/speedups/test_conformance.py
runs every entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import AfterValidator, Field

from bench import limits
from bench.config_base import Strict, unique
from bench.config_fields import Name, VariantName
from bench.sizing.terms import Term

if TYPE_CHECKING:
    from bench.families.base import Family
    from bench.sizing.components import PipelineComponents
    from bench.sizing.terms import Scenario

#: What an applied speed-up reports for the cell record, called after the warm-up: the fields it
#: measured (compile time and dynamo counters, the denoiser calls a cache skipped, ...).
Probe = Callable[[], dict[str, Any]]

#: One timed call of the loaded pipeline at another (height, width), not recorded as an image:
#: its wall seconds. What an entry may run after the warm-up (`Speedup.after_warmup`).
RunAt = Callable[[tuple[int, int]], float]


class SpeedupConfig(Strict):
    """What every speed-up has: the name that goes into cell ids, and its kind."""

    name: Name
    variants: (
        Annotated[
            list[VariantName],
            Field(min_length=1, max_length=limits.MAX_VARIANTS),
            AfterValidator(unique),
        ]
        | None
    ) = Field(default=None, description="the variants it applies to (default: all of them)")


class SpeedupIncompatible(RuntimeError):
    """A combination documented to fail, recorded as the cell's failure before anything loads
    (like sequential offload with GGUF): the message says why."""


@dataclass(frozen=True)
class ApplyContext:
    """What an entry may need besides the pipeline: its denoiser, the steps per image, the
    device it runs on, the variant's backend kind (`bitsandbytes`, `gguf`, ...)."""

    denoiser: Any
    steps: int
    device_type: str
    variant_kind: str


@dataclass(frozen=True)
class SizeContext:
    """What an entry may need to size what it keeps on the device during one phase of a
    generation (bench.sizing.predict makes one per phase): the pipeline's components and their
    family, the component running in that phase, the settings, the dtype the denoiser computes
    in, and the terms the phase holds so far (its weights on the device, its activations)."""

    pipe: PipelineComponents
    family: Family
    running: str
    scenario: Scenario
    compute_dtype: str
    terms: tuple[Term, ...]


class Speedup:
    """One entry of the speed-up axis (see the module)."""

    kind: ClassVar[str]
    config_model: ClassVar[type[SpeedupConfig]]
    #: What the entry is, in the words of diffusers' documentation (docs/speedups.md).
    description: ClassVar[str]

    def label(self, spec: Any) -> str:
        """Its words in tables: what was applied, with the settings that matter."""
        raise NotImplementedError

    def incompatibility(self, spec: Any, variant_kind: str, device_type: str) -> str | None:
        """A documented reason the cell cannot work, known before loading; None if none."""
        return None

    def apply(self, pipe: Any, spec: Any, context: ApplyContext) -> Probe:
        """Apply it to the loaded pipeline through diffusers' API; an exception is the cell's
        failure, with the library's own message. Returns what it reports after the warm-up."""
        raise NotImplementedError

    def after_warmup(self, spec: Any, run_at: RunAt) -> dict[str, Any]:
        """What the entry measures after the warm-up and its probe, before the images (compile's
        first call at a new resolution), merged into the cell record's `speedup`; by default
        nothing."""
        return {}

    def size_terms(self, spec: Any, context: SizeContext) -> list[Term]:
        """What the entry keeps on the device while `context.running` computes, as named terms
        of the predicted peak (docs/size.md); by default none: compile, the attention backends
        and the GGUF kernels keep no tensors of their own that we can name."""
        return []
