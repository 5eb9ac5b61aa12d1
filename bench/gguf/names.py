"""FLUX.1 key names: diffusers <-> original BFL (Black Forest Labs) layout.

Community FLUX GGUF files use BFL names (``double_blocks.0.img_attn.qkv.weight``) and diffusers'
``from_single_file`` converts them back with ``convert_flux_transformer_checkpoint_to_diffusers``.
This module is the exact inverse of that converter: diffusers' separate ``to_q``/``to_k``/``to_v``
are concatenated into ``qkv`` (single blocks also append ``proj_mlp`` to form ``linear1``), and
``norm_out.linear`` gets its scale/shift halves swapped back. It also maps the other way, so a
BFL-keyed source can be written with diffusers names (needed for models narrower than 3072,
because diffusers' converter hard-codes FLUX.1's width when splitting ``linear1``).

A mapping is a list of ``Group``s: one BFL tensor <-> an ordered list of diffusers tensors that
are stacked along dim 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

FLUX1_WIDTH = 3072
BFL_PREFIX = "model.diffusion_model."
BFL_BLOCK_PREFIXES = ("double_blocks.", "single_blocks.")
DIFFUSERS_BLOCK_PREFIXES = ("transformer_blocks.", "single_transformer_blocks.")


@dataclass(frozen=True)
class Group:
    """One BFL tensor and the diffusers tensors it is made of (concatenated along dim 0)."""

    bfl: str
    diffusers: tuple[str, ...]
    swap_halves: bool = False  # final_layer.adaLN_modulation: (shift, scale) vs (scale, shift)


def _top_level(has_guidance: bool) -> list[Group]:
    pairs = [
        ("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1"),
        ("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2"),
        ("vector_in.in_layer", "time_text_embed.text_embedder.linear_1"),
        ("vector_in.out_layer", "time_text_embed.text_embedder.linear_2"),
        ("txt_in", "context_embedder"),
        ("img_in", "x_embedder"),
        ("final_layer.linear", "proj_out"),
    ]
    if has_guidance:
        pairs += [
            ("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1"),
            ("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2"),
        ]
    groups = [Group(f"{b}.{s}", (f"{d}.{s}",)) for b, d in pairs for s in ("weight", "bias")]
    groups += [
        Group(f"final_layer.adaLN_modulation.1.{s}", (f"norm_out.linear.{s}",), swap_halves=True)
        for s in ("weight", "bias")
    ]
    return groups


#: Per block kind: (BFL, diffusers) prefixes, linear layers (BFL name, diffusers parts; each has
#: a weight and a bias) and RMS-norm scales (BFL name, diffusers name).
_DOUBLE_LINEARS = (
    ("img_mod.lin", ("norm1.linear",)),
    ("txt_mod.lin", ("norm1_context.linear",)),
    ("img_attn.qkv", tuple(f"attn.to_{p}" for p in "qkv")),
    ("txt_attn.qkv", tuple(f"attn.add_{p}_proj" for p in "qkv")),
    ("img_mlp.0", ("ff.net.0.proj",)),
    ("img_mlp.2", ("ff.net.2",)),
    ("txt_mlp.0", ("ff_context.net.0.proj",)),
    ("txt_mlp.2", ("ff_context.net.2",)),
    ("img_attn.proj", ("attn.to_out.0",)),
    ("txt_attn.proj", ("attn.to_add_out",)),
)
_DOUBLE_NORMS = (
    ("img_attn.norm.query_norm", "attn.norm_q"),
    ("img_attn.norm.key_norm", "attn.norm_k"),
    ("txt_attn.norm.query_norm", "attn.norm_added_q"),
    ("txt_attn.norm.key_norm", "attn.norm_added_k"),
)
_SINGLE_LINEARS = (
    ("modulation.lin", ("norm.linear",)),
    ("linear1", ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")),
    ("linear2", ("proj_out",)),
)
_SINGLE_NORMS = (
    ("norm.query_norm", "attn.norm_q"),
    ("norm.key_norm", "attn.norm_k"),
)


def _block(
    b: str,
    d: str,
    linears: tuple[tuple[str, tuple[str, ...]], ...],
    norms: tuple[tuple[str, str], ...],
) -> list[Group]:
    """Groups of one block: all linear weights, then all biases, then the norm scales."""
    groups = [
        Group(f"{b}{bfl}.{s}", tuple(f"{d}{p}.{s}" for p in parts))
        for s in ("weight", "bias")
        for bfl, parts in linears
    ]
    groups += [Group(f"{b}{bfl}.scale", (f"{d}{dif}.weight",)) for bfl, dif in norms]
    return groups


def _block_count(keys: list[str], prefix: str) -> int:
    pat = re.compile(rf"^{re.escape(prefix)}(\d+)\.")
    idx = [int(m.group(1)) for k in keys if (m := pat.match(k))]
    return max(idx) + 1 if idx else 0


def strip_bfl_prefix(key: str) -> str:
    """Drop the ``model.diffusion_model.`` prefix that full BFL/ComfyUI checkpoints carry."""
    return key[len(BFL_PREFIX) :] if key.startswith(BFL_PREFIX) else key


def is_bfl_flux(keys: list[str]) -> bool:
    """True if the (prefix-stripped) keys look like an original BFL FLUX.1 state dict."""
    return "img_in.weight" in keys and any(k.startswith("double_blocks.") for k in keys)


def is_diffusers_flux(keys: list[str]) -> bool:
    """True if the keys look like a diffusers ``FluxTransformer2DModel`` state dict."""
    return "x_embedder.weight" in keys and "context_embedder.weight" in keys


def key_scheme(keys: Iterable[str]) -> Literal["bfl", "diffusers", "unknown"]:
    """Naming scheme of a tensor list, told by its transformer-block names."""
    keys = list(keys)
    if any(k.startswith(BFL_BLOCK_PREFIXES) for k in keys):
        return "bfl"
    if any(k.startswith(DIFFUSERS_BLOCK_PREFIXES) for k in keys):
        return "diffusers"
    return "unknown"


def flux_groups(keys: list[str]) -> list[Group]:
    """All groups for a FLUX model whose key set is ``keys`` (either naming scheme).

    Block counts and the presence of a guidance embedder are read from the keys themselves.
    """
    bfl = is_bfl_flux(keys)
    n_double = _block_count(keys, "double_blocks." if bfl else "transformer_blocks.")
    n_single = _block_count(keys, "single_blocks." if bfl else "single_transformer_blocks.")
    has_guidance = any(("guidance_in." if bfl else "guidance_embedder.") in k for k in keys)
    groups = _top_level(has_guidance)
    for i in range(n_double):
        groups += _block(
            f"double_blocks.{i}.", f"transformer_blocks.{i}.", _DOUBLE_LINEARS, _DOUBLE_NORMS
        )
    for i in range(n_single):
        groups += _block(
            f"single_blocks.{i}.", f"single_transformer_blocks.{i}.", _SINGLE_LINEARS, _SINGLE_NORMS
        )
    return groups


def diffusers_to_bfl_name(name: str) -> str | None:
    """BFL name of the group a single diffusers key belongs to (None if it has no BFL twin)."""
    keys = _probe_keys(name)
    for g in flux_groups(keys):
        if name in g.diffusers:
            return g.bfl
    return None


def _probe_keys(name: str) -> list[str]:
    """A minimal diffusers key set that makes ``flux_groups`` generate the block ``name`` is in."""
    keys = ["x_embedder.weight", "context_embedder.weight", name]
    if "guidance_embedder" in name:
        keys.append("time_text_embed.guidance_embedder.linear_1.weight")
    return keys
