"""Edge regularization of building outlines traced from a raster mask.

A traced outline is a pixel staircase. Regularization turns it into a few straight edges:

1. densify the staircase and simplify it (Douglas-Peucker, indices kept so each simplified edge knows the
   traced points it stands for);
2. classify each edge against the dominant orientation ``theta`` of the block: parallel, perpendicular, or
   free (diagonal, kept at its own angle);
3. merge consecutive edges of one class, drop edges shorter than ``min_edge`` (their points go to the
   neighbours), refit each edge as a least-squares line through its traced points (parallel/perpendicular
   edges keep the snapped direction, only their offset is fitted);
4. corners = intersections of consecutive lines.

Open chains (the shared wall between two adjacent buildings) go through the same steps without closing.
Near-circular outlines are replaced by a regular polygon on a fitted circle.

Coordinates are map metres in a projected CRS; angles are radians, counter-clockwise from the x axis.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LinearRing, LineString, Polygon

from sat2lod.schema import defaults

log = logging.getLogger(__name__)
_LOD = defaults("lod")  # defaults of config section lod

PARALLEL, PERPENDICULAR, FREE = 0, 1, 2


@dataclass(frozen=True)
class RegularizeParams:
    """Regularization settings (metres, degrees).

    Attributes:
        simplify_m: Douglas-Peucker tolerance on the traced staircase.
        angle_tol_deg: an edge within this angle of the dominant orientation (or its perpendicular) is snapped.
        min_edge_m: edges shorter than this are removed (their corner cut or step flattened).
        max_vertices: upper bound on the vertices of one ring (``min_edge_m`` grows until it holds).
        circle_tol_m: a ring whose points lie within this RMS distance of a fitted circle becomes a circle.
        circle_vertices: vertex count of a regularized circle.
    """

    simplify_m: float = _LOD["simplify_m"]
    angle_tol_deg: float = _LOD["angle_tol_deg"]
    min_edge_m: float = _LOD["min_edge_m"]
    max_vertices: int = _LOD["max_vertices"]
    circle_tol_m: float = 0.3
    circle_vertices: int = 16


def dominant_orientation(
    rings: list[np.ndarray], simplify_m: float = _LOD["simplify_m"], bin_m: float = 0.5
) -> float:
    """Dominant edge orientation (radians in [0, pi/2)) of one or several rings, modulo 90 degrees.

    Projection profiles: the outline points (densified every 0.25 m) are projected on the two axes of each
    candidate orientation and binned (``bin_m``); edges parallel to the axes pile up in few bins, so the
    sum of squared bin counts peaks at the dominant orientation. Searched every 0.5 degree, then refined
    every 0.05 degree around the best. Robust to staircase and segmentation noise, unlike edge-angle
    averages. ``simplify_m`` is unused (kept for the signature).
    """
    del simplify_m
    pts = []
    for r in rings:
        r = np.asarray(r, float)
        if len(r) >= 2:
            pts.append(np.asarray(shapely.segmentize(LineString(r), 0.25).coords))
    if not pts:
        return 0.0
    p = np.vstack(pts)
    p = p - p.mean(axis=0)

    def scores(angles: np.ndarray) -> np.ndarray:
        c, s_ = np.cos(angles)[:, None], np.sin(angles)[:, None]
        out = np.zeros(len(angles))
        for proj in (c * p[:, 0] + s_ * p[:, 1], -s_ * p[:, 0] + c * p[:, 1]):
            k = np.floor((proj - proj.min(axis=1, keepdims=True)) / bin_m).astype(np.int64)
            off = np.arange(len(angles))[:, None] * (int(k.max()) + 1)
            h = np.bincount((k + off).ravel())
            out += np.bincount(
                np.repeat(np.arange(len(angles)), (int(k.max()) + 1))[: len(h)],
                weights=h * h.astype(float),
                minlength=len(angles),
            )[: len(angles)]
        return out

    coarse = np.radians(np.arange(0.0, 90.0, 0.5))
    best = coarse[int(np.argmax(scores(coarse)))]
    fine = best + np.radians(np.arange(-0.5, 0.5001, 0.05))
    theta = float(fine[int(np.argmax(scores(fine)))]) % (math.pi / 2)
    return 0.0 if theta > math.pi / 2 - 1e-9 else theta


def _densify(coords: np.ndarray, step: float, closed: bool) -> np.ndarray:
    geom = LinearRing(coords) if closed else LineString(coords)
    pts = np.asarray(shapely.segmentize(geom, step).coords)
    return pts[:-1] if closed else pts


def _dp_indices(pts: np.ndarray, tol: float) -> list[int]:
    """Douglas-Peucker on an open polyline; returns kept indices (first and last included)."""
    keep = [0, len(pts) - 1]
    stack = [(0, len(pts) - 1)]
    while stack:
        i, j = stack.pop()
        if j <= i + 1:
            continue
        a, b = pts[i], pts[j]
        seg = b - a
        n = math.hypot(seg[0], seg[1])
        p = pts[i + 1 : j] - a
        d = np.abs(seg[0] * p[:, 1] - seg[1] * p[:, 0]) / n if n > 0 else np.hypot(p[:, 0], p[:, 1])
        k = int(np.argmax(d))
        if d[k] > tol:
            m = i + 1 + k
            keep.append(m)
            stack += [(i, m), (m, j)]
    return sorted(set(keep))


def _rot(pts: np.ndarray, theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.column_stack([c * pts[:, 0] + s * pts[:, 1], -s * pts[:, 0] + c * pts[:, 1]])


def _unrot(pts: np.ndarray, theta: float) -> np.ndarray:
    return _rot(pts, -theta)


@dataclass
class _Edge:
    idx: np.ndarray  # indices of the traced points the edge stands for
    cls: int
    angle: float  # direction in the rotated frame (radians)

    def length(self, pts: np.ndarray) -> float:
        p = pts[self.idx]
        return float(np.hypot(*(p[-1] - p[0]))) if len(p) > 1 else 0.0


def _classify(angle: float, tol: float) -> int:
    a = angle % math.pi
    if min(a, math.pi - a) < tol:
        return PARALLEL
    if abs(a - math.pi / 2) < tol:
        return PERPENDICULAR
    return FREE


def _edge_angle(p: np.ndarray) -> float:
    """Direction of the principal axis of points p (rotated frame), oriented from first to last point."""
    if len(p) < 2:
        return 0.0
    c = p - p.mean(axis=0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    d = vt[0]
    if np.dot(d, p[-1] - p[0]) < 0:
        d = -d
    return math.atan2(d[1], d[0])


def _same(e1: _Edge, e2: _Edge, tol: float) -> bool:
    if e1.cls != e2.cls:
        return False
    if e1.cls != FREE:
        return True
    d = abs((e1.angle - e2.angle + math.pi / 2) % math.pi - math.pi / 2)
    return d < tol


def _merge_runs(edges: list[_Edge], pts: np.ndarray, tol: float, closed: bool) -> list[_Edge]:
    changed = True
    while changed and len(edges) > 1:
        changed = False
        n = len(edges)
        rng = range(n) if closed else range(n - 1)
        for i in rng:
            j = (i + 1) % n
            if j == i:
                break
            if _same(edges[i], edges[j], tol):
                idx = np.concatenate([edges[i].idx, edges[j].idx[1:]])
                merged = _Edge(idx, edges[i].cls, _edge_angle(pts[idx]))
                if merged.cls == FREE:
                    merged.cls = _classify(merged.angle, tol)
                if j == 0:
                    edges = [merged] + edges[1:i]
                else:
                    edges = edges[:i] + [merged] + edges[j + 1 :]
                changed = True
                break
    return edges


def _fit_line(e: _Edge, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Line (point, unit direction) through the edge's traced points, in the rotated frame."""
    p = pts[e.idx]
    # interior points weigh more than the shared end points
    if e.cls == PARALLEL:
        return np.array([p[:, 0].mean(), p[:, 1].mean()]), np.array([1.0, 0.0])
    if e.cls == PERPENDICULAR:
        return np.array([p[:, 0].mean(), p[:, 1].mean()]), np.array([0.0, 1.0])
    a = _edge_angle(p)
    return p.mean(axis=0), np.array([math.cos(a), math.sin(a)])


def _intersect(p1: np.ndarray, d1: np.ndarray, p2: np.ndarray, d2: np.ndarray) -> np.ndarray | None:
    den = d1[0] * d2[1] - d1[1] * d2[0]
    if abs(den) < 1e-9:
        return None
    t = ((p2[0] - p1[0]) * d2[1] - (p2[1] - p1[1]) * d2[0]) / den
    return p1 + t * d1


def _regularize_points(
    pts: np.ndarray, theta: float, prm: RegularizeParams, closed: bool, min_edge: float
) -> np.ndarray:
    """Core of the regularization on densified traced points (map frame) -> vertices (map frame)."""
    tol = math.radians(prm.angle_tol_deg)
    rp = _rot(pts, theta)
    n = len(rp)
    if closed:
        # start the ring at a corner: the point farthest from the centroid
        start = int(np.argmax(np.hypot(*(rp - rp.mean(axis=0)).T)))
        order = np.r_[np.arange(start, n), np.arange(0, start), start]
        rp_ext = rp[order]
    else:
        rp_ext = rp
    keep = _dp_indices(rp_ext, prm.simplify_m)
    edges = []
    for a, b in itertools.pairwise(keep):
        idx = np.arange(a, b + 1)
        ang = _edge_angle(rp_ext[idx])
        edges.append(_Edge(idx, _classify(ang, tol), ang))
    edges = _merge_runs(edges, rp_ext, tol, closed)
    min_edges = 3 if closed else 1
    while len(edges) > min_edges:
        # free (diagonal) edges must be twice as long: short ones are mostly staircase corners
        lengths = [e.length(rp_ext) / (2.0 if e.cls == FREE else 1.0) for e in edges]
        k = int(np.argmin(lengths))
        if lengths[k] >= min_edge:
            break
        m = len(edges)
        if not closed and (k == 0 or k == m - 1):
            # an end edge of an open chain: give its points to its only neighbour
            nb = 1 if k == 0 else m - 2
            idx = (
                np.concatenate([edges[k].idx, edges[nb].idx])
                if k == 0
                else np.concatenate([edges[nb].idx, edges[k].idx])
            )
            edges[nb] = _Edge(np.unique(idx), edges[nb].cls, edges[nb].angle)
            del edges[k]
        else:
            prv, nxt = (k - 1) % m, (k + 1) % m
            idx = edges[k].idx
            half = len(idx) // 2
            edges[prv] = _Edge(
                np.concatenate([edges[prv].idx, idx[1 : half + 1]]), edges[prv].cls, edges[prv].angle
            )
            edges[nxt] = _Edge(
                np.concatenate([idx[half:-1], edges[nxt].idx]), edges[nxt].cls, edges[nxt].angle
            )
            del edges[k]
        edges = _merge_runs(edges, rp_ext, tol, closed)
    lines = [_fit_line(e, rp_ext) for e in edges]
    verts: list[np.ndarray] = []
    m = len(edges)
    if not closed:
        p0, d0 = lines[0]
        verts.append(p0 + np.dot(rp_ext[edges[0].idx[0]] - p0, d0) * d0)
    pairs = range(m) if closed else range(m - 1)
    for i in pairs:
        j = (i + 1) % m
        (p1, d1), (p2, d2) = lines[i], lines[j]
        x = _intersect(p1, d1, p2, d2)
        corner = rp_ext[edges[i].idx[-1]]
        if x is None or np.hypot(*(x - corner)) > 3 * max(min_edge, prm.simplify_m):
            # near-parallel neighbours (a step): join them with a short connecting edge
            verts.append(p1 + np.dot(corner - p1, d1) * d1)
            verts.append(p2 + np.dot(corner - p2, d2) * d2)
        else:
            verts.append(x)
    if not closed:
        p1, d1 = lines[-1]
        verts.append(p1 + np.dot(rp_ext[edges[-1].idx[-1]] - p1, d1) * d1)
    out = _unrot(np.array(verts), theta)
    if closed:
        # the first fitted corner is the last intersection (edge m-1 with edge 0): rotate to start there
        out = np.roll(out, 1, axis=0)
    return out


def _fit_circle(pts: np.ndarray) -> tuple[float, float, float, float]:
    """Algebraic (Kasa) circle fit: returns (cx, cy, r, rms distance to the circle)."""
    a = np.column_stack([2 * pts[:, 0], 2 * pts[:, 1], np.ones(len(pts))])
    b = (pts**2).sum(axis=1)
    (cx, cy, c), *_ = np.linalg.lstsq(a, b, rcond=None)
    r = math.sqrt(max(c + cx * cx + cy * cy, 0.0))
    rms = float(np.sqrt(np.mean((np.hypot(pts[:, 0] - cx, pts[:, 1] - cy) - r) ** 2)))
    return float(cx), float(cy), r, rms


def regularize_ring(
    coords: np.ndarray, theta: float, prm: RegularizeParams = RegularizeParams(), step: float = 0.25
) -> np.ndarray:
    """Regularize one closed ring.

    Args:
        coords: (N, 2) ring vertices (closing vertex optional), map metres.
        theta: dominant orientation (radians).
        step: densification step of the traced outline (m), about half a pixel.

    Returns:
        (M, 2) vertices of the regularized ring (not closed, counter-clockwise order kept from the input).
    """
    coords = np.asarray(coords, float)
    if np.allclose(coords[0], coords[-1]):
        coords = coords[:-1]
    pts = _densify(np.vstack([coords, coords[:1]]), step, closed=True)
    cx, cy, r, rms = _fit_circle(pts)
    area = abs(Polygon(coords).area)
    if r > 2.0 and rms < prm.circle_tol_m and abs(math.pi * r * r / max(area, 1e-9) - 1) < 0.1:
        t = np.linspace(0, 2 * math.pi, prm.circle_vertices, endpoint=False)
        return np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)])
    min_edge = prm.min_edge_m
    out = _regularize_points(pts, theta, prm, True, min_edge)
    while len(out) > prm.max_vertices and min_edge < 50:
        min_edge *= 1.5
        out = _regularize_points(pts, theta, prm, True, min_edge)
    if len(out) > 4:
        # second pass on the first result: zigzags left by noisy traces (two parallel edges a few
        # decimetres apart, joined by a short edge) fall under the simplification tolerance and merge
        again = _regularize_points(
            _densify(np.vstack([out, out[:1]]), step, closed=True), theta, prm, True, min_edge
        )
        if (
            len(again) >= 3
            and Polygon(again).is_valid
            and _iou(Polygon(again), Polygon(coords)) >= _iou(Polygon(out), Polygon(coords)) - 0.01
        ):
            out = again
    return out


def regularize_chain(
    coords: np.ndarray, theta: float, prm: RegularizeParams = RegularizeParams(), step: float = 0.25
) -> np.ndarray:
    """Regularize an open polyline (e.g. the wall shared by two buildings); same rules as a ring.

    Returns:
        (M, 2) vertices; the end points are the projections of the input end points on the end edges.
    """
    coords = np.asarray(coords, float)
    pts = _densify(coords, step, closed=False)
    if len(pts) < 3:
        return coords
    return _regularize_points(pts, theta, prm, False, prm.min_edge_m)


def regularize_polygon(
    poly: Polygon, theta: float, prm: RegularizeParams = RegularizeParams(), step: float = 0.25
) -> Polygon:
    """Regularize a polygon's exterior and holes (holes smaller than ``min_edge_m``² are dropped).

    A hole whose regularized ring collapses (under 3 vertices or no area: a courtyard narrower than the
    edges the regularization keeps) is kept as its simplified traced ring, or dropped (logged) when that
    collapses too. Falls back to the plainly simplified polygon when regularization produces an invalid or
    strongly different shape (IoU with the input < 0.8), and to the input itself when simplification
    collapses it (a sliver), so that a bad corner never loses a building: the result is empty only for an
    empty or zero-area input.
    """
    ext = regularize_ring(np.asarray(poly.exterior.coords), theta, prm, step)
    holes = []
    for h in poly.interiors:
        hp = Polygon(h)
        if hp.area < max(prm.min_edge_m**2, 4.0):
            continue
        ring = regularize_ring(np.asarray(h.coords), theta, prm, step)
        if not _is_ring(ring):
            ring = _simplified_ring(hp, prm.simplify_m)
        if _is_ring(ring):
            holes.append(ring)
        else:
            log.debug("hole of %.1f m2 collapses under regularization and simplification: dropped", hp.area)
    out = _largest_valid(Polygon(ext, holes) if _is_ring(ext) else Polygon())
    if out.is_empty or _iou(out, poly) < 0.8:
        out = _largest_valid(poly.simplify(prm.simplify_m))
        if out.is_empty or _iou(out, poly) < 0.5:
            out = _largest_valid(poly)
    return (
        shapely.orient_polygons(out)
        if hasattr(shapely, "orient_polygons")
        else shapely.geometry.polygon.orient(out)
    )


def _is_ring(coords: np.ndarray) -> bool:
    """True when (N, 2) ``coords`` make a ring with area: 3 distinct vertices or more, all finite."""
    c = np.asarray(coords, float)
    if c.ndim != 2 or len(c) < 3 or not np.isfinite(c).all():
        return False
    return len(np.unique(c, axis=0)) >= 3 and Polygon(c).area > 0


def _simplified_ring(p: Polygon, tol: float) -> np.ndarray:
    """Vertices (not closed) of ``p`` simplified by ``tol``; empty (0, 2) when it collapses."""
    s = p.simplify(tol)
    if s.is_empty or s.geom_type != "Polygon":
        return np.zeros((0, 2))
    return np.asarray(s.exterior.coords)[:-1]


def _largest_valid(p: Polygon) -> Polygon:
    """``p`` if valid, else the largest polygon of its valid version (empty if none)."""
    if p.is_valid:
        return p
    v = shapely.make_valid(p)
    if v.geom_type == "Polygon":
        return v
    polys = [g for g in getattr(v, "geoms", []) if g.geom_type == "Polygon"]
    return max(polys, key=lambda g: g.area) if polys else Polygon()


def _iou(a: Polygon, b: Polygon) -> float:
    """Area IoU, robust to self-intersecting rings (a regularized candidate or a traced outline can be one):
    invalid inputs are made valid first, and a GEOS topology failure counts as no overlap."""
    try:
        a = a if a.is_valid else shapely.make_valid(a)
        b = b if b.is_valid else shapely.make_valid(b)
        u = a.union(b).area
        return a.intersection(b).area / u if u > 0 else 0.0
    except shapely.errors.GEOSException:
        return 0.0
