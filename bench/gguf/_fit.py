"""ggml's per-group scale searches (``make_qkx2/3_quants``, ``make_qx_quants``, ``make_qp_quants``).

Each function works on many groups at once: inputs have shape ``(n, N)`` -- ``n`` values of one
group down a column, ``N`` independent groups across. Reductions go down axis 0 with
``seqsum``, which adds row after row, i.e. exactly the C loop's left-to-right float32 order
(numpy's reduction along a contiguous last axis is pairwise and would differ). Every product is
materialised as float32 before it is rounded or accumulated, which matches ggml built without
fused multiply-add. Where C keeps the codes of the best candidate, we keep the best candidate's
inverse scale and recompute the codes on demand, only for the groups that need them.
Chunk-sized work arrays come from ``scratch`` (see docs/gguf.md, "Speed").
"""

from __future__ import annotations

import functools
import threading
from math import prod

import numpy as np

from bench.gguf._fp import F32

GROUP_MAX_EPS = F32(1e-15)
#: Values per block of the candidate-scale loops: their half-dozen work arrays of this size
#: (256 KiB each) stay in the L2 cache. The per-group bookkeeping runs on whole chunks.
BLOCK_WEIGHTS = 1 << 16

_local = threading.local()
try:  # the clip ufunc itself: ``np.clip`` and ``ndarray.clip`` reach it through a Python-level
    # wrapper that cost 1-2.5 % of Q4_K-Q6_K's time (CPU time, best of 7); same bytes
    from numpy._core.umath import clip as _clip
except ImportError:  # numpy 1.x
    _clip = np.ndarray.clip


_HUGE = 2 << 20  # transparent huge page size on x86-64 Linux


def _blocks(g: int, n: int) -> list[slice]:
    """Column blocks of about ``BLOCK_WEIGHTS`` values, near-equal so none has a single column
    (numpy reduces a lone column pairwise, not in index order)."""
    k = max(1, -(-g * n // BLOCK_WEIGHTS))
    return [slice(g * i // k, g * (i + 1) // k) for i in range(k)]


def scratch(key: str, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
    """A per-thread work array (contents undefined), reused from call to call.

    The searches need several chunk-sized temporaries. Allocating them afresh each chunk made
    glibc hand the memory back to the kernel and page-fault it in again (~30 % of Q6_K's time),
    and separately allocated 4 KiB pages land in L2 cache sets by chance (run-to-run swings of
    ~20 %). So all of them are carved, page-aligned, from one per-thread arena of at least
    16 MiB aligned to 2 MiB, which numpy asks the kernel to back with huge pages.
    Each ``key`` names one live buffer; callers must not keep the result past their chunk.
    """
    arena = getattr(_local, "arena", None)
    if arena is None:
        arena = _local.arena = {"buf": np.empty(0, np.uint8), "top": 0, "slots": {}}
    nbytes = prod(shape) * np.dtype(dtype).itemsize
    slot = arena["slots"].get(key)
    if slot is None or slot[1] < nbytes:
        need = -(-nbytes // 4096) * 4096
        if arena["top"] + need > arena["buf"].size:  # start a new, larger arena
            size = max(16 << 20, 2 * (arena["top"] + need))
            raw = np.empty(size + _HUGE, np.uint8)
            start = -raw.ctypes.data % _HUGE
            arena.update(buf=raw[start : start + size], top=0, slots={})
        slot = arena["slots"][key] = (arena["top"], need)
        arena["top"] += need
    off = slot[0]
    return arena["buf"][off : off + nbytes].view(dtype).reshape(shape)


def seqsum(a: np.ndarray) -> np.ndarray:
    """Sum down axis 0 in index order (float32, like ``for (i...) s += a[i]`` in C)."""
    if a.shape[1] >= 2:  # numpy adds whole rows in order here; with one column it goes pairwise
        return np.add.reduce(a, axis=0)
    s = a[0].copy()
    for i in range(1, a.shape[0]):
        s += a[i]
    return s


class Codes:
    """Codes of a finished search, computed on demand for the groups that need them.

    The quantizers re-derive the codes from the stored (fp16/6-bit) scales and only fall back to
    the search's own codes where a stored scale is zero, so these are rarely needed in full.
    ``offset`` is subtracted before scaling (Q4_K/Q5_K ``min``), ``shift`` added after clamping.
    ``iscale`` may be a (table, row) pair, gathered only for the requested groups; the table
    can be a ``scratch`` array, so call before the next chunk's search.
    """

    def __init__(
        self,
        x: np.ndarray,
        iscale: np.ndarray | tuple[np.ndarray, np.ndarray],
        offset: np.ndarray | None,
        lo: float,
        hi: float,
        shift: float,
        zero: np.ndarray,
    ) -> None:
        self.x, self.iscale, self.offset, self.zero = x, iscale, offset, zero
        self.lo, self.hi, self.shift = F32(lo), F32(hi), F32(shift)

    def __call__(self, cols: np.ndarray) -> np.ndarray:
        """uint8 codes (n, len(cols)) of the groups ``cols``."""
        v = self.x[:, cols]
        with np.errstate(invalid="ignore", over="ignore"):
            if self.offset is not None:
                v = v - self.offset[cols]
            if isinstance(self.iscale, tuple):  # (per-candidate table, winning row): gather
                table, row = self.iscale
                v = v * table[row[cols], cols]
            else:
                v = v * self.iscale[cols]
            np.rint(v, out=v)
            np.clip(v, self.lo, self.hi, out=v)
            v += self.shift
        v[:, self.zero[cols]] = 0
        return v.astype(np.uint8)


def make_qkx(
    x: np.ndarray,
    w: np.ndarray,
    nmax: int,
    rmin: float,
    rdelta: float,
    nstep: int,
    le_test: bool,
) -> tuple[Codes, np.ndarray, np.ndarray]:
    """Asymmetric fit ``x ~ scale*L + min`` (``make_qkx2_quants``; ``make_qkx3_quants`` if le_test).

    Returns the codes ``L`` (a ``Codes``), ``scale`` and ``the_min`` (= -min >= 0) per group.
    The search runs on blocks of about ``BLOCK_WEIGHTS`` values so its work arrays stay in cache.
    """
    n, g = x.shape
    blocks = _blocks(g, n)
    if len(blocks) > 1:  # each block is a single-block search (at most BLOCK_WEIGHTS values)
        scale = np.empty(g, np.float32)
        the_min = np.empty(g, np.float32)
        iscale = np.empty(g, np.float32)
        base = np.empty(g, np.float32)
        degenerate = np.empty(g, bool)
        for c in blocks:
            codes, scale[c], the_min[c] = make_qkx(
                x[:, c], w[:, c], nmax, rmin, rdelta, nstep, le_test
            )
            iscale[c], base[c], degenerate[c] = codes.iscale, codes.offset, codes.zero
        return Codes(x, iscale, base, 0, nmax, 0, degenerate), scale, the_min
    fmax, zero = F32(nmax), F32(0)
    mn = x.min(axis=0)
    mx = x.max(axis=0)
    sum_w = seqsum(w)
    buf = scratch("qkx_buf", x.shape)
    np.multiply(w, x, out=buf)
    sum_x = seqsum(buf)
    mn = np.where(mn > 0, zero, mn)
    degenerate = (mx <= mn) if le_test else (mx == mn)
    # C reuses one ``min`` variable: once a candidate wins, later candidates are computed from
    # ``x - this_min`` and ``max - this_min``. Only the running (min, best error) pair is
    # updated inside the loop; each candidate's values go to ``hist`` and the winner's are
    # picked out at the end (codes recomputed on demand from its iscale and offset).
    # hist rows per candidate (0 = C's initial guess): this_scale, this_min, error, iscale, offset
    ncand = nstep + 2
    hist = np.empty((ncand, 5, g), np.float32)
    won = np.zeros((ncand, g), bool)
    won[0] = True
    run = np.empty((2, g), np.float32)  # current min, best error (pairs with hist rows 1, 2)
    cur_min = run[0]
    cur_min[:] = mn
    prods = scratch("qkx_prods", (2, n, g))  # w*l (then w*l*x), w*l*l
    sums = np.empty((4, g), np.float32)  # sum_x, sum_l, sum_xl, sum_l2
    sums[0] = sum_x
    sw = np.stack([sum_w, sum_w, sum_x])
    a = np.empty((3, g), np.float32)
    b = np.empty((3, g), np.float32)
    rng = np.empty(g, np.float32)
    dpos = np.empty(g, bool)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        h = hist[0]
        np.subtract(mx, cur_min, out=rng)
        rng[degenerate] = 1
        np.divide(fmax, rng, out=h[3])
        np.divide(F32(1), h[3], out=h[0])
        h[1] = cur_min
        h[4] = cur_min
        np.subtract(x, cur_min, out=buf)
        buf *= h[3]
        np.rint(buf, out=buf)
        _clip(buf, zero, fmax, out=buf)
        buf *= h[0]
        buf += cur_min
        buf -= x
        np.square(buf, out=buf)
        buf *= w
        np.add.reduce(buf, axis=0, out=h[2])
        run[1] = h[2]
        frmin, frdelta = F32(rmin), F32(rdelta)
        wl, wll = prods
        for k in range(1, ncand):
            h = hist[k]
            h[4] = cur_min
            np.subtract(mx, cur_min, out=rng)
            np.divide((frmin + frdelta * F32(k - 1)) + fmax, rng, out=h[3])
            np.subtract(x, cur_min, out=buf)  # C: iscale*(x - min)
            buf *= h[3]
            np.rint(buf, out=buf)
            _clip(buf, zero, fmax, out=buf)  # l (x - min may be < 0 once min moved)
            np.multiply(w, buf, out=wl)
            np.multiply(wl, buf, out=wll)
            np.add.reduce(wl, axis=0, out=sums[1])  # index order down each group
            wl *= x  # now w*l*x
            np.add.reduce(prods, axis=1, out=sums[2:4])
            # b = [sum_l*sum_x, sum_l*sum_l, sum_l*sum_xl]
            # a = [sum_w*sum_xl, sum_w*sum_l2, sum_x*sum_l2]; a - b = [num_scale, D, num_min]
            np.multiply(sums[1], sums[0:3], out=b)
            np.multiply(sw, sums[_A_ROWS], out=a)
            a -= b
            np.divide(a[0::2], a[1], out=h[0:2])  # this_scale, this_min
            this_scale, this_min = h[0], h[1]
            pos = this_min > 0
            if pos.any():
                np.copyto(this_min, zero, where=pos)
                np.copyto(this_scale, sums[2] / sums[3], where=pos)
            buf *= this_scale
            buf += this_min
            buf -= x
            np.square(buf, out=buf)
            buf *= w
            np.add.reduce(buf, axis=0, out=h[2])
            better = won[k]
            np.less(h[2], run[1], out=better)
            np.greater(a[1], zero, out=dpos)
            better &= dpos
            np.putmask(cur_min, better, h[1])  # cheaper than where/copyto here
            np.putmask(run[1], better, h[2])
    last = np.multiply(won, _CAND_INDEX[:ncand], dtype=np.uint8).max(axis=0)  # last winner
    col = np.arange(g)
    scale = hist[last, 0, col]
    the_min = -cur_min
    if degenerate.any():
        scale[degenerate] = 0
        the_min[degenerate] = -mn[degenerate]
    codes = Codes(x, hist[last, 3, col], hist[last, 4, col], 0, nmax, 0, degenerate)
    return codes, scale, the_min


_A_ROWS = np.array([2, 3, 3])
_CAND_INDEX = np.arange(64, dtype=np.uint8)[:, None]


def _first_absmax_value(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(max |x|, signed value of the first entry with that |x|) per column (C's strict '>' scan).

    The sign is ambiguous only where both +amax and -amax occur; argmax (slow on short axes)
    runs only on those rare columns.
    """
    hi = x.max(axis=0)
    neg_lo = -x.min(axis=0)
    amax = np.maximum(hi, neg_lo)
    mx = np.where(hi >= neg_lo, hi, -neg_lo)
    both = np.flatnonzero((hi == neg_lo) & (amax > 0))
    if both.size:
        sub = x[:, both]
        mx[both] = sub[np.abs(sub).argmax(axis=0), np.arange(both.size)]
    return amax, mx


@functools.cache
def _qx_numerators(nmax: int) -> np.ndarray:
    """Candidate 0 is C's first guess -nmax/max, then is = -9..9 (not 0): -(nmax + 0.1*is)/max."""
    fmax = F32(nmax)
    num = [F32(-nmax)] + [-(fmax + F32(0.1) * F32(s)) for s in range(-9, 10) if s]
    return np.array(num, np.float32)[:, None]


def make_qx(x: np.ndarray, w: np.ndarray, nmax: int) -> tuple[Codes, np.ndarray]:
    """Symmetric signed fit (``make_qx_quants`` with rmse_type 1, weights ``w``).

    Returns the codes ``L`` in 0..2*nmax-1 (a ``Codes``, offset by nmax; 0 for all-zero groups)
    and the signed scale per group.
    """
    n, g = x.shape
    amax, mx = _first_absmax_value(x)
    zero = amax < GROUP_MAX_EPS
    mx[zero] = 1
    num = _qx_numerators(nmax)
    ncand = len(num)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscales = scratch("qx_iscales", (ncand, g))
        np.divide(num, mx, out=iscales)
        sums = scratch("qx_sums", (2, ncand, g))  # sumlx, suml2 per candidate
        lo, hi = F32(-nmax), F32(nmax - 1)
        for c in _blocks(g, n):
            xc, wc = x[:, c], w[:, c]
            wx = scratch("qx_wx", xc.shape)
            np.multiply(wc, xc, out=wx)
            prods = scratch("qx_prods", (2, *xc.shape))  # w*x*l, w*l*l
            lx, l2 = prods
            for isk, out in zip(iscales[:, c], sums[:, :, c].transpose(1, 0, 2), strict=True):
                np.multiply(xc, isk, out=lx)
                np.rint(lx, out=lx)
                _clip(lx, lo, hi, out=lx)  # l
                np.multiply(wc, lx, out=l2)
                l2 *= lx
                lx *= wx
                np.add.reduce(prods, axis=1, out=out)  # index order down each group
        sumlx, suml2 = sums
        scales = scratch("qx_scales", (ncand, g))
        np.divide(sumlx, suml2, out=scales)
        scales[0][suml2[0] == 0] = 0
        bests = scratch("qx_bests", (ncand, g))
        np.multiply(scales, sumlx, out=bests)
        # candidate k wins if suml2 > 0 and sumlx^2 > best*suml2 (best: the last winner's)
        sq = scratch("qx_sq", (ncand, g))
        np.multiply(sumlx, sumlx, out=sq)
        valid = suml2 > 0
        if not valid.all():
            np.copyto(sq, -np.inf, where=~valid)
        won = scratch("qx_won", (ncand, g), np.bool_)
        won[0] = True
        best = bests[0].copy()
        t = np.empty(g, np.float32)
        for k in range(1, ncand):
            np.multiply(best, suml2[k], out=t)
            np.greater(sq[k], t, out=won[k])
            np.putmask(best, won[k], bests[k])  # cheaper than where/copyto here
    last = np.multiply(won, _CAND_INDEX[:ncand], dtype=np.uint8).max(axis=0)  # last winner
    col = np.arange(g)
    scale = scales[last, col]
    scale[zero] = 0
    codes = Codes(x, (iscales, last), None, -nmax, nmax - 1, nmax, zero)
    return codes, scale


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
