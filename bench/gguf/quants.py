"""Public quantize/dequantize entry points over 2-D float32 arrays.

The per-type modules work on flat arrays of blocks; this module checks shapes, splits tensors
into bounded row chunks (so a 12288x3072 weight never makes several full-size float32 temporaries
at once) and dispatches. Output layout is ggml's: one row of ``ne[0]`` columns becomes
``ne[0] / block_size`` consecutive blocks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize as _gguf_dequantize

from bench.gguf import kquants, q8_0
from bench.gguf.qtypes import tensor_type

#: Roughly how many weights one chunk holds. The K-quant search makes several passes over a few
#: float32 arrays of this size per candidate scale; at 64 Ki weights (256 KiB per array) they stay
#: in L2 cache. 16 Ki-512 Ki were measured, 64 Ki is fastest (larger chunks would be cut into
#: ``_fit.BLOCK_WEIGHTS`` blocks by the searches, which still was slower; see docs/gguf.md).
CHUNK_WEIGHTS = 1 << 16


def default_threads() -> int:
    """The CPUs this process may use (its affinity mask, which a container or ``taskset`` may
    narrow): the default number of quantizer workers, processes or threads."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


BlockFn = Callable[[np.ndarray, np.ndarray | None], np.ndarray]


def _block_fn(qtype: T) -> BlockFn:
    if qtype == T.Q8_0:
        return lambda x, _w: q8_0.quantize_blocks(x)
    if qtype == T.Q4_K:
        return kquants.quantize_q4_k
    if qtype == T.Q5_K:
        return kquants.quantize_q5_k
    if qtype == T.Q6_K:
        return kquants.quantize_q6_k
    raise ValueError(f"no quantizer for ggml type {qtype.name}")


def row_bytes(qtype: T | str, n_cols: int) -> int:
    """Bytes one row of ``n_cols`` weights takes in ``qtype`` (raises if not a whole block)."""
    qt = tensor_type(qtype)
    block, size = GGML_QUANT_SIZES[qt]
    if n_cols % block:
        raise ValueError(f"{qt.name} needs a multiple of {block} columns, got {n_cols}")
    return n_cols // block * size


def quantize(
    array: np.ndarray,
    qtype: T | str,
    imatrix: np.ndarray | None = None,
    threads: int | None = 1,
) -> np.ndarray:
    """Quantize a 2-D array (rows, cols) to ggml bytes of shape (rows, row_bytes).

    ``imatrix`` is an optional per-column importance vector (length cols) used by the K types the
    way ``ggml_quantize_chunk`` uses ``quant_weights`` (the ``_impl`` path); Q8_0 ignores it, as
    ggml does. F32/F16/BF16 are plain conversions. ``threads`` > 1 (or None: all usable CPUs)
    quantizes row chunks in parallel; chunks are independent, so the bytes do not change.
    """
    qt = tensor_type(qtype)
    x = np.asarray(array)
    if x.ndim != 2:
        raise ValueError(f"quantize expects a 2-D array, got shape {x.shape}")
    rows, cols = x.shape
    if qt == T.F32:
        return np.ascontiguousarray(x, dtype=np.float32).view(np.uint8).reshape(rows, cols * 4)
    if qt == T.F16:
        return np.ascontiguousarray(x.astype(np.float16)).view(np.uint8).reshape(rows, cols * 2)
    if qt == T.BF16:
        from gguf.quants import quantize as gq

        return gq(np.ascontiguousarray(x, dtype=np.float32), T.BF16).reshape(rows, cols * 2)

    block, _ = GGML_QUANT_SIZES[qt]
    nbytes = row_bytes(qt, cols)
    fn = _block_fn(qt)
    qw = None
    if imatrix is not None and qt != T.Q8_0:
        qw = np.ascontiguousarray(imatrix, dtype=np.float32).reshape(-1)
        if qw.shape[0] != cols:
            raise ValueError(f"imatrix has {qw.shape[0]} values, expected one per column ({cols})")
    out = np.empty((rows, nbytes), dtype=np.uint8)
    step = max(1, CHUNK_WEIGHTS // cols)

    def work(r0: int) -> None:
        r1 = min(rows, r0 + step)
        chunk = np.ascontiguousarray(x[r0:r1], dtype=np.float32).reshape(-1, block)
        w = None
        if qw is not None:
            w = np.broadcast_to(qw.reshape(1, -1), (r1 - r0, cols)).reshape(-1, block)
        out[r0:r1] = fn(chunk, w).reshape(r1 - r0, nbytes)

    starts = range(0, rows, step)
    n_threads = default_threads() if threads is None else max(1, threads)
    if n_threads == 1 or len(starts) == 1:
        for r0 in starts:
            work(r0)
    else:
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            for _ in pool.map(work, starts):
                pass
    return out


def dequantize(data: np.ndarray, qtype: T | str, n_cols: int | None = None) -> np.ndarray:
    """Decode ggml bytes (rows, row_bytes) back to float32 (rows, cols) with the gguf package."""
    qt = tensor_type(qtype)
    raw = np.ascontiguousarray(data, dtype=np.uint8)
    out = _gguf_dequantize(raw, qt).astype(np.float32, copy=False)
    if n_cols is not None:
        out = out.reshape(-1, n_cols)
    return out
