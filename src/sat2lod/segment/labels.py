"""Label rasterizer: building footprints (any GeoPackage / GeoJSON / vector file) -> uint8 mask on a grid."""

from __future__ import annotations

import os
from typing import Any

import geopandas as gpd
import numpy as np
from rasterio import features
from rasterio.transform import Affine

from sat2lod.io.raster import read_raster, write_raster
from sat2lod.io.vector import read_vector


def rasterize_footprints(
    footprints: gpd.GeoDataFrame,
    transform: Affine,
    shape: tuple[int, int],
    crs: Any,
    all_touched: bool = False,
) -> np.ndarray:
    """Burn polygons into a (H, W) uint8 mask: 1 building, 0 not.

    Args:
        footprints: polygons (any CRS; reprojected to ``crs``). Rows with empty or non-areal geometry are ignored.
        transform, shape, crs: the target grid.
        all_touched: burn every cell touched (default: cells whose centre is inside, as SpaceNet masks).
    Raises:
        ValueError: the footprints have no CRS (cannot be placed on the grid).
    """
    if footprints.crs is None:
        raise ValueError("the footprints have no CRS: set it (e.g. gdf.set_crs(...)) or fix the source file")
    gdf = footprints.to_crs(crs) if crs is not None else footprints
    geoms = [g for g in gdf.geometry if g is not None and not g.is_empty and g.area > 0]
    if not geoms:
        return np.zeros(shape, np.uint8)
    return features.rasterize(
        ((g, 1) for g in geoms),
        out_shape=shape,
        transform=transform,
        fill=0,
        all_touched=all_touched,
        dtype="uint8",
    )


def rasterize_footprints_file(
    footprints: str | os.PathLike[str],
    like: str | os.PathLike[str],
    out: str | os.PathLike[str],
    all_touched: bool = False,
) -> np.ndarray:
    """Rasterize a footprint file on the grid of raster ``like``; write a uint8 mask (255 = nodata of ``like``)."""
    ref = read_raster(like, bands=1)
    mask = rasterize_footprints(read_vector(footprints), ref.transform, ref.shape, ref.crs, all_touched)
    mask[~ref.valid_mask()] = 255
    write_raster(
        out, mask, ref.transform, ref.crs, nodata=255, tags={"CLASSES": "0=not building, 1=building"}
    )
    return mask
