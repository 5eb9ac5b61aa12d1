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
from dataclasses import dataclass

FLUX1_WIDTH = 3072
BFL_PREFIX = "model.diffusion_model."


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


def _double_block(i: int) -> list[Group]:
    b, d = f"double_blocks.{i}.", f"transformer_blocks.{i}."
    groups: list[Group] = []
    for s in ("weight", "bias"):
        groups += [
            Group(f"{b}img_mod.lin.{s}", (f"{d}norm1.linear.{s}",)),
            Group(f"{b}txt_mod.lin.{s}", (f"{d}norm1_context.linear.{s}",)),
            Group(f"{b}img_attn.qkv.{s}", tuple(f"{d}attn.to_{p}.{s}" for p in "qkv")),
            Group(f"{b}txt_attn.qkv.{s}", tuple(f"{d}attn.add_{p}_proj.{s}" for p in "qkv")),
            Group(f"{b}img_mlp.0.{s}", (f"{d}ff.net.0.proj.{s}",)),
            Group(f"{b}img_mlp.2.{s}", (f"{d}ff.net.2.{s}",)),
            Group(f"{b}txt_mlp.0.{s}", (f"{d}ff_context.net.0.proj.{s}",)),
            Group(f"{b}txt_mlp.2.{s}", (f"{d}ff_context.net.2.{s}",)),
            Group(f"{b}img_attn.proj.{s}", (f"{d}attn.to_out.0.{s}",)),
            Group(f"{b}txt_attn.proj.{s}", (f"{d}attn.to_add_out.{s}",)),
        ]
    groups += [
        Group(f"{b}img_attn.norm.query_norm.scale", (f"{d}attn.norm_q.weight",)),
        Group(f"{b}img_attn.norm.key_norm.scale", (f"{d}attn.norm_k.weight",)),
        Group(f"{b}txt_attn.norm.query_norm.scale", (f"{d}attn.norm_added_q.weight",)),
        Group(f"{b}txt_attn.norm.key_norm.scale", (f"{d}attn.norm_added_k.weight",)),
    ]
    return groups


def _single_block(i: int) -> list[Group]:
    b, d = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
    groups: list[Group] = []
    for s in ("weight", "bias"):
        groups += [
            Group(f"{b}modulation.lin.{s}", (f"{d}norm.linear.{s}",)),
            Group(
                f"{b}linear1.{s}",
                (f"{d}attn.to_q.{s}", f"{d}attn.to_k.{s}", f"{d}attn.to_v.{s}", f"{d}proj_mlp.{s}"),
            ),
            Group(f"{b}linear2.{s}", (f"{d}proj_out.{s}",)),
        ]
    groups += [
        Group(f"{b}norm.query_norm.scale", (f"{d}attn.norm_q.weight",)),
        Group(f"{b}norm.key_norm.scale", (f"{d}attn.norm_k.weight",)),
    ]
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
        groups += _double_block(i)
    for i in range(n_single):
        groups += _single_block(i)
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
