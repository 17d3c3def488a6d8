"""Rational Polynomial Camera (RPC) model: projection, localization and least-squares fitting.

Conventions (RPC00B / GDAL):
    x = (lon - long_off) / long_scale, y = (lat - lat_off) / lat_scale, z = (h - height_off) / height_scale
    row = line_off + line_scale * P_line_num(x, y, z) / P_line_den(x, y, z)
    col = samp_off + samp_scale * P_samp_num(x, y, z) / P_samp_den(x, y, z)
with lon/lat in degrees (WGS84), h in metres above the WGS84 ellipsoid, and (row, col) in pixels of the
image array where integer coordinates are pixel *centres* (array index [i, j] <=> row i, col j).
The 20 monomials are in the RPC00B order (see :func:`monomials`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def monomials(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """RPC00B cubic monomials of normalized lon (x), lat (y), height (z): (N,) -> (N, 20)."""
    x, y, z = (np.asarray(a, dtype=np.float64).ravel() for a in (x, y, z))
    one = np.ones_like(x)
    return np.stack(
        [one, x, y, z, x * y, x * z, y * z, x * x, y * y, z * z,
         x * y * z, x ** 3, x * y * y, x * z * z, x * x * y, y ** 3, y * z * z, x * x * z, y * y * z, z ** 3],
        axis=1,
    )


@dataclass
class RPCModel:
    """An RPC camera model (field names as :class:`rasterio.rpc.RPC`). Coefficient arrays have shape (20,)."""

    line_off: float
    samp_off: float
    lat_off: float
    long_off: float
    height_off: float
    line_scale: float
    samp_scale: float
    lat_scale: float
    long_scale: float
    height_scale: float
    line_num_coeff: np.ndarray
    line_den_coeff: np.ndarray
    samp_num_coeff: np.ndarray
    samp_den_coeff: np.ndarray

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_rasterio(cls, rpc: Any) -> "RPCModel":
        """Build from a :class:`rasterio.rpc.RPC` (as read from GeoTIFF RPC tags)."""
        return cls(
            line_off=float(rpc.line_off), samp_off=float(rpc.samp_off), lat_off=float(rpc.lat_off),
            long_off=float(rpc.long_off), height_off=float(rpc.height_off), line_scale=float(rpc.line_scale),
            samp_scale=float(rpc.samp_scale), lat_scale=float(rpc.lat_scale), long_scale=float(rpc.long_scale),
            height_scale=float(rpc.height_scale),
            line_num_coeff=np.asarray(rpc.line_num_coeff, float), line_den_coeff=np.asarray(rpc.line_den_coeff, float),
            samp_num_coeff=np.asarray(rpc.samp_num_coeff, float), samp_den_coeff=np.asarray(rpc.samp_den_coeff, float),
        )

    def to_rasterio(self) -> Any:
        """Convert to :class:`rasterio.rpc.RPC` for writing GeoTIFF RPC tags."""
        from rasterio.rpc import RPC

        return RPC(
            height_off=self.height_off, height_scale=self.height_scale, lat_off=self.lat_off,
            lat_scale=self.lat_scale, line_den_coeff=list(map(float, self.line_den_coeff)),
            line_num_coeff=list(map(float, self.line_num_coeff)), line_off=self.line_off,
            line_scale=self.line_scale, long_off=self.long_off, long_scale=self.long_scale,
            samp_den_coeff=list(map(float, self.samp_den_coeff)), samp_num_coeff=list(map(float, self.samp_num_coeff)),
            samp_off=self.samp_off, samp_scale=self.samp_scale, err_bias=-1.0, err_rand=-1.0,
        )

    # ------------------------------------------------------------------ geometry
    def project(self, lon: np.ndarray, lat: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ground -> image. lon, lat (deg), h (m, ellipsoidal), broadcastable -> (row, col) in pixels."""
        lon, lat, h = np.broadcast_arrays(np.asarray(lon, float), np.asarray(lat, float), np.asarray(h, float))
        shape = lon.shape
        m = monomials((lon - self.long_off) / self.long_scale, (lat - self.lat_off) / self.lat_scale,
                      (h - self.height_off) / self.height_scale)
        row = self.line_off + self.line_scale * (m @ self.line_num_coeff) / (m @ self.line_den_coeff)
        col = self.samp_off + self.samp_scale * (m @ self.samp_num_coeff) / (m @ self.samp_den_coeff)
        return row.reshape(shape), col.reshape(shape)

    def localize(self, row: np.ndarray, col: np.ndarray, h: np.ndarray, iters: int = 20,
                 tol_px: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
        """Image + height -> ground: solve project(lon, lat, h) = (row, col) by Newton iterations.

        Args:
            row, col: pixel coordinates (centre convention), broadcastable with h.
            h: height above the ellipsoid (m).
        Returns:
            (lon, lat) in degrees, same shape as the broadcast inputs.
        """
        row, col, h = np.broadcast_arrays(np.asarray(row, float), np.asarray(col, float), np.asarray(h, float))
        shape = row.shape
        row, col, h = row.ravel(), col.ravel(), h.ravel()
        lon = np.full(row.shape, self.long_off)
        lat = np.full(row.shape, self.lat_off)
        d_lon = 1e-6 * self.long_scale
        d_lat = 1e-6 * self.lat_scale
        for _ in range(iters):
            r0, c0 = self.project(lon, lat, h)
            r1, c1 = self.project(lon + d_lon, lat, h)
            r2, c2 = self.project(lon, lat + d_lat, h)
            a, b = (r1 - r0) / d_lon, (r2 - r0) / d_lat
            c, d = (c1 - c0) / d_lon, (c2 - c0) / d_lat
            er, ec = row - r0, col - c0
            det = a * d - b * c
            dlon = (d * er - b * ec) / det
            dlat = (-c * er + a * ec) / det
            lon = lon + dlon
            lat = lat + dlat
            if np.nanmax(np.abs(er) + np.abs(ec), initial=0.0) < tol_px:
                break
        return lon.reshape(shape), lat.reshape(shape)


def _fit_ratio(m: np.ndarray, target: np.ndarray, reg: float, iters: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Fit target ~= (m @ num) / (m @ den), den[0] = 1, by iteratively reweighted linear least squares."""
    n = m.shape[0]
    weights = np.ones(n)
    num = den = None
    for _ in range(iters):
        # target * (m @ den) = m @ num, with den0 = 1: [m, -target * m[:, 1:]] @ [num, den1:] = target
        a = np.hstack([m, -target[:, None] * m[:, 1:]]) * weights[:, None]
        b = target * weights
        ata = a.T @ a + reg * np.eye(a.shape[1])
        sol = np.linalg.solve(ata, a.T @ b)
        num = sol[:20]
        den = np.concatenate([[1.0], sol[20:]])
        denom = m @ den
        weights = 1.0 / np.where(np.abs(denom) < 1e-12, 1e-12, denom)
    assert num is not None and den is not None
    return num, den


def fit_rpc(lon: np.ndarray, lat: np.ndarray, h: np.ndarray, row: np.ndarray, col: np.ndarray,
            reg: float = 1e-10) -> RPCModel:
    """Fit an RPC to ground <-> image correspondences (a 3-D grid covering the image and its height range).

    Args:
        lon, lat: degrees (WGS84); h: metres (ellipsoidal); row, col: pixels (centre convention). Shape (N,).
        reg: Tikhonov regularisation of the normal equations (normalized space), keeps the fit well-posed.
    Returns:
        The fitted model. Check its residual with :meth:`RPCModel.project` on held-out points.
    """
    lon, lat, h, row, col = (np.asarray(a, float).ravel() for a in (lon, lat, h, row, col))

    def off_scale(v: np.ndarray) -> tuple[float, float]:
        lo, hi = float(v.min()), float(v.max())
        return (lo + hi) / 2.0, max((hi - lo) / 2.0, 1e-9)

    (lon_o, lon_s), (lat_o, lat_s), (h_o, h_s) = off_scale(lon), off_scale(lat), off_scale(h)
    (r_o, r_s), (c_o, c_s) = off_scale(row), off_scale(col)
    m = monomials((lon - lon_o) / lon_s, (lat - lat_o) / lat_s, (h - h_o) / h_s)
    ln, ld = _fit_ratio(m, (row - r_o) / r_s, reg)
    sn, sd = _fit_ratio(m, (col - c_o) / c_s, reg)
    return RPCModel(line_off=r_o, samp_off=c_o, lat_off=lat_o, long_off=lon_o, height_off=h_o,
                    line_scale=r_s, samp_scale=c_s, lat_scale=lat_s, long_scale=lon_s, height_scale=h_s,
                    line_num_coeff=ln, line_den_coeff=ld, samp_num_coeff=sn, samp_den_coeff=sd)
