"""LOD2 roof fitting: parametric primitives (flat, shed, gable, hip, pyramid) and a multi-plane fallback.

Each primitive is written in the building frame (s along the long side of the footprint's minimum rotated
rectangle, t across it, origin at the rectangle centre, half sizes hl >= hw) as z = e + k * f(s, t) with a
known shape function f, so fitting is a robust linear least squares in (e, k):

- flat:    f = 0
- gable_s: f = hw - |t|              (ridge along s)
- gable_t: f = hl - |s|              (ridge along t)
- hip:     f = min(hw - |t|, hl - |s|)
- pyramid: f = min((hw - |t|) / hw, (hl - |s|) / hl) * hw
- shed:    a free plane z = a + b x + c y.

Stereo DSM noise is spatially correlated, so the selection works with the roof's own noise level (NMAD of
the residuals) and an effective sample count N_eff = N / correlation area: sloped primitives need a slope
significant against that noise, and the model with the lowest effective-sample BIC wins, a more complex one
only by a margin (see :func:`fit_roof`). When even the best primitive leaves a robust residual scale above
``max_rmse_m``, the roof is segmented into planes (sequential RANSAC + raster regions), each plane getting
the part of the footprint where it is the closest, and kept only if it wins by the same BIC.

A stereo DSM is blurred across the walls: near the outline it runs below the roof by a fraction of the
wall's height (a flat roof looks domed, a shed's high side sinks most). With ``RoofParams.edge_ramp`` (that
fraction per distance from the outline, calibrated once per scene by :func:`calibrate_edge_ramp`) and the
ground height, every primitive predicts that blur: z = roof - w(d) (roof_edge - ground), still linear in the
primitive's parameters, which stay those of the unblurred roof. Beyond a wall shared with another building
the DSM is blurred towards that roof instead (its level replaces the ground; the DSM rises towards a taller
neighbour).

Heights are absolute (datum of the DSM), coordinates map metres (projected CRS).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field, replace

import numpy as np
import shapely
from rasterio import features
from rasterio.transform import Affine
from scipy import ndimage
from shapely import affinity
from shapely.geometry import Polygon, shape
from shapely.geometry.base import BaseGeometry

from sat2lod.schema import defaults

_LOD = defaults("lod")  # defaults of config section lod

log = logging.getLogger(__name__)

#: width (m) of the distance-from-outline bins of RoofParams.edge_ramp
RAMP_STEP_M = 0.25


@dataclass
class RoofFit:
    """A fitted roof: type, faces (a partition of the footprint) and their planes z = a + b*x + c*y."""

    roof_type: str  # flat | shed | gable | hip | pyramid | multiplane
    faces: list[Polygon]
    planes: list[tuple[float, float, float]]
    eave: float  # absolute eave height (m): lowest roof height on the footprint outline
    ridge: float  # absolute highest roof height (m)
    rmse: float  # RMS residual of the DSM points (m)
    n_points: int
    scores: dict[str, float] = field(default_factory=dict)
    noise_m: float = float("nan")  # robust DSM noise on the roof (NMAD of the best primitive's residuals, m)
    n_eff: float = float("nan")  # effective number of independent DSM samples (noise correlation removed)


@dataclass(frozen=True)
class RoofParams:
    """Roof fitting settings.

    Attributes:
        max_rmse_m: above this RMS residual no primitive is accepted and the roof is segmented into planes.
        min_rise_m: a sloped primitive must rise at least this much above its eaves (else it is flat).
        plane_tol_m: least RANSAC inlier distance of the plane segmentation (m); widened to twice the DSM
            noise ``noise_m`` where that is larger.
        noise_m: DSM noise on roofs (NMAD, m) for the plane segmentation's inlier band; None: the roof's own
            (NMAD of its best primitive's residuals, which model misfit inflates on the very roofs that are
            segmented). run_lod2 sets the median over the scene's roofs (:func:`roof_noise`).
        normal_tol_deg: a RANSAC inlier's local surface normal (plane fitted to the DSM within
            ``normal_radius_px``) must be within this angle of the plane's normal; else a horizontal plane
            through a pitched roof collects a contour band of every face and beats each face under noise.
        normal_radius_px: half-size of the square DSM window of the local normals (pixels).
        max_planes: most planes in a segmented roof.
        edge_buffer_m: DSM pixels closer than this to the outline are not used (mixed with walls/ground).
        min_slope_deg: sloped primitives (shed, gable, hip, pyramid) must be at least this steep, else the roof
            is flat (a large flat roof under correlated DSM noise or blurred edges tilts by a fraction of a
            degree yet rises by decimetres).
        square_tol: a pyramid is only tried on footprints whose rectangle sides differ by at most this
            fraction (a hip is not tried on exact squares, where it is a pyramid).
        min_slope_z: a sloped primitive's slope must be at least this many standard errors, the standard
            error taken from the roof's own residual noise and its effective (decorrelated) sample count.
        bic_margin: a model with more parameters must lower the effective-sample BIC by at least this much
            against a simpler admissible one (2: "positive evidence" on Kass & Raftery's scale).
        corr_area_px: correlation area of the DSM noise (pixels per independent sample); None: estimated on
            each roof from its residuals (:func:`roof_noise`). run_lod2 sets the median over the scene's
            roofs, which model misfit on a few roofs does not bias.
        edge_ramp: DSM edge spread: how far the DSM runs below the roof at distance ``i * RAMP_STEP_M`` to
            ``(i + 1) * RAMP_STEP_M`` from the outline, as a fraction of the roof edge's height above the ground;
            () = none (exact DSM). Used only when the fit is given the ground height.
        ortho_min_gain: with an ortho and no gable/hip/pyramid admitted by the DSM alone, a ridged primitive
            whose DSM slope is positive but not significant is still admitted when its face layout explains
            the roof brightness better than one uniform face by at least this much (image BIC,
            :func:`ortho_face_bic`; 6 is "strong" evidence on Kass & Raftery's scale); 0 disables that rescue
            (the ortho BIC still enters the combined score).
    """

    max_rmse_m: float = _LOD["roof_max_rmse_m"]
    min_rise_m: float = _LOD["roof_min_rise_m"]
    plane_tol_m: float = _LOD["plane_tol_m"]
    normal_tol_deg: float = 20.0
    normal_radius_px: int = 3
    max_planes: int = _LOD["max_planes"]
    edge_buffer_m: float = _LOD["edge_buffer_m"]
    min_slope_deg: float = _LOD["roof_min_slope_deg"]
    square_tol: float = 0.15
    min_slope_z: float = _LOD["roof_min_slope_z"]
    bic_margin: float = _LOD["roof_bic_margin"]
    corr_area_px: float | None = None
    noise_m: float | None = None
    ortho_min_gain: float = _LOD["roof_ortho_min_gain"]
    edge_ramp: tuple[float, ...] = ()


def building_frame(footprint: Polygon) -> tuple[float, float, float, float, float]:
    """(cx, cy, angle_rad, hl, hw): minimum rotated rectangle, s axis along its long side, hl >= hw."""
    rect = np.asarray(footprint.minimum_rotated_rectangle.exterior.coords)[:4]
    e1, e2 = rect[1] - rect[0], rect[2] - rect[1]
    l1, l2 = float(np.hypot(*e1)), float(np.hypot(*e2))
    c = rect.mean(axis=0)
    if l1 >= l2:
        ang = math.atan2(e1[1], e1[0])
        hl, hw = l1 / 2, l2 / 2
    else:
        ang = math.atan2(e2[1], e2[0])
        hl, hw = l2 / 2, l1 / 2
    return float(c[0]), float(c[1]), ang, hl, hw


def _local(
    x: np.ndarray, y: np.ndarray, frame: tuple[float, float, float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    cx, cy, ang, _, _ = frame
    dx, dy = x - cx, y - cy
    return dx * math.cos(ang) + dy * math.sin(ang), -dx * math.sin(ang) + dy * math.cos(ang)


def _shape_fn(kind: str, s: np.ndarray, t: np.ndarray, hl: float, hw: float) -> np.ndarray:
    if kind == "flat":
        return np.zeros_like(s)
    if kind == "gable_s":
        return hw - np.abs(t)
    if kind == "gable_t":
        return hl - np.abs(s)
    if kind == "hip":
        return np.minimum(hw - np.abs(t), hl - np.abs(s))
    if kind == "pyramid":
        return np.minimum((hw - np.abs(t)) / hw, (hl - np.abs(s)) / hl) * hw
    raise ValueError(kind)


def _huber_lstsq(
    a: np.ndarray, z: np.ndarray, delta: float = 0.5, iters: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """IRLS with Huber weights; returns (coefficients, residuals)."""
    w = np.ones(len(z))
    coef = np.zeros(a.shape[1])
    for _ in range(iters):
        sw = np.sqrt(w)
        coef, *_ = np.linalg.lstsq(a * sw[:, None], z * sw, rcond=None)
        r = z - a @ coef
        ar = np.abs(r)
        w = np.where(ar <= delta, 1.0, delta / np.maximum(ar, 1e-12))
    return coef, z - a @ coef


def _plane_map(
    frame: tuple[float, float, float, float, float], e: float, ks: float, kt: float
) -> tuple[float, float, float]:
    """Plane z = e + ks*s + kt*t in the frame -> (a, b, c) with z = a + b*x + c*y."""
    cx, cy, ang, _, _ = frame
    ca, sa = math.cos(ang), math.sin(ang)
    b = ks * ca - kt * sa
    c = ks * sa + kt * ca
    return e - b * cx - c * cy, b, c


def _regions(
    kind: str,
    frame: tuple[float, float, float, float, float],
    e: float,
    k: float,
) -> list[tuple[Polygon, tuple[float, float, float]]]:
    """Regions of the frame plane (large polygons, map coordinates) with the plane of each."""
    cx, cy, ang, hl, hw = frame
    R = 10 * (hl + hw) + 100.0
    if kind == "gable_s":
        loc = [
            (Polygon([(-R, 0), (R, 0), (R, R), (-R, R)]), (e + k * hw, 0.0, -k)),
            (Polygon([(-R, -R), (R, -R), (R, 0), (-R, 0)]), (e + k * hw, 0.0, k)),
        ]
    elif kind == "gable_t":
        loc = [
            (Polygon([(0, -R), (R, -R), (R, R), (0, R)]), (e + k * hl, -k, 0.0)),
            (Polygon([(-R, -R), (0, -R), (0, R), (-R, R)]), (e + k * hl, k, 0.0)),
        ]
    elif kind == "hip":
        d = hl - hw
        loc = [
            (Polygon([(-d, 0), (d, 0), (d + R, R), (-d - R, R)]), (e + k * hw, 0.0, -k)),
            (Polygon([(-d - R, -R), (d + R, -R), (d, 0), (-d, 0)]), (e + k * hw, 0.0, k)),
            (Polygon([(d, 0), (d + R, -R), (d + R, R)]), (e + k * hl, -k, 0.0)),
            (Polygon([(-d, 0), (-d - R, R), (-d - R, -R)]), (e + k * hl, k, 0.0)),
        ]
    elif kind == "pyramid":
        a, b = R * hl, R * hw
        kk = k * hw
        loc = [
            (Polygon([(0, 0), (a, b), (-a, b)]), (e + kk, 0.0, -kk / hw)),
            (Polygon([(0, 0), (-a, -b), (a, -b)]), (e + kk, 0.0, kk / hw)),
            (Polygon([(0, 0), (a, -b), (a, b)]), (e + kk, -kk / hl, 0.0)),
            (Polygon([(0, 0), (-a, b), (-a, -b)]), (e + kk, kk / hl, 0.0)),
        ]
    else:
        raise ValueError(kind)
    out = []
    for poly, (e0, ks, kt) in loc:
        p = affinity.translate(affinity.rotate(poly, ang, origin=(0, 0), use_radians=True), cx, cy)
        out.append((p, _plane_map(frame, e0, ks, kt)))
    return out


def _partition(
    footprint: Polygon,
    regions: list[tuple[Polygon, tuple[float, float, float]]],
) -> tuple[list[Polygon], list[tuple[float, float, float]]]:
    faces, planes = [], []
    for reg, plane in regions:
        inter = footprint.intersection(reg)
        for g in shapely.get_parts(inter):
            if g.geom_type == "Polygon" and g.area > 1e-4:
                faces.append(g)
                planes.append(plane)
    return faces, planes


def _plane_z(plane: tuple[float, float, float], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return plane[0] + plane[1] * x + plane[2] * y


def _grid_rc(x: np.ndarray, y: np.ndarray, transform: Affine | None) -> tuple[np.ndarray, np.ndarray]:
    """Integer (row, col) of points on their pixel grid: from ``transform``, else from the point spacing."""
    if transform is not None:
        col, row = ~transform @ (x, y)
        return np.floor(row).astype(int), np.floor(col).astype(int)
    out = []
    for v in (y, x):
        u = np.unique(np.round(v, 6))
        d = np.diff(u)
        step = float(d[d > 1e-6].min()) if (d > 1e-6).any() else 1.0
        out.append(np.round((v - v.min()) / step).astype(int))
    return out[0], out[1]


def noise_correlation_area(row: np.ndarray, col: np.ndarray, r: np.ndarray) -> tuple[float, float]:
    """Lag-1 autocorrelation of residuals on their pixel grid and the implied correlation area (pixels).

    Stereo DSM errors are spatially correlated (matching windows, SGM smoothing, resampling), so N roof pixels
    carry far fewer than N independent samples. With a Gaussian-shaped correlation function rho(d) =
    exp(-d^2 / (2 L^2)) (d in pixels), the lag-1 value gives L^2 = -1 / (2 ln rho1), and the correlation area
    (the integral of rho over the plane, pixels per independent sample) is 2 pi L^2 = -pi / ln rho1.

    Args:
        row, col: (N,) integer pixel indices; r: (N,) residuals (m) of a roof fit.

    Returns:
        (rho1, area): rho1 in [0, 0.97]; area >= 1 pixel.
    """
    if len(r) < 4:
        return 0.0, 1.0
    r0, c0 = row.min(), col.min()
    g = np.full((row.max() - r0 + 1, col.max() - c0 + 1), np.nan)
    med = float(np.median(r))
    scale = 1.4826 * float(np.median(np.abs(r - med))) + 1e-9
    g[row - r0, col - c0] = np.clip(r - med, -3 * scale, 3 * scale)  # outliers do not set the correlation
    num = den_a = den_b = 0.0
    for a, b in ((g[:, :-1], g[:, 1:]), (g[:-1, :], g[1:, :])):
        ok = np.isfinite(a) & np.isfinite(b)
        num += float(np.sum(a[ok] * b[ok]))
        den_a += float(np.sum(a[ok] ** 2))
        den_b += float(np.sum(b[ok] ** 2))
    if den_a <= 0 or den_b <= 0:
        return 0.0, 1.0
    rho = float(np.clip(num / math.sqrt(den_a * den_b), 0.0, 0.97))
    area = -math.pi / math.log(rho) if rho > math.exp(-math.pi) else 1.0
    return rho, max(1.0, area)


def _nmad(r: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


def _robust_var(r: np.ndarray, delta: float) -> float:
    """2 x mean Huber loss: the residual variance for Gaussian residuals, outliers counted linearly."""
    ar = np.abs(r)
    loss = np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))
    return float(2 * loss.mean())


def _slope_z(a: np.ndarray, coef: np.ndarray, r: np.ndarray, idx: list[int], inflation: float) -> float:
    """Significance (in standard errors) of the coefficients ``idx`` of a linear fit, jointly (Mahalanobis
    norm); residual scale = NMAD, covariance inflated by ``inflation`` = N / N_eff for correlated noise."""
    sigma = max(_nmad(r), 1e-3)
    try:
        cov = np.linalg.inv(a.T @ a)[np.ix_(idx, idx)] * sigma**2 * inflation
        v = coef[idx]
        return float(math.sqrt(max(float(v @ np.linalg.solve(cov, v)), 0.0)))
    except np.linalg.LinAlgError:
        return 0.0


def _ramp_terms(
    footprint: Polygon,
    x: np.ndarray,
    y: np.ndarray,
    prm: RoofParams,
    walls: list[tuple[BaseGeometry, float]] | None = None,
    ground: float = float("nan"),
    memo: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Edge-spread weight w (N,) of each point (``prm.edge_ramp`` at its distance d from the nearest wall),
    that wall's nearest point (xe, ye), d (m) and the height beyond that wall (m), each (N,).

    ``walls``: parts of the outline with the height beyond each (absolute m: the ground for a free wall, the
    neighbour's roof level for a shared one; see :func:`sat2lod.lod.models.wall_parts`); None = the whole
    outline (holes included) with ``ground`` beyond it. ``memo``: see :func:`fit_roof` (the wall geometry of
    the same points is computed once; only w follows the ramp).
    """
    key = ("walls", len(x))
    if memo is not None and key in memo:
        xe, ye, d, hb = memo[key]
    else:
        xe, ye, d, hb = _wall_terms(footprint, x, y, walls, ground)
        if memo is not None:
            memo[key] = (xe, ye, d, hb)
    ramp = np.asarray(prm.edge_ramp, float)
    i = np.full(len(d), len(ramp))  # no wall (d = inf): beyond the ramp, w = 0
    near = np.isfinite(d)
    i[near] = np.floor(d[near] / RAMP_STEP_M).astype(int)
    w = np.where(i < len(ramp), ramp[np.clip(i, 0, len(ramp) - 1)], 0.0)
    return w, xe, ye, d, hb


def _wall_terms(
    footprint: Polygon,
    x: np.ndarray,
    y: np.ndarray,
    walls: list[tuple[BaseGeometry, float]] | None,
    ground: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The geometry of :func:`_ramp_terms`: (xe, ye, d, hb), each (N,), independent of the ramp (no wall:
    the points themselves, d = inf, hb = NaN)."""
    pts = shapely.points(x, y)
    parts = [(footprint.boundary, ground)] if walls is None else [(g, h) for g, h in walls if not g.is_empty]
    n = len(x)
    if not parts:
        return x, y, np.full(n, np.inf), np.full(n, np.nan)
    dist = np.array([shapely.distance(pts, g) for g, _ in parts])
    k = np.argmin(dist, axis=0)
    d = dist[k, np.arange(n)]
    xe, ye, hb = np.empty(n), np.empty(n), np.empty(n)
    for j, (g, h) in enumerate(parts):
        sel = k == j
        near = shapely.line_interpolate_point(g, shapely.line_locate_point(g, pts[sel]))
        xe[sel], ye[sel], hb[sel] = shapely.get_x(near), shapely.get_y(near), h
    return xe, ye, d, hb


def _primitive_fits(
    footprint: Polygon,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    prm: RoofParams,
    ground: float | None = None,
    walls: list[tuple[BaseGeometry, float]] | None = None,
    memo: dict | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Huber fits of every primitive to finite points: kind -> (design (N, k), coefficients (k,), residuals
    (N,) m, shape function (N,)); ``shed`` is the free plane in x - mean(x), y - mean(y).

    With ``prm.edge_ramp`` and a finite ``ground`` height (or ``walls``: parts of the outline with the height
    beyond each, see :func:`_ramp_terms`), each primitive r(x, y) = a . c predicts the blurred DSM
    r - w (r(edge) - h_beyond) (w from :func:`_ramp_terms`; h_beyond = ground, or a neighbour's roof level
    beyond a shared wall): the design becomes a(x, y) - w a(edge) and ``w * h_beyond`` is subtracted from z;
    the coefficients keep their meaning (the unblurred roof).
    """
    frame = building_frame(footprint)
    _, _, _, hl, hw = frame
    s, t = _local(x, y, frame)
    n = len(z)
    g = float("nan") if ground is None else float(ground)
    blur = any(prm.edge_ramp) and (math.isfinite(g) if walls is None else bool(walls))
    w, xe, ye = np.zeros(n), x, y
    if blur:
        w, xe, ye, _, hb = _ramp_terms(footprint, x, y, prm, walls, g, memo)
        w = np.where(np.isfinite(hb), w, 0.0)
        z = z - w * np.nan_to_num(hb)
        se, te = _local(xe, ye, frame)
    raw: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    for kind in ("flat", "gable_s", "gable_t", "hip", "pyramid"):
        if (kind == "hip" and hl - hw <= 0.03 * hw) or (kind == "pyramid" and hl - hw > prm.square_tol * hw):
            continue  # on a square a hip roof is a pyramid; on a clear rectangle a pyramid is a hip
        f = _shape_fn(kind, s, t, hl, hw)
        if kind == "flat":
            a = (1.0 - w)[:, None]
        else:
            a = np.column_stack([1.0 - w, f - w * _shape_fn(kind, se, te, hl, hw) if blur else f])
        coef, r = _huber_lstsq(a, z)
        raw[kind] = (a, coef, r, f)
    xm, ym = float(x.mean()), float(y.mean())
    a_sh = np.column_stack([1.0 - w, (x - xm) - w * (xe - xm), (y - ym) - w * (ye - ym)])
    coef_sh, r_sh = _huber_lstsq(a_sh, z)
    raw["shed"] = (a_sh, coef_sh, r_sh, np.zeros(n))
    return raw


def roof_noise(
    footprint: Polygon,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    transform: Affine | None = None,
    prm: RoofParams = RoofParams(),
) -> tuple[float, float]:
    """DSM noise on one roof from the residuals of its best-fitting primitive: (NMAD in m, correlation area
    in pixels).

    ``x, y, z``: (N,) pixel centres (map metres) and DSM heights (m, NaN ignored). NaNs when < 12 points.
    A roof that no primitive fits leaves model misfit in its residuals (both too large): take the median over
    many roofs for a scene-level value (what :func:`sat2lod.lod.pipeline.run_lod2` does).
    """
    ok = np.isfinite(z)
    x, y, z = x[ok], y[ok], z[ok]
    if len(z) < 12:
        return float("nan"), float("nan")
    raw = _primitive_fits(footprint, x, y, z, prm)
    r = raw[min(raw, key=lambda kd: _nmad(raw[kd][2]))][2]
    row, col = _grid_rc(x, y, transform)
    return _nmad(r), noise_correlation_area(row, col, r)[1]


def _face_labels(kind: str, s: np.ndarray, t: np.ndarray, hl: float, hw: float) -> np.ndarray:
    """(N,) face index of each point for the face layout of a primitive in the building frame."""
    if kind in ("flat", "shed"):
        return np.zeros(len(s), int)
    if kind == "gable_s":
        return (t >= 0).astype(int)
    if kind == "gable_t":
        return (s >= 0).astype(int)
    if kind == "hip":
        side = (hw - np.abs(t)) <= (hl - np.abs(s))
    elif kind == "pyramid":
        side = (hw - np.abs(t)) / hw <= (hl - np.abs(s)) / hl
    else:
        raise ValueError(kind)
    return np.where(side, (t >= 0).astype(int), 2 + (s >= 0).astype(int))


def ortho_face_bic(
    footprint: Polygon,
    x: np.ndarray,
    y: np.ndarray,
    v: np.ndarray,
    transform: Affine | None = None,
    kinds: tuple[str, ...] = ("flat", "gable_s", "gable_t", "hip", "pyramid"),
) -> dict[str, float]:
    """Image evidence for each primitive's face layout: BIC of a piecewise-constant fit of the ortho brightness.

    Roof faces of different orientations are lit differently (Lambert shading) while the faces of one roof
    share their material, so the brightness inside a footprint is about constant per face: one region for a
    flat or shed roof, two halves split along the ridge for a gable, two trapezoids and two triangles for a
    hip, four triangles for a pyramid. Each layout is fitted with one level (median) per face; the score is
    BIC = N_eff ln(var_k) + F_k ln(N_eff) with F_k faces, var_k a Huber variance (delta = 1.345 x the NMAD of
    the most detailed layout's residuals) and N_eff = N / A, A the correlation area of those residuals
    (:func:`noise_correlation_area`; roof texture is spatially correlated). Lower is better; the scale of the
    brightness does not matter. A layout whose faces are lit alike gets no support (e.g. a gable whose two
    faces are at the same angle to the sun): then only the DSM decides.

    Args:
        footprint: building polygon (map metres).
        x, y: (N,) pixel centres (map metres); v: (N,) ortho brightness (any unit, NaN ignored).
        transform: the pixel grid (for the correlation); None: inferred from the point spacing.
        kinds: layouts to score (``flat``, ``gable_s``, ``gable_t``, ``hip``, ``pyramid``).

    Returns:
        kind -> BIC; empty when fewer than 12 finite values.
    """
    ok = np.isfinite(v)
    x, y, v = x[ok], y[ok], np.asarray(v, float)[ok]
    if len(v) < 12:
        return {}
    frame = building_frame(footprint)
    _, _, _, hl, hw = frame
    s, t = _local(x, y, frame)
    res: dict[str, tuple[np.ndarray, int]] = {}
    for kind in kinds:
        lab = _face_labels(kind, s, t, hl, hw)
        r = np.empty(len(v))
        nf = 0
        for f in np.unique(lab):
            m = lab == f
            r[m] = v[m] - np.median(v[m])
            nf += 1
        res[kind] = (r, nf)
    detail = min(res, key=lambda kd: (-res[kd][1], _nmad(res[kd][0])))
    r_ref = res[detail][0]
    sigma = max(_nmad(r_ref), 1e-6 * (float(np.abs(v).max()) + 1e-12))
    row, col = _grid_rc(x, y, transform)
    _, area = noise_correlation_area(row, col, r_ref)
    n_eff = max(len(v) / area, 3.0)
    delta = 1.345 * sigma
    return {
        kd: float(n_eff * math.log(max(_robust_var(r, delta), 1e-12)) + nf * math.log(n_eff))
        for kd, (r, nf) in res.items()
    }


def fit_roof(
    footprint: Polygon,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    prm: RoofParams = RoofParams(),
    transform: Affine | None = None,
    image: np.ndarray | None = None,
    ground: float | None = None,
    walls: list[tuple[BaseGeometry, float]] | None = None,
    *,
    memo: dict | None = None,
) -> RoofFit:
    """Fit a roof to DSM points inside a footprint.

    Model selection under correlated DSM noise:

    1. every primitive is fitted (Huber IRLS); the noise level sigma is the NMAD of the residuals of the
       best-fitting primitive and the residual correlation area A (pixels, :func:`noise_correlation_area`)
       gives the effective number of independent samples N_eff = N / A;
    2. a sloped primitive is kept only when it rises at least ``min_rise_m``, is at least ``min_slope_deg``
       steep and its slope is significant: ``slope / SE(slope) >= min_slope_z`` with SE computed from the
       NMAD and inflated by sqrt(N / N_eff) (correlated noise tilts a flat roof coherently);
    3. the score is a BIC with N_eff samples, BIC = N_eff ln(sigma_k^2) + k ln(N_eff) (sigma_k^2 from Huber
       losses with delta = 1.345 sigma), and a model with more parameters must beat a simpler one by
       ``bic_margin`` (fits within the noise keep the simpler roof: flat < gable/hip/pyramid < shed);
    4. when even the best primitive leaves a robust residual scale (NMAD) above ``max_rmse_m`` the roof is
       segmented into planes, kept only if it wins by the same BIC (3 parameters per plane).

    With an ortho (``image``), the face layout of each primitive is also scored on the roof brightness
    (:func:`ortho_face_bic`; a shed is one face like a flat roof) and that image BIC is added to the DSM BIC
    (independent evidence). The stereo DSM flattens small roofs, so when the DSM admits no gable, hip or
    pyramid on its own, a ridged primitive whose DSM slope is positive but too small or not significant
    (``min_rise_m``, ``min_slope_deg``, ``min_slope_z``) is still admitted when its layout beats one uniform
    face by at least ``ortho_min_gain`` in the image BIC; its heights (eave, slope) stay those of the DSM fit
    with that layout (so its rise is the DSM's, flattened as it is).

    Args:
        footprint: building polygon (map metres).
        x, y, z: (N,) DSM pixel centres and heights inside the footprint (edge pixels already removed).
        image: (N,) ortho brightness at the same pixels (any unit, NaN ignored) or None (DSM only).
        transform: the DSM grid transform (pixel grid for the noise correlation, raster regions of the
            multi-plane fallback); without it the grid is inferred from the point spacing and no multi-plane
            fallback is tried.
        ground: ground height at the building (m, same datum as z); with ``prm.edge_ramp`` the primitives
            model the DSM's blur across the walls (see :func:`_primitive_fits`); None: no blur model.
        walls: parts of the outline with the height beyond each (absolute m: the ground for a free wall, the
            neighbour's roof level for a shared one; :func:`sat2lod.lod.models.wall_parts`), towards which the
            DSM is blurred; None = the ground (``ground``) all around.
        memo: a dict kept by the caller across fits of one roof (the same footprint, points, image, grid
            and walls) whose ``prm`` differ in ``edge_ramp`` only (:func:`calibrate_edge_ramp` refits each roof
            up to ``max_iterations`` times): what does not depend on the ramp is computed once and read back
            (the ortho's face BICs; the multi-plane segmentation for a given noise level). The same results
            as without it.

    Returns:
        The selected model; ``scores`` holds the BIC of every admissible candidate (DSM + ortho when an
        ortho is given; ``multiplane``: DSM only, compared with the best primitive's DSM-only BIC),
        ``noise_m`` the NMAD and ``n_eff`` the effective sample count.
    """
    ok = np.isfinite(z)
    img_bic: dict[str, float] = {}
    if image is not None:
        if memo is not None and "img_bic" in memo:
            img_bic = memo["img_bic"]
        else:
            img_bic = ortho_face_bic(footprint, x, y, np.asarray(image, float), transform)
            if memo is not None:
                memo["img_bic"] = img_bic
    x, y, z = x[ok], y[ok], z[ok]
    n = len(z)
    if n < 6:
        h = float(np.median(z)) if n else float("nan")
        return RoofFit("flat", [footprint], [(h, 0.0, 0.0)], h, h, float("nan"), n)
    raw = _primitive_fits(footprint, x, y, z, prm, ground, walls, memo)
    sigma, area, n_eff = _noise_model(raw, x, y, transform, prm)
    delta = 1.345 * sigma

    def bic(r: np.ndarray, k: int) -> float:
        return float(n_eff * math.log(max(_robust_var(r, delta), 1e-8)) + k * math.log(n_eff))

    def img(kind: str) -> float:
        return img_bic.get("flat" if kind == "shed" else kind, 0.0)

    def img_gain(kind: str) -> float:
        return img("flat") - img(kind) if kind in img_bic and "flat" in img_bic else float("-inf")

    frame = building_frame(footprint)
    xm, ym = float(x.mean()), float(y.mean())
    cands: dict[str, tuple[float, RoofFit]] = {}
    dsm_bic: dict[str, float] = {}
    by_image: set[str] = set()  # sloped primitives admitted on the ortho alone
    for kind, (a, coef, r, f) in raw.items():
        admitted = _admit_primitive(
            kind, a, coef, r, f, footprint, frame, (xm, ym), prm, area, img_gain(kind)
        )
        if admitted is None:
            continue
        fit, on_image = admitted
        if on_image:
            by_image.add(kind)
        dsm_bic[kind] = bic(r, _N_PAR[kind])
        cands[kind] = (dsm_bic[kind] + img(kind), fit)
    if any(kd not in ("flat", "shed") and kd not in by_image for kd in cands):
        # the DSM shows a significant ridged roof itself: the ortho only re-ranks the layouts the DSM admits
        # (small end faces near the outline make the image alone a weak judge of gable vs hip)
        for kd in by_image:
            del cands[kd]
    best_kind = _select_by_bic({kd: v[0] for kd, v in cands.items()}, prm.bic_margin)
    best = cands[best_kind][1]
    best.scores = {kd: round(v[0], 2) for kd, v in cands.items()}
    best.noise_m, best.n_eff = sigma, n_eff
    best_r = raw[best_kind][2]
    if _nmad(best_r) > prm.max_rmse_m and transform is not None:
        noise = sigma if prm.noise_m is None else prm.noise_m
        key = ("multiplane", noise)
        if memo is not None and key in memo:
            multi = copy.copy(memo[key])  # its scores and noise are set below: the stored fit stays as made
        else:
            multi = fit_multiplane(footprint, x, y, z, transform, prm, noise_m=noise)
            if memo is not None:
                memo[key] = copy.copy(multi)
        if multi is not None:
            bic_m = bic(
                _multiplane_residuals(multi, x, y, z, best_r), 3 * len({tuple(p) for p in multi.planes})
            )
            multi.scores = best.scores | {"multiplane": round(bic_m, 2)}
            multi.noise_m, multi.n_eff = sigma, n_eff
            if bic_m < dsm_bic[best_kind] - prm.bic_margin:  # the ortho does not score free plane layouts
                return multi
    return best


#: free parameters of each roof primitive (the BIC's k): flat < gable/hip/pyramid < shed
_N_PAR = {"flat": 1, "gable_s": 2, "gable_t": 2, "hip": 2, "pyramid": 2, "shed": 3}


def _noise_model(
    raw: dict[str, tuple], x: np.ndarray, y: np.ndarray, transform: Affine | None, prm: RoofParams
) -> tuple[float, float, float]:
    """(sigma, correlation area in pixels, N_eff) of the DSM noise on one roof, from the residuals of the
    best-fitting primitive (the least model misfit in its residuals); step 1 of :func:`fit_roof`."""
    best_raw = min(raw, key=lambda kd: _nmad(raw[kd][2]))
    sigma = max(_nmad(raw[best_raw][2]), 1e-3)
    if prm.corr_area_px is not None:
        area = max(float(prm.corr_area_px), 1.0)
    else:
        row, col = _grid_rc(x, y, transform)
        _, area = noise_correlation_area(row, col, raw[best_raw][2])
    return sigma, area, max(len(x) / area, 3.0)


def _admit_primitive(
    kind: str,
    a: np.ndarray,
    coef: np.ndarray,
    r: np.ndarray,
    f: np.ndarray,
    footprint: Polygon,
    frame: tuple,
    centre: tuple[float, float],
    prm: RoofParams,
    area: float,
    img_gain: float,
) -> tuple[RoofFit, bool] | None:
    """The roof of one fitted primitive if it is admissible (step 2 of :func:`fit_roof`), else None.

    Args:
        kind: primitive name (:data:`_N_PAR`); a, coef, r, f: its design matrix, coefficients, residuals and
            slope feature (:func:`_primitive_fits`); frame: :func:`building_frame` of ``footprint``; centre:
            mean x, y of the points (the shed's coefficients are centred there); area: noise correlation area
            (pixels); img_gain: the ortho BIC gain of the primitive's face layout over one face (-inf: none).
    Returns:
        (fit, admitted on the ortho alone) or None.
    """
    n = len(r)
    if kind == "shed":
        xm, ym = centre
        plane = (float(coef[0] - coef[1] * xm - coef[2] * ym), float(coef[1]), float(coef[2]))
        ring = np.asarray(footprint.exterior.coords)
        zr = _plane_z(plane, ring[:, 0], ring[:, 1])
        rise = float(zr.max() - zr.min())
        slope_deg = math.degrees(math.atan(math.hypot(plane[1], plane[2])))
        if rise < prm.min_rise_m or slope_deg < prm.min_slope_deg:
            return None
        if _slope_z(a, coef, r, [1, 2], area) < prm.min_slope_z:
            return None
        fit = RoofFit(
            "shed", [footprint], [plane], float(zr.min()), float(zr.max()), float(np.sqrt(np.mean(r**2))), n
        )
        return fit, False
    e = float(coef[0])
    k = float(coef[1]) if kind != "flat" else 0.0
    on_image = False
    if kind == "flat":
        faces, planes = [footprint], [(e, 0.0, 0.0)]
        rise = 0.0
    else:
        _, _, _, hl, hw = frame
        rise = k * float(np.max(f))
        slope = k if kind != "pyramid" else k * hw / min(hl, hw)  # m per m across the steepest face
        if k <= 0:
            return None
        if (
            rise < prm.min_rise_m
            or math.degrees(math.atan(slope)) < prm.min_slope_deg
            or _slope_z(a, coef, r, [1], area) < prm.min_slope_z
        ):
            # the lit faces may show the layout although the (flattened) DSM slope is not significant
            if not (prm.ortho_min_gain > 0 and img_gain >= prm.ortho_min_gain):
                return None
            on_image = True
        faces, planes = _partition(footprint, _regions(kind, frame, e, k))
    name = "gable" if kind.startswith("gable") else kind
    return RoofFit(name, faces, planes, e, e + rise, float(np.sqrt(np.mean(r**2))), n), on_image


def _select_by_bic(scores: dict[str, float], margin: float) -> str:
    """The lowest score wins, but a model with more parameters must beat every simpler one by ``margin``
    (step 3 of :func:`fit_roof`)."""
    order = sorted(scores, key=lambda kd: (_N_PAR[kd], scores[kd]))
    best = order[0]
    for kd in order[1:]:
        m = margin if _N_PAR[kd] > _N_PAR[best] else 0.0
        if scores[kd] < scores[best] - m:
            best = kd
    return best


def _multiplane_residuals(
    multi: RoofFit, x: np.ndarray, y: np.ndarray, z: np.ndarray, fallback: np.ndarray
) -> np.ndarray:
    """Residuals of the points under a multi-plane roof; ``fallback`` where no face covers a point."""
    zfit = np.full(len(z), np.nan)
    pts = shapely.points(x, y)
    for fc, pl in zip(multi.faces, multi.planes):
        inside = shapely.contains(fc, pts)
        zfit[inside] = _plane_z(pl, x[inside], y[inside])
    return np.where(np.isfinite(zfit), z - zfit, fallback)


def _roof_z(planes: list[tuple[float, float, float]], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height of a primitive roof (flat, shed, gable, hip, pyramid: the lowest of its face planes) at (x, y)."""
    return np.min([_plane_z(p, x, y) for p in planes], axis=0)


#: roofs the edge ramp is calibrated on, at most (:func:`calibrate_edge_ramp`)
RAMP_MAX_ROOFS = 400


def ramp_sample(n_roofs: int, max_roofs: int = RAMP_MAX_ROOFS) -> np.ndarray:
    """Indices (sorted) of the roofs :func:`calibrate_edge_ramp` uses among ``n_roofs``: all, or ``max_roofs``
    drawn at random with a fixed seed (the same roofs on every run, whether the scene is whole or tiled)."""
    if n_roofs <= max_roofs:
        return np.arange(n_roofs)
    return np.sort(np.random.default_rng(0).choice(n_roofs, max_roofs, replace=False))


def calibrate_edge_ramp(
    roofs: list[
        tuple[Polygon, np.ndarray, np.ndarray, np.ndarray, float, np.ndarray | None]
        | tuple[
            Polygon,
            np.ndarray,
            np.ndarray,
            np.ndarray,
            float,
            np.ndarray | None,
            list[tuple[BaseGeometry, float]] | None,
        ]
    ],
    prm: RoofParams = RoofParams(),
    transform: Affine | None = None,
    max_iterations: int = 10,
    tol: float = 0.005,
    max_dist_m: float = 3.0,
    min_roofs: int = 10,
    min_edge_height_m: float = 2.0,
    max_roofs: int = RAMP_MAX_ROOFS,
) -> tuple[float, ...]:
    """Scene-level DSM edge spread (``RoofParams.edge_ramp``) from the roofs of one DSM.

    Each iteration fits every roof (:func:`fit_roof` with the current ramp, its walls included), takes the
    misfit of each point nearest a free wall as a fraction of the wall's height above the ground,
    (prediction - z) / (roof(edge) - ground) (only there is the height beyond measured: a neighbour's level
    beyond a shared wall is itself a blurred DSM median), its median per roof and per distance bin
    (``RAMP_STEP_M``), then the median over the roofs, and adds it to the ramp (bins with fewer than
    ``min_roofs`` roofs add nothing); the ramp is kept in [0, 1] and non-increasing with the distance (bins
    nearer the outline are raised to the farther ones), until no bin moves by more than ``tol`` (at most
    ``max_iterations``: the fits absorb part of the blur, so each step recovers only part of what remains).
    Multi-plane roofs and walls lower than ``min_edge_height_m`` are not used. An exact DSM gives a ramp of
    about 0, so the fits are then unchanged. The ramp is a property of the
    DSM, so a city of many buildings is calibrated on ``max_roofs`` of them drawn at random (fixed seed: the
    same roofs on every run): its cost stays that of a few hundred roof fits per iteration.

    Args:
        roofs: per building (footprint, x, y, z, ground height, image or None[, walls or None]): the
            arguments of :func:`fit_roof` (points already off the outline by ``prm.edge_buffer_m``).
        prm: fitting settings (its ``edge_ramp`` is the starting point, usually empty).
        transform: DSM grid (see :func:`fit_roof`).
    Returns:
        The ramp: one fraction per bin of ``RAMP_STEP_M`` up to ``max_dist_m``.
    """
    nb = round(max_dist_m / RAMP_STEP_M)
    if len(roofs) > max_roofs:
        roofs = [roofs[i] for i in ramp_sample(len(roofs), max_roofs)]
    ramp = np.zeros(nb)
    start = np.asarray(prm.edge_ramp, float)[:nb]
    ramp[: len(start)] = start
    # per roof, what its fits share from one iteration to the next (the ramp changes, nothing else)
    memos: list[dict] = [{} for _ in roofs]
    for _ in range(max_iterations):
        cur = replace(prm, edge_ramp=tuple(float(v) for v in ramp))
        per_bin: list[list[float]] = [[] for _ in range(nb)]
        for (footprint, x, y, z, ground, image, *more), memo in zip(roofs, memos):
            walls = more[0] if more else None
            ok = np.isfinite(z)
            if ok.sum() < 12 or not math.isfinite(ground):
                continue
            fit = fit_roof(footprint, x, y, z, cur, transform, image, ground, walls, memo=memo)
            if fit.roof_type == "multiplane":
                continue
            xs, ys, zs = x[ok], y[ok], z[ok]
            w, xe, ye, d, hb = _ramp_terms(footprint, xs, ys, cur, walls, ground, memo)
            edge = _roof_z(fit.planes, xe, ye) - hb
            # measured on free walls only (hb is the ground there): the ground beyond them is measured (DTM), a
            # neighbour's level is itself a blurred DSM median; the ramp found there also serves the shared walls
            use = (hb == ground) & (edge > min_edge_height_m)
            q = (_roof_z(fit.planes, xs, ys) - w * edge - zs) / np.where(use, edge, 1.0)
            b = np.floor(np.minimum(d, max_dist_m + RAMP_STEP_M) / RAMP_STEP_M).astype(int)
            use &= b < nb
            for i in np.unique(b[use]):
                per_bin[i].append(float(np.median(q[use & (b == i)])))
        step = np.array([np.median(v) if len(v) >= min_roofs else 0.0 for v in per_bin])
        new = np.maximum.accumulate(np.clip(ramp + step, 0.0, 1.0)[::-1])[::-1]
        done = float(np.max(np.abs(new - ramp))) < tol
        ramp = new
        if done:
            break
    return tuple(float(v) for v in ramp)


def _local_slopes(
    row: np.ndarray, col: np.ndarray, z: np.ndarray, shape: tuple[int, int], transform: Affine, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """Local DSM slope (dz/dx, dz/dy, m/m in map axes) at each point: least-squares plane through the points
    in the (2 radius + 1)^2 pixel window around it. ``row``, ``col``: (N,) cell indices in a grid of
    ``shape``; NaN where the window holds fewer than 6 points or the grid is rotated."""
    n = len(z)
    if transform.b != 0 or transform.d != 0:
        return np.full(n, np.nan), np.full(n, np.nan)
    m = np.zeros(shape)
    m[row, col] = 1.0
    zg = np.zeros(shape)
    zg[row, col] = z
    # window sums of the points' offsets from the window's centre cell (dc, dr): correlations with kernels
    dr, dc = np.mgrid[-radius : radius + 1, -radius : radius + 1].astype(float)
    s = {
        k: ndimage.correlate(g, kern, mode="constant")
        for k, g, kern in (
            ("1", m, np.ones_like(dc)),
            ("c", m, dc),
            ("r", m, dr),
            ("cc", m, dc * dc),
            ("rr", m, dr * dr),
            ("cr", m, dc * dr),
            ("z", zg, np.ones_like(dc)),
            ("cz", zg, dc),
            ("rz", zg, dr),
        )
    }
    a = np.stack(
        [
            np.stack([s["1"], s["c"], s["r"]], -1),
            np.stack([s["c"], s["cc"], s["cr"]], -1),
            np.stack([s["r"], s["cr"], s["rr"]], -1),
        ],
        -2,
    )[row, col]
    b = np.stack([s["z"], s["cz"], s["rz"]], -1)[row, col]
    ok = (s["1"][row, col] >= 6) & (np.abs(np.linalg.det(a)) > 1e-6)
    sol = np.full((n, 3), np.nan)
    if ok.any():
        sol[ok] = np.linalg.solve(a[ok], b[ok][..., None])[..., 0]
    return sol[:, 1] / transform.a, sol[:, 2] / transform.e


def _unit_normals(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Upward unit normals (N, 3) of surfaces of slope (gx, gy) (m/m; NaN slopes give NaN normals)."""
    n = np.column_stack([-gx, -gy, np.ones_like(gx)])
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def fit_multiplane(
    footprint: Polygon,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    transform: Affine,
    prm: RoofParams = RoofParams(),
    seed: int = 0,
    noise_m: float = 0.0,
) -> RoofFit | None:
    """Segment the roof into planes (sequential RANSAC, largest raster-connected inlier region per plane).

    An inlier lies within tol = max(``prm.plane_tol_m``, 2 ``noise_m``) of the plane (``noise_m``: the DSM
    noise on the roof, m; a fixed band keeps too few points of each face of a noisy DSM) and its local DSM
    normal is within ``prm.normal_tol_deg`` of the plane's (points without a local normal pass on distance
    alone); the normal test keeps a wide band from joining adjacent faces.
    """
    rng = np.random.default_rng(seed)
    inv = ~transform
    col, row = inv @ (x, y)
    col = np.floor(col).astype(int)
    row = np.floor(row).astype(int)
    c0, r0 = col.min() - 3, row.min() - 3
    h, w = row.max() - r0 + 4, col.max() - c0 + 4
    lab = np.zeros((h, w), np.int32)
    gx, gy = _local_slopes(row - r0, col - c0, z, (h, w), transform, prm.normal_radius_px)
    normals = _unit_normals(gx, gy)
    no_normal = ~np.isfinite(gx)
    cos_tol = math.cos(math.radians(prm.normal_tol_deg))
    tol = max(prm.plane_tol_m, 2.0 * noise_m)
    remaining = np.ones(len(z), bool)
    planes: list[tuple[float, float, float]] = []
    min_pts = max(12, int(0.05 * len(z)))
    xm, ym = x.mean(), y.mean()
    while remaining.sum() >= min_pts and len(planes) < prm.max_planes:
        idx = np.flatnonzero(remaining)
        best_in = None
        for _ in range(150):
            sel = rng.choice(idx, 3, replace=False)
            a = np.column_stack([np.ones(3), x[sel] - xm, y[sel] - ym])
            try:
                coef = np.linalg.solve(a, z[sel])
            except np.linalg.LinAlgError:
                continue
            res = np.abs(z[idx] - (coef[0] + coef[1] * (x[idx] - xm) + coef[2] * (y[idx] - ym)))
            cand = idx[res < tol]
            agree = normals[cand] @ _unit_normals(coef[1:2], coef[2:3])[0] >= cos_tol
            inl = cand[agree | no_normal[cand]]
            if best_in is None or len(inl) > len(best_in):
                best_in = inl
        if best_in is None or len(best_in) < min_pts:
            break
        grid = np.zeros((h, w), bool)
        grid[row[best_in] - r0, col[best_in] - c0] = True
        cc, ncc = ndimage.label(grid)
        if ncc > 1:
            sizes = ndimage.sum(grid, cc, index=np.arange(1, ncc + 1))
            keep = 1 + int(np.argmax(sizes))
            best_in = best_in[cc[row[best_in] - r0, col[best_in] - c0] == keep]
        if len(best_in) < min_pts:
            break
        a = np.column_stack([np.ones(len(best_in)), x[best_in] - xm, y[best_in] - ym])
        coef, *_ = np.linalg.lstsq(a, z[best_in], rcond=None)
        planes.append((float(coef[0] - coef[1] * xm - coef[2] * ym), float(coef[1]), float(coef[2])))
        lab[row[best_in] - r0, col[best_in] - c0] = len(planes)
        remaining[best_in] = False
    if len(planes) < 2:
        return None
    # fill every cell around the footprint with its nearest plane region, then polygonize the regions
    _, (iy, ix) = ndimage.distance_transform_edt(lab == 0, return_indices=True)
    full = lab[iy, ix]
    sub_t = transform @ Affine.translation(c0, r0)
    polys: dict[int, list[Polygon]] = {}
    for geom, v in features.shapes(full, transform=sub_t, connectivity=4):
        polys.setdefault(int(v), []).append(shape(geom))
    ids = sorted(polys)
    cover = [shapely.union_all(polys[i]) for i in ids]
    simp = shapely.coverage_simplify(np.array(cover, dtype=object), tolerance=0.3)
    faces, fplanes = [], []
    for i, g in zip(ids, simp):
        for part in shapely.get_parts(footprint.intersection(g)):
            if part.geom_type == "Polygon" and part.area > 0.05:
                faces.append(part)
                fplanes.append(planes[i - 1])
    if not faces:
        return None
    zfit = np.full(len(z), np.nan)
    pts = shapely.points(x, y)
    for f, p in zip(faces, fplanes):
        inside = shapely.contains(f, pts)
        zfit[inside] = _plane_z(p, x[inside], y[inside])
    ok = np.isfinite(zfit)
    rmse = float(np.sqrt(np.mean((z[ok] - zfit[ok]) ** 2))) if ok.any() else float("nan")
    # eave: each face's plane on its own share of the outline (a plane extended over the whole footprint
    # runs below the roof, e.g. the two faces of a butterfly roof); ridge: highest face corner
    outline = footprint.boundary
    edge_z, top = [], []
    for f, p in zip(faces, fplanes):
        xy = np.asarray(f.exterior.coords)
        zf = _plane_z(p, xy[:, 0], xy[:, 1])
        on = shapely.distance(shapely.points(xy), outline) < 0.01
        edge_z.append(float(zf[on].min() if on.any() else zf.min()))
        top.append(float(zf.max()))
    return RoofFit("multiplane", faces, fplanes, min(edge_z), max(top), rmse, len(z))
