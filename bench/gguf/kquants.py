"""Q4_K, Q5_K and Q6_K quantizers (256-weight superblocks), bit-exact with ggml's reference C.

Without an importance vector these follow ``quantize_row_q{4,5,6}_K_ref`` (what llama-quantize
uses without ``--imatrix``); with one they follow ``quantize_row_q{4,5,6}_K_impl`` (what
``ggml_quantize_chunk`` runs when ``quant_weights`` is given; stable-diffusion.cpp passes all-ones).
Inputs are ``(n_blocks, 256)`` float32 arrays; outputs ``(n_blocks, type_size)`` uint8.
"""

from __future__ import annotations

import numpy as np

from bench.gguf._fit import make_qkx, make_qp, make_qx, scratch, seqsum
from bench.gguf._fp import F32

QK_K = 256


def _sub_major(x: np.ndarray, size: int, key: str) -> np.ndarray:
    """(nb, 256) -> (size, nb*256/size): one sub-block per column, values down axis 0.

    The result is the per-thread work array ``key`` (see ``scratch``).
    """
    out = scratch(key, (size, x.size // size))
    np.copyto(out, x.reshape(-1, size).T)
    return out


def _pack_scales(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """The 12-byte 6-bit scale/min packing of Q4_K/Q5_K, with C's uint8 truncation."""
    ls = ls.astype(np.uint8)
    lm = lm.astype(np.uint8)
    out = np.empty((ls.shape[0], 12), dtype=np.uint8)
    out[:, 0:4] = ls[:, 0:4] | ((ls[:, 4:8] >> 4) << 6)
    out[:, 4:8] = lm[:, 0:4] | ((lm[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (ls[:, 4:8] & 0xF) | ((lm[:, 4:8] & 0xF) << 4)
    return out


def _unpack_scales(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``get_scale_min_k4`` for all 8 sub-blocks: the values the decoder will see."""
    sc = np.empty((b.shape[0], 8), dtype=np.uint8)
    m = np.empty((b.shape[0], 8), dtype=np.uint8)
    sc[:, 0:4] = b[:, 0:4] & 63
    m[:, 0:4] = b[:, 4:8] & 63
    sc[:, 4:8] = (b[:, 8:12] & 0xF) | ((b[:, 0:4] >> 6) << 4)
    m[:, 4:8] = (b[:, 8:12] >> 4) | ((b[:, 4:8] >> 6) << 4)
    return sc, m


def _q45_k(x: np.ndarray, qw: np.ndarray | None, nmax: int) -> np.ndarray:
    """Shared body of Q4_K (nmax 15) and Q5_K (nmax 31); returns codes and packed header."""
    nb = x.shape[0]
    xs = _sub_major(x, 32, "k_xs")  # (32, nb*8)
    if qw is None:
        # ref: weights av_x + |x| with av_x the sub-block RMS; make_qkx2_quants
        w = scratch("k_w", xs.shape)
        np.multiply(xs, xs, out=w)
        av_x = np.sqrt(seqsum(w) / F32(32))
        np.abs(xs, out=w)
        w += av_x
        rmin, nstep = (-1.0, 20) if nmax == 15 else (-0.5, 15)
        codes, scales, mins = make_qkx(xs, w, nmax, rmin, 0.1, nstep, le_test=False)
        del w
        scales = scales.reshape(nb, 8)
        mins = mins.reshape(nb, 8)
        max_scale = np.maximum(scales.max(axis=1), F32(0))
        max_min = np.maximum(mins.max(axis=1), F32(0))
        with np.errstate(divide="ignore"):
            inv_scale = np.where(max_scale > 0, F32(63) / max_scale, F32(0))[:, None]
            inv_min = np.where(max_min > 0, F32(63) / max_min, F32(0))[:, None]
        ls = np.minimum(63, np.rint(inv_scale * scales).astype(np.int64) & 0xFF)
        lm = np.minimum(63, np.rint(inv_min * mins).astype(np.int64) & 0xFF)
        d = (max_scale / F32(63)).astype(np.float16)
        dmin = (max_min / F32(63)).astype(np.float16)
    else:
        # impl: superblock sigma2, weights qw*sqrt(sigma2 + x^2); make_qkx3 + make_qp_quants
        xt = np.ascontiguousarray(x.T)  # (256, nb)
        sigma2 = (F32(2) * seqsum(xt * xt)) / F32(QK_K)
        sig = np.repeat(sigma2, 8)[None, :]  # per sub-block column
        w = _sub_major(qw, 32, "k_w") * np.sqrt(sig + xs * xs)
        sw = seqsum(w).reshape(nb, 8)
        codes, scales, mins = make_qkx(xs, w, nmax, -0.9, 0.05, 36, le_test=True)
        scales = scales.reshape(nb, 8)
        mins = mins.reshape(nb, 8)
        swt = np.ascontiguousarray(sw.T)
        ls_c, d_block = make_qp(np.ascontiguousarray(scales.T), swt, 63)
        lm_c, m_block = make_qp(np.ascontiguousarray(mins.T), swt, 63)
        ls = ls_c.T.astype(np.int64)
        lm = lm_c.T.astype(np.int64)
        if nmax == 31:  # Q5_K clamps the stored codes, Q4_K does not
            ls = np.minimum(63, ls)
            lm = np.minimum(63, lm)
        d = d_block.astype(np.float16)
        dmin = m_block.astype(np.float16)

    packed = _pack_scales(ls, lm)
    sc, m = _unpack_scales(packed)
    # Re-quantize with the stored scales (sub-major layout: one sub-block per column); where a
    # stored scale is 0, C keeps the search's codes.
    # d and dmin are fp16, so their float32 values are exactly what the decoder reads
    dd = (d.astype(np.float32)[:, None] * sc.astype(np.float32)).reshape(-1)
    dm = (dmin.astype(np.float32)[:, None] * m.astype(np.float32)).reshape(-1)
    kept = np.flatnonzero(dd == 0)
    fallback = codes(kept) if kept.size else None  # before xs is overwritten below
    dd[kept] = 1
    with np.errstate(invalid="ignore", over="ignore"):
        np.add(xs, dm, out=xs)  # x + dm, then / dd: C's order
        np.divide(xs, dd, out=xs)
        np.rint(xs, out=xs)
        np.clip(xs, F32(0), F32(nmax), out=xs)
    L = xs.astype(np.uint8)
    if fallback is not None:
        L[:, kept] = fallback
    L = L.T.reshape(nb, 256)

    header = np.empty((nb, 16), dtype=np.uint8)
    header[:, 0:2] = d.reshape(nb, 1).view(np.uint8)
    header[:, 2:4] = dmin.reshape(nb, 1).view(np.uint8)
    header[:, 4:16] = packed
    return np.concatenate([header, _pack_codes(L, nmax)], axis=1)


_LOW4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_BIT0 = np.uint64(0x0101010101010101)
_LOW2 = np.uint64(0x0303030303030303)


def _words(L: np.ndarray) -> np.ndarray:
    """(nb, 256) uint8 codes as (nb, 32) little-endian uint64 words, 8 codes per word.

    The packing below only masks and shifts by less than 8 bits values that stay inside their
    byte, so it can work on 8 codes at once.
    """
    return np.ascontiguousarray(L).view(np.uint64)


def _pack_codes(L: np.ndarray, nmax: int) -> np.ndarray:
    """Q4_K: 128 nibble bytes. Q5_K: 32 high-bit bytes (qh) followed by 128 nibble bytes."""
    nb = L.shape[0]
    q = _words(L).reshape(nb, 4, 2, 4)  # chunk c, half, 32 codes
    if nmax == 15:
        qs = q[:, :, 0] | (q[:, :, 1] << np.uint64(4))
        return qs.view(np.uint8).reshape(nb, 128)
    low = q & _LOW4
    qs = low[:, :, 0] | (low[:, :, 1] << np.uint64(4))
    hi = (q >> np.uint64(4)) & _BIT0  # 0/1 per byte
    qh = hi[:, 0, 0] | (hi[:, 0, 1] << np.uint64(1))
    for c in range(1, 4):
        qh |= hi[:, c, 0] << np.uint64(2 * c)
        qh |= hi[:, c, 1] << np.uint64(2 * c + 1)
    out = np.empty((nb, 160), dtype=np.uint8)
    out[:, :32] = qh.view(np.uint8).reshape(nb, 32)
    out[:, 32:] = qs.view(np.uint8).reshape(nb, 128)
    return out


def quantize_q4_k(x: np.ndarray, qw: np.ndarray | None = None) -> np.ndarray:
    """Q4_K blocks: d, dmin, 12 scale bytes, 128 nibble bytes (144 bytes)."""
    return _q45_k(x, qw, 15)


def quantize_q5_k(x: np.ndarray, qw: np.ndarray | None = None) -> np.ndarray:
    """Q5_K blocks: d, dmin, 12 scale bytes, 32 qh bytes, 128 nibble bytes (176 bytes)."""
    return _q45_k(x, qw, 31)


def quantize_q6_k(x: np.ndarray, qw: np.ndarray | None = None) -> np.ndarray:
    """Q6_K blocks: 128 ql bytes, 64 qh bytes, 16 int8 scales, fp16 d (210 bytes)."""
    nb = x.shape[0]
    xs = _sub_major(x, 16, "k_xs")  # (16, nb*16)
    if qw is None:
        w = scratch("k_w", xs.shape)
        np.multiply(xs, xs, out=w)
    else:
        w = _sub_major(qw, 16, "k_w")
    codes, scales = make_qx(xs, w, 32)
    del w
    scales = scales.reshape(nb, 16)
    abs_s = np.abs(scales)
    idx = abs_s.argmax(axis=1)
    rows = np.arange(nb)
    max_abs = abs_s[rows, idx]
    max_scale = scales[rows, idx]
    zero_block = max_abs < F32(1e-15)
    max_scale = np.where(zero_block, F32(1), max_scale)
    iscale = (F32(-128) / max_scale)[:, None]
    d = (F32(1) / iscale[:, 0]).astype(np.float16)
    sc = np.minimum(np.rint(iscale * scales), F32(127)).astype(np.int8)  # >= -128 by design
    dd = (d.astype(np.float32)[:, None] * sc.astype(np.float32)).reshape(-1)  # d: fp16 as read
    # Re-quantize with the stored scales in sub-major layout; where a stored scale is 0, C keeps
    # the search's codes.
    kept = np.flatnonzero(dd == 0)
    fallback = codes(kept) if kept.size else None  # before xs is overwritten below
    dd[kept] = 1
    with np.errstate(invalid="ignore", over="ignore"):
        np.divide(xs, dd, out=xs)
        np.rint(xs, out=xs)
        xs.clip(F32(-32), F32(31), out=xs)
    L = xs.astype(np.int8).view(np.uint8)
    L += 32
    if fallback is not None:
        L[:, kept] = fallback
    q = _words(L.T.reshape(nb, 256)).reshape(nb, 2, 4, 4)  # half, quarter, 32 codes

    out = np.empty((nb, 210), dtype=np.uint8)
    low = q & _LOW4
    hi = (q >> np.uint64(4)) & _LOW2
    ql = np.empty((nb, 2, 2, 4), dtype=np.uint64)
    ql[:, :, 0] = low[:, :, 0] | (low[:, :, 2] << np.uint64(4))
    ql[:, :, 1] = low[:, :, 1] | (low[:, :, 3] << np.uint64(4))
    qh = hi[:, :, 0] | (hi[:, :, 1] << np.uint64(2))
    qh |= hi[:, :, 2] << np.uint64(4)
    qh |= hi[:, :, 3] << np.uint64(6)
    out[:, 0:128] = ql.view(np.uint8).reshape(nb, 128)
    out[:, 128:192] = qh.view(np.uint8).reshape(nb, 64)
    out[:, 192:208] = sc.view(np.uint8)
    out[:, 208:210] = d.reshape(nb, 1).view(np.uint8)
    out[zero_block] = 0
    return out
