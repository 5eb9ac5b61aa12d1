"""Predict peak VRAM of one configuration as a sum of named terms, without a GPU.

A generation runs its components one after another (FLUX: CLIP, T5, the transformer's denoising
loop, the VAE decode), so the peak is the largest of those phases: what stays resident under the
offload mode, plus that phase's working memory. The formulas are in docs/size.md; each term's
explanation repeats the essentials so a printed prediction stands on its own.

What is generic lives here: residency under each offload mode, the GGUF dequantisation scratch,
allocator and CUDA context terms. The working memory of each component is the model family's
(`Family.activations`, looked up by the pipeline's family name), built from the shared blocks'
formulas (bench/blocks: the text encoders', the VAEs') and its own denoiser's. What a speed-up
keeps on the device is its entry's (`Speedup.size_terms`, bench/speedups), asked for each
speed-up of the scenario.
"""

from __future__ import annotations

from bench.families import get_family
from bench.offload import SEQUENTIAL_GGUF_NOTE, OffloadSpec, parse_offload  # re-exported
from bench.sizing.components import Component, PipelineComponents
from bench.sizing.terms import (
    ALLOCATOR_FACTOR,
    CUDA_CONTEXT_BYTES,
    Phase,
    Prediction,
    Scenario,
    Term,
)
from bench.sizing.units import fmt_bytes
from bench.speedups import speedup_for
from bench.speedups.base import SizeContext

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
    # What each speed-up keeps on the device: its entry's own formula (none for most kinds).
    context = SizeContext(pipe, family, running, scenario, compute_dtype, tuple(terms))
    for spec in scenario.speedups:
        terms += speedup_for(spec).size_terms(spec, context)
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


__all__ = ["SEQUENTIAL_GGUF_NOTE", "parse_offload", "predict", "resident"]
