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

The model with the lowest BIC wins (residuals Huber-weighted); when even the best primitive leaves an RMS
residual above ``max_rmse_m``, the roof is segmented into planes (sequential RANSAC + raster regions) and
each plane gets the part of the footprint where it is the closest.

Heights are absolute (datum of the DSM), coordinates map metres (projected CRS).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from rasterio import features
from rasterio.transform import Affine
from scipy import ndimage
from shapely import affinity
from shapely.geometry import Polygon, shape

log = logging.getLogger(__name__)

PRIMITIVES = ("flat", "shed", "gable", "hip", "pyramid")


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


@dataclass(frozen=True)
class RoofParams:
    """Roof fitting settings.

    Attributes:
        max_rmse_m: above this RMS residual no primitive is accepted and the roof is segmented into planes.
        min_rise_m: a sloped primitive must rise at least this much above its eaves (else it is flat).
        plane_tol_m: RANSAC inlier distance for plane segmentation (m).
        max_planes: most planes in a segmented roof.
        edge_buffer_m: DSM pixels closer than this to the outline are not used (mixed with walls/ground).
        min_slope_deg: sloped primitives (shed, gable, hip, pyramid) must be at least this steep, else the roof
            is flat (a large flat roof under correlated DSM noise or blurred edges tilts by a fraction of a
            degree yet rises by decimetres).
        square_tol: a pyramid is only tried on footprints whose rectangle sides differ by at most this
            fraction (a hip is not tried on exact squares, where it is a pyramid).
    """

    max_rmse_m: float = 1.0
    min_rise_m: float = 0.7
    plane_tol_m: float = 0.4
    max_planes: int = 8
    edge_buffer_m: float = 0.6
    min_slope_deg: float = 5.0
    square_tol: float = 0.15


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


def _local(x: np.ndarray, y: np.ndarray, frame: tuple[float, float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
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


def _huber_lstsq(a: np.ndarray, z: np.ndarray, delta: float = 0.5, iters: int = 5) -> tuple[np.ndarray, np.ndarray]:
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


def _bic(r: np.ndarray, k: int, delta: float = 0.5) -> float:
    # Huber loss in place of squared residuals: a few outliers do not decide the model
    ar = np.abs(r)
    loss = np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))
    n = len(r)
    return float(n * math.log(max(2 * loss.mean(), 1e-6)) + k * math.log(n))


def _plane_map(frame: tuple[float, float, float, float, float], e: float, ks: float, kt: float) -> tuple[float, float, float]:
    """Plane z = e + ks*s + kt*t in the frame -> (a, b, c) with z = a + b*x + c*y."""
    cx, cy, ang, _, _ = frame
    ca, sa = math.cos(ang), math.sin(ang)
    b = ks * ca - kt * sa
    c = ks * sa + kt * ca
    return e - b * cx - c * cy, b, c


def _regions(kind: str, frame: tuple[float, float, float, float, float], e: float, k: float,
             ) -> list[tuple[Polygon, tuple[float, float, float]]]:
    """Regions of the frame plane (large polygons, map coordinates) with the plane of each."""
    cx, cy, ang, hl, hw = frame
    R = 10 * (hl + hw) + 100.0
    if kind == "gable_s":
        loc = [(Polygon([(-R, 0), (R, 0), (R, R), (-R, R)]), (e + k * hw, 0.0, -k)),
               (Polygon([(-R, -R), (R, -R), (R, 0), (-R, 0)]), (e + k * hw, 0.0, k))]
    elif kind == "gable_t":
        loc = [(Polygon([(0, -R), (R, -R), (R, R), (0, R)]), (e + k * hl, -k, 0.0)),
               (Polygon([(-R, -R), (0, -R), (0, R), (-R, R)]), (e + k * hl, k, 0.0))]
    elif kind == "hip":
        d = hl - hw
        loc = [(Polygon([(-d, 0), (d, 0), (d + R, R), (-d - R, R)]), (e + k * hw, 0.0, -k)),
               (Polygon([(-d - R, -R), (d + R, -R), (d, 0), (-d, 0)]), (e + k * hw, 0.0, k)),
               (Polygon([(d, 0), (d + R, -R), (d + R, R)]), (e + k * hl, -k, 0.0)),
               (Polygon([(-d, 0), (-d - R, R), (-d - R, -R)]), (e + k * hl, k, 0.0))]
    elif kind == "pyramid":
        a, b = R * hl, R * hw
        kk = k * hw
        loc = [(Polygon([(0, 0), (a, b), (-a, b)]), (e + kk, 0.0, -kk / hw)),
               (Polygon([(0, 0), (-a, -b), (a, -b)]), (e + kk, 0.0, kk / hw)),
               (Polygon([(0, 0), (a, -b), (a, b)]), (e + kk, -kk / hl, 0.0)),
               (Polygon([(0, 0), (-a, b), (-a, -b)]), (e + kk, kk / hl, 0.0))]
    else:
        raise ValueError(kind)
    out = []
    for poly, (e0, ks, kt) in loc:
        p = affinity.translate(affinity.rotate(poly, ang, origin=(0, 0), use_radians=True), cx, cy)
        out.append((p, _plane_map(frame, e0, ks, kt)))
    return out


def _partition(footprint: Polygon, regions: list[tuple[Polygon, tuple[float, float, float]]],
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


def fit_roof(footprint: Polygon, x: np.ndarray, y: np.ndarray, z: np.ndarray,
             prm: RoofParams = RoofParams(), transform: Affine | None = None) -> RoofFit:
    """Fit a roof to DSM points inside a footprint.

    Args:
        footprint: building polygon (map metres).
        x, y, z: (N,) DSM pixel centres and heights inside the footprint (edge pixels already removed).
        transform: the DSM grid transform; needed only for the multi-plane fallback (raster regions).

    Returns:
        The best model; ``scores`` holds the BIC of every candidate.
    """
    ok = np.isfinite(z)
    x, y, z = x[ok], y[ok], z[ok]
    n = len(z)
    if n < 6:
        h = float(np.median(z)) if n else float("nan")
        return RoofFit("flat", [footprint], [(h, 0.0, 0.0)], h, h, float("nan"), n)
    frame = building_frame(footprint)
    _, _, _, hl, hw = frame
    s, t = _local(x, y, frame)
    cands: dict[str, tuple[float, RoofFit]] = {}
    for kind in ("flat", "gable_s", "gable_t", "hip", "pyramid"):
        if (kind == "hip" and hl - hw <= 0.03 * hw) or (kind == "pyramid" and hl - hw > prm.square_tol * hw):
            continue  # on a square a hip roof is a pyramid; on a clear rectangle a pyramid is a hip
        f = _shape_fn(kind, s, t, hl, hw)
        a = np.column_stack([np.ones(n), f]) if kind != "flat" else np.ones((n, 1))
        coef, r = _huber_lstsq(a, z)
        e = float(coef[0])
        k = float(coef[1]) if kind != "flat" else 0.0
        if kind == "flat":
            faces, planes = [footprint], [(e, 0.0, 0.0)]
            rise = 0.0
        else:
            rise = k * float(np.max(f))
            slope = k if kind != "pyramid" else k * hw / min(hl, hw)  # m per m across the steepest face
            if k <= 0 or rise < prm.min_rise_m or math.degrees(math.atan(slope)) < prm.min_slope_deg:
                continue
            faces, planes = _partition(footprint, _regions(kind, frame, e, k))
        name = "gable" if kind.startswith("gable") else kind
        fit = RoofFit(name, faces, planes, e, e + rise, float(np.sqrt(np.mean(r ** 2))), n)
        cands[kind] = (_bic(r, 1 if kind == "flat" else 2), fit)
    coef, r = _huber_lstsq(np.column_stack([np.ones(n), x - x.mean(), y - y.mean()]), z)
    a0 = float(coef[0] - coef[1] * x.mean() - coef[2] * y.mean())
    plane = (a0, float(coef[1]), float(coef[2]))
    ring = np.asarray(footprint.exterior.coords)
    zr = _plane_z(plane, ring[:, 0], ring[:, 1])
    slope_deg = math.degrees(math.atan(math.hypot(plane[1], plane[2])))
    if float(zr.max() - zr.min()) >= prm.min_rise_m and slope_deg >= prm.min_slope_deg:
        cands["shed"] = (_bic(r, 3), RoofFit("shed", [footprint], [plane], float(zr.min()), float(zr.max()),
                                             float(np.sqrt(np.mean(r ** 2))), n))
    best_kind = min(cands, key=lambda kd: cands[kd][0])
    best = cands[best_kind][1]
    best.scores = {kd: round(v[0], 2) for kd, v in cands.items()}
    if best.rmse > prm.max_rmse_m and transform is not None:
        multi = fit_multiplane(footprint, x, y, z, transform, prm)
        if multi is not None and multi.rmse < best.rmse:
            multi.scores = best.scores
            return multi
    return best


def fit_multiplane(footprint: Polygon, x: np.ndarray, y: np.ndarray, z: np.ndarray, transform: Affine,
                   prm: RoofParams = RoofParams(), seed: int = 0) -> RoofFit | None:
    """Segment the roof into planes (sequential RANSAC, largest raster-connected inlier region per plane)."""
    rng = np.random.default_rng(seed)
    inv = ~transform
    col, row = inv @ (x, y)
    col = np.floor(col).astype(int)
    row = np.floor(row).astype(int)
    c0, r0 = col.min() - 3, row.min() - 3
    h, w = row.max() - r0 + 4, col.max() - c0 + 4
    lab = np.zeros((h, w), np.int32)
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
            inl = idx[res < prm.plane_tol_m]
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
    ring = np.asarray(footprint.exterior.coords)
    edge_z = [float(_plane_z(p, ring[:, 0], ring[:, 1]).min()) for p in fplanes]
    top = [float(_plane_z(p, *np.asarray(f.exterior.coords).T).max()) for f, p in zip(faces, fplanes)]
    return RoofFit("multiplane", faces, fplanes, min(edge_z), max(top), rmse, len(z))
