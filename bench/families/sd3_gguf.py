"""SD3 / SD3.5 GGUF tensor names: diffusers <-> original Stability AI (MMDiT) layout, and its rules.

Community SD3.5 GGUF files (city96/stable-diffusion-3.5-large-gguf, made with ComfyUI-GGUF's
tools and its ``lcpp_sd3.patch``) keep the names of Stability AI's own checkpoint
(``joint_blocks.0.x_block.attn.qkv.weight``) and declare ``general.architecture = "sd3"``;
diffusers' ``SD3Transformer2DModel.from_single_file`` converts them back with
``convert_sd3_transformer_checkpoint_to_diffusers`` (diffusers/loaders/single_file_utils.py).
The groups here are the exact inverse of that converter:

- the image stream (``x_block``) and the text stream (``context_block``) of each joint block
  fuse their q, k, v projections into one ``attn.qkv`` (SD3.5 Medium's second image attention,
  ``attn2``, likewise);
- the last block's text stream is "context pre-only": no output projection and no MLP, and its
  modulation (an AdaLayerNormContinuous in diffusers) has its shift/scale halves swapped, as
  the final layer's has;
- the embedders are renamed (``x_embedder.proj``, ``t_embedder.mlp``, ``y_embedder.mlp``) and
  the position table ``pos_embed`` is a persistent buffer diffusers saves with the weights.

The converter reads the width from ``context_embedder`` and splits ``qkv`` in three equal
parts, so (unlike FLUX's) it takes any width: every SD3 model is written with the original
names. What stays in high precision follows ``lcpp_sd3.patch``: nothing outside the joint
blocks is quantized (final layer, embedders, ``pos_embed``), 1-D tensors are F32, and its
fused-qkv rule (names containing ``attn.qkv.weight``) raises those one level in the _M mixes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bench.gguf.names import Group, TensorNames, block_count, scheme_of_blocks

SAI_BLOCK_PREFIX = "joint_blocks."
DIFFUSERS_BLOCK_PREFIX = "transformer_blocks."
#: lcpp_sd3.patch's exclusions for LLM_ARCH_SD3 (never quantized); all lie outside the blocks.
KEEP_PRECISION_MARKERS = (
    "final_layer.",
    "time_text_embed.",
    "context_embedder.",
    "t_embedder.",
    "y_embedder.",
    "x_embedder.",
    "pos_embed",
)
_DIFFUSERS_QKV = ("attn.to_q", "attn.to_k", "attn.to_v", "add_q_proj", "add_k_proj", "add_v_proj")

#: (original, diffusers) linear layers outside the blocks; each has a weight and a bias.
_TOP_LINEARS = (
    ("x_embedder.proj", "pos_embed.proj"),
    ("t_embedder.mlp.0", "time_text_embed.timestep_embedder.linear_1"),
    ("t_embedder.mlp.2", "time_text_embed.timestep_embedder.linear_2"),
    ("y_embedder.mlp.0", "time_text_embed.text_embedder.linear_1"),
    ("y_embedder.mlp.2", "time_text_embed.text_embedder.linear_2"),
    ("context_embedder", "context_embedder"),
    ("final_layer.linear", "proj_out"),
)


def _top_level() -> list[Group]:
    groups = [Group("pos_embed", ("pos_embed.pos_embed",))]
    groups += [
        Group(f"{o}.{s}", (f"{d}.{s}",)) for o, d in _TOP_LINEARS for s in ("weight", "bias")
    ]
    groups += [
        Group(f"final_layer.adaLN_modulation.1.{s}", (f"norm_out.linear.{s}",), swap_halves=True)
        for s in ("weight", "bias")
    ]
    return groups


def _linear(o: str, parts: tuple[str, ...], swap: bool = False) -> list[Group]:
    return [Group(f"{o}.{s}", tuple(f"{p}.{s}" for p in parts), swap) for s in ("weight", "bias")]


def block_groups(i: int, *, last: bool, qk_norm: bool, dual: bool) -> list[Group]:
    """Groups of joint block ``i`` in the converter's terms: ``last`` (context pre-only),
    ``qk_norm`` (RMS norms on q and k, SD3.5), ``dual`` (a second image attention)."""
    o, d = f"{SAI_BLOCK_PREFIX}{i}.", f"{DIFFUSERS_BLOCK_PREFIX}{i}."
    x, c = f"{o}x_block.", f"{o}context_block."
    groups = _linear(f"{x}attn.qkv", tuple(f"{d}attn.to_{p}" for p in "qkv"))
    groups += _linear(f"{c}attn.qkv", tuple(f"{d}attn.add_{p}_proj" for p in "qkv"))
    if qk_norm:
        groups += [
            Group(f"{x}attn.ln_q.weight", (f"{d}attn.norm_q.weight",)),
            Group(f"{x}attn.ln_k.weight", (f"{d}attn.norm_k.weight",)),
            Group(f"{c}attn.ln_q.weight", (f"{d}attn.norm_added_q.weight",)),
            Group(f"{c}attn.ln_k.weight", (f"{d}attn.norm_added_k.weight",)),
        ]
    groups += _linear(f"{x}attn.proj", (f"{d}attn.to_out.0",))
    if not last:
        groups += _linear(f"{c}attn.proj", (f"{d}attn.to_add_out",))
    if dual:
        groups += _linear(f"{x}attn2.qkv", tuple(f"{d}attn2.to_{p}" for p in "qkv"))
        if qk_norm:
            groups += [
                Group(f"{x}attn2.ln_q.weight", (f"{d}attn2.norm_q.weight",)),
                Group(f"{x}attn2.ln_k.weight", (f"{d}attn2.norm_k.weight",)),
            ]
        groups += _linear(f"{x}attn2.proj", (f"{d}attn2.to_out.0",))
    groups += _linear(f"{x}adaLN_modulation.1", (f"{d}norm1.linear",))
    groups += _linear(f"{c}adaLN_modulation.1", (f"{d}norm1_context.linear",), swap=last)
    groups += _linear(f"{x}mlp.fc1", (f"{d}ff.net.0.proj",))
    groups += _linear(f"{x}mlp.fc2", (f"{d}ff.net.2",))
    if not last:
        groups += _linear(f"{c}mlp.fc1", (f"{d}ff_context.net.0.proj",))
        groups += _linear(f"{c}mlp.fc2", (f"{d}ff_context.net.2",))
    return groups


def is_sai_sd3(keys: list[str]) -> bool:
    """True if the (prefix-stripped) keys look like Stability AI's own MMDiT state dict."""
    return "x_embedder.proj.weight" in keys and any(k.startswith(SAI_BLOCK_PREFIX) for k in keys)


def is_diffusers_sd3(keys: list[str]) -> bool:
    """True if the keys look like a diffusers ``SD3Transformer2DModel`` state dict."""
    return "pos_embed.proj.weight" in keys and "context_embedder.weight" in keys


def _block_index(key: str) -> int | None:
    m = re.match(
        rf"^(?:{re.escape(SAI_BLOCK_PREFIX)}|{re.escape(DIFFUSERS_BLOCK_PREFIX)})(\d+)\.", key
    )
    return int(m.group(1)) if m else None


def sd3_groups(keys: list[str]) -> list[Group]:
    """All groups for an SD3 model whose key set is ``keys`` (either naming scheme).

    As the converter reads them: the block count from the block names, RMS q/k norms from any
    ``ln_q``/``norm_q`` key, the dual-attention blocks from ``attn2.`` keys, and the last block
    as the context pre-only one.
    """
    sai = is_sai_sd3(keys)
    n = block_count(keys, SAI_BLOCK_PREFIX if sai else DIFFUSERS_BLOCK_PREFIX)
    qk_norm = any((".ln_q." if sai else ".norm_q.") in k for k in keys)
    dual = {i for k in keys if "attn2." in k and (i := _block_index(k)) is not None}
    groups = _top_level()
    for i in range(n):
        groups += block_groups(i, last=i == n - 1, qk_norm=qk_norm, dual=i in dual)
    return groups


class SD3TensorNames(TensorNames):
    """SD3/SD3.5's names and the community recipe's rules (ComfyUI-GGUF, city96's files)."""

    architecture = "sd3"
    title = "SD3"
    original_scheme = "sai"
    block_prefixes = (SAI_BLOCK_PREFIX, DIFFUSERS_BLOCK_PREFIX)
    keep_precision_markers = KEEP_PRECISION_MARKERS

    width_tensors = ("pos_embed.proj.weight", "x_embedder.proj.weight")
    is_original = staticmethod(is_sai_sd3)
    is_diffusers = staticmethod(is_diffusers_sd3)
    groups = staticmethod(sd3_groups)

    def scheme(self, keys: Iterable[str]) -> str:
        """Told by the transformer-block names: SAI's take precedence over diffusers'."""
        return scheme_of_blocks(keys, "sai", (SAI_BLOCK_PREFIX,), (DIFFUSERS_BLOCK_PREFIX,))

    def original_name(self, diffusers_key: str) -> str | None:
        """Every diffusers name of a last or dual-attention block also exists in a full block
        with every option on, under the same original name."""
        i = _block_index(diffusers_key)
        candidates = (
            _top_level() if i is None else block_groups(i, last=False, qk_norm=True, dual=True)
        )
        return next((g.original for g in candidates if diffusers_key in g.diffusers), None)

    def is_fused_qkv(self, name: str) -> bool:
        """lcpp_sd3.patch's rule matches names containing ``attn.qkv.weight`` (both streams'
        first attention, not ``attn2.qkv``); their diffusers parts likewise."""
        if "attn.qkv.weight" in name:
            return True
        if name.startswith(DIFFUSERS_BLOCK_PREFIX) and name.endswith(".weight"):
            return any(f".{p}.weight" in name for p in _DIFFUSERS_QKV) and ".attn2." not in name
        return False

    def default_scheme(self, width: int | None) -> str:
        """Original names at any width: diffusers' SD3 converter takes every width."""
        return "sai"


SD3_TENSOR_NAMES = SD3TensorNames()
