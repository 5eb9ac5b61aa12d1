"""ggml's per-group scale searches (``make_qkx2/3_quants``, ``make_qx_quants``, ``make_qp_quants``).

Each function works on many groups at once: inputs have shape ``(n, N)`` -- ``n`` values of one
group down a column, ``N`` independent groups across. Reductions go down axis 0 with
``seqsum``, which adds row after row, i.e. exactly the C loop's left-to-right float32 order
(numpy's reduction along a contiguous last axis is pairwise and would differ). Every product is
materialised as float32 before it is rounded or accumulated, which matches ggml built without
fused multiply-add. Where C keeps the codes of the best candidate, we keep the best candidate's
inverse scale and recompute the codes once at the end (same integers, far fewer array writes).
"""

from __future__ import annotations

import numpy as np

from bench.gguf._fp import F32

GROUP_MAX_EPS = F32(1e-15)


def seqsum(a: np.ndarray) -> np.ndarray:
    """Sum down axis 0 in index order (float32, like ``for (i...) s += a[i]`` in C)."""
    if a.shape[1] >= 2:  # numpy adds whole rows in order here; with one column it goes pairwise
        return np.add.reduce(a, axis=0)
    s = a[0].copy()
    for i in range(1, a.shape[0]):
        s += a[i]
    return s


def make_qkx(
    x: np.ndarray,
    w: np.ndarray,
    nmax: int,
    rmin: float,
    rdelta: float,
    nstep: int,
    le_test: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric fit ``x ~ scale*L + min`` (``make_qkx2_quants``; ``make_qkx3_quants`` if le_test).

    Returns codes ``L`` (uint8, shape of x), ``scale`` and ``the_min`` (= -min >= 0) per group.
    """
    fmax = F32(nmax)
    mn = x.min(axis=0)
    mx = x.max(axis=0)
    sum_w = seqsum(w)
    sum_x = seqsum(w * x)
    mn = np.where(mn > 0, F32(0), mn)
    degenerate = (mx <= mn) if le_test else (mx == mn)
    # C reuses one ``min`` variable: once a candidate wins, later candidates are computed from
    # ``x - this_min`` and ``max - this_min``. So the offset is tracked per group (``cur_min``)
    # and the codes are recomputed at the end from the winning (iscale, offset) pair.
    cur_min = mn
    xm = x - cur_min
    buf = np.empty_like(x)
    wl = np.empty_like(x)
    tmp = np.empty_like(x)
    zero = F32(0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rng = np.where(degenerate, F32(1), mx - cur_min)
        iscale0 = fmax / rng
        scale0 = F32(1) / iscale0
        np.multiply(xm, iscale0, out=buf)
        np.rint(buf, out=buf)
        np.minimum(buf, fmax, out=buf)
        np.multiply(buf, scale0, out=buf)
        buf += cur_min
        buf -= x
        np.multiply(buf, buf, out=buf)
        buf *= w
        best_err = seqsum(buf)
        best_iscale = iscale0
        best_base = cur_min
        best_scale = scale0
        frmin, frdelta = F32(rmin), F32(rdelta)
        clamp_low = False  # x - cur_min can go negative once cur_min moved above min(x)
        for step in range(nstep + 1):
            iscale = ((frmin + frdelta * F32(step)) + fmax) / (mx - cur_min)
            np.multiply(xm, iscale, out=buf)
            np.rint(buf, out=buf)
            if clamp_low:
                np.clip(buf, zero, fmax, out=buf)
            else:
                np.minimum(buf, fmax, out=buf)  # buf = l
            np.multiply(w, buf, out=wl)
            sum_l = seqsum(wl)
            np.multiply(wl, buf, out=tmp)
            sum_l2 = seqsum(tmp)
            np.multiply(wl, x, out=tmp)
            sum_xl = seqsum(tmp)
            d = sum_w * sum_l2 - sum_l * sum_l
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / d
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d
            pos = this_min > 0
            if pos.any():
                this_min = np.where(pos, zero, this_min)
                this_scale = np.where(pos, sum_xl / sum_l2, this_scale)
            np.multiply(buf, this_scale, out=buf)
            buf += this_min
            buf -= x
            np.multiply(buf, buf, out=buf)
            buf *= w
            cur = seqsum(buf)
            better = (d > 0) & (cur < best_err)
            if better.any():
                best_err = np.where(better, cur, best_err)
                best_iscale = np.where(better, iscale, best_iscale)
                best_base = np.where(better, cur_min, best_base)
                best_scale = np.where(better, this_scale, best_scale)
                cur_min = np.where(better, this_min, cur_min)
                np.subtract(x, cur_min, out=xm)
                clamp_low = True
        np.subtract(x, best_base, out=buf)
        buf *= best_iscale
        np.rint(buf, out=buf)
        np.clip(buf, zero, fmax, out=buf)
    codes = buf.astype(np.uint8)
    if degenerate.any():
        codes[:, degenerate] = 0
        best_scale = np.where(degenerate, zero, best_scale)
        cur_min = np.where(degenerate, mn, cur_min)
    return codes, best_scale.astype(np.float32), (-cur_min).astype(np.float32)


def _first_absmax_value(x: np.ndarray, amax: np.ndarray) -> np.ndarray:
    """Signed value of the first entry with the largest |x| per column (C's strict '>' scan).

    Only the sign is in question; it is ambiguous just where both +amax and -amax occur, so
    argmax (slow on short axes) runs only on those rare columns.
    """
    has_pos = (x == amax).any(axis=0)
    has_neg = (x == -amax).any(axis=0)
    mx = np.where(has_pos, amax, -amax)
    both = np.flatnonzero(has_pos & has_neg)
    if both.size:
        sub = x[:, both]
        mx[both] = sub[np.abs(sub).argmax(axis=0), np.arange(both.size)]
    return mx


def make_qx(x: np.ndarray, w: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric signed fit (``make_qx_quants`` with rmse_type 1, weights ``w``).

    Returns codes ``L`` in 0..2*nmax-1 (uint8, offset by nmax; 0 for all-zero groups) and the
    signed scale per group.
    """
    fmax = F32(nmax)
    amax = np.abs(x).max(axis=0)
    zero = amax < GROUP_MAX_EPS
    mx = np.where(zero, F32(1), _first_absmax_value(x, amax))
    wx = w * x
    buf = np.empty_like(x)
    tmp = np.empty_like(x)
    lo, hi = F32(-nmax), F32(nmax - 1)

    def sums(iscale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        np.multiply(x, iscale, out=buf)
        np.rint(buf, out=buf)
        np.clip(buf, lo, hi, out=buf)
        np.multiply(wx, buf, out=tmp)
        sumlx = seqsum(tmp)
        np.multiply(w, buf, out=tmp)
        np.multiply(tmp, buf, out=tmp)
        return sumlx, seqsum(tmp)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        best_iscale = F32(-nmax) / mx
        sumlx, suml2 = sums(best_iscale)
        scale = np.where(suml2 != 0, sumlx / suml2, F32(0))
        best = scale * sumlx
        for step in range(-9, 10):
            if step == 0:
                continue
            iscale = -(fmax + F32(0.1) * F32(step)) / mx
            sumlx, suml2 = sums(iscale)
            better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
            if better.any():
                scale = np.where(better, sumlx / suml2, scale)
                best = np.where(better, scale * sumlx, best)
                best_iscale = np.where(better, iscale, best_iscale)
        np.multiply(x, best_iscale, out=buf)
        np.rint(buf, out=buf)
        np.clip(buf, lo, hi, out=buf)
        buf += fmax
    codes = buf.astype(np.uint8)
    if zero.any():
        codes[:, zero] = 0
        scale = np.where(zero, F32(0), scale)
    return codes, scale.astype(np.float32)


def make_qp(x: np.ndarray, w: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative fit of a superblock's sub-scales (``make_qp_quants``), groups down axis 0.

    Returns codes (uint8, with C's wrap-around for out-of-range values) and the scale.
    """
    n = x.shape[0]
    fmax = F32(nmax)
    mx = np.maximum(x.max(axis=0), F32(0))
    zero = mx < GROUP_MAX_EPS
    mx = np.where(zero, F32(1), mx)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = fmax / mx
        lu8 = (np.rint(x * iscale).astype(np.int64) & 0xFF).astype(np.float32)
        scale = F32(1) / iscale
        diff = x - scale * lu8
        best_mse = seqsum(w * diff * diff)
        for step in range(-4, 5):
            if step == 0:
                continue
            iscale_is = (F32(0.1) * F32(step) + fmax) / mx
            scale_is = F32(1) / iscale_is
            lv = np.minimum(fmax, np.rint(iscale_is * x))
            diff = x - scale_is * lv
            mse = seqsum(w * diff * diff)
            better = mse < best_mse
            best_mse = np.where(better, mse, best_mse)
            iscale = np.where(better, iscale_is, iscale)
        lv = np.minimum(fmax, np.rint(iscale * x))
        sumlx = seqsum(w * x * lv)
        suml2 = seqsum(w * lv * lv)
        big_l = (lv.astype(np.int64) & 0xFF).astype(np.float32)  # stored as uint8 in C
        for _ in range(5):
            changed = False
            for i in range(n):
                wi, xi, li = w[i], x[i], big_l[i]
                slx = sumlx - wi * xi * li
                sl2 = suml2 - wi * li * li
                new_l = np.minimum(fmax, np.rint(xi * sl2 / slx))
                slx2 = slx + wi * xi * new_l
                sl22 = sl2 + wi * new_l * new_l
                ok = (slx > 0) & (new_l != li) & (sl22 > 0)
                ok &= slx2 * slx2 * suml2 > sumlx * sumlx * sl22
                if ok.any():
                    changed = True
                    wrapped = (np.nan_to_num(new_l).astype(np.int64) & 0xFF).astype(np.float32)
                    big_l[i] = np.where(ok, wrapped, li)
                    sumlx = np.where(ok, slx2, sumlx)
                    suml2 = np.where(ok, sl22, suml2)
            if not changed:
                break
        result = sumlx / suml2
    codes = big_l.astype(np.uint8)
    if zero.any():
        codes[:, zero] = 0
        result = np.where(zero, F32(0), result)
    return codes, result.astype(np.float32)
