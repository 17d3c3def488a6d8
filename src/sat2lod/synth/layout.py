"""Synthetic city layout: terrain, street blocks with dominant orientations, buildings, trees, water.

Everything is in a projected metric CRS (UTM): x = easting, y = northing (m); heights are ellipsoidal (m).
The layout is a deterministic function of the random generator it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from shapely import affinity
from shapely.geometry import Point, Polygon, box
from shapely.ops import unary_union

ROOF_TYPES = ("flat", "shed", "gable", "hip", "pyramid")


@dataclass
class Terrain:
    """Smooth terrain h(x, y) = base + sum of Gaussian bumps + a plane (m, ellipsoidal)."""

    base: float
    slope: tuple[float, float]
    origin: tuple[float, float]
    bumps: list[tuple[float, float, float, float]]  # (x, y, sigma, amplitude)

    def height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        h = self.base + self.slope[0] * (x - self.origin[0]) + self.slope[1] * (y - self.origin[1])
        for bx, by, s, a in self.bumps:
            h = h + a * np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * s * s))
        return h


@dataclass
class Building:
    """One building. ``frame`` = (cx, cy, angle_rad, half_length, half_width) of the roof primitive:
    the ridge runs along the local s axis (angle from the x axis), the roof slopes across t."""

    id: int
    footprint: Polygon
    roof_type: str
    eave: float  # eave height above ground (m)
    ridge: float  # ridge (max) height above ground (m)
    ground: float  # ellipsoidal height of the ground floor (m)
    frame: tuple[float, float, float, float, float]
    kind: str  # detached | row | courtyard | complex | tower | commercial

    def roof_height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Roof height above ground (m) at map points (x, y) inside the footprint."""
        cx, cy, ang, hl, hw = self.frame
        dx, dy = x - cx, y - cy
        s = dx * math.cos(ang) + dy * math.sin(ang)
        t = -dx * math.sin(ang) + dy * math.cos(ang)
        rise = self.ridge - self.eave
        if self.roof_type == "flat":
            return np.full(np.shape(x), self.eave)
        if self.roof_type == "shed":
            return self.eave + rise * np.clip((t + hw) / (2 * hw), 0, 1)
        if self.roof_type == "gable":
            return self.ridge - rise * np.clip(np.abs(t) / hw, 0, 1)
        if self.roof_type == "hip":
            d = np.minimum(hw - np.abs(t), hl - np.abs(s))
            return self.eave + rise * np.clip(d / hw, 0, 1)
        if self.roof_type == "pyramid":
            d = np.minimum(hw - np.abs(t), hl - np.abs(s))
            return self.eave + rise * np.clip(d / min(hw, hl), 0, 1)
        raise ValueError(self.roof_type)


@dataclass
class Tree:
    x: float
    y: float
    radius: float
    height: float  # top of crown above ground (m)


@dataclass
class Layout:
    bounds: tuple[float, float, float, float]  # AOI (xmin, ymin, xmax, ymax)
    terrain: Terrain
    orientations: list[float]  # dominant orientations (rad)
    roads: Polygon | None
    water: Polygon | None
    water_level: float
    buildings: list[Building] = field(default_factory=list)
    trees: list[Tree] = field(default_factory=list)


def _rect(cx: float, cy: float, ang: float, hl: float, hw: float) -> Polygon:
    return affinity.rotate(box(cx - hl, cy - hw, cx + hl, cy + hw), ang, origin=(cx, cy), use_radians=True)


def _local_to_map(origin: tuple[float, float], ang: float, u: float, v: float) -> tuple[float, float]:
    c, s = math.cos(ang), math.sin(ang)
    return origin[0] + u * c - v * s, origin[1] + u * s + v * c


def make_layout(
    rng: np.random.Generator,
    bounds: tuple[float, float, float, float],
    n_buildings: int,
    with_water: bool = True,
) -> Layout:
    """Draw a city: districts with 2-3 dominant orientations, street grids, blocks filled with buildings."""
    xmin, ymin, xmax, ymax = bounds
    size = min(xmax - xmin, ymax - ymin)
    cx0, cy0 = (xmin + xmax) / 2, (ymin + ymax) / 2
    terrain = Terrain(
        base=150.0 + float(rng.uniform(-20, 20)),
        slope=(float(rng.uniform(-0.015, 0.015)), float(rng.uniform(-0.015, 0.015))),
        origin=(cx0, cy0),
        bumps=[
            (
                float(rng.uniform(xmin, xmax)),
                float(rng.uniform(ymin, ymax)),
                float(rng.uniform(0.15, 0.35) * size),
                float(rng.uniform(-4, 6)),
            )
            for _ in range(3)
        ],
    )
    # Districts: Voronoi cells of 2-3 seeds, each with its own street orientation.
    n_dist = 1 if size < 200 else int(rng.integers(2, 4))
    base_ang = float(rng.uniform(0, math.pi / 2))
    orientations = [base_ang] + [
        base_ang + float(rng.uniform(math.radians(20), math.radians(70))) for _ in range(n_dist - 1)
    ]
    seeds = np.column_stack([rng.uniform(xmin, xmax, n_dist), rng.uniform(ymin, ymax, n_dist)])
    aoi = box(xmin, ymin, xmax, ymax)
    water = None
    water_level = 0.0
    if with_water and size >= 300:
        wx, wy = (
            rng.uniform(xmin + 0.2 * size, xmax - 0.2 * size),
            rng.uniform(ymin + 0.2 * size, ymax - 0.2 * size),
        )
        water = affinity.rotate(
            affinity.scale(Point(wx, wy).buffer(1.0, 32), rng.uniform(25, 45), rng.uniform(15, 25)),
            float(rng.uniform(0, 180)),
            origin=(wx, wy),
        )
        water_level = float(terrain.height(np.array(wx), np.array(wy))) - 1.0

    blocks: list[tuple[Polygon, float]] = []
    grid_step = max(size / 40, 5.0)
    gx, gy = np.meshgrid(
        np.arange(xmin, xmax, grid_step) + grid_step / 2, np.arange(ymin, ymax, grid_step) + grid_step / 2
    )
    owner = np.argmin((gx[..., None] - seeds[:, 0]) ** 2 + (gy[..., None] - seeds[:, 1]) ** 2, axis=-1)
    for d in range(n_dist):
        cells = [
            box(x - grid_step / 2, y - grid_step / 2, x + grid_step / 2, y + grid_step / 2)
            for x, y in zip(gx[owner == d], gy[owner == d])
        ]
        if not cells:
            continue
        district = unary_union(cells).intersection(aoi)
        ang = orientations[d]
        road_w = float(rng.uniform(8, 12))
        bl, bw = float(rng.uniform(60, 95)), float(rng.uniform(45, 70))
        if size < 200:
            bl, bw = size * 0.7, size * 0.55
        r = size * 1.5
        for iu in np.arange(-r, r, bl + road_w):
            for iv in np.arange(-r, r, bw + road_w):
                px, py = _local_to_map((cx0, cy0), ang, iu + bl / 2, iv + bw / 2)
                rect = _rect(px, py, ang, bl / 2, bw / 2)
                blk = rect.intersection(district).buffer(-1.0).intersection(aoi.buffer(-3.0))
                if water is not None:
                    blk = blk.difference(water.buffer(6.0))
                if blk.is_empty or blk.area < 0.25 * bl * bw:
                    continue
                if blk.geom_type != "Polygon":
                    blk = max(blk.geoms, key=lambda g: g.area)
                blocks.append((blk, ang))
    order = rng.permutation(len(blocks))
    buildings: list[Building] = []
    used: list[Polygon] = []
    kinds = ["row", "detached", "complex", "tower", "courtyard", "commercial"]
    for i, k in enumerate(order):
        if len(buildings) >= n_buildings:
            break
        blk, ang = blocks[k]
        # the first blocks cycle through every kind so that each appears; then draw at random
        kind = kinds[i] if i < len(kinds) else str(rng.choice(kinds, p=[0.3, 0.3, 0.15, 0.07, 0.08, 0.1]))
        for b in _fill_block(rng, blk, ang, terrain, start_id=len(buildings) + 1, kind=kind):
            if len(buildings) >= n_buildings:
                break
            buildings.append(b)
            used.append(blk)
    roads = None
    if blocks:
        roads = aoi.difference(unary_union([b for b, _ in blocks]).buffer(0.5))
        if water is not None:
            roads = roads.difference(water.buffer(2.0))
    trees = _plant_trees(rng, aoi, buildings, roads, water, n=int(max(5, 0.6 * n_buildings)))
    return Layout(
        bounds=bounds,
        terrain=terrain,
        orientations=orientations,
        roads=roads,
        water=water,
        water_level=water_level,
        buildings=buildings,
        trees=trees,
    )


def _heights(rng: np.random.Generator, kind: str, roof: str) -> tuple[float, float]:
    eave = {
        "detached": (3.0, 8.0),
        "row": (6.0, 11.0),
        "courtyard": (9.0, 22.0),
        "complex": (6.0, 18.0),
        "tower": (30.0, 57.0),
        "commercial": (4.0, 9.0),
    }[kind]
    e = float(rng.uniform(*eave))
    rise = 0.0 if roof == "flat" else float(rng.uniform(2.0, 4.5))
    return e, e + rise


def _fill_block(
    rng: np.random.Generator, blk: Polygon, ang: float, terrain: Terrain, start_id: int, kind: str
) -> list[Building]:
    """Place buildings in one street block (local frame aligned with the block's orientation)."""
    c = blk.centroid
    # block extent in its local frame
    loc = affinity.rotate(blk, -ang, origin=(c.x, c.y), use_radians=True)
    lx0, ly0, lx1, ly1 = loc.bounds
    out: list[Building] = []
    nid = start_id

    def add(poly_local: Polygon, k: str, roof: str, frame_local: tuple[float, float, float, float]) -> None:
        nonlocal nid
        poly = affinity.rotate(poly_local, ang, origin=(c.x, c.y), use_radians=True)
        if not blk.buffer(-0.5).contains(poly):
            return
        fx, fy = _local_to_map((c.x, c.y), ang, frame_local[0] - c.x, frame_local[1] - c.y)
        e, r = _heights(rng, k, roof)
        ground = float(terrain.height(np.array(poly.centroid.x), np.array(poly.centroid.y)))
        # frame_local[2]: extra rotation of the ridge axis relative to the block (0 or pi/2)
        out.append(
            Building(
                nid,
                poly,
                roof,
                e,
                r,
                ground,
                (fx, fy, ang + frame_local[2], frame_local[3], frame_local[4]),
                k,
            )
        )
        nid += 1

    if kind == "row":
        depth = float(rng.uniform(9, 13))
        y = ly0 + 2.0
        roof = str(rng.choice(["gable", "flat"], p=[0.7, 0.3]))
        sides = (0, 1) if rng.uniform() < 0.3 else (int(rng.integers(0, 2)),)
        for side in sides:
            x = lx0 + 2.0 + float(rng.uniform(0, 10))
            yb = y if side == 0 else ly1 - 2.0 - depth
            n_row = 0
            while x + 6 < lx1 - 2.0 and n_row < 6:
                n_row += 1
                w = float(rng.uniform(6, 10))
                if x + w > lx1 - 2.0:
                    break
                p = box(x, yb, x + w, yb + depth)
                add(p, "row", roof, (x + w / 2, yb + depth / 2, 0.0, w / 2, depth / 2))
                x += w  # shared wall: the next house starts where this one ends
            if ly1 - ly0 < 2 * depth + 8:
                break
    elif kind == "courtyard":
        m = 3.0
        outer = box(lx0 + m, ly0 + m, lx1 - m, ly1 - m)
        d = float(rng.uniform(9, 14))
        if (lx1 - lx0) > 2 * d + 16 and (ly1 - ly0) > 2 * d + 16:
            inner = box(lx0 + m + d, ly0 + m + d, lx1 - m - d, ly1 - m - d)
            cxl, cyl = (lx0 + lx1) / 2, (ly0 + ly1) / 2
            add(
                Polygon(outer.exterior.coords, [inner.exterior.coords]),
                "courtyard",
                "flat",
                (cxl, cyl, 0.0, (lx1 - lx0) / 2 - m, (ly1 - ly0) / 2 - m),
            )
    elif kind == "complex":
        # L, T or U shapes, flat roofs, two per block when room
        shapes = []
        wx, wy = lx1 - lx0, ly1 - ly0
        n = 2 if wx > 60 else 1
        for i in range(n):
            x0 = lx0 + 4 + i * (wx / n)
            w = wx / n - 8
            h = wy - 8
            t = float(rng.uniform(8, 12))
            shape = rng.choice(["L", "T", "U"])
            if shape == "L":
                p = box(x0, ly0 + 4, x0 + w, ly0 + 4 + t).union(box(x0, ly0 + 4, x0 + t, ly0 + 4 + h))
            elif shape == "T":
                p = box(x0, ly0 + 4 + h - t, x0 + w, ly0 + 4 + h).union(
                    box(x0 + w / 2 - t / 2, ly0 + 4, x0 + w / 2 + t / 2, ly0 + 4 + h)
                )
            else:
                p = (
                    box(x0, ly0 + 4, x0 + w, ly0 + 4 + t)
                    .union(box(x0, ly0 + 4, x0 + t, ly0 + 4 + h))
                    .union(box(x0 + w - t, ly0 + 4, x0 + w, ly0 + 4 + h))
                )
            if w > 2 * t + 4 and h > t + 4:
                shapes.append((p, x0 + w / 2, ly0 + 4 + h / 2, w / 2, h / 2))
        for p, fx, fy, hl, hw in shapes:
            add(p, "complex", "flat", (fx, fy, 0.0, hl, hw))
    elif kind in ("tower", "commercial"):
        wx, wy = lx1 - lx0, ly1 - ly0
        if kind == "tower":
            s = float(rng.uniform(16, 26))
            add(
                box(
                    (lx0 + lx1) / 2 - s / 2,
                    (ly0 + ly1) / 2 - s / 2,
                    (lx0 + lx1) / 2 + s / 2,
                    (ly0 + ly1) / 2 + s / 2,
                ),
                "tower",
                str(rng.choice(["flat", "pyramid"], p=[0.7, 0.3])),
                ((lx0 + lx1) / 2, (ly0 + ly1) / 2, 0.0, s / 2, s / 2),
            )
        else:
            hl, hw = wx / 2 - 6, wy / 2 - 6
            if hl > 8 and hw > 8:
                add(
                    box(
                        (lx0 + lx1) / 2 - hl, (ly0 + ly1) / 2 - hw, (lx0 + lx1) / 2 + hl, (ly0 + ly1) / 2 + hw
                    ),
                    "commercial",
                    "flat",
                    ((lx0 + lx1) / 2, (ly0 + ly1) / 2, 0.0, hl, hw),
                )
    else:  # detached houses on a jittered grid, all roof types
        cell = float(rng.uniform(18, 24))
        for gx in np.arange(lx0 + cell / 2, lx1 - cell / 2 + 1e-6, cell):
            for gy in np.arange(ly0 + cell / 2, ly1 - cell / 2 + 1e-6, cell):
                roof = str(rng.choice(ROOF_TYPES, p=[0.15, 0.15, 0.35, 0.25, 0.1]))
                hl = float(rng.uniform(4.5, 7.0))
                hw = hl if roof == "pyramid" else float(rng.uniform(3.5, min(5.5, hl - 0.5)))
                x = gx + float(rng.uniform(-1.5, 1.5))
                y = gy + float(rng.uniform(-1.5, 1.5))
                swap = bool(rng.integers(0, 2)) and roof != "pyramid"
                if swap:  # ridge along the block's v axis
                    p = box(x - hw, y - hl, x + hw, y + hl)
                    add(p, "detached", roof, (x, y, math.pi / 2, hl, hw))
                else:
                    p = box(x - hl, y - hw, x + hl, y + hw)
                    add(p, "detached", roof, (x, y, 0.0, hl, hw))
    return out


def _plant_trees(
    rng: np.random.Generator,
    aoi: Polygon,
    buildings: list[Building],
    roads: Polygon | None,
    water: Polygon | None,
    n: int,
) -> list[Tree]:
    blocked = unary_union(
        [b.footprint.buffer(3.0) for b in buildings]
        + ([water.buffer(3.0)] if water is not None else [])
        + ([roads.buffer(-1.0)] if roads is not None and not roads.is_empty else [])
    )
    xmin, ymin, xmax, ymax = aoi.bounds
    trees: list[Tree] = []
    tries = 0
    while len(trees) < n and tries < 50 * n:
        tries += 1
        x, y = float(rng.uniform(xmin + 5, xmax - 5)), float(rng.uniform(ymin + 5, ymax - 5))
        r = float(rng.uniform(2.0, 4.5))
        p = Point(x, y).buffer(r)
        if blocked.intersects(p) or any(
            (t.x - x) ** 2 + (t.y - y) ** 2 < (t.radius + r) ** 2 for t in trees[-200:]
        ):
            continue
        trees.append(Tree(x, y, r, float(rng.uniform(6.0, 14.0))))
    return trees
