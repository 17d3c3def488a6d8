"""Watertight 2.5D building solids from a planar partition of the footprint into roof faces.

A building is a footprint partitioned into roof faces, each face carrying a plane z = a + b*x + c*y, and a
flat ground height g. The solid is made of:

- one RoofSurface per face (its 2-D rings lifted on its plane),
- WallSurfaces: a vertical wall under every outer edge (from g up to the roof) and a vertical step wall
  on every inner edge where the two roof planes disagree (split where they cross),
- one GroundSurface (the footprint at g, facing down).

Vertices are shared exactly (coordinates snapped to millimetres) and every vertical edge carries every
height met at its vertex, so each edge of the surface mesh is used exactly twice, in opposite directions:
the shell is closed and consistently oriented (outward normals), which :func:`check_solid` verifies.

Coordinates: projected CRS metres; heights in the vertical datum of the input rasters.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import Polygon

Q = 1000.0  # snapping: millimetres

ROOF, WALL, GROUND = "RoofSurface", "WallSurface", "GroundSurface"

Pt2 = tuple[int, int]
Pt3 = tuple[int, int, int]


@dataclass
class Surface:
    """A planar polygon with holes: rings of integer-millimetre (x, y, z) vertices, first ring = exterior."""

    rings: list[list[Pt3]]
    semantic: str


def _q(v: float) -> int:
    return round(v * Q)


def _ring2(coords: np.ndarray) -> list[Pt2]:
    out: list[Pt2] = []
    for x, y in np.asarray(coords)[:-1, :2]:
        p = (_q(x), _q(y))
        if not out or out[-1] != p:
            out.append(p)
    if len(out) > 1 and out[0] == out[-1]:
        out.pop()
    return out


def _on_segment(p: Pt2, a: Pt2, b: Pt2) -> bool:
    """p strictly inside segment ab (within 1 mm)."""
    ax, ay, bx, by, px, py = *a, *b, *p
    dx, dy = bx - ax, by - ay
    L2 = dx * dx + dy * dy
    if L2 == 0:
        return False
    t = ((px - ax) * dx + (py - ay) * dy) / L2
    if t <= 1e-9 or t >= 1 - 1e-9:
        return False
    cross = abs((px - ax) * dy - (py - ay) * dx) / np.sqrt(L2)
    return cross <= 1.0


def _insert_t_junctions(rings: list[list[list[Pt2]]]) -> None:
    verts = {p for face in rings for ring in face for p in ring}
    va = np.array(sorted(verts), dtype=np.int64)
    for face in rings:
        for r, ring in enumerate(face):
            new: list[Pt2] = []
            n = len(ring)
            for i in range(n):
                a, b = ring[i], ring[(i + 1) % n]
                new.append(a)
                lo = np.minimum(a, b) - 1
                hi = np.maximum(a, b) + 1
                cand = va[
                    (va[:, 0] >= lo[0]) & (va[:, 0] <= hi[0]) & (va[:, 1] >= lo[1]) & (va[:, 1] <= hi[1])
                ]
                inner = [
                    tuple(map(int, c)) for c in cand if tuple(c) not in (a, b) and _on_segment(tuple(c), a, b)
                ]
                if inner:
                    inner.sort(key=lambda c: (c[0] - a[0]) ** 2 + (c[1] - a[1]) ** 2)
                    new.extend(inner)  # type: ignore[arg-type]
            face[r] = new


def _snap_vertices(rings: list[list[list[Pt2]]], tol_mm: float = 5.0) -> None:
    """Merge vertices closer than ``tol_mm`` (separately computed intersections of the same corner) and
    drop the degenerate edges this creates."""
    from scipy.spatial import cKDTree

    verts = sorted({p for face in rings for ring in face for p in ring})
    if len(verts) < 2:
        return
    parent = list(range(len(verts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in cKDTree(np.array(verts, float)).query_pairs(tol_mm):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    rep = {v: verts[find(i)] for i, v in enumerate(verts)}
    for face in rings:
        for r, ring in enumerate(face):
            new: list[Pt2] = []
            for p in ring:
                q = rep[p]
                if not new or new[-1] != q:
                    new.append(q)
            while len(new) > 1 and new[0] == new[-1]:
                new.pop()
            face[r] = new
        face[:] = [r for r in face if len(r) >= 3]


def _z(plane: tuple[float, float, float], p: Pt2) -> int:
    a, b, c = plane
    return _q(a + b * p[0] / Q + c * p[1] / Q)


def build_solid(
    faces: list[Polygon], planes: list[tuple[float, float, float]], ground: float
) -> list[Surface]:
    """Closed, outward-oriented surfaces of a 2.5D building.

    Args:
        faces: roof faces, a planar partition of the footprint (touching polygons, map metres).
        planes: per face (a, b, c) with z = a + b*x + c*y (metres).
        ground: ground height (m).

    Returns:
        Surfaces (roof faces first, then walls, then the ground) in integer millimetres.
    """
    rings: list[list[list[Pt2]]] = []
    for f in faces:
        f = shapely.geometry.polygon.orient(f, 1.0)
        face = [_ring2(np.asarray(f.exterior.coords))] + [_ring2(np.asarray(h.coords)) for h in f.interiors]
        rings.append([r for r in face if len(r) >= 3])
    _snap_vertices(rings)
    _insert_t_junctions(rings)

    # split inner edges where the two roof planes cross, so every wall keeps one side up
    def edge_owner() -> dict[tuple[Pt2, Pt2], int]:
        own = {}
        for fi, face in enumerate(rings):
            for ring in face:
                for i in range(len(ring)):
                    own[(ring[i], ring[(i + 1) % len(ring)])] = fi
        return own

    own = edge_owner()
    # roof height of each (face, vertex) in mm; where two planes cross at a vertex (within rounding) both
    # faces take one height there, so that no wall twists into a bow-tie (see _split_crossings)
    z: dict[tuple[int, Pt2], int] = {
        (fi, p): _z(planes[fi], p) for fi, face in enumerate(rings) for ring in face for p in ring
    }
    inserts = _split_crossings(own, z)
    if inserts:
        for fi, face in enumerate(rings):
            for r, ring in enumerate(face):
                new = []
                for i in range(len(ring)):
                    a, b = ring[i], ring[(i + 1) % len(ring)]
                    new.append(a)
                    if (fi, a, b) in inserts:
                        c = inserts[(fi, a, b)]
                        new.append(c)
                        z.setdefault((fi, c), _z(planes[fi], c))
                face[r] = new
        own = edge_owner()
        # the two planes cross at the inserted vertex: one height for both faces there
        for (fi, p, q), c in inserts.items():
            fj = own[(c, p)]
            zc = min(z[(fi, c)], z[(fj, c)])
            z[(fi, c)] = z[(fj, c)] = zc

    g = _q(ground)
    heights: dict[Pt2, set[int]] = defaultdict(set)
    for (fi, p), zp in z.items():
        heights[p].add(zp)
    boundary = [(p, q, fi) for (p, q), fi in own.items() if (q, p) not in own]
    for p, q, _ in boundary:
        heights[p].add(g)
        heights[q].add(g)

    def vertical(p: Pt2, z0: int, z1: int) -> list[Pt3]:
        """Vertices strictly between z0 and z1 at p, ordered from z0 to z1."""
        zs = sorted(h for h in heights[p] if min(z0, z1) < h < max(z0, z1))
        if z0 > z1:
            zs.reverse()
        return [(p[0], p[1], h) for h in zs]

    out: list[Surface] = []
    for fi, face in enumerate(rings):
        out.append(Surface([[(p[0], p[1], z[(fi, p)]) for p in ring] for ring in face], ROOF))
    walls: list[Surface] = []
    for (p, q), fi in own.items():
        fj = own.get((q, p))
        zi_p, zi_q = z[(fi, p)], z[(fi, q)]
        if fj is None:
            zj_p, zj_q = g, g
        elif fi < fj:
            zj_p, zj_q = z[(fj, p)], z[(fj, q)]
            if zi_p == zj_p and zi_q == zj_q:
                continue
        else:
            continue
        ring = [(q[0], q[1], zi_q), (p[0], p[1], zi_p)] + vertical(p, zi_p, zj_p)
        ring += [(p[0], p[1], zj_p), (q[0], q[1], zj_q)] + vertical(q, zj_q, zi_q)
        dedup: list[Pt3] = []
        for v in ring:
            if not dedup or dedup[-1] != v:
                dedup.append(v)
        if len(dedup) > 1 and dedup[0] == dedup[-1]:
            dedup.pop()
        if len(dedup) >= 3:
            walls.append(Surface([dedup], WALL))
    out += walls
    out.append(Surface(_ground_rings(boundary, g), GROUND))
    return out


def _split_crossings(
    own: dict[tuple[Pt2, Pt2], int], z: dict[tuple[int, Pt2], int]
) -> dict[tuple[int, Pt2, Pt2], Pt2]:
    """Where the planes of the two faces of an inner edge cross along it, the vertex to insert.

    A step wall under an inner edge joins the edge in face i to the edge in face j; if face i is above at
    one end and below at the other, that quad is a bow-tie. The crossing point is inserted as a vertex;
    where it rounds to an end of the edge (the planes cross within a millimetre or two of a vertex), the
    two faces take one height at that end instead (the lower; ``z`` is updated in place), which moves a
    roof vertex by at most a few millimetres and leaves a triangular wall.

    Returns:
        ``(face, p, q) -> c`` for each directed edge (p, q) of ``face`` to split at ``c``.
    """
    inserts: dict[tuple[int, Pt2, Pt2], Pt2] = {}
    for _ in range(len(own) + 1):  # a height taken at a vertex can make another edge there cross: repeat
        inserts, changed = {}, False
        for (p, q), fi in own.items():
            fj = own.get((q, p))
            if fj is None or fi >= fj:
                continue
            dp = z[(fi, p)] - z[(fj, p)]
            dq = z[(fi, q)] - z[(fj, q)]
            if dp * dq >= 0:
                continue
            t = dp / (dp - dq)
            c = (round(p[0] + t * (q[0] - p[0])), round(p[1] + t * (q[1] - p[1])))
            if c not in (p, q):
                inserts[(fi, p, q)] = c
                inserts[(fj, q, p)] = c
            else:  # heights only decrease, so this ends
                z[(fi, c)] = z[(fj, c)] = min(z[(fi, c)], z[(fj, c)])
                changed = True
        if not changed:
            break
    return inserts


def _ground_rings(boundary: list[tuple[Pt2, Pt2, int]], g: int) -> list[list[Pt3]]:
    """Chain the outer directed edges into rings, reverse them (ground faces down), exterior first."""
    nxt: dict[Pt2, list[Pt2]] = defaultdict(list)
    for p, q, _ in boundary:
        nxt[p].append(q)
    rings: list[list[Pt2]] = []
    while any(nxt.values()):
        start = next(p for p, qs in nxt.items() if qs)
        ring = [start]
        cur = nxt[start].pop()
        while cur != start:
            ring.append(cur)
            if not nxt[cur]:
                raise ValueError("roof faces do not form a partition of the footprint (open outline)")
            cur = nxt[cur].pop()
        rings.append(ring)

    def area(r: list[Pt2]) -> float:
        a = np.array(r, float)
        return 0.5 * float(np.sum(a[:, 0] * np.roll(a[:, 1], -1) - np.roll(a[:, 0], -1) * a[:, 1]))

    rings.sort(key=lambda r: -area(r))  # the (CCW, positive) exterior first, then holes (CW)
    return [[(p[0], p[1], g) for p in reversed(r)] for r in rings]


def check_solid(surfaces: list[Surface], planarity_tol_m: float = 0.01) -> dict[str, float | bool | int]:
    """Check that surfaces form a closed, consistently oriented, outward shell of planar faces.

    Returns:
        dict with ``closed`` (every directed edge matched by exactly one reverse edge), ``n_bad_edges``,
        ``max_planarity_m`` (largest vertex distance to its face's best-fit plane), ``planar``,
        ``n_not_simple`` (faces that, seen in their plane, self-intersect, e.g. a bow-tie wall, or whose
        holes cross the exterior), ``simple`` (none such), ``volume_m3`` (divergence theorem; > 0 means
        outward orientation).
    """
    count: dict[tuple[Pt3, Pt3], int] = defaultdict(int)
    vol = 0.0
    worst = 0.0
    not_simple = 0
    for s in surfaces:
        for ring in s.rings:
            for i in range(len(ring)):
                count[(ring[i], ring[(i + 1) % len(ring)])] += 1
        ext = np.array(s.rings[0], float) / Q
        pts = np.vstack([np.array(r, float) / Q for r in s.rings])
        c = pts.mean(axis=0)
        _, _sv, vt = np.linalg.svd(pts - c)
        worst = max(worst, float(np.max(np.abs((pts - c) @ vt[2]))))
        not_simple += not face_is_simple(s, c, vt[:2])
        # signed volume contribution of a fan triangulation of each ring (holes subtract)
        for ring in s.rings:
            r = np.array(ring, float) / Q
            for i in range(1, len(r) - 1):
                vol += float(np.dot(r[0], np.cross(r[i], r[i + 1]))) / 6.0
        del ext
    bad = sum(1 for (a, b), n in count.items() if n != 1 or count.get((b, a), 0) != 1)
    return {
        "closed": bad == 0,
        "n_bad_edges": bad,
        "max_planarity_m": worst,
        "planar": worst <= planarity_tol_m,
        "n_not_simple": not_simple,
        "simple": not_simple == 0,
        "volume_m3": vol,
    }


def face_is_simple(s: Surface, origin: np.ndarray | None = None, axes: np.ndarray | None = None) -> bool:
    """Whether a face, projected on its best-fit plane, is a valid polygon: rings without self-intersection
    (no bow-tie) and holes inside the exterior, not crossing it.

    Args:
        s: the face (integer-millimetre rings).
        origin, axes: a point of the plane (m) and two orthonormal in-plane axes (2 x 3); from an SVD of
            the vertices when None.
    """
    rings = [np.array(r, float) / Q for r in s.rings]
    if origin is None or axes is None:
        pts = np.vstack(rings)
        origin = pts.mean(axis=0)
        axes = np.linalg.svd(pts - origin)[2][:2]
    flat = [(r - origin) @ axes.T for r in rings]
    if any(len(r) < 3 or not shapely.LinearRing(r).is_simple for r in flat):
        return False
    return bool(shapely.Polygon(flat[0], flat[1:]).is_valid)
