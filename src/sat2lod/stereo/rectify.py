"""Per-tile stereo rectification from a local affine approximation of the two RPC cameras.

Why affine (s2p-style) rather than epipolar resampling grids (CARS): over one tile (a few hundred metres seen
from ~700 km) an RPC camera is affine to well below 0.05 px (checked by :func:`rectification_residual` and the
tests), so each image is rectified by a single 2x3 affine map. That makes rectification a closed-form
linear-algebra step, the warp a single bicubic resampling, and the disparity exactly proportional to the height
(the "horizontal plane -> constant disparity" property below), which gives the disparity range straight from the
height range; triangulation then goes back to the *exact* RPCs, so the approximation never reaches the heights.

Construction. Ground points are expressed in a local metric frame ``q = (east, north, up)`` (metres, tangent at
the tile centre). The affine cameras are ``p_i = A_i q + b_i`` with ``p = (col, row)``. We look for rectifying
affine maps ``x_i' = v_i . p_i + c_i`` and ``y_i' = u_i . p_i + e_i`` such that

1. rows agree for every ground point: ``u_1^T A_1 = u_2^T A_2`` (the null space of ``[A_1^T, -A_2^T]``);
   ``|u_1| = 1`` and ``v_1`` is ``u_1`` turned by 90 degrees, so image 1 is only rotated (no resampling loss);
2. the disparity ``x_2' - x_1'`` depends on the height only: ``v_2^T A_2 - v_1^T A_1 = alpha * (0, 0, 1)``
   (3 linear equations in ``v_2`` and ``alpha``), so ``d = alpha * (h - h_ref)`` up to the constant chosen by
   ``c_2``: no shear, no horizontal-plane disparity gradient, and ``alpha`` (px per metre) gives the range.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numba
import numpy as np
from pyproj import CRS, Transformer

from sat2lod.rpc import RPCModel

log = logging.getLogger(__name__)


@dataclass
class LocalFrame:
    """Local tangent metric frame: q = ((lon - lon0) * kx, (lat - lat0) * ky, h - h0) in metres."""

    lon0: float
    lat0: float
    h0: float
    kx: float
    ky: float

    @classmethod
    def at(cls, lon0: float, lat0: float, h0: float) -> LocalFrame:
        lat = np.radians(lat0)
        # WGS84 meridian / parallel radii of curvature (metres per degree)
        a, e2 = 6378137.0, 6.69437999014e-3
        w = np.sqrt(1 - e2 * np.sin(lat) ** 2)
        m = a * (1 - e2) / w**3
        n = a / w
        return cls(
            lon0, lat0, h0, float(np.radians(1) * (n + h0) * np.cos(lat)), float(np.radians(1) * (m + h0))
        )

    def to_local(self, lon: np.ndarray, lat: np.ndarray, h: np.ndarray) -> np.ndarray:
        """(N,) lon/lat (deg), h (m) -> (N, 3) local metres."""
        return np.stack(
            [
                (np.asarray(lon) - self.lon0) * self.kx,
                (np.asarray(lat) - self.lat0) * self.ky,
                np.asarray(h) - self.h0,
            ],
            axis=-1,
        )

    def to_geo(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.lon0 + q[..., 0] / self.kx, self.lat0 + q[..., 1] / self.ky, self.h0 + q[..., 2]


def fit_affine_camera(
    rpc: RPCModel, frame: LocalFrame, lon: np.ndarray, lat: np.ndarray, h: np.ndarray
) -> tuple[np.ndarray, float]:
    """Least-squares affine camera over ground samples: returns (2, 4) ``[A | b]`` with p = (col, row), and the
    max fit residual (px)."""
    row, col = rpc.project(lon, lat, h)
    q = frame.to_local(lon, lat, h)
    design = np.hstack([q, np.ones((q.shape[0], 1))])
    p = np.stack([col, row], axis=1)
    sol, *_ = np.linalg.lstsq(design, p, rcond=None)
    res = float(np.max(np.linalg.norm(design @ sol - p, axis=1)))
    return sol.T, res


@dataclass
class PairRectification:
    """Affine rectification of one pair over one tile.

    Attributes:
        frame: local metric frame of the affine fits.
        cam1, cam2: (2, 4) affine cameras ``p = [A | b] (q, 1)``, p = (col, row) in each image.
        rect1, rect2: (2, 3) maps image pixel (col, row, 1) -> rectified array coordinates (x, y) of the left
            (image 1) and right (image 2) rectified arrays.
        shape1, shape2: (H, W) of the two rectified arrays (same H, rows correspond).
        alpha: disparity per metre of height (px/m); ``d(h) = alpha * (h - h_ref) + d_ref``.
        h_ref, d_ref: height (m) and disparity (px) of the reference plane.
        dmin, dmax: integer disparity range of the height range (right x = left x + d).
        fit_residual_px: max residual of the affine camera fits over the tile volume.
    """

    frame: LocalFrame
    cam1: np.ndarray
    cam2: np.ndarray
    rect1: np.ndarray
    rect2: np.ndarray
    shape1: tuple[int, int]
    shape2: tuple[int, int]
    alpha: float
    h_ref: float
    d_ref: float
    dmin: int
    dmax: int
    fit_residual_px: float

    def disparity_of_height(self, h: np.ndarray | float) -> np.ndarray:
        return self.alpha * (np.asarray(h, float) - self.h_ref) + self.d_ref

    def height_of_disparity(self, d: np.ndarray | float) -> np.ndarray:
        return (np.asarray(d, float) - self.d_ref) / self.alpha + self.h_ref

    @staticmethod
    def _apply(m: np.ndarray, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return m[0, 0] * col + m[0, 1] * row + m[0, 2], m[1, 0] * col + m[1, 1] * row + m[1, 2]

    @staticmethod
    def _inverse(m: np.ndarray) -> np.ndarray:
        full = np.vstack([m, [0.0, 0.0, 1.0]])
        return np.linalg.inv(full)[:2]

    def image_to_rect(self, which: int, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image pixel (col, row) of image 1 or 2 -> rectified (x, y)."""
        return self._apply(self.rect1 if which == 1 else self.rect2, col, row)

    def rect_to_image(self, which: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rectified (x, y) -> image pixel (col, row) of image 1 or 2."""
        return self._apply(self._inverse(self.rect1 if which == 1 else self.rect2), x, y)


def tile_lonlat_grid(
    bounds: tuple[float, float, float, float], epsg: int, n: int = 7
) -> tuple[np.ndarray, np.ndarray]:
    """(n*n,) lon/lat of a regular grid over projected ``bounds`` (xmin, ymin, xmax, ymax) of EPSG ``epsg``."""
    xs = np.linspace(bounds[0], bounds[2], n)
    ys = np.linspace(bounds[1], bounds[3], n)
    gx, gy = np.meshgrid(xs, ys)
    tr = Transformer.from_crs(CRS.from_epsg(epsg), CRS.from_epsg(4326), always_xy=True)
    lon, lat = tr.transform(gx.ravel(), gy.ravel())
    return np.asarray(lon), np.asarray(lat)


def rectify_pair(
    rpc1: RPCModel,
    rpc2: RPCModel,
    bounds: tuple[float, float, float, float],
    epsg: int,
    height_range: tuple[float, float],
    image1_shape: tuple[int, int],
    image2_shape: tuple[int, int],
    margin_px: int = 8,
    disparity_range: tuple[float, float] | None = None,
) -> PairRectification:
    """Affine rectification of the pair over a ground tile.

    Args:
        rpc1, rpc2: RPC models in the images' own array pixel coordinates (image 1 = reference).
        bounds: tile (xmin, ymin, xmax, ymax) in EPSG ``epsg`` (metres), margin included.
        height_range: (hmin, hmax) ellipsoidal metres of the terrain in the tile.
        image1_shape, image2_shape: (rows, cols) of the images, to clip the rectified grid to image 1.
        margin_px: extra rectified pixels around the tile footprint (census window, interpolation).
        disparity_range: (dmin, dmax) to use instead of the one implied by ``height_range`` (e.g. from
            keypoints), in the disparity convention of this rectification.
    """
    hmin, hmax = float(min(height_range)), float(max(height_range))
    if hmax - hmin < 1.0:
        hmin, hmax = hmin - 0.5, hmax + 0.5
    lon, lat = tile_lonlat_grid(bounds, epsg)
    h_ref = 0.5 * (hmin + hmax)
    frame = LocalFrame.at(float(lon.mean()), float(lat.mean()), h_ref)
    hs = np.linspace(hmin, hmax, 5)
    glon, glat, gh = (np.repeat(lon, hs.size), np.repeat(lat, hs.size), np.tile(hs, lon.size))
    cam1, res1 = fit_affine_camera(rpc1, frame, glon, glat, gh)
    cam2, res2 = fit_affine_camera(rpc2, frame, glon, glat, gh)
    a1, b1 = cam1[:, :3], cam1[:, 3]
    a2, b2 = cam2[:, :3], cam2[:, 3]
    # 1. row direction: u1^T A1 = u2^T A2
    _, _, vt = np.linalg.svd(np.hstack([a1.T, -a2.T]))
    u = vt[-1]
    u1, u2 = u[:2], u[2:]
    s = np.linalg.norm(u1)
    u1, u2 = u1 / s, u2 / s
    if u1[1] < 0:  # rectified y grows with the image row
        u1, u2 = -u1, -u2
    v1 = np.array([u1[1], -u1[0]])  # rotation: x' = cos*x - sin*y with u1 = (sin, cos)
    # 2. v2^T A2 - alpha e_h^T = v1^T A1
    mat = np.hstack([a2.T, -np.array([[0.0], [0.0], [1.0]])])
    sol = np.linalg.solve(mat, a1.T @ v1)
    v2, alpha = sol[:2], float(sol[2])
    if alpha < 0:  # keep disparity growing with height: mirror both x axes
        v1, v2, alpha = -v1, -v2, -alpha
    # rectified coordinates before translation: x1' = v1.p1, y' = u1.p1; x2' = v2.p2 + cx2, y2' = u2.p2 + cy2
    cy2 = u1 @ b1 - u2 @ b2
    cx2 = v1 @ b1 - v2 @ b2  # so that x2' - x1' = alpha * (h - h_ref) exactly for the affine cameras
    # footprint of the tile volume in rectified image 1
    r1, c1 = rpc1.project(glon, glat, gh)
    x1 = v1[0] * c1 + v1[1] * r1
    y1 = u1[0] * c1 + u1[1] * r1
    # clip to the rectified footprint of image 1
    corners_r = np.array([0, 0, image1_shape[0] - 1, image1_shape[0] - 1], float)
    corners_c = np.array([0, image1_shape[1] - 1, 0, image1_shape[1] - 1], float)
    fx = v1[0] * corners_c + v1[1] * corners_r
    fy = u1[0] * corners_c + u1[1] * corners_r
    x0 = max(np.floor(x1.min()) - margin_px, np.floor(fx.min()))
    xe = min(np.ceil(x1.max()) + margin_px, np.ceil(fx.max()))
    y0 = max(np.floor(y1.min()) - margin_px, np.floor(fy.min()))
    ye = min(np.ceil(y1.max()) + margin_px, np.ceil(fy.max()))
    if xe <= x0 + 16 or ye <= y0 + 16:
        raise ValueError("the tile is not seen by the reference image (empty rectified footprint)")
    w1, hh = int(xe - x0) + 1, int(ye - y0) + 1
    if disparity_range is None:
        dlo, dhi = alpha * (hmin - h_ref), alpha * (hmax - h_ref)
        dlo, dhi = dlo - 2.0, dhi + 2.0
    else:
        dlo, dhi = disparity_range
    dmin, dmax = int(np.floor(dlo)), int(np.ceil(dhi))
    # right array starts at x = x0 + dmin: local disparities are then in [0, dmax - dmin]
    rect1 = np.array([[v1[0], v1[1], -x0], [u1[0], u1[1], -y0]])
    ox2 = x0 + dmin
    rect2 = np.array([[v2[0], v2[1], cx2 - ox2], [u2[0], u2[1], cy2 - y0]])
    w2 = w1 + (dmax - dmin)
    pr = PairRectification(
        frame=frame,
        cam1=cam1,
        cam2=cam2,
        rect1=rect1,
        rect2=rect2,
        shape1=(hh, w1),
        shape2=(hh, w2),
        alpha=alpha,
        h_ref=h_ref,
        d_ref=float(-dmin),
        dmin=0,
        dmax=dmax - dmin,
        fit_residual_px=max(res1, res2),
    )
    log.info(
        "rectification: %dx%d px, alpha %.3f px/m, disparities [%d, %d], affine fit residual %.3f px",
        w1,
        hh,
        alpha,
        0,
        dmax - dmin,
        pr.fit_residual_px,
    )
    return pr


def rectification_residual(
    pr: PairRectification, rpc1: RPCModel, rpc2: RPCModel, lon: np.ndarray, lat: np.ndarray, h: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For ground points: (row mismatch y2' - y1', disparity error x2' - x1' - d(h)) in px, with the exact RPCs."""
    r1, c1 = rpc1.project(lon, lat, h)
    r2, c2 = rpc2.project(lon, lat, h)
    x1, y1 = pr.image_to_rect(1, c1, r1)
    x2, y2 = pr.image_to_rect(2, c2, r2)
    return y2 - y1, (x2 - x1) - pr.disparity_of_height(h)


# ------------------------------------------------------------------------------------------------ warp
@numba.njit(cache=True, inline="always")
def _cubic(t: float) -> tuple[float, float, float, float]:
    # Keys cubic convolution, a = -0.5
    t2 = t * t
    t3 = t2 * t
    w0 = -0.5 * t3 + t2 - 0.5 * t
    w1 = 1.5 * t3 - 2.5 * t2 + 1.0
    w2 = -1.5 * t3 + 2.0 * t2 + 0.5 * t
    w3 = 0.5 * t3 - 0.5 * t2
    return w0, w1, w2, w3


@numba.njit(cache=True, parallel=True)
def _warp(img: np.ndarray, inv: np.ndarray, row0: float, col0: float, h: int, w: int) -> np.ndarray:
    ih, iw = img.shape
    out = np.full((h, w), np.nan, np.float32)
    for y in numba.prange(h):
        for x in range(w):
            col = inv[0, 0] * x + inv[0, 1] * y + inv[0, 2] - col0
            row = inv[1, 0] * x + inv[1, 1] * y + inv[1, 2] - row0
            ci = int(np.floor(col))
            ri = int(np.floor(row))
            if ci < 1 or ri < 1 or ci + 2 >= iw or ri + 2 >= ih:
                continue
            wc = _cubic(col - ci)
            wr = _cubic(row - ri)
            acc = 0.0
            for j in range(4):
                line = 0.0
                for i in range(4):
                    line += wc[i] * img[ri - 1 + j, ci - 1 + i]
                acc += wr[j] * line
            out[y, x] = acc
    return out


def warp_affine(
    img: np.ndarray, rect: np.ndarray, shape: tuple[int, int], origin: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """Resample ``img`` (bicubic) on the rectified grid of ``rect`` (image pixel -> rectified).

    Args:
        img: (rows, cols) window of the image, float; NaN propagates.
        rect: (2, 3) map from full-image pixel (col, row, 1) to rectified (x, y).
        shape: (H, W) of the rectified array.
        origin: (row0, col0) of ``img`` in the full image (window offset).
    Returns:
        (H, W) float32, NaN outside the image.
    """
    inv = PairRectification._inverse(rect)
    return _warp(
        np.ascontiguousarray(img, np.float32),
        inv,
        float(origin[0]),
        float(origin[1]),
        int(shape[0]),
        int(shape[1]),
    )


def image_window(
    rect: np.ndarray, shape: tuple[int, int], image_shape: tuple[int, int], pad: int = 4
) -> tuple[int, int, int, int] | None:
    """(row0, col0, rows, cols) of the image window that the rectified grid samples (None if outside)."""
    inv = PairRectification._inverse(rect)
    xs = np.array([0, shape[1] - 1, 0, shape[1] - 1], float)
    ys = np.array([0, 0, shape[0] - 1, shape[0] - 1], float)
    col = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    row = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    r0 = max(0, int(np.floor(row.min())) - pad)
    c0 = max(0, int(np.floor(col.min())) - pad)
    r1 = min(image_shape[0], int(np.ceil(row.max())) + pad + 1)
    c1 = min(image_shape[1], int(np.ceil(col.max())) + pad + 1)
    if r1 <= r0 or c1 <= c0:
        return None
    return r0, c0, r1 - r0, c1 - c0
