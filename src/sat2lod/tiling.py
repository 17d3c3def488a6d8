"""Tile grid over the AOI: independent stereo jobs that share pixel edges.

The grid lives in the output CRS (projected, metres). Its origin is the AOI's top-left corner snapped to a
multiple of the output resolution, the tile side and the margin are whole numbers of pixels, so every tile
core and every margin starts on a pixel edge of the common output grid, and mosaicking needs no resampling.
Rows count from the north (row 0 = top), columns from the west; tile id ``t{row:04d}_{col:04d}``.

A tile is kept when its core intersects the area that every view sees (RPC localization of the image edges):
for some height of the scene's height range (``any_height``, default: nothing that may be visible is lost) or
for every height (``all_heights``: only tiles surely seen).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from sat2lod.grid import SNAP_TOL_PX, snap_bounds
from sat2lod.io.jsonio import write_json
from sat2lod.io.rpc_files import read_rpc
from sat2lod.io.scene_sheet import read_scene_sheet
from sat2lod.io.sensor_image import image_shape
from sat2lod.schema import defaults
from sat2lod.view_geometry import common_footprint

_TILING = defaults("tiling")  # defaults of config section tiling

log = logging.getLogger(__name__)

#: the largest grid the ``{tile}`` wildcard (4-digit row and column) can name
MAX_TILES_PER_AXIS = 10_000


@dataclass(frozen=True)
class GridSpec:
    """A tile grid: origin (x0 = west edge, y0 = north edge, metres), tile side and margin in pixels.

    Attributes:
        x0, y0: top-left corner of tile (0, 0), a multiple of ``resolution``.
        resolution: output pixel size (m).
        tile_px, margin_px: tile side and margin in pixels.
        n_rows, n_cols: grid size; width_px, height_px: AOI size in pixels (last row/column of tiles is clipped).
    """

    x0: float
    y0: float
    resolution: float
    tile_px: int
    margin_px: int
    n_rows: int
    n_cols: int
    width_px: int
    height_px: int


def grid_spec(
    aoi_bounds: Sequence[float], tile_size_m: float, margin_m: float, resolution_m: float
) -> GridSpec:
    """Snap the AOI to the output pixel grid and size the tiles.

    Args:
        aoi_bounds: [xmin, ymin, xmax, ymax] in the output CRS (m).
        tile_size_m: tile side without margin (m), rounded to a whole number of pixels (>= 1 pixel).
        margin_m: margin around each tile (m), rounded up to whole pixels.
        resolution_m: output pixel size (m).
    """
    xmin, ymin, xmax, ymax = map(float, aoi_bounds)
    if not (xmax > xmin and ymax > ymin):
        raise ValueError(f"empty AOI bounds {list(aoi_bounds)}")
    if resolution_m <= 0 or tile_size_m <= 0 or margin_m < 0:
        raise ValueError("resolution_m and tile_size_m must be > 0 and margin_m >= 0")
    r = float(resolution_m)
    ix0, iy0, ix1, iy1 = snap_bounds(aoi_bounds, r)
    tile_px = max(1, round(tile_size_m / r))
    margin_px = math.ceil(margin_m / r - SNAP_TOL_PX)
    w, h = ix1 - ix0, iy1 - iy0
    n_cols, n_rows = -(-w // tile_px), -(-h // tile_px)
    if n_cols > MAX_TILES_PER_AXIS or n_rows > MAX_TILES_PER_AXIS:
        raise ValueError(
            f"{n_rows} x {n_cols} tiles: more than {MAX_TILES_PER_AXIS} per axis; increase tiling.tile_size_m"
        )
    return GridSpec(
        x0=ix0 * r,
        y0=iy1 * r,
        resolution=r,
        tile_px=tile_px,
        margin_px=margin_px,
        n_rows=n_rows,
        n_cols=n_cols,
        width_px=w,
        height_px=h,
    )


def tile_cores(spec: GridSpec) -> np.ndarray:
    """(n_rows * n_cols, 4) array of core bounds [xmin, ymin, xmax, ymax], row-major from the north-west tile.

    Cores tile the snapped AOI exactly (the last row and column are clipped to it) and never overlap.
    """
    r = spec.resolution
    rows, cols = np.meshgrid(np.arange(spec.n_rows), np.arange(spec.n_cols), indexing="ij")
    c0 = cols.ravel() * spec.tile_px
    c1 = np.minimum(c0 + spec.tile_px, spec.width_px)
    r0 = rows.ravel() * spec.tile_px
    r1 = np.minimum(r0 + spec.tile_px, spec.height_px)
    # integer pixel counts times the resolution: edges are exact multiples of r (no accumulated float error)
    return np.column_stack([spec.x0 + c0 * r, spec.y0 - r1 * r, spec.x0 + c1 * r, spec.y0 - r0 * r])


def tile_id(row: int, col: int) -> str:
    """Wildcard value of a tile: ``t{row:04d}_{col:04d}``."""
    return f"t{row:04d}_{col:04d}"


def select_tiles(
    cores: np.ndarray, visible: shapely.Geometry | None, min_coverage: float = _TILING["min_coverage"]
) -> np.ndarray:
    """Boolean mask of the tiles whose core is seen: covered fraction > ``min_coverage`` of its area.

    Args:
        cores: (N, 4) core bounds; visible: area seen by all views (output CRS), None = keep all.
        min_coverage: in [0, 1); 0 keeps every tile that intersects the visible area with a positive area.
    """
    if visible is None:
        return np.ones(len(cores), bool)
    boxes = shapely.box(cores[:, 0], cores[:, 1], cores[:, 2], cores[:, 3])
    shapely.prepare(visible)
    inter = shapely.area(shapely.intersection(boxes, visible))
    return inter > min_coverage * shapely.area(boxes)


def tiles_feature_collection(
    spec: GridSpec, cores: np.ndarray, keep: np.ndarray, epsg: int
) -> dict[str, Any]:
    """GeoJSON FeatureCollection of the kept tiles (format in docs/ARCHITECTURE.md), in EPSG ``epsg``."""
    m = spec.margin_px * spec.resolution
    feats = []
    for k in np.flatnonzero(keep):
        row, col = divmod(int(k), spec.n_cols)
        core = [float(v) for v in cores[k]]
        b = [core[0] - m, core[1] - m, core[2] + m, core[3] + m]
        ring = [[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]], [b[0], b[1]]]
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"tile": tile_id(row, col), "row": row, "col": col, "core": core, "bounds": b},
            }
        )
    return {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{int(epsg)}"}},
        "epsg": int(epsg),
        "resolution_m": spec.resolution,
        "grid": {
            "x0": spec.x0,
            "y0": spec.y0,
            "tile_px": spec.tile_px,
            "margin_px": spec.margin_px,
            "n_rows": spec.n_rows,
            "n_cols": spec.n_cols,
        },
        "features": feats,
    }


def make_tiles(
    *,
    scenes: str | os.PathLike[str],
    tiles: str | os.PathLike[str],
    resolution_m: float,
    tile_size_m: float = _TILING["tile_size_m"],
    margin_m: float = _TILING["margin_m"],
    min_coverage: float = _TILING["min_coverage"],
    visibility: str = _TILING["visibility"],
) -> dict[str, Any]:
    """Read the scene sheet, compute the grid, keep the tiles seen by all views, write the tile GeoJSON.

    Args:
        scenes: ``results/acquire/{aoi}/scenes.json``.
        tiles: output ``results/tiles/{aoi}/tiles.geojson``.
        tile_size_m, margin_m, resolution_m, min_coverage: see :func:`grid_spec` and :func:`select_tiles`.
        visibility: ``any_height`` (seen by all views for some height of the scene's range) or ``all_heights``
            (for every height), see :func:`sat2lod.view_geometry.common_footprint`.
    Raises:
        ValueError: no tile is seen by all views (names the scene sheet and what to check).
    """
    sheet = read_scene_sheet(scenes, require=("epsg", "height_range", "aoi_bounds"))
    views = sheet["views"]
    epsg = int(sheet["epsg"])
    spec = grid_spec(sheet["aoi_bounds"], tile_size_m, margin_m, resolution_m)
    cores = tile_cores(spec)
    cams = []
    for v in views:
        rpc = read_rpc(v["image"], v.get("rpc"))
        if "width" in v and "height" in v:
            w, h = int(v["width"]), int(v["height"])
        else:
            h, w = image_shape(v["image"])
        cams.append((rpc, w, h))
    visible = common_footprint(cams, tuple(sheet["height_range"]), epsg=epsg, mode=visibility)
    keep = select_tiles(cores, visible, min_coverage)
    if not keep.any():
        raise ValueError(
            f"{scenes}: no tile of the AOI {sheet['aoi_bounds']} (EPSG:{epsg}) is seen by all "
            f"{len(views)} views; check aoi.bbox_lonlat, the images and their RPCs."
        )
    fc = tiles_feature_collection(spec, cores, keep, epsg)
    write_json(tiles, fc)
    log.info(
        "%s: %d of %d tiles kept (%d x %d grid, %d px tiles + %d px margin at %.3g m)",
        tiles,
        int(keep.sum()),
        len(cores),
        spec.n_rows,
        spec.n_cols,
        spec.tile_px,
        spec.margin_px,
        spec.resolution,
    )
    return fc
