"""What the GGUF converter needs to know about a model family's tensor names, and nothing more.

Community GGUF files of a diffusion transformer keep the names of the model's original
checkpoint (FLUX: Black Forest Labs' ``double_blocks.0.img_attn.qkv.weight``), and diffusers'
``from_single_file`` maps them back to its own with a per-family converter. Which names a family
uses, which tensors are fused, which stay in high precision and which ``general.architecture``
the file declares are the family's knowledge (``bench.families``, FLUX's in
bench/families/flux_gguf.py), passed to the converter as an argument; this module holds only
the generic parts: the ``Group`` of one original tensor and the diffusers tensors it is made of,
the ``TensorNames`` interface every family implements, and the naming scheme of a tensor list
among the namings it is given.

A mapping is a list of ``Group``s: one original tensor <-> an ordered list of diffusers tensors
that are stacked along dim 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bench.gguf.errors import ConversionError

#: Prefix of full original checkpoints as ComfyUI and the model authors save them (every
#: family of ComfyUI's layout, FLUX and SD3 included); community GGUF files omit it.
CHECKPOINT_PREFIX = "model.diffusion_model."

Shapes = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class Group:
    """One original tensor and the diffusers tensors it is made of (concatenated along dim 0)."""

    original: str
    diffusers: tuple[str, ...]
    swap_halves: bool = False  # FLUX final_layer.adaLN_modulation: (shift, scale) vs (scale, shift)


class TensorNames:
    """A family's GGUF tensor names and precision rules, as bench.gguf's plan asks for them.

    Subclasses set the class attributes and implement the methods that raise here. A family
    whose community files use diffusers' own names sets ``original_scheme = "diffusers"`` and
    returns no groups; the plan then copies names through unchanged.
    """

    #: ``general.architecture`` of the family's community GGUF files ("flux")
    architecture: str
    #: the family in error messages ("FLUX")
    title: str
    #: the word for the original names, as ``key_names`` and ``bench inspect`` spell it ("bfl")
    original_scheme: str
    #: every tensor under one of these (either scheme) is inside a transformer block
    block_prefixes: tuple[str, ...]
    #: substrings of names the community recipe never quantizes (embedders, final layer)
    keep_precision_markers: tuple[str, ...] = ()
    #: substrings of names the recipe stores in F32 whatever the file type (Wan's modulation
    #: tables: parameters used outside a Linear, which diffusers cannot dequantize from BF16)
    float32_markers: tuple[str, ...] = ()
    #: prefix full original checkpoints carry before their names
    checkpoint_prefix: str = CHECKPOINT_PREFIX
    #: tensors whose rows are the model's width when its config does not say (either scheme)
    width_tensors: tuple[str, ...] = ()

    def strip_prefix(self, key: str) -> str:
        """Drop the full-checkpoint prefix (``model.diffusion_model.``) if present."""
        p = self.checkpoint_prefix
        return key[len(p) :] if p and key.startswith(p) else key

    def scheme(self, keys: Iterable[str]) -> str:
        """``original_scheme``, ``"diffusers"`` or ``"unknown"``: the naming of a tensor list
        (by default: the one whose whole state dict the keys are)."""
        keys = list(keys)
        if self.is_original(keys):
            return self.original_scheme
        return "diffusers" if self.is_diffusers(keys) else "unknown"

    def is_original(self, keys: list[str]) -> bool:
        """True if the (prefix-stripped) keys are a state dict in the original naming."""
        raise NotImplementedError

    def is_diffusers(self, keys: list[str]) -> bool:
        """True if the keys are a diffusers state dict of this family's transformer."""
        raise NotImplementedError

    def groups(self, keys: list[str]) -> list[Group]:
        """Every group of a model whose key set (either scheme) is ``keys``, in file order."""
        raise NotImplementedError

    def original_name(self, diffusers_key: str) -> str | None:
        """Original name of the group one diffusers key belongs to (None: it has no twin)."""
        raise NotImplementedError

    def is_fused_qkv(self, name: str) -> bool:
        """True for the attention projections the ``_M`` mixes raise one level."""
        return False

    def model_width(self, config: Mapping[str, object], shapes: Shapes) -> int | None:
        """Hidden size of the transformer: heads × head dim from its config, else the rows of
        the first of ``width_tensors`` its (stripped) weights have."""
        if "num_attention_heads" in config and "attention_head_dim" in config:
            return int(config["num_attention_heads"]) * int(config["attention_head_dim"])  # type: ignore[call-overload]
        return next((shapes[k][0] for k in self.width_tensors if k in shapes), None)

    def default_scheme(self, width: int | None) -> str:
        """What ``key_names="auto"`` writes for a model of this width."""
        return self.original_scheme

    def split_sizes(self, group: Group, rows: int, shapes: Shapes) -> list[int]:
        """Rows of each diffusers part when an original tensor of ``rows`` rows is split."""
        n = len(group.diffusers)
        if rows % n:
            raise ConversionError(f"{group.original}: {rows} rows cannot be split into {n} parts")
        return [rows // n] * n

    def unmapped_message(self) -> str:
        """How a key that no group covers is described in the converter's error."""
        return f"has no {self.title} name mapping"


def block_count(keys: Iterable[str], prefix: str) -> int:
    """Number of numbered blocks ``<prefix><i>.`` in ``keys`` (the largest index plus one)."""
    pat = re.compile(rf"^{re.escape(prefix)}(\d+)\.")
    idx = [int(m.group(1)) for k in keys if (m := pat.match(k))]
    return max(idx) + 1 if idx else 0


def scheme_of_blocks(
    keys: Iterable[str],
    original: str,
    original_blocks: tuple[str, ...],
    diffusers_blocks: tuple[str, ...],
) -> str:
    """The naming told by the transformer-block names alone (``original`` taking precedence),
    for families whose partial tensor lists (a file's, a probe's) still name their blocks."""
    keys = list(keys)
    if any(k.startswith(original_blocks) for k in keys):
        return original
    if any(k.startswith(diffusers_blocks) for k in keys):
        return "diffusers"
    return "unknown"


def key_scheme(keys: Iterable[str], namings: Iterable[TensorNames]) -> str:
    """Naming scheme of a tensor list as the first of ``namings`` that knows it says (``"bfl"``
    or ``"diffusers"`` for FLUX's), else ``"unknown"``."""
    keys = list(keys)
    for names in namings:
        found = names.scheme(keys)
        if found != "unknown":
            return found
    return "unknown"
