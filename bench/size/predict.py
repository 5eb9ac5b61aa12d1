"""Predict peak VRAM of one configuration as a sum of named terms, without a GPU.

A generation runs its components one after another (FLUX: CLIP, T5, the transformer's denoising
loop, the VAE decode), so the peak is the largest of those phases: what stays resident under the
offload mode, plus that phase's working memory. The formulas are in docs/size.md; each term's
explanation repeats the essentials so a printed prediction stands on its own.

What is generic lives here: residency under each offload mode, the GGUF dequantisation scratch,
allocator and CUDA context terms, and the working memory of building blocks several families
share (T5 and CLIP text encoders, AutoencoderKL's decoder). Which formula applies to which
component, and the denoiser's own formula, are the model family's (`Family.activations`;
FLUX's in bench/families/flux.py, re-exported below under the names they had here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.families import get_family
from bench.families.flux import (  # FLUX's formulas, importable from here as before
    LIVE_UNITS_FLOAT32,
    LIVE_UNITS_HALF,
    image_tokens,
    transformer_activations,
)
from bench.offload import SEQUENTIAL_GGUF_NOTE, OffloadSpec, parse_offload  # re-exported
from bench.size.components import DTYPE_BYTES, Component, PipelineComponents
from bench.size.terms import ALLOCATOR_FACTOR, CUDA_CONTEXT_BYTES, Phase, Prediction, Term
from bench.size.units import fmt_bytes


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
        return out


# ---------------------------------------------------------------------------------------------
# Working memory of building blocks several families share


def text_encoder_activations(
    encoder: Component, tokens: int, batch: int, dtype: str
) -> tuple[int, str]:
    """T5: eager attention keeps heads×L² scores (position bias, scores, float32 softmax).

    CLIP-style encoders use SDPA at 77 tokens; their MLP intermediate dominates.
    """
    cfg = encoder.config
    b = DTYPE_BYTES[dtype]
    if "d_ff" in cfg:  # T5
        heads, d_ff, d_model = int(cfg["num_heads"]), int(cfg["d_ff"]), int(cfg["d_model"])
        attention = heads * tokens * tokens * (b + b + 4 + 4)
        mlp = 4 * tokens * d_ff * b
        work = batch * (max(attention, mlp) + 3 * tokens * d_model * b)
        why = (
            f"T5 at {tokens} tokens: eager attention {heads} heads × {tokens}² × (2×{b}+2×4) B "
            "(position bias, scores, float32 softmax) or gated MLP 4×tokens×d_ff, the larger"
        )
        return work, why
    tokens = int(cfg.get("max_position_embeddings", 77))
    hidden = int(cfg.get("hidden_size", 768))
    inter = int(cfg.get("intermediate_size", 4 * hidden))
    work = batch * tokens * (2 * inter + 6 * hidden) * b
    return work, f"{tokens} tokens × (2 MLP intermediates + 6 hidden) × {b} B"


def vae_decode_activations(vae: Component, height: int, width: int, batch: int) -> tuple[int, str]:
    """Largest set of live conv activations in the decoder (AutoencoderKL's UpDecoderBlock2D).

    At each up block the first resnet holds its input, the GroupNorm output and the SiLU output
    (3 × C_in × pixels); an upsampler holds its input and the interpolated and convolved
    outputs at twice the resolution; the mid-block attention ~6 × C × latent pixels.
    """
    cfg = vae.config
    channels = list(reversed(cfg["block_out_channels"]))
    levels = len(channels)
    b = DTYPE_BYTES[vae.dtype]
    h0, w0 = height // 2 ** (levels - 1), width // 2 ** (levels - 1)
    candidates: list[tuple[int, str]] = [(6 * channels[0] * h0 * w0, "mid-block attention")]
    for i, out_ch in enumerate(channels):
        pixels = (h0 << i) * (w0 << i)
        c_in = channels[i - 1] if i else channels[0]
        candidates.append((3 * c_in * pixels, f"up block {i} first resnet ({c_in} ch)"))
        if i < levels - 1:
            candidates.append(
                (out_ch * pixels + 2 * out_ch * pixels * 4, f"up block {i} upsampler ({out_ch} ch)")
            )
    elements, where = max(candidates)
    why = f"{where} at {height}×{width}: {elements:,} values × {b} B × batch {batch}"
    return elements * b * batch, why


# ---------------------------------------------------------------------------------------------
# Residency under each offload mode


def resident(
    pipe: PipelineComponents, running: str, offload: OffloadSpec
) -> list[tuple[Component, int, str]]:
    """(component, bytes on the device, why) while `running` computes.

    Reads what the mode keeps (`offload.kind`, bench.offload's KINDS); one formula per kind.
    """
    comps = pipe.components
    comp = comps[running]
    kind = offload.kind
    if kind.keeps == "all":
        return [
            (c, c.bytes, f"{c.weights_format}, all of it ({kind.words})") for c in comps.values()
        ]
    if kind.keeps == "component":
        why = f"{kind.words} keeps only the running component on the device"
        return [(comp, comp.bytes, why)]
    copies = offload.copies
    stream = " ×2 (use_stream prefetches the next group)" if copies == 2 else ""
    if kind.keeps == "leaf":
        why = f"{kind.words}: one leaf module at a time, the largest is {comp.leaf_name!r}{stream}"
        return [(comp, min(comp.leaf_bytes * copies, comp.bytes), why)]
    k = offload.blocks_per_group
    onloaded = comp.outside_blocks_bytes + k * comp.block_bytes * copies
    why = (
        f"{kind.words}: {k} of {comp.n_blocks} blocks at a time{stream} plus "
        f"{fmt_bytes(comp.outside_blocks_bytes)} outside the blocks"
    )
    if comp.n_blocks == 0:
        why = f"{kind.words}: no top-level block list, the whole model moves at once"
    return [(comp, min(onloaded, comp.bytes), why)]


def _phase(pipe: PipelineComponents, running: str, scenario: Scenario, compute_dtype: str) -> Phase:
    comp = pipe.components[running]
    terms: list[Term] = []
    for c, nbytes, why in resident(pipe, running, scenario.offload):
        terms.append(Term(f"weights: {c.name}", nbytes, why, "weights", c.name))
    family = get_family(pipe.family)
    if comp.name == family.denoiser and comp.dequant_bytes:
        fmt = comp.weights_format or pipe.transformer_format
        gguf = fmt.startswith("GGUF")
        terms.append(
            Term(
                # GGUF dequantises in Python (diffusers' quantizers/gguf/utils.py), the others
                # in their library's kernels: same term, its own words.
                "GGUF dequantisation scratch" if gguf else "dequantisation scratch",
                comp.dequant_bytes,
                f"one weight dequantised at a time, the largest: {comp.dequant_tensor} "
                + (
                    f"(float16 intermediates, then cast to {compute_dtype})"
                    if gguf
                    else f"(as {fmt} stores it, widened to {compute_dtype})"
                ),
                "scratch",
                comp.name,
            )
        )
    name, work, why = family.activations(comp, pipe, scenario, compute_dtype)
    terms.append(Term(name, work, why, "activations", comp.name))
    terms.append(
        Term(
            "allocator overhead",
            int((ALLOCATOR_FACTOR - 1) * work),
            f"caching allocator and unnamed temporaries: ({ALLOCATOR_FACTOR} - 1) × activations "
            "(factor fitted to published H100 figures, docs/size.md)",
            "allocator",
        )
    )
    terms.append(
        Term(
            "CUDA context",
            CUDA_CONTEXT_BYTES,
            "driver context and kernels with lazy loading (PyTorch PR #86509, issue #109888)",
            "context",
        )
    )
    return Phase(running, tuple(terms))


def predict(pipe: PipelineComponents, scenario: Scenario) -> Prediction:
    """Peak VRAM of `pipe` under `scenario`: the terms of the largest phase."""
    denoiser = pipe.components.get(get_family(pipe.family).denoiser)
    dtype = denoiser.dtype if denoiser else "bfloat16"
    phases = tuple(_phase(pipe, name, scenario, dtype) for name in pipe.offload_order)
    peak = max(phases, key=lambda p: p.bytes)
    failure = scenario.offload.fails_with(pipe.transformer_format)
    notes = [failure] if failure else []
    return Prediction(
        label=f"{pipe.label} · {pipe.transformer_format} · {scenario.offload.label}",
        settings={**scenario.to_json(), "compute_dtype": dtype},
        peak_phase=peak.name,
        terms=peak.terms,
        phases=phases,
        notes=tuple(notes),
    )


__all__ = [
    "LIVE_UNITS_FLOAT32",
    "LIVE_UNITS_HALF",
    "SEQUENTIAL_GGUF_NOTE",
    "Scenario",
    "image_tokens",
    "parse_offload",
    "predict",
    "resident",
    "text_encoder_activations",
    "transformer_activations",
    "vae_decode_activations",
]
