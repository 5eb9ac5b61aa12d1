"""Convert a FLUX transformer checkpoint (diffusers folder or safetensors file) to GGUF.

The header (metadata and every tensor's name, shape, type and offset) is written first from the
plan, then each tensor is loaded, converted and appended one at a time; ``gguf.GGUFWriter``
supports this when tensor infos are registered with ``add_tensor_info`` and data is passed to
``write_tensor_data`` in the same order. Peak memory is therefore a few of the largest tensors,
not the model. The file is written under a temporary name and renamed when complete, so a failed
or interrupted conversion never leaves a half-written ``.gguf``.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from math import prod
from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType as T
from gguf import GGUFWriter

from bench.gguf import quants
from bench.gguf.errors import ConversionError
from bench.gguf.names import key_scheme
from bench.gguf.plan import KeyNames, OutputTensor, build_plan, load
from bench.gguf.qtypes import file_quant_type, supported_quant_types
from bench.gguf.source import Checkpoint

__all__ = ["QuantizeSummary", "quantize_checkpoint", "supported_quant_types"]

#: Rows of a weight are widened to float32 this many weights at a time (16 MiB of float32).
_CONVERT_CHUNK_WEIGHTS = 1 << 22


@dataclass
class QuantizeSummary:
    """What a conversion produced."""

    out: Path
    file_bytes: int
    tensor_counts: dict[str, int]  # ggml type name -> number of tensors
    parameters: int
    bits_per_weight: float  # 8 * tensor data bytes / parameters (excludes header)
    seconds: float
    qtype: str = ""
    key_names: str = ""
    bytes_per_type: dict[str, int] = field(default_factory=dict)


def quantize_checkpoint(
    src: Path,
    out: Path,
    qtype: str,
    key_names: KeyNames = "auto",
    progress: bool = False,
) -> QuantizeSummary:
    """Write ``src`` as a GGUF file ``out`` of quantization type ``qtype``.

    ``qtype`` is one of ``supported_quant_types()``. ``key_names="auto"`` writes original BFL
    names for FLUX.1-width (3072) models, which is what community files use and what diffusers'
    single-file converter expects, and diffusers names for narrower models (diffusers then loads
    them without conversion). Raises ``ConversionError`` (a ``ValueError``) for bad input.
    """
    t0 = time.perf_counter()
    ft = file_quant_type(qtype)
    src, out = Path(src), Path(out)
    with Checkpoint(src) as ckpt:
        plan = build_plan(ckpt, ft, key_names)
        used_names = "bfl" if key_scheme(t.name for t in plan) == "bfl" else "diffusers"
        majority = Counter(t.source_dtype for t in plan).most_common(1)[0][0]
        with _atomic_path(out) as tmp:
            writer = GGUFWriter(tmp, arch="flux")
            writer.add_quantization_version(2)
            writer.add_file_type(ft.file_type)
            writer.add_string("bench.source_dtype", majority)
            for t in plan:  # byte shape: the last dimension counted in bytes
                writer.add_tensor_info(
                    t.name,
                    (*t.shape[:-1], t.nbytes // prod(t.shape[:-1])),
                    np.dtype(np.uint8),
                    t.nbytes,
                    raw_dtype=t.qtype,
                )
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            with _progress(progress, sum(t.n_params for t in plan), out.name) as advance:
                for t in plan:
                    data = convert_tensor(load(ckpt, t), t)
                    if data.nbytes != t.nbytes:
                        raise ConversionError(
                            f"{t.name}: produced {data.nbytes} bytes, planned {t.nbytes}"
                        )
                    writer.write_tensor_data(data)
                    advance(t.n_params)
            writer.close()
    counts = Counter(t.qtype.name for t in plan)
    per_type: Counter[str] = Counter()
    for t in plan:
        per_type[t.qtype.name] += t.nbytes
    params = sum(t.n_params for t in plan)
    return QuantizeSummary(
        out=out,
        file_bytes=out.stat().st_size,
        tensor_counts=dict(counts),
        parameters=params,
        bits_per_weight=8 * sum(per_type.values()) / params if params else 0.0,
        seconds=time.perf_counter() - t0,
        qtype=ft.name,
        key_names=used_names,
        bytes_per_type=dict(per_type),
    )


def convert_tensor(x: torch.Tensor, t: OutputTensor) -> np.ndarray:
    """Bytes of one tensor in its planned type, as a flat uint8 array."""
    if not x.is_floating_point():
        raise ConversionError(f"{t.name}: expected a floating-point tensor, got {x.dtype}")
    if t.qtype == T.BF16:
        return (
            x.to(torch.bfloat16).contiguous().view(torch.int16).numpy().view(np.uint8).reshape(-1)
        )
    if t.qtype == T.F16:
        return x.to(torch.float32).numpy().astype(np.float16).view(np.uint8).reshape(-1)
    if t.qtype == T.F32:
        return np.ascontiguousarray(x.to(torch.float32).numpy()).view(np.uint8).reshape(-1)
    cols = t.shape[-1]
    rows = x.reshape(-1, cols)
    out = np.empty((rows.shape[0], t.nbytes // rows.shape[0]), dtype=np.uint8)
    step = max(1, _CONVERT_CHUNK_WEIGHTS // cols)
    for r0 in range(0, rows.shape[0], step):  # float32 copies of a slab at a time, not the tensor
        slab = rows[r0 : r0 + step].to(torch.float32).numpy()
        out[r0 : r0 + step] = quants.quantize(slab, t.qtype)
    return out.reshape(-1)


@contextmanager
def _atomic_path(out: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``out``; rename onto ``out`` only if the block succeeds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def _progress(enabled: bool, total: int, label: str) -> Iterator:  # type: ignore[type-arg]
    """A rich progress bar in million weights per second, or a no-op."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} weights"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ) as bar:
        task = bar.add_task(label, total=total, rate="")
        start = time.perf_counter()
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            rate = done / max(time.perf_counter() - start, 1e-9) / 1e6
            bar.update(task, advance=n, rate=f"{rate:.1f} Mw/s")

        yield advance
