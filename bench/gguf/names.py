"""What the GGUF converter needs to know about a model family's tensor names, and nothing more.

Community GGUF files of a diffusion transformer keep the names of the model's original
checkpoint (FLUX: Black Forest Labs' ``double_blocks.0.img_attn.qkv.weight``), and diffusers'
``from_single_file`` maps them back to its own with a per-family converter. Which names a family
uses, which tensors are fused, which stay in high precision and which ``general.architecture``
the file declares are the family's knowledge (``bench.families``, FLUX's in
bench/families/flux_gguf.py); this module holds only the generic parts: the ``Group`` of one
original tensor and the diffusers tensors it is made of, the ``TensorNames`` interface every
family implements, and look-ups that ask every registered family.

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
BFL_PREFIX = CHECKPOINT_PREFIX  # the name it had when FLUX was the only family

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

    def strip_prefix(self, key: str) -> str:
        """Drop the full-checkpoint prefix (``model.diffusion_model.``) if present."""
        p = self.checkpoint_prefix
        return key[len(p) :] if p and key.startswith(p) else key

    def scheme(self, keys: Iterable[str]) -> str:
        """``original_scheme``, ``"diffusers"`` or ``"unknown"``: the naming of a tensor list."""
        raise NotImplementedError

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
        """Hidden size of the transformer, from its config or its (stripped) weight shapes."""
        return None

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


def strip_bfl_prefix(key: str) -> str:
    """Drop the ``model.diffusion_model.`` prefix that full original checkpoints carry."""
    return key[len(CHECKPOINT_PREFIX) :] if key.startswith(CHECKPOINT_PREFIX) else key


def default_names() -> TensorNames:
    """The default family's names (FLUX), for callers that name no family."""
    from bench.families import get_family

    return get_family().gguf


def key_scheme(keys: Iterable[str]) -> str:
    """Naming scheme of a tensor list as the first registered family that knows it says
    (``"bfl"`` or ``"diffusers"`` for FLUX), else ``"unknown"``."""
    from bench.families import FAMILIES

    keys = list(keys)
    for family in FAMILIES.values():
        found = family.gguf.scheme(keys)
        if found != "unknown":
            return found
    return "unknown"


def diffusers_to_bfl_name(name: str) -> str | None:
    """BFL name of the FLUX group a single diffusers key belongs to (None if it has no twin)."""
    from bench.families import get_family

    return get_family("flux").gguf.original_name(name)
