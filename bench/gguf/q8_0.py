"""Q8_0 quantizer: 32-weight blocks, one fp16 scale, int8 codes (ggml ``quantize_row_q8_0_ref``)."""

from __future__ import annotations

import numpy as np

from bench.gguf._fp import F32, absmax_rows, roundf

BLOCK = 32
TYPE_SIZE = 34


def quantize_blocks(x: np.ndarray) -> np.ndarray:
    """Quantize float32 ``x`` of shape (n_blocks, 32) to (n_blocks, 34) bytes.

    ``amax / 127`` and ``x * (1/d)`` are float32 operations like the C code; the codes use the
    float32 ``d`` while the stored scale is its fp16 rounding. ggml's Q8_0 ignores an imatrix.
    """
    amax = absmax_rows(x)  # (n_blocks, 1)
    d = amax / F32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, F32(1) / d, F32(0))
    q = roundf(x * inv).astype(np.int8)
    out = np.empty((x.shape[0], TYPE_SIZE), dtype=np.uint8)
    out[:, :2] = d.astype(np.float16).view(np.uint8)
    out[:, 2:] = q.view(np.uint8)
    return out
