"""Windowed reading of raw (sensor-geometry) satellite images for stereo matching."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from sat2lod.io.scene_sheet import read_scene_sheet

__all__ = [
    "SensorImageError",
    "image_shape",
    "read_scene_sheet",
    "read_tile",
    "read_tile_grid",
    "read_tiles",
    "read_window",
]


class SensorImageError(RuntimeError):
    """A sensor image could not be read; the message names the file and the fix."""


def _open(path: Path):  # type: ignore[no-untyped-def]
    if not path.exists():
        raise SensorImageError(
            f"{path}: image not found. Fix the view's 'image' path in the scene sheet / config."
        )
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        raise SensorImageError(
            f"{path}: not a readable image ({exc}); re-download or regenerate it."
        ) from exc


def image_shape(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(rows, cols) of an image."""
    with _open(Path(path)) as ds:
        return ds.height, ds.width


def read_window(
    path: str | os.PathLike[str],
    row0: int = 0,
    col0: int = 0,
    rows: int | None = None,
    cols: int | None = None,
    band: int = 1,
) -> np.ndarray:
    """Read band ``band`` of ``path`` over [row0, row0 + rows) x [col0, col0 + cols) as float32, NaN = nodata.

    The window is clipped to the image; cells outside it are NaN (the returned array has the asked shape).
    """
    path = Path(path)
    with _open(path) as ds:
        rows = ds.height - row0 if rows is None else rows
        cols = ds.width - col0 if cols is None else cols
        out = np.full((rows, cols), np.nan, np.float32)
        r0, c0 = max(0, row0), max(0, col0)
        r1, c1 = min(ds.height, row0 + rows), min(ds.width, col0 + cols)
        if r1 <= r0 or c1 <= c0:
            return out
        try:
            data = ds.read(band, window=Window(c0, r0, c1 - c0, r1 - r0), masked=True)
        except RasterioIOError as exc:
            raise SensorImageError(f"{path}: read error ({exc}); the file is truncated or corrupt.") from exc
        block = np.asarray(
            data.filled(np.nan) if data.dtype.kind == "f" else data.astype(np.float32).filled(np.nan),
            np.float32,
        )
        out[r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = block
        return out


def _load_tile_grid(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise SensorImageError(f"{path}: unreadable tile grid ({exc}); rerun the tiles step.") from exc


def read_tile_grid(path: str | os.PathLike[str]) -> dict:
    """The grid of ``tiles.geojson`` (every tile, kept or not): ``x0``, ``y0`` (west and north edges, m),
    ``tile_px``, ``margin_px``, ``n_rows``, ``n_cols`` and ``resolution_m``."""
    path = Path(path)
    doc = _load_tile_grid(path)
    try:
        return {**doc["grid"], "resolution_m": float(doc["resolution_m"])}
    except (KeyError, TypeError, ValueError) as exc:
        raise SensorImageError(f"{path}: no tile grid (grid, resolution_m); rerun the tiles step.") from exc


def read_tiles(path: str | os.PathLike[str]) -> dict[str, dict]:
    """All tiles of ``tiles.geojson``: id -> properties (``tile``, ``row``, ``col``, ``core``, ``bounds``, ``epsg``)."""
    path = Path(path)
    grid = _load_tile_grid(path)
    epsg = None
    crs = grid.get("crs")
    name = str(crs.get("properties", {}).get("name", "")) if isinstance(crs, dict) else str(crs or "")
    digits = "".join(ch for ch in name.split(":")[-1] if ch.isdigit())
    if digits:
        epsg = int(digits)
    out = {}
    for f in grid.get("features", []):
        props = dict(f.get("properties", {}))
        if "tile" in props:
            props["epsg"] = epsg
            out[props["tile"]] = props
    return out


def read_tile(path: str | os.PathLike[str], tile: str) -> dict:
    """Properties (``tile``, ``row``, ``col``, ``core``, ``bounds``) and CRS EPSG of one tile of ``tiles.geojson``."""
    tiles = read_tiles(path)
    if tile not in tiles:
        raise SensorImageError(
            f"{path}: tile {tile!r} not in the grid; the tile grid changed, rerun the workflow."
        )
    return tiles[tile]
