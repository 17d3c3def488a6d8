"""IGN LiDAR HD point clouds of ../shared/data gridded at 0.5 m for the benches (bench/lod2_lidar_real.py,
bench/segment_real.py): the datasets, point reading, and the rasters derived from the returns.

Grid: Lambert-93 (EPSG:2154), 0.5 m cells, origin at the floor / ceiling metre of the points' extent (so cells
are aligned with the global 0.5 m lattice), heights IGN69. Noise classes (7, 18) are dropped when reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.transform import Affine, from_origin
from scipy import ndimage
from scipy.interpolate import griddata

from sat2lod.io.lidar import read_points  # noqa: F401  (re-exported for the benches)
from sat2lod.segment.lidar_samples import top_return_cells

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DATASETS = {
    "montpellier": (
        sorted((DATA / "ign_lidarhd_montpellier_tiles").glob("test_data_*_LA93_IGN69.laz")),
        None,
    ),
    "eastern_france": (
        [DATA / "ign_lidarhd_bdtopo_buildings" / "870000_6618000.subset.postValidation.laz"],
        DATA / "ign_lidarhd_bdtopo_buildings" / "870000_6618000.subset.bdtopo_buildings.shp",
    ),
}
RES = 0.5
EPSG = 2154
BUILDING = 6
VEGETATION = (3, 4, 5)
GROUND = 2


@dataclass
class Grid:
    """The 0.5 m grid of a cloud and each return's cell."""

    transform: Affine
    shape: tuple[int, int]
    row: np.ndarray
    col: np.ndarray
    x0: float
    y1: float


def grid_of(pts: dict[str, np.ndarray]) -> Grid:
    x, y = pts["x"], pts["y"]
    x0, y1 = np.floor(x.min()), np.ceil(y.max())
    w, h = int(np.ceil((x.max() - x0) / RES)), int(np.ceil((y1 - y.min()) / RES))
    col = np.clip(((x - x0) / RES).astype(int), 0, w - 1)
    row = np.clip(((y1 - y) / RES).astype(int), 0, h - 1)
    return Grid(from_origin(x0, y1, RES, RES), (h, w), row, col, float(x0), float(y1))


def rasters(pts: dict[str, np.ndarray]) -> dict:
    """DSM, DTM, nDSM, building mask (0.5 m grids) from the LiDAR returns.

    DSM: highest return per cell, empty cells from the nearest cell; DTM: ground returns (class 2)
    interpolated linearly (nearest beyond their hull); nDSM = DSM - DTM clipped at 0; mask: cells holding a
    building return (class 6), closed by one cell.
    """
    x, y, z, c = pts["x"], pts["y"], pts["z"], pts["c"]
    g = grid_of(pts)
    (h, w), row, col, x0, y1 = g.shape, g.row, g.col, g.x0, g.y1
    dsm = np.full((h, w), -np.inf)
    np.maximum.at(dsm, (row, col), z)
    empty = ~np.isfinite(dsm)
    idx = ndimage.distance_transform_edt(empty, return_distances=False, return_indices=True)
    dsm = dsm[tuple(idx)]
    gr = c == GROUND
    rr, cc = np.mgrid[0:h, 0:w]
    cx, cy = x0 + (cc + 0.5) * RES, y1 - (rr + 0.5) * RES
    dtm = griddata((x[gr], y[gr]), z[gr], (cx, cy), method="linear")
    near = griddata((x[gr], y[gr]), z[gr], (cx, cy), method="nearest")
    dtm = np.where(np.isfinite(dtm), dtm, near)
    mask = np.zeros((h, w), bool)
    b = c == BUILDING
    mask[row[b], col[b]] = True
    mask = ndimage.binary_closing(mask, iterations=1) & ~empty | mask
    return {
        "transform": g.transform,
        "dsm": dsm.astype(np.float32),
        "dtm": dtm.astype(np.float32),
        "ndsm": np.maximum(dsm - dtm, 0).astype(np.float32),
        "mask": mask.astype(np.uint8),
        "empty": empty,
    }


def top_returns(pts: dict[str, np.ndarray], g: Grid) -> np.ndarray:
    """Index of the highest return of each non-empty cell of ``g`` (one per cell)."""
    return top_return_cells(pts, g.x0, g.y1, RES, g.shape)[2]


def surface_rasters(pts: dict[str, np.ndarray]) -> dict:
    """What is seen from above, per 0.5 m cell: the class of the highest return (255 where the cell is empty)
    and an ortho (the highest return's colour as the mean of R, G, B when the cloud has colour, else its
    intensity; empty cells from the nearest cell)."""
    g = grid_of(pts)
    top = top_returns(pts, g)
    cls = np.full(g.shape, 255, np.uint8)
    cls[g.row[top], g.col[top]] = pts["c"][top]
    has_rgb = "rgb" in pts
    value = pts["rgb"][top].astype(np.float32).mean(1) if has_rgb else pts["i"][top].astype(np.float32)
    ortho = np.full(g.shape, np.nan, np.float32)
    ortho[g.row[top], g.col[top]] = value
    empty = cls == 255
    idx = ndimage.distance_transform_edt(empty, return_distances=False, return_indices=True)
    return {
        "top_class": cls,
        "ortho": ortho[tuple(idx)],
        "ortho_source": "mean of R, G, B of the highest return"
        if has_rgb
        else "intensity of the highest return",
        "empty": empty,
    }


def top_building_returns(pts: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The highest building return (class 6) of each 0.5 m cell whose highest return of any class is a
    building one: the roof surface (lower returns of a cell hit walls, eaves, or pass under the roof edge)."""
    cell = np.floor(pts["x"] / RES).astype(np.int64) * 10_000_000 + np.floor(pts["y"] / RES).astype(np.int64)
    order = np.lexsort((-pts["z"], cell))  # by cell, highest first
    first = order[np.r_[True, cell[order][1:] != cell[order][:-1]]]
    top = first[pts["c"][first] == BUILDING]
    return pts["x"][top], pts["y"][top], pts["z"][top]
