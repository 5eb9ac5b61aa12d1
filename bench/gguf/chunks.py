"""The converter's unit of work: a few rows of one output tensor, from source bytes to file bytes.

A ``Chunk`` is a small, picklable description (which source byte ranges, which ggml type, where
in the output file), so a worker process needs nothing from its parent but the chunk: it reads
the rows itself, converts them and writes the bytes at their final offset with ``pwrite``. No
tensor data crosses a process boundary, the parent holds none, and the output bytes do not
depend on which worker converts which chunk or in what order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from math import prod

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFWriter

from bench.gguf import quants
from bench.gguf.errors import ConversionError
from bench.gguf.plan import OutputTensor, Run, take, tensor_runs
from bench.gguf.source import Checkpoint, bf16_bits, read_rows, to_float32

#: Weights per chunk: 16 MiB as float32, plus its source rows and output bytes per worker.
#: Large enough that a chunk's fixed costs (task hand-off, two file opens) are < 1 % of even
#: Q8_0's time, small enough that 16 workers stay near 1 GiB and the last chunks balance.
CHUNK_WEIGHTS = 1 << 22


@dataclass(frozen=True)
class Chunk:
    """Rows of one output tensor and where their bytes go."""

    name: str  # output tensor, for error messages
    runs: tuple[Run, ...]  # the source rows, in output order
    qtype: T
    rows: int
    cols: int  # values per row (the last dimension for 2-D weights)
    offset: int  # absolute offset of the first byte in the output file
    nbytes: int

    @property
    def n_params(self) -> int:
        return self.rows * self.cols


def plan_chunks(
    ckpt: Checkpoint, plan: list[OutputTensor], data_start: int, alignment: int
) -> list[Chunk]:
    """Every output tensor cut into row chunks at their file offsets (gguf's layout: tensors
    in plan order from ``data_start``, each padded to ``alignment``, as ``GGUFWriter`` does).

    Checks that the sources can be converted (floating point, parts of equal row length), so a
    bad checkpoint fails before any work starts.
    """
    chunks: list[Chunk] = []
    offset = data_start
    for t in plan:
        runs = tensor_runs(ckpt, t)
        rows = t.shape[0] if t.shape else 1
        cols = t.n_params // rows if rows else 0
        for r in runs:
            if not r.src.is_float:
                raise ConversionError(
                    f"{t.name}: expected a floating-point tensor, got {r.src.dtype} "
                    f"({r.src.key!r} in {r.src.file})"
                )
            if prod(r.src.shape[1:]) != cols:
                raise ConversionError(
                    f"{t.name}: source {r.src.key!r} has rows of {prod(r.src.shape[1:])} values, "
                    f"expected {cols}"
                )
        if sum(r.rows for r in runs) != rows:
            raise ConversionError(
                f"{t.name}: sources hold {sum(r.rows for r in runs)} rows, expected {rows}"
            )
        row_out = t.nbytes // rows if rows else 0
        step = max(1, CHUNK_WEIGHTS // max(cols, 1))
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            chunks.append(
                Chunk(
                    t.name,
                    tuple(take(runs, r0, r1)),
                    t.qtype,
                    r1 - r0,
                    cols,
                    offset + r0 * row_out,
                    (r1 - r0) * row_out,
                )
            )
        offset += GGUFWriter.ggml_pad(t.nbytes, alignment)
    return chunks


def chunk_bytes(c: Chunk) -> np.ndarray:
    """The chunk's rows in its ggml type, as flat bytes."""
    if c.qtype == T.BF16 and all(r.src.dtype == "BF16" for r in c.runs):  # bits pass through
        raw = _concat([read_rows(r.src, r.start, r.stop) for r in c.runs])
        return raw.view(np.uint8).reshape(-1)
    x = _concat([to_float32(read_rows(r.src, r.start, r.stop), r.src.dtype) for r in c.runs])
    x = x.reshape(c.rows, c.cols)
    if c.qtype == T.F32:
        return x.view(np.uint8).reshape(-1)
    if c.qtype == T.F16:
        return x.astype(np.float16).view(np.uint8).reshape(-1)
    if c.qtype == T.BF16:
        return bf16_bits(x).view(np.uint8).reshape(-1)
    return quants.quantize(x, c.qtype).reshape(-1)


def convert_chunk(path: str, c: Chunk) -> int:
    """Convert one chunk and write it into ``path`` (already sized) at its offset; returns the
    number of weights done. Runs in worker processes: everything it needs is in ``c``."""
    data = chunk_bytes(c)
    if data.nbytes != c.nbytes:
        raise ConversionError(f"{c.name}: produced {data.nbytes} bytes, planned {c.nbytes}")
    view = memoryview(data)
    fd = os.open(path, os.O_WRONLY)
    try:
        done = 0
        while done < c.nbytes:
            done += os.pwrite(fd, view[done:], c.offset + done)
    finally:
        os.close(fd)
    return c.n_params


def _concat(pieces: list[np.ndarray]) -> np.ndarray:
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
