"""Relative pointing correction from matched keypoints (s2p-style, across the epipolar direction).

Supplier RPCs of two images are not mutually adjusted: a nearly constant image-space shift (several pixels
on the Ventoux pair) puts true correspondences on different rectified rows, which ruins dense matching. We
detect corners in the rectified reference image (Shi-Tomasi score, one per grid cell), match each by normalised
cross-correlation in the rectified right image over the whole disparity range and +-``max_dy`` rows, and keep
unambiguous matches (NCC >= ``min_ncc``, margin over the second peak). The median row offset is the
across-epipolar correction; the matched disparities also give a robust disparity range for the tile.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numba
import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)


@dataclass
class KeypointMatches:
    """Matches in rectified coordinates: left (x, y) and offsets (dx = disparity, dy = row offset), NCC score."""

    x: np.ndarray
    y: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return int(self.x.size)


def corners(
    img: np.ndarray, cell: int = 24, n_max: int = 400, border: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """Shi-Tomasi corners of ``img`` (NaN = no data), at most one per ``cell`` x ``cell`` block: (ys, xs) int."""
    valid = np.isfinite(img)
    a = np.where(valid, img, np.nanmean(img) if valid.any() else 0.0).astype(np.float64)
    gy = ndimage.sobel(a, 0)
    gx = ndimage.sobel(a, 1)
    sxx = ndimage.gaussian_filter(gx * gx, 1.5)
    syy = ndimage.gaussian_filter(gy * gy, 1.5)
    sxy = ndimage.gaussian_filter(gx * gy, 1.5)
    tr = 0.5 * (sxx + syy)
    score = tr - np.sqrt(np.maximum(tr * tr - (sxx * syy - sxy * sxy), 0))
    bad = ~ndimage.binary_erosion(valid, iterations=border, border_value=0)
    score[bad] = 0.0
    h, w = score.shape
    ys, xs, ss = [], [], []
    for y0 in range(0, h, cell):
        for x0 in range(0, w, cell):
            block = score[y0 : y0 + cell, x0 : x0 + cell]
            if block.size == 0:
                continue
            i = int(np.argmax(block))
            by, bx = divmod(i, block.shape[1])
            if block[by, bx] > 0:
                ys.append(y0 + by)
                xs.append(x0 + bx)
                ss.append(block[by, bx])
    order = np.argsort(ss)[::-1][:n_max]
    return np.asarray(ys, int)[order], np.asarray(xs, int)[order]


@numba.njit(cache=True)
def _row_stats(img: np.ndarray, y: int, c0: int, c1: int, r: int, mean: np.ndarray, ss: np.ndarray) -> None:
    """Mean and sum of squared deviations of the (2r+1)^2 windows of ``img`` centred on row ``y``, columns
    [c0, c1) (all inside the image), into ``mean[:c1 - c0]`` and ``ss[:c1 - c0]``: each window's sums run over
    its rows then columns, as :func:`_ncc_kernel` sums them, vectorised over the columns."""
    n = c1 - c0
    size = (2 * r + 1) * (2 * r + 1)
    for k in range(n):
        mean[k] = 0.0
        ss[k] = 0.0
    for a in range(2 * r + 1):
        for b in range(2 * r + 1):
            seg = img[y - r + a, c0 - r + b : c1 - r + b]
            for k in range(n):
                mean[k] += seg[k]
    for k in range(n):
        mean[k] /= size
    for a in range(2 * r + 1):
        for b in range(2 * r + 1):
            seg = img[y - r + a, c0 - r + b : c1 - r + b]
            for k in range(n):
                q = seg[k] - mean[k]
                ss[k] += q * q


@numba.njit(cache=True, parallel=True)
def _window_stats(img: np.ndarray, r: int, row0: int, row1: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_row_stats` of every window centre of rows [row0, row1) of ``img``; NaN where the window leaves
    the image. Returns (mean, ss), each (row1 - row0, width) float64."""
    h, w = img.shape
    mean = np.full((row1 - row0, w), np.nan)
    ss = np.full((row1 - row0, w), np.nan)
    for i in numba.prange(row1 - row0):
        y = row0 + i
        if y - r < 0 or y + r >= h or w - r <= r:
            continue
        _row_stats(img, y, r, w - r, r, mean[i, r : w - r], ss[i, r : w - r])
    return mean, ss


@numba.njit(cache=True, parallel=True)
def _ncc_kernel(
    left: np.ndarray,
    right: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    r: int,
    dmin: int,
    dmax: int,
    max_dy: int,
    use_map: bool,
) -> np.ndarray:
    """(n, 4) :func:`_select_best` of each keypoint's NCC scores against the right image's windows at rows
    y + dy (|dy| <= max_dy), columns x + d (dmin <= d <= dmax); -2 where a window leaves the image or has no
    variance. Each candidate's mean, variance and cross sum are added in the same order whatever ``use_map``
    (the right windows' means and variances from :func:`_window_stats`, shared by every keypoint, or computed
    per candidate): both give the same result to the bit; the cross sums run over a row of candidates at once
    (vectorised over the disparities)."""
    n = ys.shape[0]
    hr, wr = right.shape
    size = (2 * r + 1) * (2 * r + 1)
    nd = dmax - dmin + 1
    ny = 2 * max_dy + 1
    out = np.full((n, 4), np.nan)
    row0 = 0
    if use_map and n > 0:
        row0 = max(0, ys.min() - max_dy)
        qmap, smap = _window_stats(right, r, row0, min(hr, ys.max() + max_dy + 1))
    else:
        qmap, smap = np.zeros((1, 1)), np.zeros((1, 1))
    for i in numba.prange(n):
        y, x = ys[i], xs[i]
        pm = 0.0
        for a in range(-r, r + 1):
            for b in range(-r, r + 1):
                pm += left[y + a, x + b]
        pm /= size
        ps = 0.0
        for a in range(-r, r + 1):
            for b in range(-r, r + 1):
                ps += (left[y + a, x + b] - pm) ** 2
        if not np.isfinite(ps) or ps <= 1e-9:
            continue
        scores = np.full((ny, nd), -2.0)
        lp = np.empty((2 * r + 1, 2 * r + 1))
        for a in range(-r, r + 1):
            for b in range(-r, r + 1):
                lp[a + r, b + r] = left[y + a, x + b] - pm
        qm = np.empty(nd)
        qs = np.empty(nd)
        cross = np.empty(nd)
        # candidates whose window lies inside the right image: x + dmin + jd in [r, wr - r)
        jd0 = max(0, r - x - dmin)
        jd1 = min(nd, wr - r - x - dmin)
        for jy in range(ny):
            yy = y + jy - max_dy
            if yy - r < 0 or yy + r >= hr or jd1 <= jd0:
                continue
            if use_map:
                for jd in range(jd0, jd1):
                    qm[jd] = qmap[yy - row0, x + dmin + jd]
                    qs[jd] = smap[yy - row0, x + dmin + jd]
            else:
                _row_stats(right, yy, x + dmin + jd0, x + dmin + jd1, r, qm[jd0:jd1], qs[jd0:jd1])
            for jd in range(jd0, jd1):
                cross[jd] = 0.0
            # views from jd0: indices from 0 (no wrap-around checks), contiguous: vectorised over disparities
            nj = jd1 - jd0
            cv = cross[jd0:jd1]
            mv = qm[jd0:jd1]
            for a in range(2 * r + 1):
                for b in range(2 * r + 1):
                    la = lp[a, b]
                    seg = right[yy - r + a, x + dmin + jd0 - r + b : x + dmin + jd1 - r + b]
                    for k in range(nj):
                        cv[k] += (seg[k] - mv[k]) * la
            for jd in range(jd0, jd1):
                if np.isfinite(qs[jd]) and qs[jd] > 1e-9:
                    scores[jy, jd] = cross[jd] / np.sqrt(ps * qs[jd])
        out[i] = _select_best(scores, dmin, max_dy)
    return out


def _ncc_search_reference(
    left: np.ndarray,
    right: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    r: int,
    dmin: int,
    dmax: int,
    max_dy: int,
) -> np.ndarray:
    """NumPy reference of :func:`_ncc_search` (each candidate's sums in the same order, vectorised over the
    candidates of a keypoint): equal to the bit."""
    n, hr, wr = ys.shape[0], *right.shape
    size = (2 * r + 1) * (2 * r + 1)
    nd, ny = dmax - dmin + 1, 2 * max_dy + 1
    out = np.full((n, 4), np.nan)
    jy, jd = np.meshgrid(np.arange(ny), np.arange(nd), indexing="ij")
    for i in range(n):
        y, x = int(ys[i]), int(xs[i])
        win = left[y - r : y + r + 1, x - r : x + r + 1]
        pm = 0.0
        for v in win.ravel():
            pm += v
        pm /= size
        ps = 0.0
        for v in win.ravel():
            ps += (v - pm) ** 2
        if not np.isfinite(ps) or ps <= 1e-9:
            continue
        yy, xx = y + jy - max_dy, x + dmin + jd
        inside = (yy - r >= 0) & (yy + r < hr) & (xx - r >= 0) & (xx + r < wr)
        yc, xc = np.where(inside, yy, r), np.where(inside, xx, r)
        qm = np.zeros(inside.shape)
        for a in range(-r, r + 1):
            for b in range(-r, r + 1):
                qm = qm + right[yc + a, xc + b]
        qm = qm / size
        qs, cross = np.zeros(inside.shape), np.zeros(inside.shape)
        for a in range(-r, r + 1):
            for b in range(-r, r + 1):
                q = right[yc + a, xc + b] - qm
                qs = qs + q * q
        for a in range(-r, r + 1):
            for b in range(-r, r + 1):
                cross = cross + (right[yc + a, xc + b] - qm) * (left[y + a, x + b] - pm)
        ok = inside & np.isfinite(qs) & (qs > 1e-9)
        scores = np.full((ny, nd), -2.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            scores[ok] = (cross / np.sqrt(ps * qs))[ok]
        out[i] = _select_best(scores, dmin, max_dy)
    return out


@numba.njit(cache=True)
def _select_best(scores: np.ndarray, dmin: int, max_dy: int) -> np.ndarray:
    """From one keypoint's (2 max_dy + 1, nd) NCC scores: [best dx, best dy] (with sub-pixel parabola
    refinement), best NCC, second-best NCC outside +-2 of the best; NaN when nothing matched (best <= -1)."""
    ny, nd = scores.shape
    res = np.full(4, np.nan)
    best = -2.0
    by = 0
    bd = 0
    for jy in range(ny):
        for jd in range(nd):
            if scores[jy, jd] > best:
                best = scores[jy, jd]
                by = jy
                bd = jd
    if best <= -1.0:
        return res
    second = -2.0
    for jy in range(ny):
        for jd in range(nd):
            if abs(jy - by) > 2 or abs(jd - bd) > 2:
                second = max(second, scores[jy, jd])
    sx = 0.0
    if 0 < bd < nd - 1:
        a0, c0 = scores[by, bd - 1], scores[by, bd + 1]
        den = a0 - 2 * best + c0
        if den < 0:
            sx = 0.5 * (a0 - c0) / den
    sy = 0.0
    if 0 < by < ny - 1:
        a0, c0 = scores[by - 1, bd], scores[by + 1, bd]
        den = a0 - 2 * best + c0
        if den < 0:
            sy = 0.5 * (a0 - c0) / den
    res[0] = dmin + bd + sx
    res[1] = by - max_dy + sy
    res[2] = best
    res[3] = second
    return res


def _ncc_search(
    left: np.ndarray,
    right: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    r: int,
    dmin: int,
    dmax: int,
    max_dy: int,
) -> np.ndarray:
    """For each keypoint: best (dx, dy) with sub-pixel parabola refinement, best NCC, second-best NCC.

    The right windows' means and variances come from a map of the rows the keypoints search when that is
    cheaper than computing them per candidate (many keypoints x rows x disparities for the map's size); the
    scores are the same to the bit either way (:func:`_ncc_kernel`).
    """
    nd, ny = dmax - dmin + 1, 2 * max_dy + 1
    rows = (int(ys.max()) - int(ys.min()) + ny) if ys.size else 0
    use_map = ys.size * ny * nd > 2 * rows * right.shape[1]
    return _ncc_kernel(left, right, ys, xs, r, dmin, dmax, max_dy, use_map)


def match_keypoints(
    left: np.ndarray,
    right: np.ndarray,
    dmin: int,
    dmax: int,
    max_dy: int = 10,
    half_window: int = 7,
    min_ncc: float = 0.8,
    min_margin: float = 0.05,
    n_max: int = 300,
) -> KeypointMatches:
    """Match corners of rectified ``left`` into rectified ``right`` (disparities [dmin, dmax], rows +-max_dy)."""
    ys, xs = corners(left, n_max=n_max, border=half_window + 2)
    if ys.size == 0:
        e = np.zeros(0)
        return KeypointMatches(e, e, e, e, e)
    res = _ncc_search(
        np.ascontiguousarray(left, np.float64),
        np.ascontiguousarray(right, np.float64),
        ys.astype(np.int64),
        xs.astype(np.int64),
        int(half_window),
        int(dmin),
        int(dmax),
        int(max_dy),
    )
    ok = np.isfinite(res[:, 0]) & (res[:, 2] >= min_ncc) & (res[:, 2] - res[:, 3] >= min_margin)
    # reject matches on the border of the search box (true offset may lie outside)
    ok &= (np.abs(res[:, 1]) < max_dy - 0.5) & (res[:, 0] > dmin + 0.5) & (res[:, 0] < dmax - 0.5)
    return KeypointMatches(xs[ok].astype(float), ys[ok].astype(float), res[ok, 0], res[ok, 1], res[ok, 2])


def across_track_offset(m: KeypointMatches, min_matches: int = 8) -> tuple[float, float]:
    """Robust row offset (median dy) and its MAD (px); (0, nan) when there are fewer than ``min_matches``."""
    if len(m) < min_matches:
        log.warning("pointing correction skipped: %d keypoint matches (< %d)", len(m), min_matches)
        return 0.0, float("nan")
    med = float(np.median(m.dy))
    mad = float(1.4826 * np.median(np.abs(m.dy - med)))
    return med, mad


#: Tukey's far-out fence: interquartile ranges below the lower quartile
FENCE_IQR = 3.0


def range_keypoints(heights: np.ndarray, fence_m: float) -> np.ndarray:
    """Which keypoints may set the low end of a pair's height search range: a (n,) bool mask.

    A keypoint is left out when its height lies below the lower quartile by more than max(3 IQR, ``fence_m``)
    (Tukey's far-out fence, widened). On a steep pair a keypoint mismatched along the epipolar line lands
    anywhere in the search range (Ventoux: 5 of 43 at 170-389 m under a surface at 499-558 m), and one such
    keypoint sets the end of a 1-99 % range by itself: SGM then searches hundreds of metres of empty space and
    fills the forest with blunders there. Only the low side is fenced: a few keypoints far above the others are
    as likely a tower or a pyramid that few corners hit (a 45 m building in the synthetic city, Khufu's
    pyramid), and a range cut below such a surface loses it without a trace (SGM's left-right check drops what
    it cannot match); nothing stands below the terrain but pits and valleys, which hold many keypoints or are
    matched again when their surface piles up at the end of the range
    (:func:`sat2lod.stereo.pipeline.process_pair`).

    Args:
        heights: (n,) keypoint heights (m).
        fence_m: least distance (m) below the lower quartile that a height is kept at.
    Returns:
        (n,) bool; all True when there are fewer than 4 keypoints (too few to tell).
    """
    h = np.asarray(heights, float)
    if h.size < 4:
        return np.ones(h.size, bool)
    q1, q3 = np.percentile(h, [25, 75])
    return h >= q1 - max(FENCE_IQR * float(q3 - q1), float(fence_m))
