"""Points -> DSM grid, multi-pair fusion and small-hole filling.

Gridding: with ``radius`` 0, s2p's ``plyflatten`` with radius 0: a point contributes only to the cell it falls
in; the cell value is the mean of its points' heights; cells without points stay NaN. With ``radius`` > 0 (cells),
as CARS's rasterization but edge-preserving: a cell that has points of its own takes the Gaussian-weighted mean
(``sigma`` cells, distance point - cell centre) of the points within ``radius`` of its centre whose heights lie
within ``tol_m`` of its own radius-0 mean, so flat surfaces average several disparities while a point across a
height step (a wall, > ``tol_m``) is not averaged into the other side; cells without points of their own stay NaN,
unless ``empty_cells`` (schema ``stereo.raster_empty_cells``, on by default): then a sampling gap inside one surface
takes the points within ``radius`` of its centre, as CARS's rasterization does. Fusion of tri-stereo pairs: per cell,
the median of the pairs' heights, then the mean of the pairs within ``tol_m`` of it (a pair that disagrees is
dropped, not averaged in). Hole filling is optional and flagged in a mask: a NaN cell with enough valid
neighbours takes the mean of the lower half of them (occlusion-aware), for at most ``iterations`` passes (so only holes up to ~2 x iterations cells).
"""

from __future__ import annotations

import numba
import numpy as np
from rasterio.transform import Affine

from sat2lod.grid import grid_for_bounds
from sat2lod.schema import defaults

_STEREO = defaults("stereo")  # defaults of config section stereo

__all__ = ["grid_for_bounds"]  # re-exported: the output grid rule lives in sat2lod.grid


@numba.njit(cache=True)
def _accumulate(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    q: np.ndarray,
    x0: float,
    y0: float,
    res: float,
    rows: int,
    cols: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    zsum = np.zeros((rows, cols))
    qsum = np.zeros((rows, cols))
    count = np.zeros((rows, cols), np.int32)
    for i in range(x.shape[0]):
        if not np.isfinite(z[i]):
            continue
        c = int(np.floor((x[i] - x0) / res))
        r = int(np.floor((y0 - y[i]) / res))
        if 0 <= r < rows and 0 <= c < cols:
            zsum[r, c] += z[i]
            qsum[r, c] += q[i]
            count[r, c] += 1
    return zsum, qsum, count


@numba.njit(cache=True)
def _splat(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    q: np.ndarray,
    h0: np.ndarray,
    x0: float,
    y0: float,
    res: float,
    radius: float,
    sigma: float,
    tol: float,
    empty: bool,
) -> tuple[np.ndarray, ...]:
    """Points within ``radius`` cells of each cell's centre, Gaussian weights (``sigma`` in cells).

    A cell with points of its own (finite radius-0 mean ``h0``) gets the weighted sums (sum w z, sum w) of those
    within ``tol`` of ``h0``. With ``empty``, a cell without (NaN ``h0``) gets sum w z, sum w q, sum w and the
    lowest and highest height of all of them; without, those five arrays are (1, 1) zeros.
    Returns (zw, ws, ezw, eqw, ews, zmin, zmax).
    """
    rows, cols = h0.shape
    zw = np.zeros((rows, cols))
    ws = np.zeros((rows, cols))
    er, ec = (rows, cols) if empty else (1, 1)
    ezw, eqw, ews = np.zeros((er, ec)), np.zeros((er, ec)), np.zeros((er, ec))
    zmin, zmax = np.full((er, ec), np.inf), np.full((er, ec), -np.inf)
    reach = int(np.ceil(radius))
    r2 = radius * radius
    k = -0.5 / (sigma * sigma)
    for i in range(x.shape[0]):
        if not np.isfinite(z[i]):
            continue
        u = (x[i] - x0) / res  # position in cells from the grid's corner
        v = (y0 - y[i]) / res
        c = int(np.floor(u))
        r = int(np.floor(v))
        for rr in range(r - reach, r + reach + 1):
            for cc in range(c - reach, c + reach + 1):
                if rr < 0 or rr >= rows or cc < 0 or cc >= cols:
                    continue
                d2 = (u - cc - 0.5) ** 2 + (v - rr - 0.5) ** 2
                if d2 > r2:
                    continue
                wt = np.exp(k * d2)
                if np.isfinite(h0[rr, cc]):
                    if abs(z[i] - h0[rr, cc]) <= tol:
                        zw[rr, cc] += wt * z[i]
                        ws[rr, cc] += wt
                elif empty:
                    ezw[rr, cc] += wt * z[i]
                    eqw[rr, cc] += wt * q[i]
                    ews[rr, cc] += wt
                    zmin[rr, cc] = min(zmin[rr, cc], z[i])
                    zmax[rr, cc] = max(zmax[rr, cc], z[i])
    return zw, ws, ezw, eqw, ews, zmin, zmax


def _splat_reference(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    q: np.ndarray,
    h0: np.ndarray,
    x0: float,
    y0: float,
    res: float,
    radius: float,
    sigma: float,
    tol: float,
    empty: bool,
) -> tuple[np.ndarray, ...]:
    """NumPy reference of :func:`_splat` (vectorised over the points, one neighbour offset at a time)."""
    rows, cols = h0.shape
    n = rows * cols
    fin = np.isfinite(z)
    u, v, zz, qq = (x[fin] - x0) / res, (y0 - y[fin]) / res, z[fin], q[fin]
    c0, r0 = np.floor(u).astype(int), np.floor(v).astype(int)
    zw, ws, ezw, eqw, ews = (np.zeros(n) for _ in range(5))
    zmin, zmax = np.full(n, np.inf), np.full(n, -np.inf)
    reach = int(np.ceil(radius))
    for dr in range(-reach, reach + 1):
        for dc in range(-reach, reach + 1):
            rr, cc = r0 + dr, c0 + dc
            inside = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
            d2 = (u - cc - 0.5) ** 2 + (v - rr - 0.5) ** 2
            near = np.full(zz.shape, np.nan)
            near[inside] = h0[rr[inside], cc[inside]]
            wt = np.exp(-0.5 * d2 / (sigma * sigma))
            cell = np.where(inside, rr * cols + cc, 0)
            own = inside & (d2 <= radius * radius) & (np.abs(zz - near) <= tol)
            zw += np.bincount(cell[own], wt[own] * zz[own], n)
            ws += np.bincount(cell[own], wt[own], n)
            gap = inside & (d2 <= radius * radius) & np.isnan(near) & empty
            ezw += np.bincount(cell[gap], wt[gap] * zz[gap], n)
            eqw += np.bincount(cell[gap], wt[gap] * qq[gap], n)
            ews += np.bincount(cell[gap], wt[gap], n)
            np.minimum.at(zmin, cell[gap], zz[gap])
            np.maximum.at(zmax, cell[gap], zz[gap])
    shape = (rows, cols) if empty else (1, 1)
    out = [zw.reshape(rows, cols), ws.reshape(rows, cols)]
    return (*out, *(a.reshape(rows, cols)[: shape[0], : shape[1]] for a in (ezw, eqw, ews, zmin, zmax)))


def _flat_surroundings(h0: np.ndarray, tol_m: float, min_neighbours: int = 5) -> np.ndarray:
    """Cells whose 8 neighbours include at least ``min_neighbours`` with points of their own (finite ``h0``), all
    within ``tol_m`` of each other: an empty cell there lies on one surface, not at a height step."""
    from scipy import ndimage

    valid = np.isfinite(h0)
    lo = ndimage.minimum_filter(np.where(valid, h0, np.inf), size=3, mode="constant", cval=np.inf)
    hi = ndimage.maximum_filter(np.where(valid, h0, -np.inf), size=3, mode="constant", cval=-np.inf)
    n = ndimage.convolve(valid.astype(np.int32), np.ones((3, 3), np.int32), mode="constant") - valid
    return (n >= min_neighbours) & (hi - lo <= tol_m)


def rasterize_points(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    quality: np.ndarray,
    transform: Affine,
    shape: tuple[int, int],
    radius: float = 0.0,
    sigma: float = _STEREO["raster_sigma"],
    tol_m: float = _STEREO["raster_tol_m"],
    empty_cells: bool = _STEREO["raster_empty_cells"],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Height (radius-0 mean, or edge-preserving weighted mean within ``radius``) and mean quality per cell.

    Args:
        x, y: (N,) projected coordinates (same CRS as ``transform``); z: (N,) heights (m); quality: (N,) e.g.
            intersection residual (px).
        transform, shape: north-up output grid.
        radius: splatting radius (cells, from the cell centre); 0 (here; the chain's default is the schema's
            ``stereo.raster_radius``) = each point to its own cell only.
        sigma: Gaussian weight scale (cells) of the splatting.
        tol_m: a point is averaged into a cell only within this height (m) of the cell's own radius-0 mean.
        empty_cells: with ``radius`` > 0, a cell without points of its own takes the weighted mean (height and
            quality) of the points within ``radius`` of its centre when their heights span at most ``tol_m`` and
            at least 5 of its 8 neighbours have points of their own, all within ``tol_m`` of each other (a
            sampling gap inside one surface; a cell at a height step stays NaN); its count stays 0.
    Returns:
        height (rows, cols) float32 NaN-empty (NaN where the cell has no point of its own, unless
        ``empty_cells``), quality (rows, cols) float32, count (rows, cols) int32 (the cell's own points).
    """
    xs, ys, zs, qs = (np.asarray(a, float) for a in (x, y, z, quality))
    zsum, qsum, count = _accumulate(
        xs,
        ys,
        zs,
        qs,
        transform.c,
        transform.f,
        transform.a,
        int(shape[0]),
        int(shape[1]),
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        h = np.where(count > 0, zsum / count, np.nan)
        q = np.where(count > 0, qsum / count, np.nan).astype(np.float32)
    if radius > 0:
        if sigma <= 0 or tol_m < 0:
            raise ValueError(f"splatting needs sigma > 0 and tol_m >= 0, got sigma={sigma}, tol_m={tol_m}")
        zw, ws, ezw, eqw, ews, zmin, zmax = _splat(
            xs, ys, zs, qs, h, transform.c, transform.f, transform.a,
            float(radius), float(sigma), tol_m, bool(empty_cells),
        )  # fmt: skip
        if empty_cells:
            take = (ews > 0) & (zmax - zmin <= tol_m) & _flat_surroundings(h, tol_m)
        with np.errstate(invalid="ignore", divide="ignore"):
            h = np.where(ws > 0, zw / ws, h)
            if empty_cells:
                h = np.where(take, ezw / ews, h)
                q = np.where(take, eqw / ews, q).astype(np.float32)
    return h.astype(np.float32), q, count


def fuse_heights(
    stack: np.ndarray,
    tol_m: float = 1.0,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse (P, H, W) per-pair height maps: weighted mean of the pairs within ``tol_m`` of the per-cell median.

    ``weights`` (P,): each pair's inverse height variance, e.g. its disparity pixels per metre squared (a pair's
    height noise is its disparity noise times the metres per disparity pixel, so a base-to-height ratio twice
    as large weighs four times as much); None: equal weights.
    Returns (fused (H, W) float32 NaN-empty, number of agreeing pairs (H, W) uint8).
    """
    if stack.shape[0] == 1:
        return stack[0].astype(np.float32), np.isfinite(stack[0]).astype(np.uint8)
    w = np.ones(stack.shape[0]) if weights is None else np.asarray(weights, float)
    if w.shape != (stack.shape[0],) or not np.all(np.isfinite(w) & (w > 0)):
        raise ValueError(f"fusion weights must be {stack.shape[0]} positive numbers, got {weights}")
    valid = np.isfinite(stack)
    n = valid.sum(axis=0)
    med = np.full(stack.shape[1:], np.nan, np.float32)
    has = n > 0
    med[has] = np.nanmedian(stack[:, has], axis=0)
    agree = valid & (np.abs(stack - med) <= tol_m)
    cnt = agree.sum(axis=0)
    wa = np.where(agree, w[:, None, None], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        fused = np.where(cnt > 0, (wa * np.where(agree, stack, 0)).sum(axis=0) / wa.sum(axis=0), np.nan)
    return fused.astype(np.float32), cnt.astype(np.uint8)


@numba.njit(cache=True)
def _fill_pass(h: np.ndarray, min_neighbours: int) -> tuple[np.ndarray, int]:
    rows, cols = h.shape
    out = h.copy()
    n_filled = 0
    vals = np.empty(8, np.float32)
    for r in range(rows):
        for c in range(cols):
            if np.isfinite(h[r, c]):
                continue
            n = 0
            for dr in range(-1, 2):
                for dc in range(-1, 2):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < rows and 0 <= cc < cols and np.isfinite(h[rr, cc]):
                        vals[n] = h[rr, cc]
                        n += 1
            if n >= min_neighbours:
                # lower half of the neighbours: holes are mostly occluded ground beside raised objects, so the
                # low side of a step is the better guess (a plain mean drags walls into the hole)
                srt = np.sort(vals[:n])
                k = (n + 1) // 2
                s = 0.0
                for i in range(k):
                    s += srt[i]
                out[r, c] = s / k
                n_filled += 1
    return out, n_filled


def fill_small_holes(
    h: np.ndarray, iterations: int = 2, min_neighbours: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Fill NaN cells having >= ``min_neighbours`` valid 8-neighbours, ``iterations`` passes.

    Returns (filled heights float32, mask uint8: 1 = filled here, 0 = measured, 255 = still empty).
    """
    out = np.ascontiguousarray(h, np.float32)
    for _ in range(max(0, iterations)):
        out, n = _fill_pass(out, int(min_neighbours))
        if n == 0:
            break
    mask = np.where(np.isfinite(h), 0, np.where(np.isfinite(out), 1, 255)).astype(np.uint8)
    return out, mask


@numba.njit(cache=True)
def _densify(disp: np.ndarray, factor: int, max_jump: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = disp.shape
    n_max = h * w * factor * factor
    xs = np.empty(n_max)
    ys = np.empty(n_max)
    ds = np.empty(n_max)
    n = 0
    for y in range(h):
        for x in range(w):
            d00 = disp[y, x]
            if not np.isfinite(d00):
                continue
            xs[n] = x
            ys[n] = y
            ds[n] = d00
            n += 1
            if y + 1 >= h or x + 1 >= w:
                continue
            d01 = disp[y, x + 1]
            d10 = disp[y + 1, x]
            d11 = disp[y + 1, x + 1]
            if not (np.isfinite(d01) and np.isfinite(d10) and np.isfinite(d11)):
                continue
            lo = min(min(d00, d01), min(d10, d11))
            hi = max(max(d00, d01), max(d10, d11))
            if hi - lo > max_jump:
                continue
            for a in range(factor):
                for b in range(factor):
                    if a == 0 and b == 0:
                        continue
                    ty = a / factor
                    tx = b / factor
                    xs[n] = x + tx
                    ys[n] = y + ty
                    ds[n] = (1 - ty) * ((1 - tx) * d00 + tx * d01) + ty * ((1 - tx) * d10 + tx * d11)
                    n += 1
    return xs[:n], ys[:n], ds[:n]


def densify_disparity(
    disp: np.ndarray, factor: int = 2, max_jump: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Matches of a disparity map, with ``factor``-times denser samples inside smooth 2x2 blocks.

    Every valid pixel gives its own match; inside each 2x2 block of valid pixels whose disparities span at most
    ``max_jump`` px (one surface, no depth edge), ``factor**2 - 1`` bilinearly interpolated sub-pixel matches are
    added. When the image pixel is coarser than the DSM cell (0.7 m Pléiades pixels on a 0.5 m grid) this gives
    every cell of a matched surface a point, without bridging depth discontinuities or holes.

    Returns (x, y, d) float64 arrays in rectified left coordinates.
    """
    if factor < 1:
        raise ValueError("densify factor must be >= 1")
    return _densify(np.ascontiguousarray(disp, np.float32), int(factor), float(max_jump))
