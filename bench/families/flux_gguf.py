"""FLUX.1 GGUF tensor names: diffusers <-> original BFL (Black Forest Labs) layout, and its rules.

Community FLUX GGUF files (city96/FLUX.1-dev-gguf) use BFL names
(``double_blocks.0.img_attn.qkv.weight``) and ``general.architecture = "flux"``; diffusers'
``from_single_file`` converts them back with ``convert_flux_transformer_checkpoint_to_diffusers``.
The groups here are the exact inverse of that converter: diffusers' separate
``to_q``/``to_k``/``to_v`` are concatenated into ``qkv`` (single blocks also append ``proj_mlp``
to form ``linear1``), and ``norm_out.linear`` gets its scale/shift halves swapped back. They also
map the other way, so a BFL-keyed source can be written with diffusers names (needed for models
narrower than 3072, because diffusers' converter hard-codes FLUX.1's width when splitting
``linear1``).
"""

from __future__ import annotations

from collections.abc import Iterable

from bench.gguf.errors import ConversionError
from bench.gguf.names import Group, Shapes, TensorNames, block_count, scheme_of_blocks

FLUX1_WIDTH = 3072
BFL_BLOCK_PREFIXES = ("double_blocks.", "single_blocks.")
DIFFUSERS_BLOCK_PREFIXES = ("transformer_blocks.", "single_transformer_blocks.")
#: Names ComfyUI-GGUF / stable-diffusion.cpp never quantize (embedders and the final layer).
KEEP_PRECISION_MARKERS = (
    "txt_in.",
    "img_in.",
    "time_in.",
    "vector_in.",
    "guidance_in.",
    "final_layer.",
)
#: Diffusers names of the projections that form BFL's fused double-block ``attn.qkv`` weights.
_DIFFUSERS_QKV = ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj")


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
    n_double = block_count(keys, "double_blocks." if bfl else "transformer_blocks.")
    n_single = block_count(keys, "single_blocks." if bfl else "single_transformer_blocks.")
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


def _probe_keys(name: str) -> list[str]:
    """A minimal diffusers key set that makes ``flux_groups`` generate the block ``name`` is in."""
    keys = ["x_embedder.weight", "context_embedder.weight", name]
    if "guidance_embedder" in name:
        keys.append("time_text_embed.guidance_embedder.linear_1.weight")
    return keys


class FluxTensorNames(TensorNames):
    """FLUX.1's names and the community recipe's rules (ComfyUI-GGUF, city96's files)."""

    architecture = "flux"
    title = "FLUX"
    original_scheme = "bfl"
    block_prefixes = BFL_BLOCK_PREFIXES + DIFFUSERS_BLOCK_PREFIXES
    keep_precision_markers = KEEP_PRECISION_MARKERS

    width_tensors = ("x_embedder.weight", "img_in.weight")
    is_original = staticmethod(is_bfl_flux)
    is_diffusers = staticmethod(is_diffusers_flux)
    groups = staticmethod(flux_groups)

    def scheme(self, keys: Iterable[str]) -> str:
        """Told by the transformer-block names: BFL's take precedence over diffusers'."""
        return scheme_of_blocks(keys, "bfl", BFL_BLOCK_PREFIXES, DIFFUSERS_BLOCK_PREFIXES)

    def original_name(self, diffusers_key: str) -> str | None:
        for g in flux_groups(_probe_keys(diffusers_key)):
            if diffusers_key in g.diffusers:
                return g.original
        return None

    def is_fused_qkv(self, name: str) -> bool:
        """BFL's double-block ``attn.qkv`` and its diffusers parts (single blocks' ``linear1``
        fuses the MLP too and keeps the base type, as in the community's _M files)."""
        if "attn.qkv.weight" in name:
            return True
        if name.startswith("transformer_blocks."):
            return any(f"attn.{p}.weight" in name for p in _DIFFUSERS_QKV)
        return False

    def default_scheme(self, width: int | None) -> str:
        """BFL names only for FLUX.1's width, which diffusers' converter assumes."""
        return "bfl" if width == FLUX1_WIDTH else "diffusers"

    def split_sizes(self, group: Group, rows: int, shapes: Shapes) -> list[int]:
        n = len(group.diffusers)
        if n == 1:
            return [rows]
        if n == 3:
            if rows % 3:
                raise ConversionError(f"{group.original}: {rows} rows cannot be split into q, k, v")
            return [rows // 3] * 3
        width = shapes["img_in.weight"][0]
        return [width, width, width, rows - 3 * width]  # single-block linear1: q, k, v, mlp


FLUX_TENSOR_NAMES = FluxTensorNames()


def diffusers_to_bfl_name(name: str) -> str | None:
    """BFL name of the FLUX group a single diffusers key belongs to (None if it has no twin)."""
    return FLUX_TENSOR_NAMES.original_name(name)
