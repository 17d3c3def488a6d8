"""Sub-pixel refinement of an SGM disparity map by ZNCC correlation on the rectified images.

Why: SGM picks the integer disparity well, but a parabola through its census costs (Hamming distances, a
V-shaped, step-wise curve) locks the sub-pixel part to the integers: on the synthetic city views 0+1 that alone
keeps the flat-ground height NMAD of a pair near 0.6 m (``bench/stereo_accuracy.py``). Here each valid pixel's
disparity is re-measured on the images themselves, around the SGM integer ``d0 = round(disp)``:

1. zero-mean normalised cross-correlation cost ``c(s) = 1 - ZNCC`` of a ``window`` (rows x cols) around the left
   pixel against the right image at integer shifts ``d0 - 1, d0, d0 + 1`` (when a neighbour costs less, ``d0``
   moves one step toward it, once; a minimum still not in the middle keeps the SGM value);
2. ``fit = "parabola"``: the vertex of the parabola through the three costs;
   ``fit = "zncc2"`` (Shimizu & Okutomi 2001, "Precise sub-pixel estimation on area-based matching"): the
   same parabola fit also on the costs at half-pixel shifts (right image interpolated at ``x + 0.5``, cubic
   convolution ``(-1, 9, 9, -1) / 16``), and the mean of the two estimates: their pixel-locking errors have
   opposite signs and cancel to first order.

Where the images are well textured, SGM's own value (census window, regularised along 8 paths) is already precise
and keeps finer relief than a correlation window: :func:`sgm_precision` predicts its precision from the image
noise (:func:`image_noise`) and the epipolar gradient energy in the census window, and :func:`refinement_weight`
turns it into the share of the ZNCC value per pixel (``stereo.subpixel_noise_px``). Measured
(``bench/stereo_accuracy.py``): the synthetic city's images are noise-limited (median predicted precision
0.25 px), the Réunion Pléiades pair is not (0.08 px); refining everywhere with an 11 x 11 window brings the
synthetic pair's NMAD from 0.59 to 0.35 m but moves the Réunion DSM away from s2p's (median |dh| 0.22 -> 0.28 m),
refining where SGM is noise-limited gets both: with the defaults (13 x 13, ``subpixel_noise_px`` 0.1) pair NMAD
0.59 -> 0.34 m, Réunion median |dh| 0.219 -> 0.200 m.

A correlation window assumes the disparity constant over it. Where its window reaches down a wall from a roof,
the refined roof's edge sinks toward the ground: on the embedded demo (tri-stereo) flat roofs then look sloped
and LOD2 roof typing fell from 0.868 to 0.773. :func:`jump_gate` keeps SGM's value on the upper side of a jump
(``stereo.subpixel_jump_px``): where the lowest SGM disparity in the window lies more than that below the pixel's.
The foot of the wall, the ground, keeps its refinement, so most of the flat-ground precision is kept: with
0.6 px the demo's roof type is 0.857, and the synthetic pair's NMAD 0.339 -> 0.358 m, road NMAD 0.344 -> 0.364
(``bench/stereo_accuracy.py``; 0.348 / 0.352 in ``bench/stereo_vs_cars.py``). :func:`relief_gate`
(``stereo.subpixel_relief_px``, off by default) keeps SGM where the ZNCC value departs from it in one direction
on average over a neighbourhood (ridges averaged down); it also fires on SGM's own locking bias on flat ground:
at 0.15 px alone demo roof type 0.806; with a two-sided jump gate the pair's NMAD rose to 0.376 m.

The new value stays within 1.5 px of the SGM value; pixels whose windows hold no data (NaN) or no texture (zero
variance) keep their SGM value. Disparities follow :mod:`sat2lod.stereo.sgm`: left ``(y, x)`` matches right
``(y, x + d)``, px, NaN = invalid.

Cost: the window sums of L, L², R, R² are running sums; the cross sums L x R of the shifts each column needs
(the local SGM disparities -3 .. +2, over a band of rows) are kept per row as column sums over the window's rows
(one image row in, one out) and a pixel's window cross sum is the sum of its columns: 0.26-0.35 CPU-s per
megapixel on one core (41 disparities, every pixel refined, 13 x 13, with the precision map), about the SGM's own
time (``cpu_cost`` in ``bench/stereo_accuracy.py``); pixels that keep their SGM value cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
from scipy import ndimage

from sat2lod.schema import defaults

_STEREO = defaults("stereo")  # defaults of config section stereo

#: fits accepted by :func:`refine_disparity`
FITS = ("parabola", "zncc2")


def half_shift(img: np.ndarray) -> np.ndarray:
    """(H, W) image interpolated at ``x + 0.5`` along rows (cubic convolution, a = -1/2: weights
    ``(-1, 9, 9, -1) / 16`` on ``x - 1 .. x + 2``); the last two columns and the first are NaN."""
    a = np.asarray(img, np.float64)
    out = np.full(a.shape, np.nan)
    if a.shape[1] >= 4:
        out[:, 1:-2] = (9.0 * (a[:, 1:-2] + a[:, 2:-1]) - a[:, :-3] - a[:, 3:]) / 16.0
    return out


@numba.njit(cache=True, parallel=True)
def _box_kernel(img: np.ndarray, ry: int, rx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_box_reference` in numba: column sums over the window's rows (vectorized), then a running sum along
    each row."""
    h, w = img.shape
    s1 = np.zeros((h, w))
    s2 = np.zeros((h, w))
    ok = np.zeros((h, w), np.bool_)
    if h <= 2 * ry or w <= 2 * rx:
        return s1, s2, ok
    for y in numba.prange(ry, h - ry):
        v1 = np.zeros(w)
        v2 = np.zeros(w)
        vn = np.zeros(w)
        for yy in range(y - ry, y + ry + 1):
            for x in range(w):
                a = img[yy, x]
                fin = np.isfinite(a)
                z = a if fin else 0.0
                v1[x] += z
                v2[x] += z * z
                vn[x] += 0.0 if fin else 1.0
        a1 = 0.0
        a2 = 0.0
        an = 0.0
        for x in range(2 * rx):
            a1 += v1[x]
            a2 += v2[x]
            an += vn[x]
        for x in range(rx, w - rx):
            a1 += v1[x + rx]
            a2 += v2[x + rx]
            an += vn[x + rx]
            s1[y, x] = a1
            s2[y, x] = a2
            ok[y, x] = an == 0.0
            a1 -= v1[x - rx]
            a2 -= v2[x - rx]
            an -= vn[x - rx]
    return s1, s2, ok


def _box(img: np.ndarray, ry: int, rx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window sums of ``img`` (float64, NaN = no data, counted as 0) and ``img**2`` centred on each pixel
    ((2 ry + 1) x (2 rx + 1), 0 where the window leaves the image) and whether the window lies inside the image
    and holds no NaN."""
    return _box_kernel(np.ascontiguousarray(img, np.float64), int(ry), int(rx))


def _box_reference(img: np.ndarray, ry: int, rx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NumPy reference of :func:`_box` (summed-area tables)."""
    h, w = img.shape
    nan = ~np.isfinite(img)
    z = np.where(nan, 0.0, img)

    def boxsum(a: np.ndarray) -> np.ndarray:
        s = np.zeros((h + 1, w + 1))
        s[1:, 1:] = a.cumsum(0).cumsum(1)
        out = np.zeros((h, w))
        if h > 2 * ry and w > 2 * rx:
            out[ry : h - ry, rx : w - rx] = (
                s[2 * ry + 1 :, 2 * rx + 1 :] - s[: h - 2 * ry, 2 * rx + 1 :] - s[2 * ry + 1 :, : w - 2 * rx]
            ) + s[: h - 2 * ry, : w - 2 * rx]
        return out

    inside = np.zeros((h, w), bool)
    inside[ry : h - ry, rx : w - rx] = True
    ok = inside & (boxsum(nan.astype(np.float64)) == 0)
    return boxsum(z), boxsum(z * z), ok


def _centred(img: np.ndarray) -> np.ndarray:
    """float64 copy minus its mean (NaN kept): the window sums then lose no precision to a large offset."""
    a = np.asarray(img, np.float64)
    fin = np.isfinite(a)
    return a - (a[fin].mean() if fin.any() else 0.0)


@numba.njit(cache=True, inline="always")
def _zncc_cost(slr: float, sl: float, sll: float, sr: float, srr: float, n: int) -> float:
    """1 - ZNCC from the window sums of L, L², R, R², LR over ``n`` pixels; NaN when either window is flat."""
    vl = sll - sl * sl / n
    vr = srr - sr * sr / n
    if vl <= 1e-9 * n or vr <= 1e-9 * n:
        return np.nan
    return 1.0 - (slr - sl * sr / n) / np.sqrt(vl * vr)


@numba.njit(cache=True, inline="always")
def _vertex(a: float, b: float, c: float) -> float:
    """Offset of the vertex of the parabola through (-1, a), (0, b), (1, c) (0 when not convex)."""
    den = a - 2.0 * b + c
    return 0.5 * (a - c) / den if den > 0 else 0.0


@numba.njit(cache=True, inline="always")
def _add_row(
    col: np.ndarray,
    lz: np.ndarray,
    rz: np.ndarray,
    yy: int,
    lo: np.ndarray,
    hi: np.ndarray,
    smin: int,
    sign: float,
) -> None:
    """``col[s - smin, x] += sign * L[yy, x] * R[yy, x + s]`` for ``s`` in ``lo[x] .. hi[x]`` (zero outside R):
    one image row entering or leaving the column sums of the shifts each column needs."""
    h, w = lz.shape
    w2 = rz.shape[1]
    if yy < 0 or yy >= h:
        return
    for x in range(w):
        a = sign * lz[yy, x]
        s0 = max(lo[x], -x)
        s1 = min(hi[x], w2 - 1 - x)
        for s in range(s0, s1 + 1):
            col[s - smin, x] += a * rz[yy, x + s]


@numba.njit(cache=True, inline="always")
def _shift_cost(
    col: np.ndarray,
    smin: int,
    sl: float,
    sll: float,
    sr: np.ndarray,
    srr: np.ndarray,
    okr: np.ndarray,
    y: int,
    x: int,
    s: int,
    rx: int,
    n: int,
) -> float:
    """1 - ZNCC of the left window at (y, x) against the right one at (y, x + s), from the column sums ``col``
    of the current row (which hold every shift the pixel asks for in every column of its window, by
    :func:`_band_shifts`); NaN when the right window is not valid."""
    xr = x + s
    j = s - smin
    if xr < 0 or xr >= okr.shape[1] or not okr[y, xr] or j < 0 or j >= col.shape[0]:
        return np.nan
    slr = 0.0
    for xx in range(x - rx, x + rx + 1):  # contiguous: vectorizes
        slr += col[j, xx]
    return _zncc_cost(slr, sl, sll, sr[y, xr], srr[y, xr], n)


@numba.njit(cache=True, inline="always")
def _band_shifts(
    disp: np.ndarray, okl: np.ndarray, weight: np.ndarray, y0: int, y1: int, rx: int
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Per column, the shifts the band's pixels whose window covers it may ask for (SGM integer -3 .. +2: one
    step, its neighbours, the half-pixel triple), the smallest of them and their span over the band (0: none)."""
    w = disp.shape[1]
    lo = np.full(w, 2**30, np.int64)
    hi = np.full(w, -(2**30), np.int64)
    for y in range(y0, y1):
        for x in range(w):
            d = disp[y, x]
            if not np.isfinite(d) or not okl[y, x] or not weight[y, x] > 0:
                continue
            d0 = int(np.floor(d + 0.5))
            for xx in range(max(0, x - rx), min(w, x + rx + 1)):
                lo[xx] = min(lo[xx], d0 - 3)
                hi[xx] = max(hi[xx], d0 + 2)
    smin = 2**30
    smax = -(2**30)
    for x in range(w):
        if lo[x] <= hi[x]:
            smin = min(smin, lo[x])
            smax = max(smax, hi[x])
    return lo, hi, smin, max(0, smax - smin + 1)


@numba.njit(cache=True, parallel=True)
def _refine(
    lz: np.ndarray,
    sl: np.ndarray,
    sll: np.ndarray,
    okl: np.ndarray,
    rz: np.ndarray,
    sr: np.ndarray,
    srr: np.ndarray,
    okr: np.ndarray,
    hz: np.ndarray,
    sh: np.ndarray,
    shh: np.ndarray,
    okh: np.ndarray,
    disp: np.ndarray,
    weight: np.ndarray,
    ry: int,
    rx: int,
    two_step: bool,
    band: int,
) -> np.ndarray:
    """Rows in bands of ``band`` (one per thread at a time). Per row, the cross sums of the shifts each column
    needs (:func:`_band_shifts`: the local disparities, not the whole range) are kept as column sums over the
    window's rows (one row added, one removed per row): a window's cross sum is the sum of its columns' (a
    prefix sum along the row would be a serial chain over the shifts, slower)."""
    h, w = disp.shape
    out = disp.copy()
    n = (2 * ry + 1) * (2 * rx + 1)
    nb = (h + band - 1) // band
    for b in numba.prange(nb):
        y0 = b * band
        y1 = min(h, y0 + band)
        lo, hi, smin, span = _band_shifts(disp, okl, weight, y0, y1, rx)
        if span <= 0:
            continue
        cr = np.zeros((span, w))  # (shift - smin, column): a window's columns are contiguous
        ch = np.zeros((span if two_step else 0, w))
        for yy in range(y0 - ry, y0 + ry):  # the first row's window but its last row
            _add_row(cr, lz, rz, yy, lo, hi, smin, 1.0)
            if two_step:
                _add_row(ch, lz, hz, yy, lo, hi, smin, 1.0)
        for y in range(y0, y1):
            _add_row(cr, lz, rz, y + ry, lo, hi, smin, 1.0)
            if y > y0:
                _add_row(cr, lz, rz, y - ry - 1, lo, hi, smin, -1.0)
            if two_step:
                _add_row(ch, lz, hz, y + ry, lo, hi, smin, 1.0)
                if y > y0:
                    _add_row(ch, lz, hz, y - ry - 1, lo, hi, smin, -1.0)
            for x in range(w):
                d = disp[y, x]
                if not np.isfinite(d) or not okl[y, x] or not weight[y, x] > 0:
                    continue
                a, aa = sl[y, x], sll[y, x]
                d0 = int(np.floor(d + 0.5))
                cm = _shift_cost(cr, smin, a, aa, sr, srr, okr, y, x, d0 - 1, rx, n)
                c0 = _shift_cost(cr, smin, a, aa, sr, srr, okr, y, x, d0, rx, n)
                cp = _shift_cost(cr, smin, a, aa, sr, srr, okr, y, x, d0 + 1, rx, n)
                if cm < c0 and cm <= cp:  # one step toward the lower neighbour
                    d0 -= 1
                    cp, c0 = c0, cm
                    cm = _shift_cost(cr, smin, a, aa, sr, srr, okr, y, x, d0 - 1, rx, n)
                elif cp < c0:
                    d0 += 1
                    cm, c0 = c0, cp
                    cp = _shift_cost(cr, smin, a, aa, sr, srr, okr, y, x, d0 + 1, rx, n)
                # NaN compares false: a missing cost keeps the SGM value
                if not (c0 <= cm and c0 <= cp):
                    continue
                s1 = _vertex(cm, c0, cp)
                if two_step:
                    # half-pixel samples: hz[y, j] is the right image at j + 0.5; the triple centred on the side
                    # of s1 (shift d0 + 0.5 is hz at x + d0, d0 - 0.5 at x + d0 - 1)
                    j = d0 if s1 >= 0 else d0 - 1
                    hm = _shift_cost(ch, smin, a, aa, sh, shh, okh, y, x, j - 1, rx, n)
                    h0 = _shift_cost(ch, smin, a, aa, sh, shh, okh, y, x, j, rx, n)
                    hp = _shift_cost(ch, smin, a, aa, sh, shh, okh, y, x, j + 1, rx, n)
                    if np.isfinite(hm) and np.isfinite(h0) and np.isfinite(hp):
                        s2 = (0.5 if s1 >= 0 else -0.5) + min(max(_vertex(hm, h0, hp), -1.0), 1.0)
                        s1 = 0.5 * (s1 + s2)
                out[y, x] = np.float32(d + weight[y, x] * (d0 + s1 - d))
    return out


def image_noise(img: np.ndarray) -> float:
    """Standard deviation of an image's white noise (Immerkær 1996: mean |3x3 Laplacian difference| over the
    windows free of NaN, times sqrt(pi / 2) / 6); same units as ``img``."""
    a = np.asarray(img, np.float64)
    if a.shape[0] < 3 or a.shape[1] < 3:
        return 0.0
    c = (
        a[:-2, :-2]
        + a[:-2, 2:]
        + a[2:, :-2]
        + a[2:, 2:]
        - 2.0 * (a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:])
        + 4.0 * a[1:-1, 1:-1]
    )
    c = c[np.isfinite(c)]
    return float(np.sqrt(np.pi / 2) / 6.0 * np.mean(np.abs(c))) if c.size else 0.0


def sgm_precision(left: np.ndarray, right: np.ndarray, window: tuple[int, int] = (5, 5)) -> np.ndarray:
    """Predicted standard deviation (px) of a disparity measured on a ``window`` around each left pixel:
    ``sqrt((noise_L² + noise_R²) / sum of the squared epipolar gradient of L in the window)`` (the precision of
    a least-squares shift; :func:`image_noise` per image). (H, W) float64, inf where the window is flat or holds
    no data. With the census window's size it says where SGM's own sub-pixel value is noise-limited."""
    lf = np.asarray(left, np.float64)
    gx = np.full(lf.shape, np.nan)
    gx[:, 1:-1] = 0.5 * (lf[:, 2:] - lf[:, :-2])
    _, energy, ok = _box(gx, window[0] // 2, window[1] // 2)
    var = image_noise(left) ** 2 + image_noise(right) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok & (energy > 0), np.sqrt(var / energy), np.inf)


def refinement_weight(precision: np.ndarray, noise_px: float) -> np.ndarray:
    """Share (0..1) of the ZNCC value in the disparity, from the predicted precision of the SGM value (px): 0
    below ``noise_px / 2`` (SGM precise enough: its value is kept), 1 above ``1.5 noise_px``, linear between;
    ``noise_px`` 0: 1 everywhere."""
    if noise_px <= 0:
        return np.ones(precision.shape)
    return np.clip(precision / noise_px - 0.5, 0.0, 1.0)


def relief_gate(sgm: np.ndarray, zncc: np.ndarray, radius: int, tol_px: float) -> np.ndarray:
    """Share (0..1) of a ZNCC value to keep where it disagrees with SGM's in a consistent direction.

    A correlation window assumes the disparity constant over it: across a roof ridge it averages the ridge down,
    at eaves it mixes roof and ground, while SGM (census window, regularised per pixel) keeps both. On planar
    relief both are unbiased and their difference is zero-mean noise. So the mean of ``zncc - sgm`` over the
    ``(2 radius + 1)²`` neighbours where both are finite measures the window's bias: the share is 1 where its
    magnitude is at most ``tol_px``, 0 from ``2 tol_px``, linear between; 1 where nothing is measured.
    ``tol_px`` 0: 1 everywhere (no gate).

    Args:
        sgm, zncc: (H, W) disparities (px), NaN = invalid; ``zncc`` equal to ``sgm`` where not refined.
    Returns:
        (H, W) float64 in 0..1.
    """
    if tol_px <= 0:
        return np.ones(np.shape(sgm))
    diff = np.asarray(zncc, np.float64) - np.asarray(sgm, np.float64)
    fin = np.isfinite(diff)
    size = 2 * int(radius) + 1
    # mean over the finite neighbours (uniform_filter gives sums / size²; the ratio cancels size²)
    s = ndimage.uniform_filter(np.where(fin, diff, 0.0), size, mode="constant")
    n = ndimage.uniform_filter(fin.astype(np.float64), size, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        bias = np.where(n > 0.5 / size**2, s / n, 0.0)
    return np.clip(2.0 - np.abs(bias) / tol_px, 0.0, 1.0)


def jump_gate(sgm: np.ndarray, window: tuple[int, int], tol_px: float) -> np.ndarray:
    """Share (0..1) of a ZNCC value to keep where its window may reach down a wall from a roof.

    A correlation window that holds roof and ground matches a mix of both: at eaves the refined roof sinks
    toward the ground (a flat roof then looks sloped). How far the lowest SGM disparity (after a 3x3 median,
    which removes lone outliers) of the ``window`` (rows, cols) around a pixel lies below the pixel's own says
    whether it may: share 1 where that drop is at most ``tol_px``, 0 from ``2 tol_px``, linear between. Only the
    upper side of a jump is gated: the ground at the foot of a wall keeps its refinement (the flat-ground
    precision), a roof's edge keeps SGM's value (disparities grow with height: :mod:`sat2lod.stereo.rectify`).
    ``tol_px`` 0: 1 everywhere (no gate).

    Args:
        sgm: (H, W) disparities (px), NaN = invalid (ignored).
    Returns:
        (H, W) float64 in 0..1.
    """
    if tol_px <= 0:
        return np.ones(np.shape(sgm))
    from sat2lod.stereo.sgm import median_filter

    d = median_filter(np.asarray(sgm, np.float32)).astype(np.float64)
    fin = np.isfinite(d)
    size = (int(window[0]), int(window[1]))
    lo = ndimage.minimum_filter(np.where(fin, d, np.inf), size, mode="nearest")
    with np.errstate(invalid="ignore"):
        drop = np.where(fin & np.isfinite(lo), d - lo, 0.0)
    return np.clip(2.0 - drop / tol_px, 0.0, 1.0)


def _inputs(
    left: np.ndarray, right: np.ndarray, window: tuple[int, int], box: Callable = _box
) -> tuple[tuple[np.ndarray, ...], int, int]:
    wh, ww = (int(v) for v in window)
    if wh < 1 or ww < 1 or wh % 2 == 0 or ww % 2 == 0:
        raise ValueError(f"refinement window {window}: sides must be odd and positive")
    ry, rx = wh // 2, ww // 2
    lf, rf = _centred(left), _centred(right)
    hf = half_shift(rf)
    return (lf, *box(lf, ry, rx), rf, *box(rf, ry, rx), hf, *box(hf, ry, rx)), ry, rx


def refine_disparity(
    left: np.ndarray,
    right: np.ndarray,
    disp: np.ndarray,
    fit: str = "zncc2",
    window: tuple[int, int] = tuple(_STEREO["subpixel_window"]),
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """Sub-pixel disparities re-measured by ZNCC around ``round(disp)`` (see the module docstring).

    Args:
        left: (H, W) rectified reference image; right: (H, W2) rectified image, same rows; NaN = no data.
        disp: (H, W) disparities (px, right x = left x + d), NaN = invalid (stays NaN).
        fit: "parabola" (one parabola on the integer shifts) or "zncc2" (mean with the half-pixel one).
        window: (rows, cols) of the correlation window, odd sides.
        weight: (H, W) share of the ZNCC value in the result, ``disp + weight (zncc - disp)`` (e.g.
            :func:`refinement_weight`); None = 1 (the ZNCC value).
    Returns:
        (H, W) float32 disparities; unchanged where the correlation cannot be measured or the weight is 0.
    """
    if fit not in FITS:
        raise ValueError(f"sub-pixel fit {fit!r}: expected one of {FITS}")
    if left.shape != disp.shape or left.shape[0] != right.shape[0]:
        raise ValueError(f"shapes differ: left {left.shape}, right {right.shape}, disparity {disp.shape}")
    (lf, sl, sll, okl, rf, sr, srr, okr, hf, sh, shh, okh), ry, rx = _inputs(left, right, window)
    d = np.ascontiguousarray(disp, np.float32)
    for a in (lf, rf, hf):  # in place (fresh arrays of _inputs): windows holding NaN are not valid anyway
        a[~np.isfinite(a)] = 0.0
    lz, rz, hz = lf, rf, hf
    band = max(16, -(-d.shape[0] // (4 * numba.get_num_threads())))
    arrays = (lz, sl, sll, okl, rz, sr, srr, okr, hz, sh, shh, okh)
    wt = np.ones(d.shape) if weight is None else np.ascontiguousarray(weight, np.float64)
    return _refine(*arrays, d, wt, ry, rx, fit == "zncc2", band)


def refine_disparity_reference(
    left: np.ndarray,
    right: np.ndarray,
    disp: np.ndarray,
    fit: str = "zncc2",
    window: tuple[int, int] = tuple(_STEREO["subpixel_window"]),
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """NumPy reference of :func:`refine_disparity` (every cost of every pixel at shifts -2 .. 2 and the half
    shifts -2.5 .. 1.5 of the SGM integer, then the same choices, vectorised)."""
    (lf, sl, sll, okl, rf, sr, srr, okr, hf, sh, shh, okh), ry, rx = _inputs(
        left, right, window, _box_reference
    )
    d = np.asarray(disp, np.float32)
    h, w = d.shape
    n = (2 * ry + 1) * (2 * rx + 1)
    ys, xs = np.mgrid[0:h, 0:w]
    valid = np.isfinite(d) & okl
    d0 = np.floor(np.where(valid, d, 0) + 0.5).astype(int)

    def costs(img: np.ndarray, s: np.ndarray, ss: np.ndarray, ok: np.ndarray, xr: np.ndarray) -> np.ndarray:
        inside = (xr >= 0) & (xr < img.shape[1])
        xc = np.clip(xr, 0, img.shape[1] - 1)
        good = inside & ok[ys, xc] & valid
        slr = np.zeros((h, w))
        for dy in range(-ry, ry + 1):
            for dx in range(-rx, rx + 1):
                yy, xl, xx = np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1), np.clip(xc + dx, 0, None)
                slr += np.where(good, lf[yy, xl] * img[yy, np.minimum(xx, img.shape[1] - 1)], 0.0)
        vl = sll - sl * sl / n
        vr = ss[ys, xc] - s[ys, xc] ** 2 / n
        flat = (vl <= 1e-9 * n) | (vr <= 1e-9 * n)
        with np.errstate(invalid="ignore", divide="ignore"):
            c = 1.0 - (slr - sl * s[ys, xc] / n) / np.sqrt(vl * vr)
        return np.where(good & ~flat, c, np.nan)

    ci = {o: costs(rf, sr, srr, okr, xs + d0 + o) for o in range(-2, 3)}
    cm, c0, cp = ci[-1], ci[0], ci[1]
    down = cm < c0
    down &= cm <= cp
    up = ~down & (cp < c0)
    step = np.where(down, -1, np.where(up, 1, 0))
    d0 = d0 + step
    cm, c0, cp = (
        np.where(down, ci[-2], np.where(up, ci[0], ci[-1])),
        np.where(down, ci[-1], np.where(up, ci[1], ci[0])),
        np.where(down, ci[0], np.where(up, ci[2], ci[1])),
    )
    keep = valid & (c0 <= cm) & (c0 <= cp)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = cm - 2 * c0 + cp
        s1 = np.where(den > 0, 0.5 * (cm - cp) / np.where(den > 0, den, 1), 0.0)
        if fit == "zncc2":
            j = np.where(s1 >= 0, xs + d0, xs + d0 - 1)
            hm, h0, hp = (costs(hf, sh, shh, okh, j + o) for o in (-1, 0, 1))
            hd = hm - 2 * h0 + hp
            v = np.where(hd > 0, 0.5 * (hm - hp) / np.where(hd > 0, hd, 1), 0.0)
            s2 = np.where(s1 >= 0, 0.5, -0.5) + np.clip(v, -1, 1)
            ok2 = np.isfinite(hm) & np.isfinite(h0) & np.isfinite(hp)
            s1 = np.where(ok2, 0.5 * (s1 + s2), s1)
    wt = np.ones(d.shape) if weight is None else np.asarray(weight, np.float64)
    keep &= wt > 0
    return np.where(keep, (d + wt * (d0 + s1 - d)).astype(np.float32), d).astype(np.float32)
