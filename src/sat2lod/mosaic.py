"""Mosaic of the per-tile DSMs into one Cloud Optimized GeoTIFF, with linear feathering in the overlaps.

Each tile DSM covers its tile ``bounds`` (core + margin) on the common output grid (edges on multiples of the
resolution), so tiles paste without resampling. In the overlaps each tile's weight falls linearly from 1 at
``2 x margin`` inside its outer edge to 0 at the edge; two neighbours' weights then sum to 1 across their shared
band and seams disappear. Cells valid in one tile only take that tile's value; NaN is no data.
The mosaic covers the union of the tile cores.

:func:`mosaic_dsm` streams: it computes the output in blocks of ``MOSAIC_BLOCK`` cells, reading only the windows
of the tiles that cover each block, and writes them through a staging GeoTIFF into the COG, so its memory is
bounded by the block, not the area (issue 16). :func:`blend_tiles` is the whole-area, in-memory reference it
equals to the bit.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.windows
from rasterio.transform import Affine

import sat2lod
from sat2lod.grid import grid_for_bounds, pixel_offset
from sat2lod.io.raster import raster_header, read_raster, write_raster_blocks

log = logging.getLogger(__name__)


def feather_weights(
    shape: tuple[int, int], transform: Affine, bounds: Sequence[float], margin_m: float
) -> np.ndarray:
    """(rows, cols) float32 weights: distance of each cell centre to the nearest edge of ``bounds``, / 2 margin,
    clipped to [0, 1] (all ones when ``margin_m`` is 0): :func:`feather_window` over the whole tile."""
    return feather_window(transform, bounds, margin_m, (0, shape[0]), (0, shape[1]))


def blend_tiles(
    tiles: Sequence[tuple[np.ndarray, Affine, Sequence[float], Sequence[float]]], resolution: float
) -> tuple[np.ndarray, Affine]:
    """Blend tile DSMs held in memory: the reference of the streamed :func:`mosaic_dsm` (whole-area arrays;
    for tests and small inputs).

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


#: side (cells) of the output blocks the mosaic is computed in: a multiple of the COG's 256-cell blocks. The
#: working set is two float64 accumulators of this size plus the windows of the tiles covering the block (about
#: 30 MB at 1024), whatever the area.
MOSAIC_BLOCK = 1024


@dataclass(frozen=True)
class _TileSource:
    """A tile DSM file placed on the mosaic grid: ``row``, ``col`` its upper-left cell in the mosaic, ``shape``
    its (rows, cols), ``margin`` its feathering margin (m)."""

    path: Path
    transform: Affine
    nodata: float | None
    bounds: tuple[float, float, float, float]
    margin: float
    row: int
    col: int
    shape: tuple[int, int]


def feather_window(
    transform: Affine,
    bounds: Sequence[float],
    margin_m: float,
    rows: tuple[int, int],
    cols: tuple[int, int],
) -> np.ndarray:
    """Rows ``rows`` = (start, stop) and columns ``cols`` of a tile's feathering weights (:func:`feather_weights`),
    computed alone: each cell's value depends on its own position only, so a window equals the slice of the
    whole tile's weights to the bit, with memory bounded by the window."""
    res = transform.a
    xc = transform.c + (np.arange(cols[0], cols[1]) + 0.5) * res
    yc = transform.f - (np.arange(rows[0], rows[1]) + 0.5) * res
    dx = np.minimum(xc - bounds[0], bounds[2] - xc)
    dy = np.minimum(yc - bounds[1], bounds[3] - yc)
    d = np.minimum(dy[:, None], dx[None, :])
    if margin_m <= 0:
        return np.where(d > 0, 1.0, 0.0).astype(np.float32)
    return np.clip(d / (2.0 * margin_m), 1e-4, 1.0).astype(np.float32)


def _read_window(src: _TileSource, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """(rows, cols) window of a tile DSM as float32, NaN where no data."""
    win = rasterio.windows.Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0])
    return read_raster(src.path, bands=1, masked_to_nan=True, window=win).array.astype(np.float32)


def _blend_block(sources: Sequence[_TileSource], row0: int, col0: int, shape: tuple[int, int]) -> np.ndarray:
    """The mosaic over ``shape`` cells from cell (``row0``, ``col0``): the arithmetic of :func:`blend_tiles`,
    tile by tile in the given order (so bit-identical), on the windows of the tiles that cover the block."""
    acc = np.zeros(shape, np.float64)
    wsum = np.zeros(shape, np.float64)
    for src in sources:
        # intersection of the tile with the block, in mosaic cells
        ra, ca = max(row0, src.row), max(col0, src.col)
        rb = min(row0 + shape[0], src.row + src.shape[0])
        cb = min(col0 + shape[1], src.col + src.shape[1])
        if rb <= ra or cb <= ca:
            continue
        rows, cols = (ra - src.row, rb - src.row), (ca - src.col, cb - src.col)
        sub = _read_window(src, rows, cols)
        w = feather_window(src.transform, src.bounds, src.margin, rows, cols)
        ww = np.where(np.isfinite(sub), w, 0.0)
        acc[ra - row0 : rb - row0, ca - col0 : cb - col0] += ww * np.nan_to_num(sub)
        wsum[ra - row0 : rb - row0, ca - col0 : cb - col0] += ww
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(wsum > 0, acc / wsum, np.nan).astype(np.float32)


def mosaic_dsm(
    dsms: Sequence[str | os.PathLike[str]],
    tiles_meta: Sequence[dict],
    out: str | os.PathLike[str],
    resolution_m: float,
    block: int = MOSAIC_BLOCK,
) -> str:
    """Mosaic tile DSM files into the COG ``out``, block by block: memory bounded by ``block`` and the tile
    size, not by the area (each block reads only the windows of the tiles that cover it, and is written into
    a staging GeoTIFF that the COG driver copies by blocks; see
    :func:`sat2lod.io.raster.write_raster_blocks`). Values, grid, nodata and tags are those of
    :func:`blend_tiles` over the whole area written by ``write_raster(cog=True)``, to the bit.

    Args:
        dsms: tile DSM paths (float32, NaN or another nodata), in the same order as ``tiles_meta``.
        tiles_meta: tile properties from the tile grid (``core``, ``bounds``, ``epsg``).
        out: output COG (float32, NaN nodata, the tiles' ``VERTICAL_DATUM``).
        resolution_m: output resolution (m), that of the tiles.
        block: side of the output blocks (cells).
    """
    if not dsms:
        raise ValueError(
            "no tile DSM to mosaic: the tile grid is empty (check the AOI and the views' overlap)"
        )
    cores = np.array([m["core"] for m in tiles_meta], float)
    union = (cores[:, 0].min(), cores[:, 1].min(), cores[:, 2].max(), cores[:, 3].max())
    out_t, (rows, cols) = grid_for_bounds(union, resolution_m)
    sources: list[_TileSource] = []
    crs = None
    datum = sat2lod.ELLIPSOID_DATUM
    for path, meta in zip(dsms, tiles_meta):
        head = raster_header(path)
        t, shape, nodata, tags, tile_crs = head.transform, head.shape, head.nodata, head.tags, head.crs
        if crs is None:
            crs = tile_crs
        elif tile_crs != crs:
            raise ValueError(
                f"{path}: CRS {tile_crs} differs from the other tiles' {crs}; rerun its stereo job"
            )
        datum = tags.get("VERTICAL_DATUM", datum)
        if abs(t.a - resolution_m) > 1e-9 or abs(t.e + resolution_m) > 1e-9:
            raise ValueError(f"tile grid resolution {t.a} differs from the mosaic resolution {resolution_m}")
        core, bounds = meta["core"], meta["bounds"]
        margin = max(core[0] - bounds[0], bounds[2] - core[2], core[1] - bounds[1], bounds[3] - core[3], 0.0)
        r0, c0 = pixel_offset(t, out_t)
        sources.append(_TileSource(Path(path), t, nodata, tuple(bounds), margin, r0, c0, shape))
    extents = np.array([(s.row, s.col, s.row + s.shape[0], s.col + s.shape[1]) for s in sources])
    valid = 0

    def blocks() -> Iterator[tuple[rasterio.windows.Window, np.ndarray]]:
        nonlocal valid
        for row0 in range(0, rows, block):
            for col0 in range(0, cols, block):
                h, w = min(block, rows - row0), min(block, cols - col0)
                hit = (
                    (extents[:, 0] < row0 + h)
                    & (extents[:, 2] > row0)
                    & (extents[:, 1] < col0 + w)
                    & (extents[:, 3] > col0)
                )
                mosaic = _blend_block([sources[i] for i in np.flatnonzero(hit)], row0, col0, (h, w))
                valid += int(np.isfinite(mosaic).sum())
                yield rasterio.windows.Window(col0, row0, w, h), mosaic

    write_raster_blocks(
        out,
        blocks(),
        (1, rows, cols),
        np.float32,
        out_t,
        crs,
        nodata=float("nan"),
        cog=True,
        tags={"VERTICAL_DATUM": datum, "PRODUCT": "DSM", "TILES": len(sources)},
    )
    log.info(
        "mosaic of %d tiles: %d x %d, %.1f %% valid", len(sources), cols, rows, 100 * valid / (rows * cols)
    )
    return str(out)


def mosaic_dsm_files(
    dsms: Sequence[str | os.PathLike[str]],
    tiles: str | os.PathLike[str],
    out: str | os.PathLike[str],
    resolution_m: float,
) -> str:
    """Rule ``mosaic_dsm``: tile DSMs named ``.../{tile}/dsm.tif`` + the tile grid -> mosaic COG."""
    from sat2lod.io.sensor_image import SensorImageError, read_tiles

    grid = read_tiles(tiles)
    metas, seen = [], set()
    for p in dsms:
        tile = Path(p).parent.name
        if tile not in grid:
            raise SensorImageError(
                f"{p}: tile {tile!r} is not in {tiles}; the tile grid changed, rerun the workflow."
            )
        if tile in seen:
            raise SensorImageError(
                f"{p}: tile {tile!r} is given twice (two DSMs of one tile); pass each tile once."
            )
        seen.add(tile)
        metas.append(grid[tile])
    return mosaic_dsm(dsms, metas, out, resolution_m)
