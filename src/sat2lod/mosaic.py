"""Mosaic of the per-tile DSMs into one Cloud Optimized GeoTIFF, with linear feathering in the overlaps.

Each tile DSM covers its tile ``bounds`` (core + margin) on the common output grid (edges on multiples of the
resolution), so tiles paste without resampling. In the overlaps each tile's weight falls linearly from 1 at
``2 x margin`` inside its outer edge to 0 at the edge; two neighbours' weights then sum to 1 across their shared
band and seams disappear. Cells valid in one tile only take that tile's value; NaN is no data.
The mosaic covers the union of the tile cores.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
from rasterio.transform import Affine

import sat2lod
from sat2lod.grid import grid_for_bounds, pixel_offset
from sat2lod.io.raster import read_raster, write_raster

log = logging.getLogger(__name__)


def feather_weights(
    shape: tuple[int, int], transform: Affine, bounds: Sequence[float], margin_m: float
) -> np.ndarray:
    """(rows, cols) float32 weights: distance of each cell centre to the nearest edge of ``bounds``, / 2 margin,
    clipped to [0, 1] (all ones when ``margin_m`` is 0)."""
    rows, cols = shape
    res = transform.a
    xc = transform.c + (np.arange(cols) + 0.5) * res
    yc = transform.f - (np.arange(rows) + 0.5) * res
    dx = np.minimum(xc - bounds[0], bounds[2] - xc)
    dy = np.minimum(yc - bounds[1], bounds[3] - yc)
    d = np.minimum(dy[:, None], dx[None, :])
    if margin_m <= 0:
        return np.where(d > 0, 1.0, 0.0).astype(np.float32)
    return np.clip(d / (2.0 * margin_m), 1e-4, 1.0).astype(np.float32)


def blend_tiles(
    tiles: Sequence[tuple[np.ndarray, Affine, Sequence[float], Sequence[float]]], resolution: float
) -> tuple[np.ndarray, Affine]:
    """Blend tile DSMs.

    Args:
        tiles: (dsm (rows, cols) float32 NaN-empty, transform, core [xmin, ymin, xmax, ymax], bounds [...]) per tile,
            all on the same grid alignment (metres).
        resolution: pixel size (m).
    Returns:
        (mosaic float32 NaN-empty over the union of the cores, its transform).
    """
    cores = np.array([t[2] for t in tiles], float)
    union = (cores[:, 0].min(), cores[:, 1].min(), cores[:, 2].max(), cores[:, 3].max())
    out_t, (rows, cols) = grid_for_bounds(union, resolution)
    acc = np.zeros((rows, cols), np.float64)
    wsum = np.zeros((rows, cols), np.float64)
    for dsm, t, core, bounds in tiles:
        if abs(t.a - resolution) > 1e-9 or abs(t.e + resolution) > 1e-9:
            raise ValueError(f"tile grid resolution {t.a} differs from the mosaic resolution {resolution}")
        margin = max(core[0] - bounds[0], bounds[2] - core[2], core[1] - bounds[1], bounds[3] - core[3], 0.0)
        w = feather_weights(dsm.shape, t, bounds, margin)
        r0, c0 = pixel_offset(t, out_t)
        # intersection of the tile array with the mosaic array
        ra, ca = max(0, r0), max(0, c0)
        rb, cb = min(rows, r0 + dsm.shape[0]), min(cols, c0 + dsm.shape[1])
        if rb <= ra or cb <= ca:
            continue
        sub = dsm[ra - r0 : rb - r0, ca - c0 : cb - c0]
        ww = np.where(np.isfinite(sub), w[ra - r0 : rb - r0, ca - c0 : cb - c0], 0.0)
        acc[ra:rb, ca:cb] += ww * np.nan_to_num(sub)
        wsum[ra:rb, ca:cb] += ww
    with np.errstate(invalid="ignore", divide="ignore"):
        mosaic = np.where(wsum > 0, acc / wsum, np.nan).astype(np.float32)
    return mosaic, out_t


def mosaic_dsm(
    dsms: Sequence[str | os.PathLike[str]],
    tiles_meta: Sequence[dict],
    out: str | os.PathLike[str],
    resolution_m: float,
) -> str:
    """Mosaic tile DSM files into the COG ``out``.

    Args:
        dsms: tile DSM paths, in the same order as ``tiles_meta``.
        tiles_meta: tile properties from the tile grid (``core``, ``bounds``, ``epsg``).
        resolution_m: output resolution (m), that of the tiles.
    """
    if not dsms:
        raise ValueError(
            "no tile DSM to mosaic: the tile grid is empty (check the AOI and the views' overlap)"
        )
    tiles = []
    crs = None
    datum = sat2lod.ELLIPSOID_DATUM
    for path, meta in zip(dsms, tiles_meta):
        r = read_raster(path, masked_to_nan=True)
        if crs is None:
            crs = r.crs
        elif r.crs != crs:
            raise ValueError(f"{path}: CRS {r.crs} differs from the other tiles' {crs}; rerun its stereo job")
        datum = r.tags.get("VERTICAL_DATUM", datum)
        tiles.append((r.array.astype(np.float32), r.transform, meta["core"], meta["bounds"]))
    mosaic, transform = blend_tiles(tiles, resolution_m)
    log.info(
        "mosaic of %d tiles: %d x %d, %.1f %% valid",
        len(tiles),
        mosaic.shape[1],
        mosaic.shape[0],
        100 * np.isfinite(mosaic).mean(),
    )
    write_raster(
        out,
        mosaic,
        transform,
        crs,
        nodata=float("nan"),
        cog=True,
        tags={"VERTICAL_DATUM": datum, "PRODUCT": "DSM", "TILES": len(tiles)},
    )
    return str(out)


def mosaic_dsm_files(
    dsms: Sequence[str | os.PathLike[str]],
    tiles: str | os.PathLike[str],
    out: str | os.PathLike[str],
    resolution_m: float,
) -> str:
    """Rule ``mosaic_dsm``: tile DSMs named ``.../{tile}/dsm.tif`` + the tile grid -> mosaic COG."""
    from pathlib import Path

    from sat2lod.io.sensor_image import SensorImageError, read_tiles

    grid = read_tiles(tiles)
    metas = []
    for p in dsms:
        tile = Path(p).parent.name
        if tile not in grid:
            raise SensorImageError(
                f"{p}: tile {tile!r} is not in {tiles}; the tile grid changed, rerun the workflow."
            )
        metas.append(grid[tile])
    return mosaic_dsm(dsms, metas, out, resolution_m)
