"""Vector I/O (GeoPackage, GeoJSON, FlatGeobuf) with atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd

from sat2lod.io.raster import atomic_path


class VectorReadError(RuntimeError):
    """A vector file could not be read; the message names the file and what to do."""


def read_vector(
    path: str | os.PathLike[str],
    layer: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
) -> gpd.GeoDataFrame:
    """Read a vector file into a GeoDataFrame (empty files give an empty frame); with ``bbox`` (xmin, ymin,
    xmax, ymax in the file's CRS) only the features whose envelope meets it, in file order."""
    path = Path(path)
    if not path.exists():
        raise VectorReadError(f"{path}: file not found. Check the path or rerun the step that makes it.")
    try:
        return gpd.read_file(path, layer=layer, bbox=bbox)
    except Exception as exc:  # pyogrio raises several types for corrupt files
        raise VectorReadError(
            f"{path}: not a readable vector file ({exc}). Regenerate or replace it."
        ) from exc


_DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON", ".fgb": "FlatGeobuf"}


def write_vector(path: str | os.PathLike[str], gdf: gpd.GeoDataFrame, layer: str | None = None) -> Path:
    """Write ``gdf`` atomically; the driver follows the suffix (.gpkg, .geojson, .fgb)."""
    path = Path(path)
    driver = _DRIVERS.get(path.suffix.lower())
    if driver is None:
        raise ValueError(f"{path}: unsupported vector suffix; use one of {sorted(_DRIVERS)}")
    with atomic_path(path) as tmp:
        tmp.unlink()  # GDAL drivers refuse to overwrite some formats
        # the layer is named after the product, not after the temporary file (FlatGeobuf and GeoJSON store the
        # name in the file: the bytes would change from run to run)
        gdf.to_file(tmp, driver=driver, layer=layer or path.stem.split(".")[0])
    return path
