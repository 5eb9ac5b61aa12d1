"""Conversion plan: which output tensors exist, what they are made of, and their ggml type.

Built from safetensors headers alone (no tensor data), so the GGUF header with every tensor's
final shape and type can be written before any data is streamed. What is generic lives here (the
row mapping, the type recipe's shape rules); what a model family knows (its original names,
which tensors are fused or kept in high precision) comes from its ``TensorNames``
(``family.gguf``), which every function here takes as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Literal

import numpy as np
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T

from bench.gguf.errors import ConversionError
from bench.gguf.names import TensorNames
from bench.gguf.qtypes import FileQuantType
from bench.gguf.source import Checkpoint, SourceTensor, read_rows, to_float32

#: ggml's GGML_MAX_DIMS: no ggml type but F32 is written for a tensor with more dimensions.
GGML_MAX_DIMS = 4

#: ``auto``, ``diffusers`` or a family's original scheme (FLUX: ``bfl``).
KeyNames = Literal["auto", "bfl", "diffusers"]


@dataclass(frozen=True)
class Part:
    """Rows ``start:stop`` (dim 0) of source tensor ``key``; ``None`` bounds mean all rows."""

    key: str
    start: int | None = None
    stop: int | None = None


@dataclass(frozen=True)
class OutputTensor:
    name: str
    shape: tuple[int, ...]  # numpy order (rows first); ggml ne[] is the reverse
    source_dtype: str  # safetensors dtype of the (first) source part
    parts: tuple[Part, ...]
    swap_halves: bool
    qtype: T

    @property
    def n_params(self) -> int:
        return prod(self.shape)

    @property
    def nbytes(self) -> int:
        block, size = GGML_QUANT_SIZES[self.qtype]
        return self.n_params // block * size


@dataclass(frozen=True)
class Run:
    """Rows ``start:stop`` of one source tensor: a contiguous byte range of its file."""

    src: SourceTensor
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def tensor_runs(ckpt: Checkpoint, t: OutputTensor) -> list[Run]:
    """The output tensor's rows, in order, as runs of source rows.

    Parts are concatenated along dim 0; ``swap_halves`` exchanges the halves the way
    ``torch.cat(x.chunk(2)[::-1])`` does (the first chunk has the extra row of an odd count).
    Any row range of the output is then a few contiguous reads (``take``), so a worker can read
    exactly its chunk's rows and no process ever holds the whole tensor.
    """
    runs = []
    for p in t.parts:
        st = ckpt.tensors[p.key]
        start, stop, _ = slice(p.start, p.stop).indices(st.rows)
        runs.append(Run(st, start, max(start, stop)))
    if t.swap_halves:
        n = sum(r.rows for r in runs)
        first = -(-n // 2)
        runs = take(runs, first, n) + take(runs, 0, first)
    return runs


def take(runs: list[Run], lo: int, hi: int) -> list[Run]:
    """The runs covering rows ``lo:hi`` of the concatenation of ``runs``."""
    out, base = [], 0
    for r in runs:
        a, b = max(lo, base), min(hi, base + r.rows)
        if a < b:
            out.append(Run(r.src, r.start + a - base, r.start + b - base))
        base += r.rows
    return out


def load(ckpt: Checkpoint, t: OutputTensor) -> np.ndarray:
    """An output tensor's data as float32 in its output shape (the converter's row mapping)."""
    pieces = [
        to_float32(read_rows(r.src, r.start, r.stop), r.src.dtype) for r in tensor_runs(ckpt, t)
    ]
    return np.concatenate(pieces).reshape(t.shape)


def model_width(ckpt: Checkpoint, stripped: dict[str, str], names: TensorNames) -> int | None:
    """Hidden size of the transformer (3072 for FLUX.1), from config or weights.

    ``stripped`` maps prefix-stripped key names to the checkpoint's own keys.
    """
    return names.model_width(ckpt.config, _shapes(ckpt, stripped))


def _shapes(ckpt: Checkpoint, stripped: dict[str, str]) -> dict[str, tuple[int, ...]]:
    return {k: ckpt.tensors[key].shape for k, key in stripped.items()}


def choose_tensor_type(
    name: str,
    shape: tuple[int, ...],
    source_dtype: str,
    ft: FileQuantType,
    names: TensorNames,
) -> T:
    """ggml type of one output tensor, following the community GGUF recipe of ``names``' family.

    1-D and tiny (<=1024 weights) tensors are F32, and so are tensors of more than ggml's four
    dimensions (Wan's Conv3d patch embedding: ComfyUI-GGUF's fix_5d_tensors.py appends them as
    F32, which the GGUF format records with all their dimensions) and the family's F32 markers;
    embedders/final layer (the family's keep markers) and everything outside its transformer
    blocks keep the input precision (BF16 for bf16 sources, else F16); 2-D weights inside the
    blocks get the target type (fused attention qkv one level higher for the ``_M`` mixes); K
    types need rows that are a multiple of 256 and fall back to F16 otherwise (Q8_0: 32).
    """
    if len(shape) <= 1 or prod(shape) <= 1024:
        return T.F32
    if len(shape) > GGML_MAX_DIMS or any(m in name for m in names.float32_markers):
        return T.F32
    input_precision = T.BF16 if source_dtype == "BF16" else T.F16
    if ft.base in (T.F16, T.BF16):
        return ft.base
    in_block = name.startswith(names.block_prefixes)
    if not in_block or any(m in name for m in names.keep_precision_markers):
        return input_precision
    if len(shape) != 2 or not name.endswith(".weight"):
        return input_precision
    target = ft.qkv if names.is_fused_qkv(name) else ft.base
    block, _ = GGML_QUANT_SIZES[target]
    if shape[-1] % block:
        return T.F16
    return target


def resolve_key_names(key_names: str, width: int | None, names: TensorNames) -> str:
    """``auto`` picks what the family writes for this width (FLUX: BFL names only at 3072)."""
    if key_names == "auto":
        return names.default_scheme(width)
    allowed = dict.fromkeys(("auto", names.original_scheme, "diffusers"))
    if key_names not in allowed:
        raise ConversionError(
            f"key_names: expected {', '.join(list(allowed)[:-1])} or diffusers, got {key_names!r}"
        )
    return key_names


def build_plan(
    ckpt: Checkpoint, ft: FileQuantType, key_names: str, names: TensorNames
) -> list[OutputTensor]:
    """Every output tensor in file order, with name, shape, sources and ggml type."""
    stripped = {names.strip_prefix(k): k for k in ckpt.tensors}
    keys = list(stripped)
    original = names.original_scheme
    src_original = names.is_original(keys)
    src_diffusers = names.is_diffusers(keys)
    want = resolve_key_names(key_names, model_width(ckpt, stripped, names), names)
    items: list[tuple[str, tuple[Part, ...], bool, tuple[int, ...], str]] = []

    def info(k: str) -> tuple[tuple[int, ...], str]:
        st = ckpt.tensors[stripped[k]]
        return st.shape, st.dtype

    if (want == original and src_original) or (want == "diffusers" and not src_original):
        for k in keys:  # names already in the wanted scheme
            shape, dtype = info(k)
            items.append((k, (Part(stripped[k]),), False, shape, dtype))
    elif want == original:
        if not src_diffusers:
            raise ConversionError(
                f"{ckpt.src}: {original.upper()} key names need a {names.title} "
                "transformer checkpoint"
            )
        used: set[str] = set()
        for g in names.groups(keys):
            present = [d for d in g.diffusers if d in stripped]
            if not present:
                continue
            if len(present) != len(g.diffusers):
                missing = sorted(set(g.diffusers) - set(present))
                raise ConversionError(
                    f"{ckpt.src}: {missing[0]} is missing (needed for {g.original})"
                )
            shapes = [info(d)[0] for d in g.diffusers]
            rows = sum(s[0] for s in shapes)
            shape = (rows, *shapes[0][1:])
            parts = tuple(Part(stripped[d]) for d in g.diffusers)
            items.append((g.original, parts, g.swap_halves, shape, info(g.diffusers[0])[1]))
            used.update(g.diffusers)
        _reject_unmapped(ckpt, keys, used, names)
    else:  # original source, diffusers names wanted: split the fused tensors
        all_shapes = _shapes(ckpt, stripped)
        used = set()
        for g in names.groups(keys):
            if g.original not in stripped:
                continue
            shape, dtype = info(g.original)
            sizes = names.split_sizes(g, shape[0], all_shapes)
            start = 0
            for d, size in zip(g.diffusers, sizes, strict=True):
                part = (
                    Part(stripped[g.original], start, start + size)
                    if len(sizes) > 1
                    else Part(stripped[g.original])
                )
                items.append((d, (part,), g.swap_halves, (size, *shape[1:]), dtype))
                start += size
            used.add(g.original)
        _reject_unmapped(ckpt, keys, used, names)

    plan = []
    for name, parts, swap, shape, dtype in items:
        if len(name.encode()) > 127:
            raise ConversionError(f"{ckpt.src}: tensor name longer than 127 bytes: {name}")
        qt = choose_tensor_type(name, shape, dtype, ft, names)
        plan.append(OutputTensor(name, shape, dtype, parts, swap, qt))
    return plan


def _reject_unmapped(ckpt: Checkpoint, keys: list[str], used: set[str], names: TensorNames) -> None:
    extra = [k for k in keys if k not in used]
    if extra:
        raise ConversionError(
            f"{ckpt.src}: key {extra[0]!r} {names.unmapped_message()} "
            f"({len(extra)} unmapped); use key_names that match the source"
        )
