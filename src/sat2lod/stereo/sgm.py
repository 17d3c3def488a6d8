"""Dense matching of a rectified pair: census cost + semi-global matching (SGM), in numba.

Convention: pixel ``(y, x)`` of the left (reference) image matches pixel ``(y, x + d)`` of the right image,
``d`` in ``[dmin, dmax]`` (integers; sub-pixel after refinement). Internally ``k = d - dmin`` in ``[0, D)``.

Cost: Hamming distance between census codes (``census_h x census_w`` window, at most 63 bits, uint8).
Aggregation (Hirschmüller 2008): for each path direction r,
``L_r(p, k) = C(p, k) + min(L_r(p-r, k), L_r(p-r, k±1) + P1, min_j L_r(p-r, j) + P2) - min_j L_r(p-r, j)``
and ``S = sum_r L_r``. 4 paths (horizontal + vertical) or 8 paths (+ diagonals), in two raster passes.
Disparity: winner-take-all on ``S``, parabola sub-pixel refinement, left-right consistency (the right disparity
is read from the same ``S`` along ``x + k = const``), optional 3x3 median filter.

Memory (documented peak): the cost volume ``C`` is uint8 and the aggregated ``S`` uint16, i.e.
**3 bytes x H x W x D** plus O(W x D) row buffers (5 bytes when 2 threads run the two passes concurrently). :func:`sgm_disparity` splits the image into horizontal strips
(with ``strip_overlap`` rows of overlap, discarded) when that exceeds ``max_mem_mb``; paths are then cut at the
strip border, a small loss compared to the bound it buys. All path arithmetic is exact in float32 (integers
< 2^24), so the numba kernels and the NumPy reference (``*_reference``) give identical results.
"""

from __future__ import annotations

import logging
import math

import numba
import numpy as np

log = logging.getLogger(__name__)

_BIG = np.float32(1e30)


# ------------------------------------------------------------------------------------------------ census
@numba.njit(cache=True, parallel=True)
def _census(img: np.ndarray, wh: int, ww: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape
    ry, rx = wh // 2, ww // 2
    codes = np.zeros((h, w), np.uint64)
    valid = np.zeros((h, w), np.bool_)
    for y in numba.prange(h):
        for x in range(w):
            c = img[y, x]
            if not np.isfinite(c) or y < ry or y >= h - ry or x < rx or x >= w - rx:
                continue
            code = np.uint64(0)
            ok = True
            for dy in range(-ry, ry + 1):
                for dx in range(-rx, rx + 1):
                    if dy == 0 and dx == 0:
                        continue
                    v = img[y + dy, x + dx]
                    if not np.isfinite(v):
                        ok = False
                    code = (code << np.uint64(1)) | np.uint64(1 if v < c else 0)
            if ok:
                codes[y, x] = code
                valid[y, x] = True
    return codes, valid


def census_transform(img: np.ndarray, window: tuple[int, int] = (5, 7)) -> tuple[np.ndarray, np.ndarray]:
    """Census codes of a float image (NaN = no data).

    Args:
        img: (H, W) image, any real dtype; NaN marks no-data.
        window: (height, width), odd, at most 63 comparisons (e.g. 5x7 -> 34 bits, 7x9 -> 62 bits).
    Returns:
        codes (H, W) uint64 (bit = neighbour < centre, row-major window order), valid (H, W) bool (window
        inside the image and free of NaN).
    """
    wh, ww = window
    if wh % 2 == 0 or ww % 2 == 0 or wh * ww - 1 > 63:
        raise ValueError(f"census window {window}: sides must be odd with at most 63 comparisons")
    return _census(np.ascontiguousarray(img, dtype=np.float32), wh, ww)


def census_transform_reference(img: np.ndarray, window: tuple[int, int] = (5, 7)) -> tuple[np.ndarray, np.ndarray]:
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
            nb = pad[ry + dy:ry + dy + h, rx + dx:rx + dx + w]
            codes = (codes << np.uint64(1)) | (nb < img).astype(np.uint64)
            finite &= np.isfinite(nb)
    border = np.zeros((h, w), bool)
    border[ry:h - ry, rx:w - rx] = True
    valid = finite & border
    codes[~valid] = 0
    return codes, valid


# ------------------------------------------------------------------------------------------------ cost
@numba.njit(cache=True, inline="always")
def _popcount(v: np.uint64) -> int:
    v = v - ((v >> np.uint64(1)) & np.uint64(0x5555555555555555))
    v = (v & np.uint64(0x3333333333333333)) + ((v >> np.uint64(2)) & np.uint64(0x3333333333333333))
    v = (v + (v >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return int((v * np.uint64(0x0101010101010101)) >> np.uint64(56))


@numba.njit(cache=True, parallel=True)
def _cost_volume(cl: np.ndarray, vl: np.ndarray, cr: np.ndarray, vr: np.ndarray, dmin: int, ndisp: int,
                 invalid_cost: int) -> np.ndarray:
    h, w = cl.shape
    wr = cr.shape[1]
    cost = np.empty((h, w, ndisp), np.uint8)
    for y in numba.prange(h):
        for x in range(w):
            okl = vl[y, x]
            for k in range(ndisp):
                xr = x + dmin + k
                if okl and 0 <= xr < wr and vr[y, xr]:
                    cost[y, x, k] = _popcount(cl[y, x] ^ cr[y, xr])
                else:
                    cost[y, x, k] = invalid_cost
    return cost


def cost_volume(left: np.ndarray, right: np.ndarray, dmin: int, dmax: int,
                window: tuple[int, int] = (5, 7)) -> np.ndarray:
    """Census Hamming cost volume (H, W, dmax - dmin + 1) uint8; invalid pairs get the maximum cost."""
    cl, vl = census_transform(left, window)
    cr, vr = census_transform(right, window)
    return _cost_volume(cl, vl, cr, vr, int(dmin), int(dmax - dmin + 1), window[0] * window[1] - 1)


def cost_volume_reference(left: np.ndarray, right: np.ndarray, dmin: int, dmax: int,
                          window: tuple[int, int] = (5, 7)) -> np.ndarray:
    """NumPy reference of :func:`cost_volume`."""
    cl, vl = census_transform_reference(left, window)
    cr, vr = census_transform_reference(right, window)
    h, w = cl.shape
    wr = cr.shape[1]
    nd = dmax - dmin + 1
    cost = np.full((h, w, nd), window[0] * window[1] - 1, np.uint8)
    bits = np.array([bin(i).count("1") for i in range(256)], np.uint8)
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
@numba.njit(cache=True, inline="always", fastmath=True)
def _step(cf: np.ndarray, nd: int, buf: np.ndarray, bufi: np.ndarray, pp: int, cp: int, pj: int, po: int,
          co: int, pmin: np.float32, p1: np.float32, p2: np.float32, acc: np.ndarray, first: bool) -> np.int32:
    """One path update: ``buf[pp, pj, po:po + D + 2]`` is the padded previous L, ``cf`` (D,) the pixel's costs;
    the new L goes to ``buf[cp, pj, co + 1:co + D + 1]`` and is added to ``acc`` (stored when ``first``).
    Returns the bits (int32) of min_k L: L >= 0, so float order = int order, and the int32 min reduction
    vectorizes where a float one does not. Float32 arithmetic on integers < 2^24 is exact."""
    base = pmin + p2
    for k in range(nd):
        m = buf[pp, pj, po + 1 + k]
        b = buf[pp, pj, po + k] + p1
        m = b if b < m else m
        b = buf[pp, pj, po + 2 + k] + p1
        m = b if b < m else m
        m = base if base < m else m
        v = cf[k] + m - pmin
        buf[cp, pj, co + 1 + k] = v
        if first:
            acc[k] = v
        else:
            acc[k] += v
    mn = np.int32(2147483647)
    for k in range(nd):
        v = bufi[cp, pj, co + 1 + k]
        mn = v if v < mn else mn
    return mn


@numba.njit(cache=True, fastmath=True)
def _aggregate_pass(cost: np.ndarray, p1: float, p2: float, paths: int, d0: int, d1: int,
                    total: np.ndarray) -> None:
    """Raster passes ``d0 <= direction < d1`` (0 forward, 1 backward) of the SGM aggregation into ``total``
    (the first pass of the range stores, the next adds)."""
    h, w, nd = cost.shape
    p1f = np.float32(p1)
    p2f = np.float32(p2)
    stride = nd + 2
    acc = np.zeros(nd, np.float32)
    cf = np.zeros(nd, np.float32)
    for direction in range(d0, d1):
        # buf[parity, j]: path buffers; j = 0 vertical, 1 and 2 diagonals (a row of padded L vectors, pixel x at
        # offset (x + 1) * stride, virtual zero pixels at both ends); j = 3 horizontal (one padded vector).
        # The parity of the row (of the pixel for j = 3) tells the previous buffer from the current one.
        # mins[parity, j, x + 1] holds min_k L of each buffered vector (written through its int32 view).
        buf = np.zeros((2, 4, (w + 2) * stride), np.float32)
        bufi = buf.view(np.int32)
        mins = np.zeros((2, 4, w + 2), np.float32)
        minsi = mins.view(np.int32)
        for q in range(2):
            for j in range(4):
                for x in range(w + 2):
                    buf[q, j, x * stride] = _BIG
                    buf[q, j, x * stride + nd + 1] = _BIG
        step = 1 if direction == 0 else -1
        for yy in range(h):
            y = yy if direction == 0 else h - 1 - yy
            pp = yy % 2
            cp = 1 - pp
            for k in range(nd):
                buf[0, 3, 1 + k] = 0.0
            mins[0, 3, 0] = 0.0
            for xx in range(w):
                x = xx if direction == 0 else w - 1 - xx
                for k in range(nd):
                    cf[k] = np.float32(cost[y, x, k])
                hp = xx % 2
                minsi[1 - hp, 3, 0] = _step(cf, nd, buf, bufi, hp, 1 - hp, 3, 0, 0, mins[hp, 3, 0], p1f, p2f, acc,
                                            True)
                xi = x + 1
                minsi[cp, 0, xi] = _step(cf, nd, buf, bufi, pp, cp, 0, xi * stride, xi * stride, mins[pp, 0, xi],
                                         p1f, p2f, acc, False)
                if paths >= 8:
                    xa = xi - step  # diagonal from (y - step, x - step)
                    minsi[cp, 1, xi] = _step(cf, nd, buf, bufi, pp, cp, 1, xa * stride, xi * stride,
                                             mins[pp, 1, xa], p1f, p2f, acc, False)
                    xb = xi + step  # diagonal from (y - step, x + step)
                    minsi[cp, 2, xi] = _step(cf, nd, buf, bufi, pp, cp, 2, xb * stride, xi * stride,
                                             mins[pp, 2, xb], p1f, p2f, acc, False)
                if direction == d0:
                    for k in range(nd):
                        total[y, x, k] = np.uint16(acc[k])
                else:
                    for k in range(nd):
                        total[y, x, k] = np.uint16(np.float32(total[y, x, k]) + acc[k])


@numba.njit(cache=True)
def _aggregate(cost: np.ndarray, p1: float, p2: float, paths: int) -> np.ndarray:
    total = np.empty(cost.shape, np.uint16)
    _aggregate_pass(cost, p1, p2, paths, 0, 2, total)
    return total


@numba.njit(cache=True, parallel=True)
def _aggregate_2threads(cost: np.ndarray, p1: float, p2: float, paths: int) -> np.ndarray:
    """Forward and backward passes on two threads (one extra uint16 volume), then summed."""
    h, w, nd = cost.shape
    both = np.empty((2, h, w, nd), np.uint16)
    for d in numba.prange(2):
        _aggregate_pass(cost, p1, p2, paths, d, d + 1, both[d])
    for y in numba.prange(h):
        for x in range(w):
            for k in range(nd):
                both[0, y, x, k] = both[0, y, x, k] + both[1, y, x, k]
    return both[0]


def aggregate(cost: np.ndarray, p1: float, p2: float, paths: int = 8, threads: int = 1) -> np.ndarray:
    """SGM aggregation of a (H, W, D) uint8 cost volume over 4 or 8 paths -> (H, W, D) uint16 sum ``S``.

    With ``threads >= 2`` the forward and backward raster passes run concurrently (one more uint16 volume).

    P1 and P2 are rounded to integers (exact integer sums, identical to the reference)."""
    if paths not in (4, 8):
        raise ValueError(f"stereo.sgm_paths must be 4 or 8, got {paths}")
    p1, p2 = int(round(p1)), int(round(p2))
    if cost.shape[2] and (int(cost.max(initial=0)) + p2) * paths >= 65535:
        raise ValueError("P2 too large for the uint16 aggregation: lower stereo.p2")
    cost = np.ascontiguousarray(cost)
    if threads >= 2:
        return _aggregate_2threads(cost, float(p1), float(p2), int(paths))
    return _aggregate(cost, float(p1), float(p2), int(paths))


def aggregate_reference(cost: np.ndarray, p1: float, p2: float, paths: int = 8) -> np.ndarray:
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
        m = np.minimum.reduce([prev, pad[..., :-2] + np.float32(p1), pad[..., 2:] + np.float32(p1),
                               np.broadcast_to(pmin + np.float32(p2), prev.shape)])
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
def _select(total: np.ndarray, dmin: int, lr_tol: float, wr: int) -> np.ndarray:
    h, w, nd = total.shape
    disp = np.full((h, w), np.nan, np.float32)
    for y in numba.prange(h):
        # right-image disparities: for right column xr, best k over left pixels x = xr - dmin - k
        right_best = np.full(wr, -1, np.int64)
        right_cost = np.full(wr, 1 << 30, np.int64)
        for x in range(w):
            for k in range(nd):
                xr = x + dmin + k
                if 0 <= xr < wr:
                    v = np.int64(total[y, x, k])
                    if v < right_cost[xr]:
                        right_cost[xr] = v
                        right_best[xr] = k
        for x in range(w):
            best = 0
            bv = np.int64(total[y, x, 0])
            for k in range(1, nd):
                v = np.int64(total[y, x, k])
                if v < bv:
                    bv = v
                    best = k
            sub = 0.0
            if 0 < best < nd - 1:
                a = np.float64(total[y, x, best - 1])
                b = np.float64(bv)
                c = np.float64(total[y, x, best + 1])
                den = a - 2.0 * b + c
                if den > 0:
                    sub = 0.5 * (a - c) / den
            elif best == 0 or best == nd - 1:
                continue  # on the border of the range: the true disparity may lie outside
            if lr_tol >= 0:
                xr = x + dmin + best
                if xr < 0 or xr >= wr or right_best[xr] < 0 or abs(right_best[xr] - best) > lr_tol:
                    continue
            disp[y, x] = dmin + best + sub
    return disp


def select_disparity(total: np.ndarray, dmin: int, lr_tol: float = 1.0, right_width: int | None = None) -> np.ndarray:
    """WTA + parabola sub-pixel + left-right check (``lr_tol < 0`` disables it) -> (H, W) float32, NaN invalid.

    Disparities on the border of the searched range are rejected (the true value may lie outside it).
    """
    wr = total.shape[1] if right_width is None else int(right_width)
    return _select(total, int(dmin), float(lr_tol), wr)


def select_disparity_reference(total: np.ndarray, dmin: int, lr_tol: float = 1.0,
                               right_width: int | None = None) -> np.ndarray:
    """NumPy reference of :func:`select_disparity`."""
    h, w, nd = total.shape
    wr = w if right_width is None else right_width
    t = total.astype(np.int64)
    best = t.argmin(axis=2)
    bv = np.take_along_axis(t, best[..., None], 2)[..., 0].astype(np.float64)
    a = np.take_along_axis(t, np.clip(best - 1, 0, nd - 1)[..., None], 2)[..., 0].astype(np.float64)
    c = np.take_along_axis(t, np.clip(best + 1, 0, nd - 1)[..., None], 2)[..., 0].astype(np.float64)
    den = a - 2 * bv + c
    sub = np.where(den > 0, 0.5 * (a - c) / np.where(den > 0, den, 1), 0.0)
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


@numba.njit(cache=True, parallel=True)
def _median3(disp: np.ndarray) -> np.ndarray:
    h, w = disp.shape
    out = disp.copy()
    for y in numba.prange(1, h - 1):
        buf = np.empty(9, np.float32)
        for x in range(1, w - 1):
            if not np.isfinite(disp[y, x]):
                continue
            n = 0
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    v = disp[y + dy, x + dx]
                    if np.isfinite(v):
                        # insertion into the sorted prefix buf[:n]
                        i = n
                        while i > 0 and buf[i - 1] > v:
                            buf[i] = buf[i - 1]
                            i -= 1
                        buf[i] = v
                        n += 1
            if n >= 5:
                out[y, x] = buf[n // 2]
    return out


def median_filter(disp: np.ndarray) -> np.ndarray:
    """3x3 median over the valid neighbours (>= 5 of 9) of each valid pixel; invalid pixels stay NaN."""
    return _median3(np.ascontiguousarray(disp, np.float32))


# ------------------------------------------------------------------------------------------------ driver
def sgm_disparity(left: np.ndarray, right: np.ndarray, dmin: int, dmax: int, *,
                  census_window: tuple[int, int] = (5, 7), p1: float = 8.0, p2: float = 32.0, paths: int = 8,
                  lr_tol: float = 1.0, median: bool = True, max_mem_mb: float = 600.0,
                  strip_overlap: int = 32) -> np.ndarray:
    """Disparity map of ``left`` against ``right`` (rectified; NaN = no data) over ``[dmin, dmax]``.

    Args:
        left: (H, W) reference image; right: (H, W2) image, same rows.
        dmin, dmax: integer disparity range (right x = left x + d).
        census_window, p1, p2, paths, lr_tol, median: see the module docstring.
        max_mem_mb: bound on the cost + aggregation volumes (3 bytes/voxel); above it the image is processed in
            horizontal strips overlapping by ``strip_overlap`` rows.
    Returns:
        (H, W) float32 disparities, NaN where invalid (no data, border of the range, left-right mismatch).
    """
    dmin, dmax = int(math.floor(dmin)), int(math.ceil(dmax))
    if dmax < dmin + 2:
        dmax = dmin + 2
    h, w = left.shape
    nd = dmax - dmin + 1
    cl, vl = census_transform(left, census_window)
    cr, vr = census_transform(right, census_window)
    invalid = census_window[0] * census_window[1] - 1
    threads = numba.get_num_threads()
    row_bytes = (5.0 if threads >= 2 else 3.0) * w * nd  # cost + S (+ the second pass's S on 2 threads)
    max_rows = max(int(max_mem_mb * 1e6 / row_bytes), 2 * strip_overlap + 16)
    disp = np.full((h, w), np.nan, np.float32)
    if max_rows >= h:
        strips = [(0, h, 0, h)]
    else:
        core = max_rows - 2 * strip_overlap
        strips = []
        for y0 in range(0, h, core):
            y1 = min(h, y0 + core)
            strips.append((max(0, y0 - strip_overlap), min(h, y1 + strip_overlap), y0, y1))
        log.info("SGM in %d strips of <= %d rows (volume %.0f MB > %.0f MB)", len(strips), max_rows,
                 row_bytes * h / 1e6, max_mem_mb)
    for a, b, c0, c1 in strips:
        cost = _cost_volume(cl[a:b], vl[a:b], cr[a:b], vr[a:b], dmin, nd, invalid)
        total = aggregate(cost, p1, p2, paths, threads=threads)
        del cost
        d = _select(total, dmin, float(lr_tol), right.shape[1])
        del total
        disp[c0:c1] = d[c0 - a:c1 - a]
    disp[~vl] = np.nan
    if median:
        disp = median_filter(disp)
    return disp
