"""Convert a transformer checkpoint (diffusers folder or safetensors file) to GGUF.

Which names, fusions, high-precision tensors and ``general.architecture`` the file gets is the
model family's: its ``TensorNames`` (``family.gguf``, bench/families) is an argument, so the file
has the layout of that family's community files and diffusers' ``from_single_file`` loads it. A
family named by its registry name (``bench quantize --family``) is looked up by
bench/families/gguf.py's ``quantize_checkpoint``, which calls this.

The header (metadata and every tensor's name, shape, type and offset) is written first from the
plan with ``gguf.GGUFWriter``; the file is then sized to its final length and the tensor data are
converted in row chunks (``bench.gguf.chunks``), on all cores by default (``bench.gguf.pool``),
each chunk written at its offset. The bytes are those of ``GGUFWriter.write_tensor_data`` called
tensor by tensor (the tests check this against the writer itself). Peak memory is a few chunks per
worker, not the model. The file is written under a temporary name and renamed when complete, so
a failed or interrupted conversion never leaves a half-written ``.gguf``.
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
from gguf import GGUFWriter

from bench.gguf.chunks import plan_chunks
from bench.gguf.names import TensorNames
from bench.gguf.plan import KeyNames, OutputTensor, build_plan
from bench.gguf.pool import PoolKind, chunk_runner, resolve_jobs
from bench.gguf.qtypes import FileQuantType, file_quant_type, supported_quant_types
from bench.gguf.source import Checkpoint

__all__ = ["QuantizeSummary", "convert_checkpoint", "supported_quant_types"]


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
    jobs: int = 1  # worker processes used (1: converted in the calling process)


def convert_checkpoint(
    src: Path,
    out: Path,
    qtype: str,
    names: TensorNames,
    key_names: KeyNames = "auto",
    progress: bool = False,
    jobs: int | None = None,
    pool: PoolKind = "process",
) -> QuantizeSummary:
    """Write ``src`` as a GGUF file ``out`` of quantization type ``qtype`` in the community
    layout of the family whose tensor names and rules ``names`` are.

    ``qtype`` is one of ``supported_quant_types()``. ``key_names="auto"`` writes what the family's
    community files use (FLUX: original BFL names for FLUX.1-width (3072) models, which
    diffusers' single-file converter expects, and diffusers names for narrower models, which
    diffusers then loads without conversion). ``jobs`` worker processes share the work (None:
    every CPU this process may use, or the calling process alone for models under ~16 M
    weights); the bytes are the same for any ``jobs``. ``pool="thread"`` uses threads instead
    (slower, kept for the comparison in benchmarks/quantize_speed.py). Raises
    ``ConversionError`` (a ``ValueError``) for bad input.
    """
    t0 = time.perf_counter()
    ft = file_quant_type(qtype)
    src, out = Path(src), Path(out)
    with Checkpoint(src) as ckpt:
        plan = build_plan(ckpt, ft, key_names, names)
        original = names.original_scheme
        used_names = original if names.scheme(t.name for t in plan) == original else "diffusers"
        with _atomic_path(out) as tmp:
            data_start, end, alignment = _write_header(tmp, plan, ft, names)
            chunks = plan_chunks(ckpt, plan, data_start, alignment)
            n_jobs = resolve_jobs(jobs, chunks)
            os.truncate(tmp, end)  # the padding between tensors reads as the writer's zeros
            total = sum(t.n_params for t in plan)
            with (
                chunk_runner(n_jobs, pool) as run,
                _progress(progress, total, out.name) as advance,
            ):
                run(str(tmp), chunks, advance)
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
        jobs=n_jobs,
    )


def _write_header(
    path: Path, plan: list[OutputTensor], ft: FileQuantType, names: TensorNames
) -> tuple[int, int, int]:
    """Write metadata and tensor infos; return (data start, file end, alignment)."""
    majority = Counter(t.source_dtype for t in plan).most_common(1)[0][0]
    writer = GGUFWriter(path, arch=names.architecture)
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
    assert writer.fout is not None
    fout = writer.fout[0]
    writer.write_padding(fout, fout.tell())
    data_start = fout.tell()
    writer.close()
    align = writer.data_alignment
    end = data_start + sum(GGUFWriter.ggml_pad(t.nbytes, align) for t in plan)
    return data_start, end, align


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
