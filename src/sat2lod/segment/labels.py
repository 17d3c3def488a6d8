"""Label rasterizer: building footprints (any GeoPackage / GeoJSON / vector file) -> uint8 mask on a grid.

Also the user's footprints for fine-tuning (``segmentation.labels``): :func:`read_footprint_labels` reads and
checks them, :func:`training_labels` turns them into a label raster that says "not building" only where the
footprints can be trusted to say so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
from rasterio import features
from rasterio.transform import Affine, array_bounds
from scipy import ndimage
from shapely.geometry import box

from sat2lod.io.raster import read_raster, write_raster
from sat2lod.io.vector import VectorReadError, read_vector

#: suffixes read as OpenStreetMap exports (GDAL OSM driver: layer ``multipolygons``, rows tagged ``building``)
OSM_SUFFIXES = (".osm", ".pbf")


#: label value of the cells of the band around footprint edges (:func:`training_labels`)
EDGE_BAND = 254


class LabelsError(ValueError):
    """The user's footprints cannot be used; the message names the file and the fix."""


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


def read_footprint_labels(path: str | os.PathLike[str]) -> gpd.GeoDataFrame:
    """Read the user's building footprints (``segmentation.labels``): the polygons of a vector file.

    An OpenStreetMap export (.osm, .pbf) gives its ``multipolygons`` layer's rows tagged ``building`` (closed
    ways and relations); any other vector file all its polygons. Rows without area (points, lines, empty) are
    dropped.

    Raises:
        LabelsError: the file does not exist, cannot be read, has no CRS or no polygon; the message names the
            file and the fix.
    """
    path = Path(path)
    fix = (
        "set segmentation.labels to a vector file of building polygons (GeoPackage, GeoJSON, Shapefile, .osm)"
    )
    if not path.is_file():
        raise LabelsError(f"{path}: segmentation.labels file not found; {fix} or to null (no fine-tuning)")
    osm = path.suffix.lower() in OSM_SUFFIXES
    try:
        gdf = read_vector(path, layer="multipolygons" if osm else None)
    except VectorReadError as exc:
        raise LabelsError(f"{exc} ({fix})") from exc
    if osm and "building" in gdf.columns:
        gdf = gdf[gdf["building"].notna()]
    if gdf.crs is None:
        raise LabelsError(
            f"{path}: the footprints have no CRS, so they cannot be placed on the AOI; give the file one "
            "(e.g. ogr2ogr -a_srs EPSG:4326 out.gpkg in.gpkg, or GeoJSON in WGS84 lon/lat)"
        )
    keep = gdf.geometry.notna() & ~gdf.geometry.is_empty
    keep &= gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon"])
    gdf = gdf[keep]
    if gdf.empty:
        raise LabelsError(f"{path}: no polygon in the file (points or lines only, or empty); {fix}")
    return gdf[["geometry"]].reset_index(drop=True)


def training_labels(
    footprints: gpd.GeoDataFrame,
    transform: Affine,
    shape: tuple[int, int],
    crs: Any,
    edge_ignore_m: float,
    negative_radius_m: float,
    source: str = "segmentation.labels",
) -> np.ndarray:
    """Label raster for fine-tuning on footprints that are trusted where present, not where absent.

    A cell is 1 (building) when its centre is inside a footprint, 0 (not building) when it is within
    ``negative_radius_m`` of a footprint cell (a mapper who drew a building drew its neighbours; far from
    every footprint an unmapped building is likely, as in partial OpenStreetMap coverage), 255 (ignored)
    elsewhere, and :data:`EDGE_BAND` (254) within ``edge_ignore_m`` of any footprint edge on either side
    (footprints and ortho are misregistered by a metre or two: the footprints do not say where the edge is).

    Args:
        footprints: polygons in any CRS (reprojected to ``crs``).
        transform, shape, crs: the target grid (metres).
        edge_ignore_m: half-width of the ignored band around the edges (m); 0 = none.
        negative_radius_m: reach of the "not building" labels around the footprints (m).
        source: the footprints' file, for the error message.
    Returns:
        (H, W) uint8: 1 building, 0 not building, 254 edge band, 255 ignored.
    Raises:
        LabelsError: no footprint overlaps the grid.
    """
    if footprints.crs is None:
        raise LabelsError(f"{source}: the footprints have no CRS; give the file one")
    gdf = footprints.to_crs(crs) if crs is not None else footprints
    bounds = box(*array_bounds(shape[0], shape[1], transform))  # west, south, east, north
    y = rasterize_footprints(gdf, transform, shape, crs)
    if not gdf.intersects(bounds).any() or not (y == 1).any():
        b = gdf.total_bounds
        raise LabelsError(
            f"{source}: no footprint covers a cell of the AOI (footprints span {np.round(b, 1).tolist()} in "
            f"{crs}, the AOI grid {np.round(bounds.bounds, 1).tolist()}); give footprints of this AOI, with "
            "their true CRS"
        )
    res = abs(transform.a)
    dist_m = ndimage.distance_transform_edt(y == 0) * res
    out = y.copy()
    out[dist_m > negative_radius_m] = 255
    if edge_ignore_m > 0:
        edges = [g.boundary.buffer(edge_ignore_m) for g in gdf.geometry if g is not None and not g.is_empty]
        band = features.rasterize(
            ((g, 1) for g in edges), out_shape=shape, transform=transform, fill=0, dtype="uint8"
        )
        out[(band == 1) & (out != 255)] = EDGE_BAND
    return out
