"""The named terms a VRAM prediction is made of, the settings it is made for, and the constants
behind the overhead terms.

A prediction is a list of `Term`s whose sum is the predicted peak, so a user sees where the
memory goes (weights, dequantisation scratch, activations, VAE decode, CUDA context) instead of
one opaque number. Every constant here says where it comes from. `Scenario` is what a peak
depends on besides the weights: the families' working-memory formulas read it
(`Family.activations`), and bench.sizing.predict sums the terms under it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bench.offload import OffloadSpec
from bench.sizing.units import MIB

TermKind = Literal["weights", "scratch", "activations", "allocator", "context", "cache"]

#: CUDA context of a PyTorch process with lazy module loading (the default since torch 1.13):
#: PyTorch PR #86509 measured 287 MB with lazy loading (667 MB without) for a tiny tensor op;
#: pytorch/pytorch#109888 (ptrblck) gives ~400 MB; cuBLAS/cuDNN handles and the attention and
#: convolution kernels a diffusion pipeline loads add to it. 512 MiB is a round figure within
#: that range. It is outside `torch.cuda.memory_reserved` and inside NVML's "used".
CUDA_CONTEXT_BYTES = 512 * MIB

#: The caching allocator holds more than the live tensors (2 MiB rounding, blocks that a later
#: request of another size cannot reuse), and the activation terms below count only the tensors
#: we can name in the code, not every temporary. One factor covers both: reserved working memory
#: = ALLOCATOR_FACTOR × named live working memory. Fitted, not derived: the Hugging Face blog
#: "Exploring Quantization Backends in Diffusers" (H100, 1024², torch.cuda.max_memory_reserved)
#: reports 1.10-1.13 GiB above the transformer's weights under model offload (BF16 and Q8_0) and
#: 4.5-4.7 GiB above the load figure without offload (the VAE decode at 1024²); the named live
#: tensors (docs/size.md) are 0.45 GiB and 1.5 GiB there, so the factor is about 2.5 for the
#: transformer and 3 for the VAE; 2.5 is used for both. A `bench size --check` of a GPU run
#: shows how well it holds on other cards and resolutions.
ALLOCATOR_FACTOR = 2.5


@dataclass(frozen=True)
class Scenario:
    """The settings a peak depends on besides the weights."""

    offload: OffloadSpec
    height: int = 1024
    width: int = 1024
    batch: int = 1
    max_sequence_length: int = 512
    #: frames of one video (a video family; None: an image, or the family's default count)
    num_frames: int | None = None
    #: speed-up specs (bench.speedups' config models) whose memory the prediction adds
    speedups: tuple[Any, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "offload": self.offload.label,
            "height": self.height,
            "width": self.width,
            "batch": self.batch,
            "max_sequence_length": self.max_sequence_length,
        }
        if self.num_frames is not None:
            out["num_frames"] = self.num_frames
        if self.speedups:
            out["speedups"] = [s.model_dump(mode="json") for s in self.speedups]
        return out


@dataclass(frozen=True)
class DenoiserStreams:
    """What the denoiser's blocks return in one call (`Family.denoiser_streams`), for the state
    a cache keeps: the image (latent) tokens, the text tokens a joint block returns beside them
    (0 where text enters by cross-attention only), the sequences per call, and the calls per
    step that keep their own cache state (diffusers' `cache_context("cond")`/`("uncond")`)."""

    image_tokens: int
    text_tokens: int
    rows: int
    passes: int = 1


@dataclass(frozen=True)
class Term:
    """One named part of a predicted peak."""

    name: str
    bytes: int
    explanation: str
    kind: TermKind
    component: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Phase:
    """One stage of a generation (text encoding, denoising, VAE decode) and what it holds."""

    name: str
    terms: tuple[Term, ...]

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.terms)


@dataclass(frozen=True)
class Prediction:
    """Predicted peak of one configuration: the terms of its largest phase, plus the others.

    `terms` sum to `total_bytes` (what NVML would show above an idle device); `reserved_bytes`
    leaves the CUDA context out, which is what `torch.cuda.max_memory_reserved` reports.
    """

    label: str
    settings: dict[str, Any]
    peak_phase: str
    terms: tuple[Term, ...]
    phases: tuple[Phase, ...] = field(default_factory=tuple)
    notes: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(t.bytes for t in self.terms)

    @property
    def reserved_bytes(self) -> int:
        return sum(t.bytes for t in self.terms if t.kind != "context")

    @property
    def weights_bytes(self) -> int:
        return sum(t.bytes for t in self.terms if t.kind == "weights")

    def term(self, name: str) -> Term | None:
        return next((t for t in self.terms if t.name == name), None)

    def largest_term(self) -> Term:
        return max(self.terms, key=lambda t: t.bytes)

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "settings": self.settings,
            "peak_phase": self.peak_phase,
            "total_bytes": self.total_bytes,
            "reserved_bytes": self.reserved_bytes,
            "terms": [t.to_json() for t in self.terms],
            "phases": {p.name: p.bytes for p in self.phases},
            "notes": list(self.notes),
        }
