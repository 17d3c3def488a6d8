"""numba kernels of the RPC model (:class:`sat2lod.rpc.RPCModel`): projection, localization, and the projection
with its Jacobian that the triangulation's kernels call.

A module apart so that a process that only validates RPCs or takes footprints (``acquire``, ``tiles``) never
imports numba: :meth:`RPCModel.project` and :meth:`RPCModel.localize` run small point sets through
NumPy functions of :mod:`sat2lod.rpc` doing the same operations in the same order, equal to these kernels to the bit.

Arguments: ``norm`` (10,) = long_off, long_scale, lat_off, lat_scale, height_off, height_scale, line_off,
line_scale, samp_off, samp_scale; ``coef`` (4, 20) = line num, line den, samp num, samp den (RPC00B order).
Degrees, metres above the WGS84 ellipsoid, pixels (centre convention).
"""

from __future__ import annotations

import numba
import numpy as np

from sat2lod.rpc import image_jacobian as _image_jacobian_py
from sat2lod.rpc import image_of as _image_of_py
from sat2lod.rpc import poly_grad as _poly_grad_py

#: the RPC00B cubic and its x, y derivatives (:func:`sat2lod.rpc.poly_grad`, one source for the kernels and
#: the NumPy functions, hence the same bits), compiled for the kernels
poly_grad = numba.njit(cache=True, inline="always")(_poly_grad_py)
#: (row, col) from the cubics' values, and its Jacobian in (x, y) (:func:`sat2lod.rpc.image_of`,
#: :func:`sat2lod.rpc.image_jacobian`: the same functions the NumPy path calls), compiled for the kernels
image_of = numba.njit(cache=True, inline="always")(_image_of_py)
image_jacobian = numba.njit(cache=True, inline="always")(_image_jacobian_py)


@numba.njit(cache=True, inline="always")
def poly_dz(c: np.ndarray, x: float, y: float, z: float) -> float:
    """d/dz of the RPC00B cubic c (20,) at normalized (x, y, z)."""
    return (
        c[3]
        + c[5] * x
        + c[6] * y
        + 2.0 * c[9] * z
        + c[10] * x * y
        + 2.0 * c[13] * x * z
        + 2.0 * c[16] * y * z
        + c[17] * x * x
        + c[18] * y * y
        + 3.0 * c[19] * z * z
    )


@numba.njit(cache=True)
def project_jacobian(
    norm: np.ndarray, coef: np.ndarray, lon: float, lat: float, h: float
) -> tuple[float, float, float, float, float, float, float, float]:
    """Project one point: (row, col, drow/dlon, drow/dlat, drow/dh, dcol/dlon, dcol/dlat, dcol/dh)."""
    x = (lon - norm[0]) / norm[1]
    y = (lat - norm[2]) / norm[3]
    z = (h - norm[4]) / norm[5]
    ln, lnx, lny = poly_grad(coef[0], x, y, z)
    ld, ldx, ldy = poly_grad(coef[1], x, y, z)
    sn, snx, sny = poly_grad(coef[2], x, y, z)
    sd, sdx, sdy = poly_grad(coef[3], x, y, z)
    lnz = poly_dz(coef[0], x, y, z)
    ldz = poly_dz(coef[1], x, y, z)
    snz = poly_dz(coef[2], x, y, z)
    sdz = poly_dz(coef[3], x, y, z)
    kr = norm[7] / (ld * ld)
    kc = norm[9] / (sd * sd)
    return (
        norm[6] + norm[7] * ln / ld,
        norm[8] + norm[9] * sn / sd,
        kr * (lnx * ld - ln * ldx) / norm[1],
        kr * (lny * ld - ln * ldy) / norm[3],
        kr * (lnz * ld - ln * ldz) / norm[5],
        kc * (snx * sd - sn * sdx) / norm[1],
        kc * (sny * sd - sn * sdy) / norm[3],
        kc * (snz * sd - sn * sdz) / norm[5],
    )


@numba.njit(cache=True, inline="always")
def _image_at(norm: np.ndarray, coef: np.ndarray, x: float, y: float, z: float) -> tuple[float, float]:
    """(row, col) px of the normalized ground point (x, y, z)."""
    return image_of(
        norm,
        poly_grad(coef[0], x, y, z)[0],
        poly_grad(coef[1], x, y, z)[0],
        poly_grad(coef[2], x, y, z)[0],
        poly_grad(coef[3], x, y, z)[0],
    )


@numba.njit(cache=True, parallel=True)
def project_points(
    lon: np.ndarray, lat: np.ndarray, h: np.ndarray, norm: np.ndarray, coef: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    n = lon.shape[0]
    row = np.empty(n)
    col = np.empty(n)
    for i in numba.prange(n):
        x = (lon[i] - norm[0]) / norm[1]
        y = (lat[i] - norm[2]) / norm[3]
        z = (h[i] - norm[4]) / norm[5]
        row[i], col[i] = _image_at(norm, coef, x, y, z)
    return row, col


@numba.njit(cache=True, parallel=True)
def localize_points(
    row: np.ndarray,
    col: np.ndarray,
    h: np.ndarray,
    norm: np.ndarray,
    coef: np.ndarray,
    iters: int,
    tol_px: float,
) -> tuple[np.ndarray, np.ndarray]:
    n = row.shape[0]
    lon = np.empty(n)
    lat = np.empty(n)
    for i in numba.prange(n):
        z = (h[i] - norm[4]) / norm[5]
        x = 0.0
        y = 0.0
        ok = False
        for _ in range(iters):
            gl = poly_grad(coef[0], x, y, z)
            gld = poly_grad(coef[1], x, y, z)
            gs = poly_grad(coef[2], x, y, z)
            gsd = poly_grad(coef[3], x, y, z)
            pr, pc = image_of(norm, gl[0], gld[0], gs[0], gsd[0])
            er = row[i] - pr
            ec = col[i] - pc
            if abs(er) + abs(ec) < tol_px:
                ok = True
                break
            a, b, c, d = image_jacobian(norm, gl, gld, gs, gsd)
            det = a * d - b * c
            if det == 0.0:
                break
            x += (d * er - b * ec) / det
            y += (-c * er + a * ec) / det
        if not ok:
            # accept a last step that converged below 1e-3 px (float noise on huge scenes)
            pr, pc = _image_at(norm, coef, x, y, z)
            ok = abs(row[i] - pr) + abs(col[i] - pc) < 1e-3
        if ok:
            lon[i] = norm[0] + norm[1] * x
            lat[i] = norm[2] + norm[3] * y
        else:
            lon[i] = np.nan
            lat[i] = np.nan
    return lon, lat
