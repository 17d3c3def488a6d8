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
        [
            one,
            x,
            y,
            z,
            x * y,
            x * z,
            y * z,
            x * x,
            y * y,
            z * z,
            x * y * z,
            x**3,
            x * y * y,
            x * z * z,
            x * x * y,
            y**3,
            y * z * z,
            x * x * z,
            y * y * z,
            z**3,
        ],
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
    def from_rasterio(cls, rpc: Any) -> RPCModel:
        """Build from a :class:`rasterio.rpc.RPC` (as read from GeoTIFF RPC tags)."""
        return cls(
            line_off=float(rpc.line_off),
            samp_off=float(rpc.samp_off),
            lat_off=float(rpc.lat_off),
            long_off=float(rpc.long_off),
            height_off=float(rpc.height_off),
            line_scale=float(rpc.line_scale),
            samp_scale=float(rpc.samp_scale),
            lat_scale=float(rpc.lat_scale),
            long_scale=float(rpc.long_scale),
            height_scale=float(rpc.height_scale),
            line_num_coeff=np.asarray(rpc.line_num_coeff, float),
            line_den_coeff=np.asarray(rpc.line_den_coeff, float),
            samp_num_coeff=np.asarray(rpc.samp_num_coeff, float),
            samp_den_coeff=np.asarray(rpc.samp_den_coeff, float),
        )

    def to_rasterio(self) -> Any:
        """Convert to :class:`rasterio.rpc.RPC` for writing GeoTIFF RPC tags."""
        from rasterio.rpc import RPC

        return RPC(
            height_off=self.height_off,
            height_scale=self.height_scale,
            lat_off=self.lat_off,
            lat_scale=self.lat_scale,
            line_den_coeff=list(map(float, self.line_den_coeff)),
            line_num_coeff=list(map(float, self.line_num_coeff)),
            line_off=self.line_off,
            line_scale=self.line_scale,
            long_off=self.long_off,
            long_scale=self.long_scale,
            samp_den_coeff=list(map(float, self.samp_den_coeff)),
            samp_num_coeff=list(map(float, self.samp_num_coeff)),
            samp_off=self.samp_off,
            samp_scale=self.samp_scale,
            err_bias=-1.0,
            err_rand=-1.0,
        )

    def crop(self, row0: float, col0: float) -> RPCModel:
        """Model of a crop whose pixel (0, 0) is pixel (row0, col0) of this model's image."""
        out = RPCModel(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        out.line_off = self.line_off - row0
        out.samp_off = self.samp_off - col0
        return out

    def _packed(self) -> tuple[np.ndarray, np.ndarray]:
        """(offsets/scales (10,), coefficients (4, 20): line num, line den, samp num, samp den) for the kernels."""
        norm = np.array(
            [
                self.long_off,
                self.long_scale,
                self.lat_off,
                self.lat_scale,
                self.height_off,
                self.height_scale,
                self.line_off,
                self.line_scale,
                self.samp_off,
                self.samp_scale,
            ],
            float,
        )
        coef = np.ascontiguousarray(
            np.stack(
                [self.line_num_coeff, self.line_den_coeff, self.samp_num_coeff, self.samp_den_coeff]
            ).astype(np.float64)
        )
        return norm, coef

    # ------------------------------------------------------------------ geometry
    def project(self, lon: np.ndarray, lat: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ground -> image. lon, lat (deg), h (m, ellipsoidal), broadcastable -> (row, col) px.

        The numba kernel :func:`sat2lod.rpc.kernels.project_points`; up to :data:`NUMPY_MAX_POINTS` points, the
        same operations in NumPy (equal to the bit).
        """
        lon, lat, h = np.broadcast_arrays(
            np.asarray(lon, float), np.asarray(lat, float), np.asarray(h, float)
        )
        shape = lon.shape
        norm, coef = self._packed()
        args = (
            np.ascontiguousarray(lon).ravel(),
            np.ascontiguousarray(lat).ravel(),
            np.ascontiguousarray(h).ravel(),
            norm,
            coef,
        )
        if lon.size <= NUMPY_MAX_POINTS:
            row, col = _project_numpy(*args)
        else:
            from sat2lod.rpc.kernels import project_points

            row, col = project_points(*args)
        return row.reshape(shape), col.reshape(shape)

    def localize(
        self, row: np.ndarray, col: np.ndarray, h: np.ndarray, iters: int = 30, tol_px: float = 1e-8
    ) -> tuple[np.ndarray, np.ndarray]:
        """Image + height -> ground: Newton iterations with analytic Jacobians.

        The numba kernel :func:`sat2lod.rpc.kernels.localize_points`; up to :data:`NUMPY_MAX_POINTS` points,
        the same operations in NumPy (equal to the bit).

        Args:
            row, col: pixel coordinates (centre convention), broadcastable with h.
            h: height above the ellipsoid (m).
            iters, tol_px: iteration cap and convergence tolerance (pixels) per point.
        Returns:
            (lon, lat) in degrees, same shape as the broadcast inputs (NaN where Newton did not converge).
        """
        row, col, h = np.broadcast_arrays(
            np.asarray(row, float), np.asarray(col, float), np.asarray(h, float)
        )
        shape = row.shape
        norm, coef = self._packed()
        args = (
            np.ascontiguousarray(row).ravel(),
            np.ascontiguousarray(col).ravel(),
            np.ascontiguousarray(h).ravel(),
            norm,
            coef,
            int(iters),
            float(tol_px),
        )
        if row.size <= NUMPY_MAX_POINTS:
            lon, lat = _localize_numpy(*args)
        else:
            from sat2lod.rpc.kernels import localize_points

            lon, lat = localize_points(*args)
        return lon.reshape(shape), lat.reshape(shape)

    def project_reference(
        self, lon: np.ndarray, lat: np.ndarray, h: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """NumPy reference of :meth:`project` (used by the tests of the numba kernel)."""
        lon, lat, h = np.broadcast_arrays(
            np.asarray(lon, float), np.asarray(lat, float), np.asarray(h, float)
        )
        shape = lon.shape
        m = monomials(
            (lon - self.long_off) / self.long_scale,
            (lat - self.lat_off) / self.lat_scale,
            (h - self.height_off) / self.height_scale,
        )
        row = self.line_off + self.line_scale * (m @ self.line_num_coeff) / (m @ self.line_den_coeff)
        col = self.samp_off + self.samp_scale * (m @ self.samp_num_coeff) / (m @ self.samp_den_coeff)
        return row.reshape(shape), col.reshape(shape)

    def localize_reference(
        self, row: np.ndarray, col: np.ndarray, h: np.ndarray, iters: int = 20, tol_px: float = 1e-6
    ) -> tuple[np.ndarray, np.ndarray]:
        """NumPy reference of :meth:`localize`: Newton iterations with finite-difference Jacobians.

        Args:
            row, col: pixel coordinates (centre convention), broadcastable with h.
            h: height above the ellipsoid (m).
        Returns:
            (lon, lat) in degrees, same shape as the broadcast inputs.
        """
        row, col, h = np.broadcast_arrays(
            np.asarray(row, float), np.asarray(col, float), np.asarray(h, float)
        )
        shape = row.shape
        row, col, h = row.ravel(), col.ravel(), h.ravel()
        lon = np.full(row.shape, self.long_off)
        lat = np.full(row.shape, self.lat_off)
        d_lon = 1e-6 * self.long_scale
        d_lat = 1e-6 * self.lat_scale
        for _ in range(iters):
            r0, c0 = self.project_reference(lon, lat, h)
            r1, c1 = self.project_reference(lon + d_lon, lat, h)
            r2, c2 = self.project_reference(lon, lat + d_lat, h)
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


# ------------------------------------------------------------------------------- small point sets in NumPy
#: up to this many points, :meth:`RPCModel.project` and :meth:`RPCModel.localize` run in NumPy rather than in
#: their numba kernels: a process that only validates RPCs or takes footprints (acquire, tiles) then never
#: starts numba (its import and cache load: ~0.4 CPU-s). The NumPy functions do the kernels' operations in the
#: same order and give the same bits (tests/test_rpc.py), so the choice never changes a product.
NUMPY_MAX_POINTS = 2048


def poly_grad(c: np.ndarray, x: Any, y: Any, z: Any) -> tuple[Any, Any, Any]:
    """RPC00B cubic ``c`` (20,) at normalized (x, y, z), floats or arrays: (value, d/dx, d/dy).

    Plain Python on purpose: the NumPy functions below call it with arrays, and :mod:`sat2lod.rpc.kernels`
    compiles this very function for its kernels, so both evaluate the same expressions in the same order.
    """
    v = (
        c[0]
        + c[1] * x
        + c[2] * y
        + c[3] * z
        + c[4] * x * y
        + c[5] * x * z
        + c[6] * y * z
        + c[7] * x * x
        + c[8] * y * y
        + c[9] * z * z
        + c[10] * x * y * z
        + c[11] * x * x * x
        + c[12] * x * y * y
        + c[13] * x * z * z
        + c[14] * x * x * y
        + c[15] * y * y * y
        + c[16] * y * z * z
        + c[17] * x * x * z
        + c[18] * y * y * z
        + c[19] * z * z * z
    )
    dx = (
        c[1]
        + c[4] * y
        + c[5] * z
        + 2.0 * c[7] * x
        + c[10] * y * z
        + 3.0 * c[11] * x * x
        + c[12] * y * y
        + c[13] * z * z
        + 2.0 * c[14] * x * y
        + 2.0 * c[17] * x * z
    )
    dy = (
        c[2]
        + c[4] * x
        + c[6] * z
        + 2.0 * c[8] * y
        + c[10] * x * z
        + c[12] * 2.0 * x * y
        + c[14] * x * x
        + 3.0 * c[15] * y * y
        + c[16] * z * z
        + 2.0 * c[18] * y * z
    )
    return v, dx, dy


def image_of(norm: np.ndarray, ln: Any, ld: Any, sn: Any, sd: Any) -> tuple[Any, Any]:
    """(row, col) px from the values of the four cubics (line num, line den, samp num, samp den) at a ground
    point; ``norm`` as the kernels'. Floats or arrays: one source for the kernels and NumPy (:func:`poly_grad`)."""
    return norm[6] + norm[7] * ln / ld, norm[8] + norm[9] * sn / sd


def image_jacobian(
    norm: np.ndarray, gl: tuple[Any, Any, Any], gld: tuple[Any, Any, Any], gs: tuple[Any, Any, Any],
    gsd: tuple[Any, Any, Any],
) -> tuple[Any, Any, Any, Any]:  # fmt: skip
    """(drow/dx, drow/dy, dcol/dx, dcol/dy) at normalized ground (x, y) from :func:`poly_grad` of the four cubics
    there. Floats or arrays: one source for the kernels and NumPy (:func:`poly_grad`)."""
    ln, lnx, lny = gl
    ld, ldx, ldy = gld
    sn, snx, sny = gs
    sd, sdx, sdy = gsd
    return (
        norm[7] * (lnx * ld - ln * ldx) / (ld * ld),
        norm[7] * (lny * ld - ln * ldy) / (ld * ld),
        norm[9] * (snx * sd - sn * sdx) / (sd * sd),
        norm[9] * (sny * sd - sn * sdy) / (sd * sd),
    )


def _image_numpy(norm: np.ndarray, coef: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple:
    """(row, col) px of normalized ground points (x, y, z): :func:`sat2lod.rpc.kernels._image_at` over arrays."""
    return image_of(norm, *(poly_grad(coef[k], x, y, z)[0] for k in range(4)))


def _project_numpy(
    lon: np.ndarray, lat: np.ndarray, h: np.ndarray, norm: np.ndarray, coef: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sat2lod.rpc.kernels.project_points` in NumPy (same arguments, same bits)."""
    x = (lon - norm[0]) / norm[1]
    y = (lat - norm[2]) / norm[3]
    z = (h - norm[4]) / norm[5]
    with np.errstate(all="ignore"):
        return _image_numpy(norm, coef, x, y, z)


def _localize_numpy(
    row: np.ndarray,
    col: np.ndarray,
    h: np.ndarray,
    norm: np.ndarray,
    coef: np.ndarray,
    iters: int,
    tol_px: float,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sat2lod.rpc.kernels.localize_points` in NumPy (same arguments, same bits): every point takes the
    kernel's Newton steps and stops where the kernel's loop stops."""
    n = row.shape[0]
    x = np.zeros(n)
    y = np.zeros(n)
    ok = np.zeros(n, bool)
    active = np.arange(n)
    with np.errstate(all="ignore"):
        z = (h - norm[4]) / norm[5]
        for _ in range(iters):
            if not active.size:
                break
            xa, ya, za = x[active], y[active], z[active]
            g = [poly_grad(coef[k], xa, ya, za) for k in range(4)]
            pr, pc = image_of(norm, g[0][0], g[1][0], g[2][0], g[3][0])
            er = row[active] - pr
            ec = col[active] - pc
            converged = np.abs(er) + np.abs(ec) < tol_px
            ok[active[converged]] = True
            a, b, c, d = image_jacobian(norm, *g)
            det = a * d - b * c
            step = ~converged & (det != 0.0)
            x[active[step]] = xa[step] + ((d * er - b * ec) / det)[step]
            y[active[step]] = ya[step] + ((-c * er + a * ec) / det)[step]
            active = active[step]
        # the kernel accepts a last step that converged below 1e-3 px (float noise on huge scenes)
        late = np.flatnonzero(~ok)
        if late.size:
            pr, pc = _image_numpy(norm, coef, x[late], y[late], z[late])
            ok[late] = np.abs(row[late] - pr) + np.abs(col[late] - pc) < 1e-3
        lon = np.where(ok, norm[0] + norm[1] * x, np.nan)
        lat = np.where(ok, norm[2] + norm[3] * y, np.nan)
    return lon, lat


def _fit_ratio(
    m: np.ndarray, target: np.ndarray, reg: float, iters: int = 10
) -> tuple[np.ndarray, np.ndarray]:
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


def fit_rpc(
    lon: np.ndarray, lat: np.ndarray, h: np.ndarray, row: np.ndarray, col: np.ndarray, reg: float = 1e-10
) -> RPCModel:
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
    return RPCModel(
        line_off=r_o,
        samp_off=c_o,
        lat_off=lat_o,
        long_off=lon_o,
        height_off=h_o,
        line_scale=r_s,
        samp_scale=c_s,
        lat_scale=lat_s,
        long_scale=lon_s,
        height_scale=h_s,
        line_num_coeff=ln,
        line_den_coeff=ld,
        samp_num_coeff=sn,
        samp_den_coeff=sd,
    )


# ---------------------------------------------------------------------------------------- validation
class RPCValidationError(ValueError):
    """An RPC model is unusable; ``field`` names the bad field (``line_den_coeff[3]``, ``lat_scale``...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


#: plausible magnitude of each normalization value (degrees, metres, pixels); beyond it the model is garbage
_NORM_LIMITS = {
    "lat_off": 90.0,
    "long_off": 360.0,
    "height_off": 1e5,
    "line_off": 1e7,
    "samp_off": 1e7,
    "lat_scale": 90.0,
    "long_scale": 360.0,
    "height_scale": 1e5,
    "line_scale": 1e7,
    "samp_scale": 1e7,
}
_COEFFS = ("line_num_coeff", "line_den_coeff", "samp_num_coeff", "samp_den_coeff")
#: largest |coefficient| of a normalized RPC00B polynomial accepted (real models: below ~10)
COEFF_LIMIT = 1e6


def _check_denominator(name: str, den: np.ndarray) -> None:
    if den.min() * den.max() <= 0.0 or np.abs(den).min() < 1e-6 * np.abs(den).max():
        raise RPCValidationError(
            name,
            f"the denominator reaches 0 over the model's domain (values {den.min():.3g} .. {den.max():.3g})",
        )


def validate_rpc(
    model: RPCModel, rows: int | None = None, cols: int | None = None, tol_px: float = 0.01
) -> None:
    """Check that ``model`` is usable over its image: the one RPC check of every reader.

    Checks, in order: every offset, scale and coefficient is finite and of plausible magnitude; no scale is 0;
    both denominators keep one sign away from 0 over the normalized validity cube [-1, 1]^3 (5^3 points); on a
    7 x 7 grid of image points (``rows`` x ``cols`` pixels, or the model's own line/sample validity range
    when None) at three heights (``height_off`` - ``height_scale``, ``height_off``, + ``height_scale``), the
    localization converges, both denominators keep one sign away from 0 at the ground points found, and
    ``project(localize(row, col, h))`` returns (row, col) within ``tol_px`` pixels.

    Raises:
        RPCValidationError: naming the bad field (or the failed check) and the values.
    """
    for name, limit in _NORM_LIMITS.items():
        v = float(getattr(model, name))
        if not np.isfinite(v):
            raise RPCValidationError(name, f"{v} is not a finite number")
        if abs(v) > limit:
            raise RPCValidationError(name, f"{v:g} is out of range (|value| <= {limit:g})")
        if name.endswith("_scale") and v == 0.0:
            raise RPCValidationError(name, "is 0 (the normalization divides by it)")
    for name in _COEFFS:
        c = np.asarray(getattr(model, name), float)
        if c.shape != (20,):
            raise RPCValidationError(name, f"has {c.size} values, 20 expected")
        bad = np.flatnonzero(~np.isfinite(c) | (np.abs(c) > COEFF_LIMIT))
        if bad.size:
            i = int(bad[0])
            raise RPCValidationError(
                f"{name}[{i}]", f"{c[i]} is not a finite number of plausible size (|c| <= {COEFF_LIMIT:g})"
            )
        if not np.any(c):
            raise RPCValidationError(name, "all 20 coefficients are 0")
    cube = np.linspace(-1.0, 1.0, 5)
    x, y, z = (a.ravel() for a in np.meshgrid(cube, cube, cube, indexing="ij"))
    m = monomials(x, y, z)
    for name in ("line_den_coeff", "samp_den_coeff"):
        _check_denominator(name, m @ np.asarray(getattr(model, name), float))
    if rows is None or cols is None:
        r_lo, r_hi = model.line_off - abs(model.line_scale), model.line_off + abs(model.line_scale)
        c_lo, c_hi = model.samp_off - abs(model.samp_scale), model.samp_off + abs(model.samp_scale)
    else:
        r_lo, r_hi, c_lo, c_hi = 0.0, max(rows - 1.0, 0.0), 0.0, max(cols - 1.0, 0.0)
    r, c, h = np.meshgrid(
        np.linspace(r_lo, r_hi, 7),
        np.linspace(c_lo, c_hi, 7),
        model.height_off + abs(model.height_scale) * np.array([-1.0, 0.0, 1.0]),
        indexing="ij",
    )
    r, c, h = r.ravel(), c.ravel(), h.ravel()
    with np.errstate(all="ignore"):
        lon, lat = model.localize(r, c, h)
    bad = ~(np.isfinite(lon) & np.isfinite(lat))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise RPCValidationError(
            "localization",
            f"does not converge at pixel (row {r[i]:.1f}, col {c[i]:.1f}), height {h[i]:.1f} m "
            f"({int(bad.sum())} of {bad.size} test points): inconsistent coefficients",
        )
    m = monomials(
        (lon - model.long_off) / model.long_scale,
        (lat - model.lat_off) / model.lat_scale,
        (h - model.height_off) / model.height_scale,
    )
    for name in ("line_den_coeff", "samp_den_coeff"):
        _check_denominator(name, m @ np.asarray(getattr(model, name), float))
    with np.errstate(all="ignore"):
        r2, c2 = model.project(lon, lat, h)
    err = np.hypot(r2 - r, c2 - c)
    if not np.all(err <= tol_px):
        i = int(np.nanargmax(np.where(np.isfinite(err), err, np.inf)))
        raise RPCValidationError(
            "round trip",
            f"project(localize(row {r[i]:.1f}, col {c[i]:.1f}, h {h[i]:.1f} m)) is {err[i]:.3g} px away "
            f"(tolerance {tol_px} px): inconsistent coefficients",
        )
