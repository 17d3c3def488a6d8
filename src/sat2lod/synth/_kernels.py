"""Private numba kernels of the synthetic renderer (cast shadows and pushbroom ray casting).

Both kernels are plain Python loops compiled with numba; tests compare them with NumPy references
(:func:`shadow_mask_reference`) or with the uncompiled ``py_func`` on tiny inputs.
Grid convention: row i, col j cell centre at (x0 + (j + 0.5) * res, y0 - (i + 0.5) * res), (x0, y0) = top-left corner.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def _shadow_sweep(dsm: np.ndarray, step: float, drop: float, shift: float) -> np.ndarray:
    """Shadow surface swept row by row from the sun side (row h-1) to the far side (row 0).

    Moving one row away from the sun moves ``shift`` columns and lowers the sun ray by ``drop`` (m):
    S[i, j] = max(dsm[i, j], S[i + 1, j + shift] - drop), with linear interpolation along the row.
    """
    h, w = dsm.shape
    s = dsm.astype(np.float32).copy()
    for i in range(h - 2, -1, -1):
        for j in range(w):
            xs = j + shift
            j0 = int(math.floor(xs))
            f = xs - j0
            if j0 < 0 or j0 + 1 >= w:
                continue
            v = (1.0 - f) * s[i + 1, j0] + f * s[i + 1, j0 + 1] - drop
            s[i, j] = max(s[i, j], v)
    return s


def _shadow_mask(dsm: np.ndarray, res: float, sun_az: float, sun_el: float, hmax: float) -> np.ndarray:
    """1 where the cell is in cast shadow, 0 elsewhere; O(H x W) sweep (see :func:`_shadow_sweep`).

    dsm: (H, W) heights (m), north-up grid of ``res`` m; sun azimuth clockwise from north and elevation in
    radians. ``hmax`` is unused by the sweep and kept for signature parity with the reference.
    """
    dx, dy = math.sin(sun_az), math.cos(sun_az)  # toward the sun, map x east / y north
    a = dsm
    # orient the array so that the sun lies toward increasing row index, sweeping along its main axis
    if abs(dy) >= abs(dx):
        flip_rows = dy > 0  # sun in the north: rows must be flipped so that the sun is "below"
        a = a[::-1] if flip_rows else a
        t = 1.0 / abs(dy)  # metres travelled toward the sun per row (in units of res)
        shift = t * dx
        s = _shadow_sweep(np.ascontiguousarray(a), res, t * res * math.tan(sun_el), shift)
        s = s[::-1] if flip_rows else s
    else:
        b = a.T  # columns become rows: row index = x (east)
        flip = dx < 0  # sun in the west: smaller x toward the sun
        b = b[::-1] if flip else b
        t = 1.0 / abs(dx)
        # one step toward the sun along x moves -dy*t in row index of the original array (north = -row)
        shift = -t * dy
        s = _shadow_sweep(np.ascontiguousarray(b), res, t * res * math.tan(sun_el), shift)
        s = (s[::-1] if flip else s).T
    return (s > dsm + 0.05).astype(np.uint8)


def shadow_mask_reference(
    dsm: np.ndarray, res: float, sun_az: float, sun_el: float, hmax: float
) -> np.ndarray:
    """NumPy reference of :func:`_shadow_mask` (all cells marched together)."""
    h, w = dsm.shape
    ii0, jj0 = np.mgrid[0:h, 0:w]
    x = (jj0 + 0.5) * res
    y = -(ii0 + 0.5) * res
    step = 0.5 * res
    dz = step * math.tan(sun_el)
    out = np.zeros((h, w), np.uint8)
    active = np.ones((h, w), bool)
    k = 1
    while active.any():
        zz = dsm + k * dz
        xx = x + k * step * math.sin(sun_az)
        yy = y + k * step * math.cos(sun_az)
        jj = np.floor(xx / res).astype(int)
        ii = np.floor(-yy / res).astype(int)
        inside = (ii >= 0) & (jj >= 0) & (ii < h) & (jj < w)
        active &= (zz <= hmax) & inside
        hit = np.zeros_like(active)
        hit[active] = dsm[ii[active], jj[active]] > zz[active] + 0.05
        out[hit] = 1
        active &= ~hit
        k += 1
    return out


@numba.njit(cache=True, parallel=True)
def _render(
    dsm: np.ndarray,
    albedo: np.ndarray,
    irr: np.ndarray,
    wall_nx: np.ndarray,
    wall_ny: np.ndarray,
    x0: float,
    y0: float,
    res: float,
    cam: np.ndarray,
    rows: int,
    cols: int,
    ns: int,
    hmin: float,
    hmax: float,
    sun_x: float,
    sun_y: float,
    dsm_max: np.ndarray,
    radius: int,
    block_row: int = 0,
    block_col: int = 0,
) -> np.ndarray:
    """Render a pushbroom view of a height field by ray casting (or the block of it from (block_row, block_col)).

    Args:
        dsm, albedo, irr: (H, W) float32 fine grids (height m, albedo [0, 1], irradiance of horizontal
            surfaces incl. cast shadows [0, 1]); wall_nx, wall_ny: outward horizontal normal of walls.
        cam: camera vector (see :class:`sat2lod.synth.camera.PushbroomCamera.as_array`).
        rows, cols: image size; ns: ns x ns rays per pixel.
        dsm_max: max of ``dsm`` over the (2 radius + 1)^2 cells around each cell (empty-space skipping:
            a ray above it cannot hit anything within ``radius`` cells, so it advances several steps at once).
        block_row, block_col: image pixel of the block's top-left corner (``rows`` x ``cols`` is then the block's size).
    Returns:
        (rows, cols) float32 radiance in [0, 1].
    """
    p0x, p0y, ux, uy, cx, cy, alt, gsd, th0, th1, th2, k, col0, tanroll = (
        cam[0],
        cam[1],
        cam[2],
        cam[3],
        cam[4],
        cam[5],
        cam[6],
        cam[7],
        cam[8],
        cam[9],
        cam[10],
        cam[11],
        cam[12],
        cam[13],
    )
    gh, gw = dsm.shape
    out = np.zeros((rows, cols), np.float32)
    step = 0.5 * res
    for p in numba.prange(rows):
        for q in range(cols):
            acc = 0.0
            for a in range(ns):
                pp = (block_row + p) + (a + 0.5) / ns - 0.5
                th = th0 + th1 * pp + th2 * pp * pp
                tt = math.tan(th)
                sx = p0x + pp * gsd * ux
                sy = p0y + pp * gsd * uy
                for b in range(ns):
                    qq = (block_col + q) + (b + 0.5) / ns - 0.5
                    tf = tanroll + (qq - col0) / k
                    gx = tt * ux + tf * cx
                    gy = tt * uy + tf * cy
                    gn = math.sqrt(gx * gx + gy * gy)
                    htop = hmax + 0.5
                    if gn < 1e-9:
                        nsteps = 1
                        dh = 0.0
                    else:
                        dh = step / gn
                        nsteps = int(math.ceil((htop - hmin + 1.0) / dh)) + 1
                    val = 0.0
                    hprev = htop + dh
                    max_skip = max(int((radius - 1) * res / step), 1)
                    s = -1
                    while s < nsteps - 1:
                        s += 1
                        hh = htop - s * dh
                        x = sx + (alt - hh) * gx
                        y = sy + (alt - hh) * gy
                        j = int(math.floor((x - x0) / res))
                        i = int(math.floor((y0 - y) / res))
                        if i < 0 or j < 0 or i >= gh or j >= gw:
                            continue
                        if dh > 0.0 and s < nsteps - 2:
                            clear = int((hh - dsm_max[i, j]) / dh) - 1
                            if clear > 1:
                                nskip = min(clear, max_skip, nsteps - 2 - s)
                                if nskip > 0:
                                    hprev = htop - (s + nskip - 1) * dh
                                    s += nskip - 1
                                    continue
                        d = dsm[i, j]
                        if d >= hh or s == nsteps - 1:
                            if d >= hprev and s > 0:
                                # entered the column through its side: a wall; storeys every 3 m
                                fl = (hh / 3.0) - math.floor(hh / 3.0)
                                walb = 0.45 if fl > 0.35 else 0.22
                                cosi = wall_nx[i, j] * sun_x + wall_ny[i, j] * sun_y
                                val = walb * (0.3 + 0.7 * max(cosi, 0.0))
                            else:
                                x2 = sx + (alt - d) * gx
                                y2 = sy + (alt - d) * gy
                                j2 = min(max(int(math.floor((x2 - x0) / res)), 0), gw - 1)
                                i2 = min(max(int(math.floor((y0 - y2) / res)), 0), gh - 1)
                                val = albedo[i2, j2] * irr[i2, j2]
                            break
                        hprev = hh
                    acc += val
            out[p, q] = acc / (ns * ns)
    return out
