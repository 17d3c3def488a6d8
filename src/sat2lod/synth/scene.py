"""Rasterization of a synthetic city layout onto a grid: DSM, DTM, classes, albedo, irradiance.

Grids are north-up, square cells of ``res`` metres, top-left corner (x0, y0) in the layout's CRS.
"""

from __future__ import annotations

import math

import numpy as np
from rasterio import features
from rasterio.transform import Affine
from scipy import ndimage

from sat2lod.synth._kernels import _shadow_mask
from sat2lod.synth.layout import Layout

#: truth class codes
GROUND, BUILDING, VEGETATION, ROAD, WATER = 0, 1, 2, 3, 4


def cell_centres(transform: Affine, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Map x (W,) and y (H,) of the cell centres of a north-up grid of ``shape`` (H, W)."""
    h, w = shape
    return transform.c + (np.arange(w) + 0.5) * transform.a, transform.f - (np.arange(h) + 0.5) * transform.a


def rasterize_layout(layout: Layout, transform: Affine, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Evaluate the layout at cell centres.

    Returns:
        dsm, dtm (float32 m ellipsoidal), classes (uint8 codes above), building_id (int32, 0 = none).
    """
    h, w = shape
    res = transform.a
    xs, ys = cell_centres(transform, shape)
    xx, yy = np.meshgrid(xs, ys)
    dtm = layout.terrain.height(xx, yy)
    classes = np.full(shape, GROUND, np.uint8)
    if layout.roads is not None and not layout.roads.is_empty:
        classes[
            features.rasterize([(layout.roads, 1)], out_shape=shape, transform=transform, fill=0).astype(bool)
        ] = ROAD
    if layout.water is not None:
        wmask = features.rasterize([(layout.water, 1)], out_shape=shape, transform=transform, fill=0).astype(
            bool
        )
        dtm[wmask] = layout.water_level
        classes[wmask] = WATER
    dsm = dtm.copy()
    for t in layout.trees:
        r = t.radius
        j0, j1 = int(math.floor((t.x - r - transform.c) / res)), int(math.ceil((t.x + r - transform.c) / res))
        i0, i1 = int(math.floor((transform.f - t.y - r) / res)), int(math.ceil((transform.f - t.y + r) / res))
        i0, j0 = max(i0, 0), max(j0, 0)
        i1, j1 = min(i1, h), min(j1, w)
        if i0 >= i1 or j0 >= j1:
            continue
        d2 = (xx[i0:i1, j0:j1] - t.x) ** 2 + (yy[i0:i1, j0:j1] - t.y) ** 2
        inside = d2 < r * r
        ground = dtm[i0:i1, j0:j1]
        crown = ground + 0.4 * t.height + 0.6 * t.height * np.sqrt(np.clip(1 - d2 / (r * r), 0, 1))
        sub = dsm[i0:i1, j0:j1]
        upd = inside & (crown > sub)
        sub[upd] = crown[upd]
        classes[i0:i1, j0:j1][inside] = VEGETATION
    bid = np.zeros(shape, np.int32)
    if layout.buildings:
        bid = features.rasterize(
            [(b.footprint, b.id) for b in layout.buildings],
            out_shape=shape,
            transform=transform,
            fill=0,
            dtype="int32",
        )
        objs = ndimage.find_objects(bid)
        by_id = {b.id: b for b in layout.buildings}
        for idx, sl in enumerate(objs, start=1):
            if sl is None or idx not in by_id:
                continue
            b = by_id[idx]
            m = bid[sl] == idx
            dsm[sl][m] = b.ground + b.roof_height(xx[sl][m], yy[sl][m])
            classes[sl][m] = BUILDING
    return {
        "dsm": dsm.astype(np.float32),
        "dtm": dtm.astype(np.float32),
        "classes": classes,
        "building_id": bid,
    }


def value_noise(rng: np.random.Generator, shape: tuple[int, int], cell_px: float) -> np.ndarray:
    """Smooth random texture in [-1, 1] with features of about ``cell_px`` pixels."""
    gh, gw = int(shape[0] / cell_px) + 3, int(shape[1] / cell_px) + 3
    coarse = rng.uniform(-1, 1, (gh, gw))
    fine = ndimage.zoom(coarse, cell_px, order=3, mode="nearest", grid_mode=False)
    return np.clip(fine[: shape[0], : shape[1]], -1.5, 1.5).astype(np.float32)


def albedo_map(
    rng: np.random.Generator, layout: Layout, classes: np.ndarray, bid: np.ndarray, res: float
) -> np.ndarray:
    """Material albedo in [0, 1] per cell; water is textureless."""
    shape = classes.shape
    fine = value_noise(rng, shape, max(1.0, 0.5 / res))
    mid = value_noise(rng, shape, max(2.0, 3.0 / res))
    coarse = value_noise(rng, shape, max(4.0, 20.0 / res))
    roof_alb = np.zeros(int(bid.max()) + 1, np.float32)
    roof_alb[1:] = rng.uniform(0.18, 0.6, roof_alb.size - 1)
    return albedo_from_noise(classes, bid, roof_alb, fine, mid, coarse)


def albedo_from_noise(
    classes: np.ndarray,
    bid: np.ndarray,
    roof_alb: np.ndarray,
    fine: np.ndarray,
    mid: np.ndarray,
    coarse: np.ndarray,
) -> np.ndarray:
    """Material albedo in [0, 1] per cell from the class and building-id grids, the albedo of each roof
    (``roof_alb[id]``) and three noise textures in ~[-1, 1] (features of ~0.5 m, 3 m and 20 m)."""
    alb = 0.30 + 0.06 * coarse + 0.05 * mid + 0.04 * fine  # soil and grass
    alb = np.where(classes == ROAD, 0.16 + 0.02 * mid + 0.03 * fine, alb)
    alb = np.where(classes == VEGETATION, 0.12 + 0.05 * fine + 0.03 * mid, alb)
    alb = np.where(classes == BUILDING, roof_alb[bid] + 0.04 * fine + 0.02 * mid, alb)
    alb = np.where(classes == WATER, 0.06, alb)
    return np.clip(alb, 0.02, 1.0).astype(np.float32)


def irradiance_map(dsm: np.ndarray, res: float, sun_az: float, sun_el: float) -> np.ndarray:
    """Irradiance of each cell's surface: ambient + direct (Lambert) outside cast shadows."""
    gy, gx = np.gradient(dsm.astype(np.float64), res)
    # surface normal of z = f(x, y) with row index growing southward: dz/dy_north = -gy
    nx, ny, nz = -gx, gy, np.ones_like(gx)
    norm = np.sqrt(nx * nx + ny * ny + nz * nz)
    sx, sy, sz = math.cos(sun_el) * math.sin(sun_az), math.cos(sun_el) * math.cos(sun_az), math.sin(sun_el)
    cosi = np.clip((nx * sx + ny * sy + nz * sz) / norm, 0, 1)
    shadow = _shadow_mask(dsm.astype(np.float32), res, sun_az, sun_el, float(np.nanmax(dsm)))
    return (0.25 + 0.75 * cosi * (1 - shadow)).astype(np.float32)


def wall_normals(dsm: np.ndarray, res: float) -> tuple[np.ndarray, np.ndarray]:
    """Outward horizontal normals of the steep edges (walls) from a smoothed DSM: (nx, ny) east/north."""
    sm = ndimage.gaussian_filter(dsm.astype(np.float64), 1.0 / res)
    gy, gx = np.gradient(sm, res)
    nx, ny = -gx, gy
    n = np.hypot(nx, ny) + 1e-9
    return (nx / n).astype(np.float32), (ny / n).astype(np.float32)
