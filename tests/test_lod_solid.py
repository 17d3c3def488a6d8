"""LOD2 solids: every face of every solid is planar and simple (no bow-tie), the shell closed and outward,
on constructed corner cases and on many random roof partitions."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from shapely.geometry import Polygon, box

from sat2lod.lod.solid import WALL, Surface, build_solid, check_solid, face_is_simple


def _assert_valid(surfaces, what=""):
    chk = check_solid(surfaces)
    assert chk["closed"] and chk["planar"] and chk["simple"] and chk["volume_m3"] > 0, (what, chk)
    return chk


def test_face_is_simple_detects_a_bow_tie():
    square = Surface([[(0, 0, 0), (1000, 0, 0), (1000, 0, 1000), (0, 0, 1000)]], WALL)
    bow_tie = Surface([[(0, 0, 0), (1000, 0, 1000), (1000, 0, 0), (0, 0, 1000)]], WALL)
    assert face_is_simple(square) and not face_is_simple(bow_tie)
    # 1 mm high at one end, like the walls found in the demo's LOD2 (b57, b93)
    thin = Surface([[(1000, 0, 5000), (0, 0, 10000), (0, 0, 10001), (1000, 0, 4000)]], WALL)
    assert not face_is_simple(thin)
    assert check_solid([bow_tie])["n_not_simple"] == 1


@pytest.mark.parametrize("slope", [-0.10008, -2.0])
def test_planes_crossing_near_a_vertex_give_no_bow_tie(slope):
    """Two faces share the edge x = 5; face B is 0.8 mm above A at (5, 0) and far below at (5, 10): the
    planes cross 8 mm (slope -0.1) or 0.4 mm (slope -2: rounds onto the vertex) from (5, 0). Their heights
    differ by 1 mm there after rounding, which used to leave the step wall a bow-tie 1 mm high."""
    faces = [box(0, 0, 5, 10), box(5, 0, 10, 10)]
    planes = [(10.0, 0.0, 0.0), (10.0008, 0.0, slope)]
    surfaces = build_solid(faces, planes, -25.0)
    _assert_valid(surfaces)
    steps = [s for s in surfaces if s.semantic == WALL and {p[0] for p in s.rings[0]} == {5000}]
    assert steps and all(len(s.rings[0]) == 3 for s in steps)  # triangles: the planes meet on the edge
    if slope == -2.0:  # the crossing is at the vertex: one wall, both roofs at one height there
        assert len(steps) == 1
        corner = {p[2] for s in surfaces for r in s.rings for p in r if p[:2] == (5000, 0)}
        assert corner == {10000, -25000}


def test_planes_crossing_inside_an_edge_split_it():
    faces = [box(0, 0, 5, 10), box(5, 0, 10, 10)]
    planes = [(10.0, 0.0, 0.0), (10.5, 0.0, -0.1)]  # cross at y = 5
    surfaces = build_solid(faces, planes, 0.0)
    _assert_valid(surfaces)
    steps = [s for s in surfaces if s.semantic == WALL and {p[0] for p in s.rings[0]} == {5000}]
    assert len(steps) == 2 and all(len(s.rings[0]) == 3 for s in steps)


def _random_partition(rng: np.random.Generator) -> tuple[list[Polygon], list[tuple[float, float, float]]]:
    """A rectangle cut into 2-4 strips, planes of random slopes whose
    heights at the cuts differ by a few millimetres to a few metres, so that they cross near vertices."""
    w, h = rng.uniform(6, 20), rng.uniform(6, 15)
    x0, y0 = rng.uniform(0, 1000), rng.uniform(0, 1000)
    n = int(rng.integers(2, 5))
    cuts = np.sort(rng.uniform(0.2, 0.8, n - 1)) * w
    xs = [0.0, *cuts, w]
    faces = [box(x0 + a, y0, x0 + b, y0 + h) for a, b in pairwise(xs)]
    planes = []
    base = rng.uniform(5, 15)
    for _ in faces:
        b, c = rng.normal(0, 0.4, 2)
        # tiny offsets (mm) make the planes of neighbours nearly meet at a corner
        a = base - b * x0 - c * y0 + rng.choice([rng.uniform(-0.003, 0.003), rng.uniform(-2, 2)])
        planes.append((float(a), float(b), float(c)))
    return faces, planes


@pytest.mark.parametrize("seed", range(300))
def test_random_roofs_have_planar_simple_faces(seed):
    rng = np.random.default_rng(seed)
    faces, planes = _random_partition(rng)
    ground = min(a + b * x + c * y for (a, b, c), f in zip(planes, faces) for x, y in f.exterior.coords) - 3.0
    _assert_valid(build_solid(faces, planes, ground), seed)
