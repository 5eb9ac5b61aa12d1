"""Wan 2.1 / 2.2 GGUF tensor names: diffusers <-> Wan's original layout, and its rules.

Community Wan GGUF files (city96/Wan2.1-T2V-14B-gguf, QuantStack's Wan2.2 files, all made with
ComfyUI-GGUF's tools) keep the names of Wan-AI's own checkpoint (``blocks.0.self_attn.q.weight``,
``head.modulation``) and declare ``general.architecture = "wan"``; diffusers'
``WanTransformer3DModel.from_single_file`` renames them with
``convert_wan_transformer_to_diffusers`` (diffusers/loaders/single_file_utils.py). The names here
are the exact inverse of that converter, which only renames (no tensor is fused or split):

- ``self_attn``/``cross_attn`` are ``attn1``/``attn2``, their ``q``/``k``/``v``/``o`` the
  ``to_q``/``to_k``/``to_v``/``to_out.0``; the image-to-video models' ``k_img``/``v_img``/
  ``norm_k_img`` are ``add_k_proj``/``add_v_proj``/``norm_added_k``;
- the block's only affine norm, the cross-attention norm, is ``norm3`` in Wan's names and
  ``norm2`` in diffusers' (the converter swaps the two names);
- ``ffn.0``/``ffn.2`` are ``ffn.net.0.proj``/``ffn.net.2``; ``modulation`` is
  ``scale_shift_table`` (``head.modulation`` the top-level one), ``head.head`` is ``proj_out``;
- the embedders ``time_embedding.0/2``, ``time_projection.1``, ``text_embedding.0/2`` (and the
  image-to-video ``img_emb.proj.*``) live under ``condition_embedder``; ``patch_embedding`` (a
  Conv3d, its weight 5-D) keeps its name.

Precision follows city96's recipe: ``tools/lcpp.patch`` never quantizes the modulation tables,
``patch_embedding``, the text/time embedders and projection, ``img_emb`` or the ``head``;
``tools/convert.py`` keeps ``.modulation`` in F32 ("nn.parameter, can't load from BF16"), and
``tools/fix_5d_tensors.py`` appends the 5-D patch embedding as an F32 tensor after quantization
(ggml has at most 4 dimensions; the GGUF format itself records any count). Wan has no fused
attention projections, so the ``_M`` mixes raise nothing here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bench.gguf.names import Group, TensorNames

BLOCK_PREFIX = "blocks."  # the same in both namings
#: lcpp.patch's exclusions for LLM_ARCH_WAN, and their diffusers twins.
KEEP_PRECISION_MARKERS = (
    "modulation",
    "patch_embedding.",
    "text_embedding.",
    "time_projection.",
    "time_embedding.",
    "img_emb.",
    "head.",
    "scale_shift_table",
    "condition_embedder.",
    "proj_out.",
)
#: convert.py's keys_hiprec for Wan (and the diffusers name of the same tensors): kept in F32.
FLOAT32_MARKERS = (".modulation", "head.modulation", "scale_shift_table")

#: (original, diffusers) prefixes of whole top-level tensors, in the converter's terms.
_TOP_LEVEL = (
    ("time_embedding.0.", "condition_embedder.time_embedder.linear_1."),
    ("time_embedding.2.", "condition_embedder.time_embedder.linear_2."),
    ("text_embedding.0.", "condition_embedder.text_embedder.linear_1."),
    ("text_embedding.2.", "condition_embedder.text_embedder.linear_2."),
    ("time_projection.1.", "condition_embedder.time_proj."),
    ("img_emb.proj.0.", "condition_embedder.image_embedder.norm1."),
    ("img_emb.proj.1.", "condition_embedder.image_embedder.ff.net.0.proj."),
    ("img_emb.proj.3.", "condition_embedder.image_embedder.ff.net.2."),
    ("img_emb.proj.4.", "condition_embedder.image_embedder.norm2."),
    ("head.head.", "proj_out."),
    ("patch_embedding.", "patch_embedding."),
)
#: (original, diffusers) pieces of a block tensor's name after ``blocks.<i>.``.
_BLOCK_MODULES = (
    ("self_attn.q.", "attn1.to_q."),
    ("self_attn.k.", "attn1.to_k."),
    ("self_attn.v.", "attn1.to_v."),
    ("self_attn.o.", "attn1.to_out.0."),
    ("self_attn.norm_q.", "attn1.norm_q."),
    ("self_attn.norm_k.", "attn1.norm_k."),
    ("cross_attn.q.", "attn2.to_q."),
    ("cross_attn.k.", "attn2.to_k."),
    ("cross_attn.v.", "attn2.to_v."),
    ("cross_attn.o.", "attn2.to_out.0."),
    ("cross_attn.norm_q.", "attn2.norm_q."),
    ("cross_attn.norm_k.", "attn2.norm_k."),
    ("cross_attn.k_img.", "attn2.add_k_proj."),
    ("cross_attn.v_img.", "attn2.add_v_proj."),
    ("cross_attn.norm_k_img.", "attn2.norm_added_k."),
    ("norm3.", "norm2."),
    ("ffn.0.", "ffn.net.0.proj."),
    ("ffn.2.", "ffn.net.2."),
)
_BLOCK = re.compile(rf"^{re.escape(BLOCK_PREFIX)}(\d+)\.(.*)$")


def _rename(key: str, pairs: Iterable[tuple[str, str]], to_original: bool) -> str | None:
    for original, diffusers in pairs:
        src, dst = (diffusers, original) if to_original else (original, diffusers)
        if key.startswith(src):
            return dst + key[len(src) :]
    return None


#: The one tensor each scheme names without a dot-separated module path: (original, diffusers),
#: at the top level and inside every block.
_TOP_MODULATION = ("head.modulation", "scale_shift_table")
_BLOCK_MODULATION = ("modulation", "scale_shift_table")


def _convert(key: str, to_original: bool) -> str | None:
    """One key in the other scheme (None: the converter makes no such name); the same tables
    read in either direction, so the two schemes cannot drift apart."""
    src, dst = (1, 0) if to_original else (0, 1)
    if key == _TOP_MODULATION[src]:
        return _TOP_MODULATION[dst]
    m = _BLOCK.match(key)
    if m:
        i, rest = m.groups()
        if rest == _BLOCK_MODULATION[src]:
            return f"{BLOCK_PREFIX}{i}.{_BLOCK_MODULATION[dst]}"
        renamed = _rename(rest, _BLOCK_MODULES, to_original=to_original)
        return None if renamed is None else f"{BLOCK_PREFIX}{i}.{renamed}"
    return _rename(key, _TOP_LEVEL, to_original=to_original)


def to_original(key: str) -> str | None:
    """Wan's name of one diffusers key (None: the converter makes no such name)."""
    return _convert(key, to_original=True)


def to_diffusers(key: str) -> str | None:
    """diffusers' name of one of Wan's keys, as convert_wan_transformer_to_diffusers makes it."""
    return _convert(key, to_original=False)


def is_original_wan(keys: Iterable[str]) -> bool:
    """True for Wan-AI's own naming (city96's convert.py detects it by these three keys)."""
    keys = set(keys)
    return {"head.modulation", "text_embedding.2.weight"} <= keys and any(
        ".self_attn." in k for k in keys
    )


def is_diffusers_wan(keys: Iterable[str]) -> bool:
    """True for a diffusers ``WanTransformer3DModel`` state dict."""
    keys = set(keys)
    return {"scale_shift_table", "condition_embedder.time_proj.weight"} <= keys and any(
        ".attn1." in k for k in keys
    )


def wan_groups(keys: list[str]) -> list[Group]:
    """One group per tensor (Wan fuses nothing): its original name and its diffusers name."""
    original = is_original_wan(keys)
    groups = []
    for k in keys:
        other = to_diffusers(k) if original else to_original(k)
        if other is None:
            continue  # unmapped keys are reported by the plan
        groups.append(Group(k, (other,)) if original else Group(other, (k,)))
    return groups


class WanTensorNames(TensorNames):
    """Wan's names and the community recipe's rules (ComfyUI-GGUF, city96's files)."""

    architecture = "wan"
    title = "Wan"
    original_scheme = "wan"
    block_prefixes = (BLOCK_PREFIX,)
    keep_precision_markers = KEEP_PRECISION_MARKERS
    float32_markers = FLOAT32_MARKERS

    width_tensors = ("patch_embedding.weight",)
    is_original = staticmethod(is_original_wan)
    is_diffusers = staticmethod(is_diffusers_wan)
    groups = staticmethod(wan_groups)
    original_name = staticmethod(to_original)

    def default_scheme(self, width: int | None) -> str:
        """Wan's names at any width: the converter only renames, whatever the width."""
        return "wan"


WAN_TENSOR_NAMES = WanTensorNames()
