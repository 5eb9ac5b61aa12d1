"""What the families' denoisers have in common for `bench size`: the peak of one transformer
block as a number of live (tokens × hidden) tensors (docs/size.md). Each family counts its own
block's live tensors and says which block it is; the arithmetic is written once here. So is
what a speed-up keeps on the device beside them (LoRA adapters, a cache's state), from the
denoiser's module names and the token streams its family gives (docs/speedups.md)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

from bench.sizing.components import DTYPE_BYTES, Component, ModuleGroup, module_names
from bench.sizing.terms import DenoiserStreams


def block_peak(
    transformer: Component,
    tokens: int,
    rows: int,
    dtype: str,
    live_units: tuple[int, int],
    where: str,
) -> tuple[int, str]:
    """``live_units`` (at 16-bit, at float32) tensors of tokens × hidden (heads × head dim) for
    ``rows`` sequences at ``dtype``: (bytes, why), the why naming the block as ``where`` says."""
    cfg = transformer.config
    hidden = int(cfg["num_attention_heads"]) * int(cfg["attention_head_dim"])
    half, float32 = live_units
    units = float32 if dtype == "float32" else half
    b = DTYPE_BYTES[dtype]
    why = (
        f"{units} live tensors of tokens×hidden = {units}×{rows}×{tokens}×{hidden}×{b} B at the "
        f"peak of {where}"
    )
    return units * rows * tokens * hidden * b, why


# ---------------------------------------------------------------------------------------------
# What a speed-up keeps on the device (`bench size --speedup`)

#: diffusers' TaylorSeer hooks the modules whose names match these in full
#: (hooks/taylorseer_cache.py: _TRANSFORMER_BLOCK_IDENTIFIERS, the default `cache_identifiers`)
TAYLORSEER_PATTERNS = (
    "^blocks.*attn",
    "^transformer_blocks.*attn",
    "^single_transformer_blocks.*attn",
    "^temporal_transformer_blocks.*attn",
)
#: TaylorSeerCacheConfig.taylor_factors_dtype's default, bfloat16 (the harness keeps it)
TAYLORSEER_FACTOR_BYTES = 2


def hidden_size(denoiser: Component) -> int:
    """Width of the tokens between blocks: heads × head dim."""
    cfg = denoiser.config
    return int(cfg["num_attention_heads"]) * int(cfg["attention_head_dim"])


def is_lora_target(name: str, targets: Sequence[str]) -> bool:
    """Whether a LoRA adapter wraps the module of this name: its name, or its last dotted
    parts, is a target (the rule both the adapters bench.speedups.lora makes and their size
    follow; the module must also have in_features and out_features)."""
    return any(name == t or name.endswith("." + t) for t in targets)


def lora_targets(denoiser: Component, targets: Sequence[str]) -> list[tuple[str, int, int]]:
    """(name, in, out) of the layers a LoRA adapter wraps (`is_lora_target`, with in_features
    and out_features)."""
    return list(_lora_targets(denoiser.modules, tuple(targets)))


@cache
def _lora_targets(
    groups: tuple[ModuleGroup, ...], targets: tuple[str, ...]
) -> tuple[tuple[str, int, int], ...]:
    """`lora_targets` once per denoiser: a query asks again in every phase of every variant ×
    offload option, and every variant of a base has the same modules."""
    return tuple(
        (name, inputs, outputs)
        for name, inputs, outputs in module_names(groups)
        if inputs is not None and outputs is not None and is_lora_target(name, targets)
    )


def lora_parameters(denoiser: Component, targets: Sequence[str], rank: int) -> int:
    """Parameters of one adapter: peft's lora_A (rank × in) and lora_B (out × rank) per layer."""
    return sum(rank * (inputs + outputs) for _, inputs, outputs in lora_targets(denoiser, targets))


def first_block_cache_elements(streams: DenoiserStreams, hidden: int) -> int:
    """Elements First Block Cache keeps between calls (hooks/first_block_cache.py,
    FBCSharedBlockState): the head block's output (image and text streams) and its image
    residual, and the tail block's residuals (image and text): 3 image + 2 text tensors of
    rows × tokens × hidden, per cache context."""
    tokens = 3 * streams.image_tokens + 2 * streams.text_tokens
    return streams.passes * streams.rows * tokens * hidden


def taylorseer_modules(denoiser: Component) -> int:
    """How many modules TaylorSeer hooks (TAYLORSEER_PATTERNS, as re.fullmatch reads them)."""
    return _taylorseer_modules(denoiser.modules)


@cache
def _taylorseer_modules(groups: tuple[ModuleGroup, ...]) -> int:
    """`taylorseer_modules` once per denoiser (as `_lora_targets`)."""
    return sum(
        1
        for name, _, _ in module_names(groups)
        if any(re.fullmatch(p, name) for p in TAYLORSEER_PATTERNS)
    )


def taylorseer_elements(modules: int, max_order: int, streams: DenoiserStreams, hidden: int) -> int:
    """Elements TaylorSeer keeps (TaylorSeerState.taylor_factors): for each hooked attention,
    max_order + 1 factors of each output; an attention returns the image and the text tokens
    of its block (rows × tokens × hidden), per cache context."""
    tokens = streams.image_tokens + streams.text_tokens
    return modules * (max_order + 1) * streams.passes * streams.rows * tokens * hidden
