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


@numba.njit(cache=True, parallel=True)
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
    """For each keypoint: best (dx, dy) with sub-pixel parabola refinement, best NCC, second-best NCC."""
    n = ys.shape[0]
    hr, wr = right.shape
    out = np.full((n, 4), np.nan)
    size = (2 * r + 1) * (2 * r + 1)
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
        nd = dmax - dmin + 1
        ny = 2 * max_dy + 1
        scores = np.full((ny, nd), -2.0)
        for jy in range(ny):
            yy = y + jy - max_dy
            if yy - r < 0 or yy + r >= hr:
                continue
            for jd in range(nd):
                xx = x + dmin + jd
                if xx - r < 0 or xx + r >= wr:
                    continue
                qm = 0.0
                for a in range(-r, r + 1):
                    for b in range(-r, r + 1):
                        qm += right[yy + a, xx + b]
                qm /= size
                qs = 0.0
                cross = 0.0
                for a in range(-r, r + 1):
                    for b in range(-r, r + 1):
                        q = right[yy + a, xx + b] - qm
                        qs += q * q
                        cross += q * (left[y + a, x + b] - pm)
                if np.isfinite(qs) and qs > 1e-9:
                    scores[jy, jd] = cross / np.sqrt(ps * qs)
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
            continue
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
        out[i, 0] = dmin + bd + sx
        out[i, 1] = by - max_dy + sy
        out[i, 2] = best
        out[i, 3] = second
    return out


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
