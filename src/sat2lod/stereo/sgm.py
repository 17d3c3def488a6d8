"""Dense matching of a rectified pair: census cost + semi-global matching (SGM), in numba.

Convention: pixel ``(y, x)`` of the left (reference) image matches pixel ``(y, x + d)`` of the right image,
``d`` in ``[dmin, dmax]`` (integers; sub-pixel after refinement). Internally ``k = d - dmin`` in ``[0, D)``.

Cost: Hamming distance between census codes (``census_h x census_w`` window, at most 63 bits, uint8).
Aggregation (Hirschmüller 2008): for each path direction r,
``L_r(p, k) = C(p, k) + min(L_r(p-r, k), L_r(p-r, k±1) + P1, min_j L_r(p-r, j) + P2) - min_j L_r(p-r, j)``
and ``S = sum_r L_r``. 4 paths (horizontal + vertical) or 8 paths (+ diagonals), in two raster passes: the
forward pass (left-to-right, top-to-bottom paths) stores its sum, the backward pass adds its own paths and, on one
thread, selects the disparity of each pixel as soon as its ``S`` is complete (``S`` is never stored whole twice).
Disparity: winner-take-all on ``S``, sub-pixel fit through the winner's and its neighbours' ``S`` (parabola, or the
equiangular V fit, less locked to the integers on these L1-like costs; the images' own sub-pixel refinement is
:mod:`sat2lod.stereo.subpixel`), left-right consistency, optional 3x3 median.
Left-right check: the right image's winners are read from the same ``S`` along ``x + k = const`` (every candidate,
not only the left winners as OpenCV's SGBM does; see :func:`_right_winners`); a left pixel is kept when the
winner of its right pixel is within ``lr_tol`` of its own disparity.

Speed: every inner loop runs over the disparities of one pixel with unsigned offsets into flat buffers,
branch-free, so LLVM vectorizes it (16 lanes with AVX2, the width of the int16 sums); no array views are created
per pixel; the path vectors are uint8 when every intermediate fits (``C_max + 2 P2 <= 255``, e.g. census 5x7
with P2 <= 110; else int16), which halves the path buffers (one row of vectors per path, kept in the L2 cache);
the census is built in two 32-bit halves; the winner is found in the loop of the pixel's last path, as the min
of int32 keys ``S << 16 | k`` (kept int32: numba would widen them to int64, halving the lanes again).
``bench/stereo_sgm_vs_opencv.py`` times it against OpenCV's SGBM.

Memory (documented peak, bytes per voxel H x W x D): on one thread the forward pass computes the costs row by row
into a uint8 volume (1) that the backward pass reads back, and stores its path sum in uint8 when
``paths / 2 x (C_max + P2) <= 255`` (4 paths with P2 <= 93 for census 5x7), else int16 (1 or 2): **2 bytes
(4 paths) or 3 bytes (8 paths)**, plus O(W x D) row buffers. When that exceeds ``max_mem_mb`` the volume of costs
is dropped (each pass computes its rows' costs again: 1-2 bytes, ~20 % slower). When 4 bytes per voxel (the
two-thread case) exceed it, :func:`sgm_disparity` splits the image into horizontal strips (with ``strip_overlap``
rows of overlap, discarded), on any thread count: paths are cut at the strip border, so the layout must not
follow the threads for the disparities to be the same on any core count. On two threads both passes run concurrently, each computing its own
costs, and store int16 sums (4 bytes). Volumes can be kept between calls in an :class:`SGMWorkspace` (no page
faults on reuse). The integer kernels and the NumPy references (``*_reference``, float32, exact on these
integers) give identical results.
"""

from __future__ import annotations

import logging
import math

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

from sat2lod.schema import defaults

_STEREO = defaults("stereo")  # defaults of config section stereo

log = logging.getLogger(__name__)

#: bytes per voxel the strip layout is computed with (two threads: both passes' int16 sums), on any thread count
_STRIP_BYTES_PER_VOXEL = 4.0

_U = np.uint64
_BIG = np.int16(16000)  # padding of the path vectors (above any L + P1; L <= C_max + P2 < 16000 is enforced)


@intrinsic
def _ctpop(typingctx, x):  # type: ignore[no-untyped-def]
    """Population count of a 64-bit integer (LLVM ``ctpop``: POPCNT, or a vector lookup when vectorized)."""
    if not isinstance(x, types.Integer) or x.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


# ------------------------------------------------------------------------------------------------ census
@numba.njit(cache=True, parallel=True)
def _census(img: np.ndarray, wh: int, ww: int, has_nan: bool) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape
    ry, rx = wh // 2, ww // 2
    codes = np.zeros((h, w), np.uint64)
    valid = np.zeros((h, w), np.bool_)
    n = w - 2 * rx
    if n <= 0 or h - 2 * ry <= 0:
        return codes, valid
    nhi = max(0, wh * ww - 1 - 32)  # the first comparisons fill the high word, the last 32 the low word
    flat = img.reshape(-1)
    cf = codes.reshape(-1)
    vf = valid.reshape(-1)
    nu = _U(n)
    one = np.uint32(1)
    for y in numba.prange(ry, h - ry):
        lo = np.zeros(n, np.uint32)  # two 32-bit halves: twice the lanes of 64-bit codes
        hi = np.zeros(n, np.uint32)
        ok = np.ones(n, np.bool_)
        c0 = _U(y * w + rx)
        if has_nan:  # (without NaN in the image every window is valid: the checks are skipped)
            for i in range(nu):
                ok[i] = np.isfinite(flat[c0 + i])
        j = 0
        for dy in range(-ry, ry + 1):  # bit order: row-major window, first neighbour = highest bit
            for dx in range(-rx, rx + 1):
                if dy == 0 and dx == 0:
                    continue
                o0 = _U((y + dy) * w + rx + dx)
                word = hi if j < nhi else lo
                if has_nan:
                    for i in range(nu):  # whole row at once (vectorizes)
                        v = flat[o0 + i]
                        ok[i] = ok[i] & np.isfinite(v)
                        word[i] = (word[i] << one) | np.uint32(v < flat[c0 + i])
                else:
                    for i in range(nu):
                        word[i] = (word[i] << one) | np.uint32(flat[o0 + i] < flat[c0 + i])
                j += 1
        for i in range(nu):
            cf[c0 + i] = (_U(hi[i]) << _U(32)) | _U(lo[i]) if ok[i] else _U(0)
            vf[c0 + i] = ok[i]
    return codes, valid


def census_transform(img: np.ndarray, window: tuple[int, int] = (5, 7)) -> tuple[np.ndarray, np.ndarray]:
    """Census codes of a float image (NaN = no data).

    Args:
        img: (H, W) image, any real dtype; NaN marks no-data.
        window: (height, width), odd, at most 63 comparisons (e.g. 5x7 -> 34 bits, 7x9 -> 62 bits).
    Returns:
        codes (H, W) uint64 (bit = neighbour < centre, row-major window order), valid (H, W) bool (window
        inside the image and free of NaN); codes are 0 where not valid.
    """
    wh, ww = window
    if wh % 2 == 0 or ww % 2 == 0 or wh * ww - 1 > 63:
        raise ValueError(f"census window {window}: sides must be odd with at most 63 comparisons")
    img = np.ascontiguousarray(img, dtype=np.float32)
    return _census(img, wh, ww, not bool(np.isfinite(img).all()))


def census_transform_reference(
    img: np.ndarray, window: tuple[int, int] = (5, 7)
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy reference of :func:`census_transform`."""
    img = np.asarray(img, np.float32)
    h, w = img.shape
    wh, ww = window
    ry, rx = wh // 2, ww // 2
    pad = np.pad(img, ((ry, ry), (rx, rx)), constant_values=np.nan)
    codes = np.zeros((h, w), np.uint64)
    finite = np.isfinite(img)
    for dy in range(-ry, ry + 1):
        for dx in range(-rx, rx + 1):
            if dy == 0 and dx == 0:
                continue
            nb = pad[ry + dy : ry + dy + h, rx + dx : rx + dx + w]
            codes = (codes << np.uint64(1)) | (nb < img).astype(np.uint64)
            finite &= np.isfinite(nb)
    border = np.zeros((h, w), bool)
    border[ry : h - ry, rx : w - rx] = True
    valid = finite & border
    codes[~valid] = 0
    return codes, valid


# ------------------------------------------------------------------------------------------------ cost
@numba.njit(cache=True, parallel=True)
def _cost_volume(
    cl: np.ndarray,
    vl: np.ndarray,
    cr: np.ndarray,
    vr: np.ndarray,
    dmin: int,
    ndisp: int,
    invalid_cost: int,
    cost: np.ndarray,
) -> np.ndarray:
    """Fills and returns ``cost`` (H, W, ndisp) uint8, C-contiguous."""
    h, w = cl.shape
    wr = cr.shape[1]
    cf = cost.reshape(-1)
    clf = cl.reshape(-1)
    vlf = vl.reshape(-1)
    crf = cr.reshape(-1)
    vrf = vr.reshape(-1)
    for y in numba.prange(h):
        _cost_row(
            clf, vlf, crf, vrf, y, w, wr, dmin, ndisp, np.uint8(invalid_cost), cf, _U(y * w) * _U(ndisp)
        )
    return cost


@numba.njit(cache=True, inline="always")
def _cost_row(
    clf: np.ndarray,
    vlf: np.ndarray,
    crf: np.ndarray,
    vrf: np.ndarray,
    y: int,
    w: int,
    wr: int,
    dmin: int,
    ndisp: int,
    inv: np.uint8,
    out: np.ndarray,
    o0: np.uint64,
) -> None:
    """Costs of row ``y`` (flat census codes / validity of widths ``w`` and ``wr``) into ``out[o0:o0 + w * ndisp]``."""
    ndu = _U(ndisp)
    for x in range(w):
        p = _U(y * w + x)
        base = o0 + _U(x) * ndu
        k0 = max(0, min(ndisp, -(x + dmin)))  # right x = x + dmin + k inside [0, wr) for k in [k0, k1)
        k1 = max(k0, min(ndisp, wr - x - dmin))
        if not vlf[p]:
            k1 = k0
        for k in range(_U(k0)):
            out[base + k] = inv
        if k1 > k0:
            c = clf[p]
            r0 = _U(y * wr + x + dmin + k0)
            b0 = base + _U(k0)
            for i in range(_U(k1 - k0)):
                pc = np.uint8(_ctpop(c ^ crf[r0 + i]))
                out[b0 + i] = pc if vrf[r0 + i] else inv
        for k in range(_U(k1), ndu):
            out[base + k] = inv


def cost_volume(
    left: np.ndarray, right: np.ndarray, dmin: int, dmax: int, window: tuple[int, int] = (5, 7)
) -> np.ndarray:
    """Census Hamming cost volume (H, W, dmax - dmin + 1) uint8; invalid pairs get the maximum cost."""
    cl, vl = census_transform(left, window)
    cr, vr = census_transform(right, window)
    nd = int(dmax - dmin + 1)
    return _cost_volume(
        cl,
        vl,
        cr,
        vr,
        int(dmin),
        nd,
        window[0] * window[1] - 1,
        np.empty((cl.shape[0], cl.shape[1], nd), np.uint8),
    )


def cost_volume_reference(
    left: np.ndarray, right: np.ndarray, dmin: int, dmax: int, window: tuple[int, int] = (5, 7)
) -> np.ndarray:
    """NumPy reference of :func:`cost_volume`."""
    cl, vl = census_transform_reference(left, window)
    cr, vr = census_transform_reference(right, window)
    h, w = cl.shape
    wr = cr.shape[1]
    nd = dmax - dmin + 1
    cost = np.full((h, w, nd), window[0] * window[1] - 1, np.uint8)
    bits = np.array([(i).bit_count() for i in range(256)], np.uint8)
    for k in range(nd):
        d = dmin + k
        x = np.arange(w)
        xr = x + d
        ok = (xr >= 0) & (xr < wr)
        xs, xrs = x[ok], xr[ok]
        xor = cl[:, xs] ^ cr[:, xrs]
        pc = np.zeros(xor.shape, np.uint8)
        for byte in range(8):
            pc += bits[((xor >> np.uint64(8 * byte)) & np.uint64(255)).astype(np.intp)]
        valid = vl[:, xs] & vr[:, xrs]
        cost[:, xs, k] = np.where(valid, pc, cost[:, xs, k])
    return cost


# ------------------------------------------------------------------------------------------------ SGM
@numba.njit(cache=True, fastmath=True, inline="always")
def _update(
    buf: np.ndarray,
    po: np.uint64,
    out: np.ndarray,
    co: np.uint64,
    cost: np.ndarray,
    cofs: np.uint64,
    acc: np.ndarray,
    ao: np.uint64,
    init: np.ndarray,
    io: np.uint64,
    nd: np.uint64,
    pmin: int,
    pen: tuple[int, int, int, type, int],
    mode: int,
) -> tuple[int, np.int32]:
    """One path step on vectors of the path type ``pty`` (uint8 when ``C_max + 2 P2 <= 255``, else int16);
    ``pen`` = (P1, P2, paths, ``pty``, ``big``).
    ``buf[po:po + nd + 2]`` is the previous L padded with ``big`` at both ends (``big + P1`` >= any min candidate
    and representable in ``pty``),
    ``cost[cofs:cofs + nd]`` the pixel's costs; the new L goes to ``out[co + 1:co + nd + 1]`` and into
    ``acc[ao:ao + nd]``: stored (mode 0), stored plus ``init[io:io + nd]`` (mode 1), added (mode 2), or added
    for the pixel's last path, whose total is then complete (mode 3).
    Returns min_k of the new L, and in mode 3 the winner key ``min_k (S_k << 16 | k)`` of the total, found in the
    same branch-free loop (other modes: the unused key is dropped by the compiler, ``mode`` being a constant).
    Every intermediate stays within ``pty`` (``m >= pmin``, ``L <= C_max + P2``) and every key is cast back to int32
    (numba widens int32 arithmetic to int64), so LLVM keeps the lanes narrow."""
    p1, p2, _, pty, big = pen
    base = pty(pmin + p2)
    pm = pty(pmin)
    q1 = pty(p1)
    mn = pty(big + p1)
    key = np.int32(2147483647)
    for k in range(nd):
        m = buf[po + k + _U(1)]
        a = pty(buf[po + k] + q1)
        m = min(m, a)
        a = pty(buf[po + k + _U(2)] + q1)
        m = min(m, a)
        m = min(m, base)
        v = pty(pty(cost[cofs + k]) + pty(m - pm))
        out[co + k + _U(1)] = v
        if mode == 0:
            acc[ao + k] = v
        elif mode == 1:
            acc[ao + k] = np.int16(np.int16(v) + np.int16(init[io + k]))
        else:
            t = np.int16(np.int16(acc[ao + k]) + np.int16(v))
            acc[ao + k] = t
            if mode == 3:
                key = min(key, np.int32((np.int32(t) << 16) | np.int32(k)))
        mn = min(mn, v)
    return mn, key


@numba.njit(cache=True, fastmath=True, inline="always")
def _wta(
    s: np.ndarray, o: np.uint64, nd: np.uint64, kidx: np.ndarray
) -> tuple[np.int64, np.int16, np.int16, np.int16]:
    """Winner of one pixel's ``s[o:o + nd]`` (int16 < 16000): (first index of the minimum, the minimum, ``s`` at
    the index before and after, clamped to the range). One branch-free min over int32 keys ``s << 16 | k``."""
    key = np.int32(2147483647)
    for k in range(nd):
        key = min(key, np.int32((np.int32(s[o + k]) << 16) | kidx[k]))
    best = np.int64(key & 0xFFFF)
    last = np.int64(nd) - 1
    return best, np.int16(key >> 16), s[o + _U(max(best - 1, 0))], s[o + _U(min(best + 1, last))]


@numba.njit(cache=True, inline="always")
def _wta_key(
    s: np.ndarray, o: np.uint64, nd: np.uint64, key: np.int32
) -> tuple[np.int64, np.int16, np.int16, np.int16]:
    """:func:`_wta` of ``s[o:o + nd]`` from the key :func:`_update` found (mode 3)."""
    best = np.int64(key & 0xFFFF)
    last = np.int64(nd) - 1
    return best, np.int16(key >> 16), s[o + _U(max(best - 1, 0))], s[o + _U(min(best + 1, last))]


@numba.njit(cache=True, inline="always")
def _key_k(key: np.int32) -> int:
    """The k of a right-winner key (-1 for the empty key)."""
    return -1 if key == 2147483647 else 0xFFFF - (key & 0xFFFF)


@numba.njit(cache=True, fastmath=True, inline="always")
def _right_winners(
    s: np.ndarray,
    so: np.uint64,
    w: int,
    nd: int,
    dmin: int,
    wr: int,
    rkey: np.ndarray,
    kinv: np.ndarray,
    rbest: np.ndarray,
) -> None:
    """Right-image winners of one row, exactly: for each right pixel ``xr`` the k of the min over every left
    candidate ``x + dmin + k = xr`` of ``S(x, k)`` (``s[so + x * nd + k]``, the row's totals), into ``rbest``
    (W2; -1 = no candidate).

    The min is taken over int32 keys ``S << 16 | (0xFFFF - k)``: the min key holds the min ``S`` and, of equal
    ones, the largest k = the smallest x (as a left-to-right scan keeps the first); ``kinv[k] = 0xFFFF - k``.
    ``rkey[x + k]`` (W + D) is the running min of right pixel ``x + k + dmin``; each left pixel updates D
    consecutive entries with one vector loop. The pixels go in 8 phases of stride 8 (x = 0, 8, 16, ..., then
    1, 9, ...), so a pixel's loads line up with the vectors its predecessor stored (8 int32 = one AVX2 register):
    stored data is forwarded to the next load instead of stalling, as it does with a shift of one element."""
    n = w + nd
    for j in range(n):
        rkey[j] = 2147483647
    ndu = _U(nd)
    for ph in range(min(8, w)):
        for x in range(ph, w, 8):
            s0 = so + _U(x) * ndu
            r0 = _U(x)
            for k in range(ndu):
                rkey[r0 + k] = min(rkey[r0 + k], np.int32((np.int32(s[s0 + k]) << 16) | kinv[k]))
    for xr in range(wr):
        i = xr - dmin
        rbest[xr] = _key_k(rkey[i]) if 0 <= i < n else -1


@numba.njit(cache=True, inline="always")
def _winner_scratch(
    w: int, wr: int, nd: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row scratch of the winner selection: per left pixel the winner k, its S and S at k -+ 1 (W each); the
    right-image winners (W2), their keys (W + D) and ``0xFFFF - k`` (D)."""
    return (
        np.zeros(w, np.int64),
        np.zeros(w, np.int16),
        np.zeros(w, np.int16),
        np.zeros(w, np.int16),
        np.zeros(max(wr, 1), np.int64),
        np.zeros(w + nd, np.int32),
        (0xFFFF - np.arange(nd)).astype(np.int32),
    )


@numba.njit(cache=True, inline="always")
def _lr_row(
    y: int,
    w: int,
    nd: int,
    dmin: int,
    lr_tol: float,
    wr: int,
    lbest: np.ndarray,
    lcost: np.ndarray,
    lprev: np.ndarray,
    lnext: np.ndarray,
    rbest: np.ndarray,
    disp: np.ndarray,
    vfit: bool,
) -> None:
    """Sub-pixel offsets (parabola through the winner and its neighbours, or with ``vfit`` the equiangular V fit
    ``(a - c) / 2 (max(a, c) - b)``, suited to L1-like costs), left-right check of one row against the
    right-image winners ``rbest`` (k, -1 = none), then the kept disparities written into ``disp[y]``."""
    last = wr - 1
    for x in range(w):  # one pass, no early exit (vectorizes; a branch per pixel mispredicts at edges)
        a = np.float32(lprev[x])
        c = np.float32(lnext[x])
        b = np.float32(lcost[x])
        den = max(a, c) - b if vfit else a - np.float32(2.0) * b + c
        sub = np.float32(0.5) * (a - c) / den if den > 0 else np.float32(0.0)
        best = lbest[x]
        ok = (best > 0) & (best < nd - 1)  # on the border of the range: the true disparity may lie outside
        if lr_tol >= 0:
            xr = x + dmin + best
            rb = rbest[min(max(xr, 0), last)]
            ok = ok & (xr >= 0) & (xr <= last) & (rb >= 0) & (np.float64(abs(rb - best)) <= lr_tol)
        if ok:  # (disp is NaN elsewhere; no NaN literal under fastmath)
            disp[y, x] = np.float32(dmin + best) + sub


@numba.njit(cache=True, inline="always")
def _path_buffers(
    w: int, nd: int, pty: type, big: int
) -> tuple[
    tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    tuple[np.ndarray, np.ndarray, np.ndarray],
]:
    """The path vectors one pass keeps, each padded with ``big`` at both ends (stride ``D + 2``), and their mins.

    Vectors (type ``pty``): ``vb``, ``d1``, ``d2`` (W + 2 each) hold one vector per slot of the previous row for
    the vertical path and the two diagonals (pixel x in slot x + 1; slots 0 and W + 1 are virtual zero pixels,
    where paths enter the image; a slot is overwritten once no pixel of the row needs its previous-row value);
    ``hb`` (2) the horizontal path's (parity of the pixel); ``tmp`` (3) the new vertical L and the new d1 L of the
    current and the previous pixel. Mins (int16, W + 2): of each buffered ``vb``, ``d1``, ``d2`` vector. One row of
    vectors per path keeps the buffers in the L2 cache (double rows did not for 8 paths)."""
    vb = np.zeros((w + 2) * (nd + 2), pty)
    d1 = np.zeros((w + 2) * (nd + 2), pty)
    d2 = np.zeros((w + 2) * (nd + 2), pty)
    hb = np.zeros(2 * (nd + 2), pty)
    tmp = np.zeros(3 * (nd + 2), pty)
    for q in range(w + 2):
        for b in (vb, d1, d2):
            b[q * (nd + 2)] = big
            b[q * (nd + 2) + nd + 1] = big
    for q in range(2):
        hb[q * (nd + 2)] = big
        hb[q * (nd + 2) + nd + 1] = big
    mins = (np.zeros(w + 2, np.int16), np.zeros(w + 2, np.int16), np.zeros(w + 2, np.int16))
    return (vb, d1, d2, hb, tmp), mins


@numba.njit(cache=True, inline="always")
def _store_d1(
    d1: np.ndarray,
    d1min: np.ndarray,
    tmp: np.ndarray,
    slot: np.uint64,
    q: np.uint64,
    m: np.int16,
    su: np.uint64,
) -> None:
    """Move the new d1 vector waiting in ``tmp``'s vector ``q`` (and its min ``m``) into its ``slot``."""
    for k in range(_U(1), su - _U(1)):
        d1[slot * su + k] = tmp[q * su + k]
    d1min[slot] = m


@numba.njit(cache=True, fastmath=True)
def _sgm_pass(
    cost: np.ndarray,
    codes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int],
    from_codes: bool,
    backward: bool,
    s: np.ndarray,
    pen: tuple[int, int, int, type, int],
    sel: tuple[bool, int, float, int, bool],
    disp: np.ndarray,
) -> None:
    """One raster pass of the SGM aggregation over ``paths // 2`` directions; ``pen`` = (P1, P2, paths, type of
    the path vectors ``pty``, their padding ``big``; see :func:`_path_type`), ``sel`` = (``select``, dmin,
    ``lr_tol``, W2 the right image's width).

    Costs: with ``from_codes`` each row's costs are computed when the pass reaches it, from ``codes`` = (left
    census, left validity, right census, right validity, dmin, invalid cost) (flat), into the row's place in
    ``cost`` (H, W, D) uint8 when that is not empty (kept for the other pass), else into a W x D row buffer that
    stays in the cache (no volume at all); without ``from_codes`` they are read from ``cost``.
    Forward (``backward`` False): rows top to bottom, pixels left to right (paths from the left, above, above-left,
    above-right); backward: the mirror. Without ``select`` the pass's path sum is stored in ``s`` (H, W, D; uint8
    or int16, wide enough for it). With ``select`` ``s`` holds the other pass's sum: each pixel's total is formed
    in an int16 row buffer, the winner taken at once, and the row's disparities (after the left-right check)
    written into ``disp`` (H, W) float32.

    Why the pixel loop stays in this function (issue 20): the path steps are inlined :func:`_update` calls with
    literal modes, each compiling to its own branch-free vector loop, written twice because the sums go to ``s``
    (uint8 or int16) or to the int16 row totals (numba arrays of two dtypes do not unify). Splitting further was
    measured slower (1.44 MP, 64 disparities, one thread, CPU time): row functions taking the buffers as
    arguments 3x (8 paths 1.45 s vs 0.49 s), one inlined per-pixel helper taking every buffer 1.75x (4 paths
    0.37 s vs 0.21 s); the buffers (:func:`_path_buffers`) and the d1 hand-over (:func:`_store_d1`) are helpers.
    """
    h, w, nd = s.shape
    paths, pty, big = pen[2:]
    select, dmin, lr_tol, wr, vfit = sel
    ndu = _U(nd)
    su = _U(nd + 2)  # stride of one padded path vector
    # pixel x in slot x + 1; slots 0 and w + 1 are virtual zero pixels (paths entering the image)
    clf, vlf, crf, vrf, cdmin, inv = codes
    keep = from_codes and cost.size > 0  # costs computed into the volume ``cost`` (for the other pass)
    costf = np.empty(w * nd, np.uint8) if from_codes and not keep else cost.reshape(-1)
    sf = s.reshape(-1)
    (vb, d1, d2, hb, tmp), (vmin, d1min, d2min) = _path_buffers(w, nd, pty, big)
    tot = np.zeros(w * nd if select else 0, np.int16)  # the row's totals (pixel x at x * D)
    lbest, lcost, lprev, lnext, rbest, rk, kinv = _winner_scratch(w, wr, nd)
    if select and not backward:
        raise ValueError(
            "the winner selection runs in the backward pass (it adds the stored forward pass's sum)"
        )
    step = -1 if backward else 1
    for yy in range(h):
        y = h - 1 - yy if backward else yy
        crow = _U(y) * _U(w) * ndu if keep or not from_codes else _U(0)
        if from_codes:
            _cost_row(clf, vlf, crf, vrf, y, w, wr, cdmin, nd, np.uint8(inv), costf, crow)
        for k in range(nd):
            hb[k + 1] = 0
        hmin = np.int16(0)
        pend = _U(0)  # slot waiting for its new d1 vector (0 = none)
        pend_min = np.int16(0)
        for xx in range(w):
            x = w - 1 - xx if backward else xx
            xs = _U(x + 1)
            vox = (_U(y) * _U(w) + _U(x)) * ndu
            tx = _U(x) * ndu  # the pixel's vector in the row buffers
            cx = crow + tx
            hp = _U(xx & 1)
            key = np.int32(0)
            # horizontal, then vertical: previous row's vector in this pixel's own slot -> new vector via tmp
            if select:  # total = other pass's sum + this pass's paths, in the row buffer
                hmin = _update(
                    hb, hp * su, hb, (_U(1) - hp) * su, costf, cx, tot, tx, sf, vox, ndu, hmin, pen, 1
                )[0]
                if paths < 8:  # the vertical path is the pixel's last: its loop also finds the winner
                    vmin[xs], key = _update(
                        vb, xs * su, tmp, _U(0), costf, cx, tot, tx, tot, _U(0), ndu, vmin[xs], pen, 3
                    )
                else:
                    vmin[xs] = _update(
                        vb, xs * su, tmp, _U(0), costf, cx, tot, tx, tot, _U(0), ndu, vmin[xs], pen, 2
                    )[0]
            else:
                hmin = _update(
                    hb, hp * su, hb, (_U(1) - hp) * su, costf, cx, sf, vox, sf, vox, ndu, hmin, pen, 0
                )[0]
                vmin[xs] = _update(
                    vb, xs * su, tmp, _U(0), costf, cx, sf, vox, sf, vox, ndu, vmin[xs], pen, 2
                )[0]
            for k in range(_U(1), ndu + _U(1)):
                vb[xs * su + k] = tmp[k]
            if paths >= 8:
                # diagonal from the pixel behind in scan order, (y - step, x - step): its slot is read here, so
                # the new vector of the pixel behind waits in tmp until now
                xa = _U(x + 1 - step)
                q = _U(1) + hp
                if select:
                    m1 = _update(
                        d1, xa * su, tmp, q * su, costf, cx, tot, tx, tot, _U(0), ndu, d1min[xa], pen, 2
                    )[0]
                else:
                    m1 = _update(
                        d1, xa * su, tmp, q * su, costf, cx, sf, vox, sf, vox, ndu, d1min[xa], pen, 2
                    )[0]
                if pend > 0:  # the other of tmp's two d1 vectors
                    _store_d1(d1, d1min, tmp, pend, _U(2) - hp, pend_min, su)
                pend = xs
                pend_min = m1
                # diagonal from the pixel ahead, (y - step, x + step): this slot's previous-row vector was read
                # by the pixel behind already, so the new vector goes straight in
                xb = _U(x + 1 + step)
                if select:  # the pixel's last path: its loop also finds the winner
                    d2min[xs], key = _update(
                        d2, xb * su, d2, xs * su, costf, cx, tot, tx, tot, _U(0), ndu, d2min[xb], pen, 3
                    )
                else:
                    d2min[xs] = _update(
                        d2, xb * su, d2, xs * su, costf, cx, sf, vox, sf, vox, ndu, d2min[xb], pen, 2
                    )[0]
            if select:
                lbest[x], lcost[x], lprev[x], lnext[x] = _wta_key(tot, tx, ndu, key)
        if pend > 0:  # the last pixel's d1 vector
            _store_d1(d1, d1min, tmp, pend, _U(1) + _U((w - 1) & 1), pend_min, su)
        if select:
            _right_winners(tot, _U(0), w, nd, dmin, wr, rk, kinv, rbest)
            _lr_row(y, w, nd, dmin, lr_tol, wr, lbest, lcost, lprev, lnext, rbest, disp, vfit)


@numba.njit(cache=True, parallel=True)
def _both_passes(
    cost: np.ndarray,
    codes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int],
    from_codes: bool,
    pen: tuple[int, int, int, type, int],
    threads: int,
    both: np.ndarray,
    wr: int,
) -> np.ndarray:
    """Both raster passes stored into ``both`` (2, H, W, D) int16 (concurrently when ``threads >= 2``); ``pen``
    and ``wr`` as in :func:`_sgm_pass`."""
    dummy = np.empty((0, 0), np.float32)
    if threads >= 2:
        for d in numba.prange(2):
            _sgm_pass(cost, codes, from_codes, d == 1, both[d], pen, (False, 0, -1.0, wr, False), dummy)
    else:
        for d in range(2):
            _sgm_pass(cost, codes, from_codes, d == 1, both[d], pen, (False, 0, -1.0, wr, False), dummy)
    return both


def _check_penalties(cost: np.ndarray, p1: float, p2: float, paths: int) -> tuple[int, int]:
    if paths not in (4, 8):
        raise ValueError(f"stereo.paths must be 4 or 8, got {paths}")
    p1i, p2i = int(round(p1)), int(round(p2))
    if p1i < 0 or p2i < 0:
        raise ValueError(f"SGM penalties must be >= 0, got P1={p1}, P2={p2}")
    cmax = int(cost.max(initial=0)) if cost.size else 0
    if (cmax + p2i) * paths >= int(_BIG) or p1i >= int(_BIG):
        raise ValueError(
            f"P2 too large for the int16 aggregation ((max cost {cmax} + P2 {p2i}) x {paths} paths "
            f">= {int(_BIG)}): lower stereo.p2"
        )
    return p1i, p2i


def _path_type(cmax: int, p1: int, p2: int) -> tuple[type, int]:
    """(type of the path vectors, their padding): uint8 when every intermediate fits (``L <= C_max + P2``, the
    largest min candidate ``min L + P2 <= C_max + 2 P2 <= 255``; padding ``255 - P1``, so padding + P1 still
    exceeds every candidate), half the bytes of int16; else int16 padded with 16000."""
    if cmax + 2 * p2 <= 255 and p1 <= 255:
        return np.uint8, 255 - p1
    return np.int16, int(_BIG)


def _no_codes() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int]:
    """The ``codes`` argument of :func:`_sgm_pass` when it reads a cost volume."""
    e64, eb = np.zeros(0, np.uint64), np.zeros(0, np.bool_)
    return e64, eb, e64, eb, 0, 0


def aggregate(
    cost: np.ndarray, p1: float, p2: float, paths: int = _STEREO["paths"], threads: int = 1
) -> np.ndarray:
    """SGM aggregation of a (H, W, D) uint8 cost volume over 4 or 8 paths -> (H, W, D) uint16 sum ``S``.

    With ``threads >= 2`` the forward and backward raster passes run concurrently. P1 and P2 are rounded to
    integers (exact integer sums, identical to the reference)."""
    p1i, p2i = _check_penalties(cost, p1, p2, paths)
    cost = np.ascontiguousarray(cost)
    pty, big = _path_type(int(cost.max(initial=0)), p1i, p2i)
    pen = (p1i, p2i, int(paths), pty, big)
    both = _both_passes(
        cost, _no_codes(), False, pen, int(threads), np.empty((2, *cost.shape), np.int16), cost.shape[1]
    )
    return (both[0] + both[1]).astype(np.uint16)


def aggregate_reference(cost: np.ndarray, p1: float, p2: float, paths: int = _STEREO["paths"]) -> np.ndarray:
    """NumPy reference of :func:`aggregate` (vectorised over one image axis and the disparities)."""
    c = cost.astype(np.float32)
    p1, p2 = float(round(p1)), float(round(p2))
    h, w, nd = c.shape
    total = np.zeros((h, w, nd), np.float32)
    dirs = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    if paths == 8:
        dirs += [(1, 1), (1, -1), (-1, -1), (-1, 1)]

    def update(prev: np.ndarray, cc: np.ndarray) -> np.ndarray:
        pmin = prev.min(axis=-1, keepdims=True)
        pad = np.pad(prev, [(0, 0)] * (prev.ndim - 1) + [(1, 1)], constant_values=np.float32(1e30))
        m = np.minimum.reduce(
            [
                prev,
                pad[..., :-2] + np.float32(p1),
                pad[..., 2:] + np.float32(p1),
                np.broadcast_to(pmin + np.float32(p2), prev.shape),
            ]
        )
        return cc + m - pmin

    for dy, dx in dirs:
        lr = np.zeros_like(c)
        if dy == 0:  # horizontal: iterate over columns
            xs = range(w) if dx > 0 else range(w - 1, -1, -1)
            prev = np.zeros((h, nd), np.float32)
            for x in xs:
                prev = update(prev, c[:, x])
                lr[:, x] = prev
        else:  # vertical or diagonal: iterate over rows, previous pixel at x - dx in the previous row
            ys = range(h) if dy > 0 else range(h - 1, -1, -1)
            prev_row = np.zeros((w, nd), np.float32)
            for y in ys:
                shifted = np.zeros_like(prev_row)
                if dx == 0:
                    shifted = prev_row
                elif dx > 0:
                    shifted[1:] = prev_row[:-1]
                else:
                    shifted[:-1] = prev_row[1:]
                prev_row = update(shifted, c[y])
                lr[y] = prev_row
        total += lr
    return total.astype(np.uint16)


# ------------------------------------------------------------------------------------------------ WTA
@numba.njit(cache=True, parallel=True)
def _select(total: np.ndarray, dmin: int, lr_tol: float, wr: int, vfit: bool) -> np.ndarray:
    h, w, nd = total.shape
    disp = np.full((h, w), np.nan, np.float32)
    ndu = _U(nd)
    for y in numba.prange(h):
        kidx = np.arange(nd).astype(np.int32)
        lbest, lcost, lprev, lnext, rbest, rk, kinv = _winner_scratch(w, wr, nd)
        row = total[y].reshape(-1)  # read in place by the left and the right winners alike
        for x in range(w):
            lbest[x], lcost[x], lprev[x], lnext[x] = _wta(row, _U(x) * ndu, ndu, kidx)
        _right_winners(row, _U(0), w, nd, dmin, wr, rk, kinv, rbest)
        _lr_row(y, w, nd, dmin, lr_tol, wr, lbest, lcost, lprev, lnext, rbest, disp, vfit)
    return disp


def _vfit(fit: str) -> bool:
    """True for the V fit, False for the parabola; anything else is an error naming both."""
    if fit not in ("parabola", "v"):
        raise ValueError(f"SGM sub-pixel fit {fit!r}: expected 'parabola' or 'v'")
    return fit == "v"


def select_disparity(
    total: np.ndarray,
    dmin: int,
    lr_tol: float = _STEREO["lr_tol"],
    right_width: int | None = None,
    fit: str = "parabola",
) -> np.ndarray:
    """WTA + sub-pixel fit (``fit``: "parabola" or "v", see :func:`_lr_row`) + left-right check (``lr_tol < 0``
    disables it) -> (H, W) float32, NaN invalid.

    ``total`` (H, W, D) holds aggregated costs below 16000 (as :func:`aggregate` returns). Disparities on the
    border of the searched range are rejected (the true value may lie outside it).
    """
    wr = total.shape[1] if right_width is None else int(right_width)
    if total.size and int(total.max()) >= int(_BIG):
        raise ValueError("aggregated costs must be < 16000")
    return _select(np.ascontiguousarray(total), int(dmin), float(lr_tol), wr, _vfit(fit))


def select_disparity_reference(
    total: np.ndarray,
    dmin: int,
    lr_tol: float = _STEREO["lr_tol"],
    right_width: int | None = None,
    fit: str = "parabola",
) -> np.ndarray:
    """NumPy reference of :func:`select_disparity`."""
    h, w, nd = total.shape
    wr = w if right_width is None else right_width
    t = total.astype(np.int64)
    best = t.argmin(axis=2)
    bv = np.take_along_axis(t, best[..., None], 2)[..., 0].astype(np.float32)
    a = np.take_along_axis(t, np.clip(best - 1, 0, nd - 1)[..., None], 2)[..., 0].astype(np.float32)
    c = np.take_along_axis(t, np.clip(best + 1, 0, nd - 1)[..., None], 2)[..., 0].astype(np.float32)
    den = np.maximum(a, c) - bv if _vfit(fit) else a - np.float32(2) * bv + c
    sub = np.where(den > 0, np.float32(0.5) * (a - c) / np.where(den > 0, den, np.float32(1)), np.float32(0))
    disp = (dmin + best + sub).astype(np.float32)
    ok = (best > 0) & (best < nd - 1)
    if lr_tol >= 0:
        rbest = np.full((h, wr), -1)
        rcost = np.full((h, wr), 1 << 30)
        for x in range(w):
            for k in range(nd):
                xr = x + dmin + k
                if 0 <= xr < wr:
                    better = t[:, x, k] < rcost[:, xr]
                    rcost[better, xr] = t[better, x, k]
                    rbest[better, xr] = k
        xr = np.arange(w)[None, :] + dmin + best
        inside = (xr >= 0) & (xr < wr)
        rb = np.where(inside, np.take_along_axis(rbest, np.clip(xr, 0, wr - 1), 1), -1)
        ok &= inside & (rb >= 0) & (np.abs(rb - best) <= lr_tol)
    disp[~ok] = np.nan
    return disp


@numba.njit(cache=True, inline="always")
def _ce(a: np.float32, b: np.float32) -> tuple[np.float32, np.float32]:
    return min(a, b), max(a, b)


@numba.njit(cache=True, parallel=True)
def _median3(disp: np.ndarray) -> np.ndarray:
    """3x3 median of the valid neighbours, branch-free over a row (vectorizes): NaN -> +inf, a 25-comparator
    sorting network on the 9 values, then the middle of the n finite ones (n >= 5; else the pixel is kept)."""
    h, w = disp.shape
    out = disp.copy()
    inf = np.float32(np.inf)
    for y in numba.prange(1, h - 1):
        r0 = disp[y - 1]
        r1 = disp[y]
        r2 = disp[y + 1]
        o = out[y]
        for x in range(1, w - 1):
            a0 = r0[x - 1]
            a1 = r0[x]
            a2 = r0[x + 1]
            a3 = r1[x - 1]
            a4 = r1[x]
            a5 = r1[x + 1]
            a6 = r2[x - 1]
            a7 = r2[x]
            a8 = r2[x + 1]
            v0 = inf if np.isnan(a0) else a0
            v1 = inf if np.isnan(a1) else a1
            v2 = inf if np.isnan(a2) else a2
            v3 = inf if np.isnan(a3) else a3
            v4 = inf if np.isnan(a4) else a4
            v5 = inf if np.isnan(a5) else a5
            v6 = inf if np.isnan(a6) else a6
            v7 = inf if np.isnan(a7) else a7
            v8 = inf if np.isnan(a8) else a8
            n = (
                np.int32(v0 < inf)
                + np.int32(v1 < inf)
                + np.int32(v2 < inf)
                + np.int32(v3 < inf)
                + np.int32(v4 < inf)
                + np.int32(v5 < inf)
                + np.int32(v6 < inf)
                + np.int32(v7 < inf)
                + np.int32(v8 < inf)
            )  # finite neighbours (disparities are finite or NaN)
            v0, v3 = _ce(v0, v3)
            v1, v7 = _ce(v1, v7)
            v2, v5 = _ce(v2, v5)
            v4, v8 = _ce(v4, v8)
            v0, v7 = _ce(v0, v7)
            v2, v4 = _ce(v2, v4)
            v3, v8 = _ce(v3, v8)
            v5, v6 = _ce(v5, v6)
            v0, v2 = _ce(v0, v2)
            v1, v3 = _ce(v1, v3)
            v4, v5 = _ce(v4, v5)
            v7, v8 = _ce(v7, v8)
            v1, v4 = _ce(v1, v4)
            v3, v6 = _ce(v3, v6)
            v5, v7 = _ce(v5, v7)
            v0, v1 = _ce(v0, v1)
            v2, v4 = _ce(v2, v4)
            v3, v5 = _ce(v3, v5)
            v6, v8 = _ce(v6, v8)
            v2, v3 = _ce(v2, v3)
            v4, v5 = _ce(v4, v5)
            v6, v7 = _ce(v6, v7)
            v1, v2 = _ce(v1, v2)
            v3, v4 = _ce(v3, v4)
            v5, v6 = _ce(v5, v6)
            m = v2 if n == 5 else (v3 if n <= 7 else v4)
            o[x] = m if (n >= 5 and not np.isnan(a4)) else a4
    return out


def median_filter(disp: np.ndarray) -> np.ndarray:
    """3x3 median over the valid neighbours (>= 5 of 9) of each valid pixel; invalid pixels stay NaN."""
    return _median3(np.ascontiguousarray(disp, np.float32))


def median_filter_reference(disp: np.ndarray) -> np.ndarray:
    """NumPy reference of :func:`median_filter` (upper middle of the sorted finite neighbours)."""
    d = np.asarray(disp, np.float32)
    h, w = d.shape
    out = d.copy()
    if h < 3 or w < 3:
        return out
    stack = np.stack([d[1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    n = np.isfinite(stack).sum(axis=0)
    srt = np.sort(np.where(np.isfinite(stack), stack, np.inf), axis=0)
    med = np.take_along_axis(srt, (n // 2)[None], 0)[0]
    centre = d[1:-1, 1:-1]
    out[1:-1, 1:-1] = np.where((n >= 5) & np.isfinite(centre), med, centre)
    return out


# ------------------------------------------------------------------------------------------------ driver
class SGMWorkspace:
    """Scratch volumes kept between calls of :func:`sgm_disparity` (as OpenCV's matcher object keeps its buffer).

    Matching several pairs of a tile (tri-stereo) or strips of a large one then reuses the same memory instead of
    faulting in fresh pages each time (about 11 ms per 64 MB on the benchmark machine). Holds at most the largest
    volumes asked for; :meth:`release` frees them.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """A C-contiguous (uninitialised) array of ``shape``, backed by the named buffer (grown when too small)."""
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        buf = self._buffers.get(name)
        if buf is None or buf.size < n:
            buf = self._buffers[name] = np.empty(n, np.uint8)
        return buf[:n].view(dtype).reshape(shape)

    def release(self) -> None:
        self._buffers.clear()

    @property
    def nbytes(self) -> int:
        return sum(b.size for b in self._buffers.values())


def sgm_disparity(
    left: np.ndarray,
    right: np.ndarray,
    dmin: int,
    dmax: int,
    *,
    census_window: tuple[int, int] = tuple(_STEREO["census_window"]),
    p1: float = _STEREO["p1"],
    p2: float = _STEREO["p2"],
    paths: int = _STEREO["paths"],
    lr_tol: float = _STEREO["lr_tol"],
    median: bool = _STEREO["median"],
    fit: str = "parabola",
    max_mem_mb: float = 600.0,
    strip_overlap: int = 32,
    workspace: SGMWorkspace | None = None,
) -> np.ndarray:
    """Disparity map of ``left`` against ``right`` (rectified; NaN = no data) over ``[dmin, dmax]``.

    Args:
        left: (H, W) reference image; right: (H, W2) image, same rows.
        dmin, dmax: integer disparity range (right x = left x + d).
        census_window, p1, p2, paths, lr_tol, median: see the module docstring.
        fit: sub-pixel fit on the aggregated costs, "parabola" or "v" (see :func:`_lr_row`).
        max_mem_mb: bound on the cost + aggregation volumes (2-3 bytes/voxel on one thread, 4 on two; see the
            module docstring); above it the costs are recomputed per pass (one thread), and the image is
            processed in horizontal strips overlapping by ``strip_overlap`` rows when 4 bytes per voxel exceed
            it, whatever the thread count (so the disparities do not depend on the threads).
        workspace: scratch volumes to reuse across calls (see :class:`SGMWorkspace`); None = allocated here and
            freed on return.
    Returns:
        (H, W) float32 disparities, NaN where invalid (no data, border of the range, left-right mismatch).
    """
    _vfit(fit)  # a bad name fails before any work
    dmin, dmax = int(math.floor(dmin)), int(math.ceil(dmax))
    dmax = max(dmax, dmin + 2)
    h, w = left.shape
    nd = dmax - dmin + 1
    cl, vl = census_transform(left, census_window)
    cr, vr = census_transform(right, census_window)
    invalid = census_window[0] * census_window[1] - 1
    p1i, p2i = _check_penalties(np.array([invalid], np.uint8), p1, p2, paths)
    pty, big = _path_type(invalid, p1i, p2i)
    pen = (p1i, p2i, int(paths), pty, big)
    # one pass's sum (paths // 2 paths, each <= C_max + P2) in a byte when it fits
    fwd_type = np.uint8 if paths // 2 * (invalid + p2i) <= 255 else np.int16
    threads = numba.get_num_threads()
    ws = workspace if workspace is not None else SGMWorkspace()
    disp = np.full((h, w), np.nan, np.float32)
    wr = right.shape[1]
    # volumes (bytes per voxel): 1 thread: the forward sum, and the cost volume computed in the forward pass and
    # read back in the backward pass, unless that exceeds max_mem_mb (then each pass computes its rows' costs,
    # slower but no volume); 2 threads: both passes' int16 sums (each pass computes its rows' costs)
    fsz = float(np.dtype(fwd_type).itemsize)
    keep_cost = threads < 2 and (1.0 + fsz) * w * nd * h <= max_mem_mb * 1e6
    # the strips are laid out for the largest case (4 bytes per voxel, two threads) whatever the threads here:
    # paths are cut at strip borders, so a layout that followed the thread count would change the disparities
    # with the core count; keep_cost only trades memory for time (same result)
    row_bytes = _STRIP_BYTES_PER_VOXEL * w * nd
    max_rows = max(int(max_mem_mb * 1e6 / row_bytes), 2 * strip_overlap + 16)
    if max_rows >= h:
        strips = [(0, h, 0, h)]
    else:
        core = max_rows - 2 * strip_overlap
        strips = []
        for y0 in range(0, h, core):
            y1 = min(h, y0 + core)
            strips.append((max(0, y0 - strip_overlap), min(h, y1 + strip_overlap), y0, y1))
        log.info(
            "SGM in %d strips of <= %d rows (volume %.0f MB > %.0f MB)",
            len(strips),
            max_rows,
            row_bytes * h / 1e6,
            max_mem_mb,
        )
    nocost = np.empty((0, 0, 0), np.uint8)
    for a, b, c0, c1 in strips:
        codes = (
            cl[a:b].reshape(-1),
            vl[a:b].reshape(-1),
            cr[a:b].reshape(-1),
            vr[a:b].reshape(-1),
            dmin,
            invalid,
        )
        shape = (b - a, w, nd)
        if threads >= 2:  # both passes concurrently, then the winners
            both = _both_passes(
                nocost, codes, True, pen, threads, ws.array("both", (2, *shape), np.int16), wr
            )
            both[0] += both[1]
            d = _select(both[0], dmin, float(lr_tol), wr, _vfit(fit))
            del both
        else:  # forward pass stored, backward pass fused with the winner selection
            fwd = ws.array("forward", shape, fwd_type)
            cost = ws.array("cost", shape, np.uint8) if keep_cost else nocost
            d = np.full((b - a, w), np.nan, np.float32)
            _sgm_pass(cost, codes, True, False, fwd, pen, (False, 0, -1.0, wr, False), d)
            sel = (True, dmin, float(lr_tol), wr, _vfit(fit))
            _sgm_pass(cost, codes, not keep_cost, True, fwd, pen, sel, d)
            del fwd, cost
        disp[c0:c1] = d[c0 - a : c1 - a]
    disp[~vl] = np.nan
    if median:
        disp = median_filter(disp)
    return disp
