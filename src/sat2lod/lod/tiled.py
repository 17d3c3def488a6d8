"""LOD0 per tile (rules lod0_tile and lod0): memory and time bounded by the tile, every building made once, whole.

A tile job reads the building mask, nDSM and ortho over its core plus a halo (``lod.tile_halo_m``), groups the
mask's buildings that touch (components of the mask dilated by one pixel, holes filled: every block of
:func:`sat2lod.lod.footprints.extract_footprints` lies in one group), and keeps the footprints of the groups it
owns: a group belongs to the tile whose grid cell holds its first pixel in raster order (:class:`Ownership`:
a cell of a tile that was not kept goes to the nearest kept tile). A group the tile may own must lie inside
the window, off its edges, so that it is traced exactly as on the whole AOI; if one runs past the halo the
tile doubles its halo and reads again. The footprint extraction is local to each block, so the tiled footprints are the untiled ones.

The merge (:func:`merge_lod0`) numbers footprints and blocks as the untiled rule does (ids by centroid,
north to south then west to east; blocks by their first pixel in raster order) and writes the GeoPackage and
FlatGeobuf. It holds the footprints (vectors, ~1 KB each), never a raster.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.windows
from scipy import ndimage

from sat2lod.grid import check_same_grid
from sat2lod.io.raster import raster_header, read_raster
from sat2lod.io.sensor_image import SensorImageError, read_tile_grid, read_tiles
from sat2lod.io.vector import read_vector, write_vector
from sat2lod.lod.pipeline import FOOTPRINT_COLUMNS, LodParams, brightness, footprint_table

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Ownership:
    """Which tile makes which part of the AOI: every cell of the tiling checkpoint's grid belongs to its tile
    when that tile is kept, else to the kept tile nearest in grid cells (first in row-major order on a tie);
    map points beyond the grid belong to the nearest edge cell.

    Attributes:
        x0, y0: map corner of the grid (west, north; m); cell_m: tile side (m).
        cells: (n_rows, n_cols) object array of the owning tile's id.
    """

    x0: float
    y0: float
    cell_m: float
    cells: np.ndarray

    def cell(self, x: float, y: float) -> tuple[int, int]:
        """Grid cell (row, col) of map point (x, y), clipped to the grid."""
        n_rows, n_cols = self.cells.shape
        r = min(max(math.floor((self.y0 - y) / self.cell_m), 0), n_rows - 1)
        c = min(max(math.floor((x - self.x0) / self.cell_m), 0), n_cols - 1)
        return r, c

    def owner(self, x: float, y: float) -> str:
        """The tile that makes the building group whose first pixel is at map point (x, y)."""
        return str(self.cells[self.cell(x, y)])

    def region(self, tile: str) -> tuple[float, float, float, float]:
        """Map bounds (xmin, ymin, xmax, ymax) of the cells ``tile`` owns; infinite on the grid's outer sides."""
        rows, cols = np.nonzero(self.cells == tile)
        if not len(rows):
            raise ValueError(f"tile {tile!r} owns no cell of the grid")
        n_rows, n_cols = self.cells.shape
        r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        return (
            -math.inf if c0 == 0 else self.x0 + c0 * self.cell_m,
            -math.inf if r1 == n_rows else self.y0 - r1 * self.cell_m,
            math.inf if c1 == n_cols else self.x0 + c1 * self.cell_m,
            math.inf if r0 == 0 else self.y0 - r0 * self.cell_m,
        )


def read_ownership(tiles: PathLike) -> Ownership:
    """The :class:`Ownership` of a tiling checkpoint's GeoJSON (its grid and its kept tiles' row and col)."""
    g = read_tile_grid(tiles)
    kept = [(int(p["row"]), int(p["col"]), str(t)) for t, p in read_tiles(tiles).items()]
    if not kept:
        raise SensorImageError(f"{tiles}: no tile kept; rerun the tiles step.")
    n_rows, n_cols = int(g["n_rows"]), int(g["n_cols"])
    rr, cc = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    best = np.full((n_rows, n_cols), np.inf)
    cells = np.empty((n_rows, n_cols), object)
    for r, c, t in sorted(kept):
        d = (rr - r) ** 2 + (cc - c) ** 2
        closer = d < best
        best[closer], cells[closer] = d[closer], t
    return Ownership(float(g["x0"]), float(g["y0"]), int(g["tile_px"]) * float(g["resolution_m"]), cells)


def _groups(building: np.ndarray) -> tuple[np.ndarray, int]:
    """Groups of touching buildings: 8-connected components of the mask dilated by one pixel, holes filled."""
    grown = ndimage.binary_fill_holes(ndimage.binary_dilation(building, structure=np.ones((3, 3), bool)))
    return ndimage.label(grown, structure=np.ones((3, 3), int))


def _on_window_edge(groups: np.ndarray, win: rasterio.windows.Window, shape: tuple[int, int]) -> set[int]:
    """Groups on the window's edges that are not the raster's (cut by the window)."""
    edge = []
    if win.row_off > 0:
        edge.append(groups[0])
    if win.col_off > 0:
        edge.append(groups[:, 0])
    if win.row_off + win.height < shape[0]:
        edge.append(groups[-1])
    if win.col_off + win.width < shape[1]:
        edge.append(groups[:, -1])
    return set(np.unique(np.concatenate(edge)).tolist()) - {0} if edge else set()


def _centre(transform: Any, win: rasterio.windows.Window, rc: tuple[int, int]) -> tuple[float, float]:
    """Map centre of pixel ``rc`` (row, col) of window ``win`` of the grid ``transform``."""
    return transform @ (win.col_off + rc[1] + 0.5, win.row_off + rc[0] + 0.5)


def _window(bounds: Sequence[float], transform: Any, shape: tuple[int, int]) -> rasterio.windows.Window:
    """Pixel window of map ``bounds`` on a grid, snapped outward and clipped to it."""
    w = rasterio.windows.from_bounds(*bounds, transform=transform)
    c0, r0 = max(math.floor(w.col_off + 1e-6), 0), max(math.floor(w.row_off + 1e-6), 0)
    c1 = min(math.ceil(w.col_off + w.width - 1e-6), shape[1])
    r1 = min(math.ceil(w.row_off + w.height - 1e-6), shape[0])
    return rasterio.windows.Window(c0, r0, max(c1 - c0, 0), max(r1 - r0, 0))


def lod0_tile(
    mask: PathLike,
    ndsm: PathLike,
    tiles: PathLike,
    tile: str,
    out: PathLike,
    *,
    ortho: PathLike | None = None,
    lod: LodParams | Mapping[str, Any] | None = None,
) -> gpd.GeoDataFrame:
    """The footprints of the building groups tile ``tile`` owns -> ``out`` (GeoPackage; the columns of rule
    lod0 but ``id``, ``block``, plus ``block_row``, ``block_col``: the global first pixel of each block).

    Args:
        mask, ndsm, ortho: the AOI's building mask (uint8), nDSM (m) and true ortho, on one grid; read in windows.
        tiles: the tiling checkpoint's GeoJSON; tile: the tile's id.
    """
    prm = LodParams.of(lod)
    own = read_ownership(tiles)
    if tile not in set(own.cells.ravel()):
        raise ValueError(f"{tiles}: no tile {tile!r} in the grid")
    hdr = raster_header(mask)
    shape = hdr.shape
    t, (h, w) = hdr.transform, shape
    rx0, rx1 = sorted((t.c, t.c + w * t.a))
    ry0, ry1 = sorted((t.f, t.f + h * t.e))
    region = own.region(tile)
    region = (max(region[0], rx0), max(region[1], ry0), min(region[2], rx1), min(region[3], ry1))
    halo = prm.tile_halo_m
    while True:
        win = _window(
            [region[0] - halo, region[1] - halo, region[2] + halo, region[3] + halo], hdr.transform, shape
        )
        m = read_raster(mask, window=win)
        if m.array.ndim != 2 or m.array.dtype != np.uint8:
            raise ValueError(
                f"{mask}: expected a single-band uint8 building mask (1 building, 0 other, 255 nodata)"
            )
        groups, _ = _groups(m.array == 1)
        labels, first = np.unique(groups.ravel(), return_index=True)
        first_rc = {int(g): divmod(int(f), groups.shape[1]) for g, f in zip(labels, first) if g > 0}
        on_edge = _on_window_edge(groups, win, shape)
        # groups this tile may own: those reaching its region, or whose first pixel in view is in it; one cut by
        # the window's edge would be traced differently from the whole AOI's: read a larger window
        rw = _window(region, m.transform, m.array.shape)
        mine = set(
            np.unique(
                groups[rw.row_off : rw.row_off + rw.height, rw.col_off : rw.col_off + rw.width]
            ).tolist()
        )
        cut = [
            g for g in on_edge if g in mine or own.owner(*_centre(hdr.transform, win, first_rc[g])) == tile
        ]
        if not cut or (win.width == shape[1] and win.height == shape[0]):
            break
        log.info("tile %s: %d building group(s) run past a halo of %.0f m: doubling it", tile, len(cut), halo)
        halo *= 2
    r = read_raster(ndsm, masked_to_nan=True, window=win)
    check_same_grid(m, r, mask, ndsm)
    img = None if ortho is None else brightness(ortho, m, mask, window=win)
    gdf = footprint_table(
        m.array, r.array.astype(np.float32), m.transform, m.crs, prm.footprints(), img, True
    )
    keep = [
        int(groups[br, bc]) not in on_edge
        and own.owner(*_centre(hdr.transform, win, first_rc[int(groups[br, bc])])) == tile
        for br, bc in zip(gdf["block_row"], gdf["block_col"])
    ]
    gdf = gdf[np.asarray(keep, bool)].copy()
    gdf["block_row"] = gdf["block_row"].astype(np.int64) + int(win.row_off)
    gdf["block_col"] = gdf["block_col"].astype(np.int64) + int(win.col_off)
    gdf = gdf.drop(columns=["id", "block"])
    write_vector(out, gdf, layer="footprints")
    log.info(
        "lod0_tile %s: %d footprints (window %d x %d px, halo %.0f m) -> %s",
        tile,
        len(gdf),
        win.width,
        win.height,
        halo,
        out,
    )
    return gdf


def merge_lod0(
    parts: Sequence[PathLike], gpkg: PathLike, fgb: PathLike | None = None, layer: str = "footprints"
) -> gpd.GeoDataFrame:
    """Per-tile footprints (:func:`lod0_tile`) -> rule lod0's footprints, numbered as the untiled rule numbers
    them: ``id`` 1..N by centroid (north to south, then west to east), ``block`` by the block's first pixel."""
    frames = [read_vector(p) for p in parts]
    crs = next((f.crs for f in frames if f.crs is not None), None)
    frames = [f for f in frames if len(f)]
    if frames:
        gdf = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=crs)
    else:
        gdf = gpd.GeoDataFrame(
            pd.DataFrame(columns=[*FOOTPRINT_COLUMNS, "block_row", "block_col"]), geometry="geometry", crs=crs
        )
    c = gdf.geometry.centroid
    order = np.lexsort((c.x.to_numpy(), -c.y.to_numpy())) if len(gdf) else np.zeros(0, int)
    gdf = gdf.iloc[order].reset_index(drop=True)
    gdf["id"] = np.arange(1, len(gdf) + 1, dtype=np.int64)
    first = list(zip(gdf["block_row"].astype(np.int64), gdf["block_col"].astype(np.int64)))
    rank = {rc: k for k, rc in enumerate(sorted(set(first)), start=1)}
    gdf["block"] = np.array([rank[rc] for rc in first], np.int64)
    gdf = gdf[FOOTPRINT_COLUMNS]
    write_vector(gpkg, gdf, layer=layer)
    if fgb is not None:
        write_vector(fgb, gdf)
    log.info("lod0: %d footprints from %d tiles -> %s", len(gdf), len(parts), gpkg)
    return gdf
