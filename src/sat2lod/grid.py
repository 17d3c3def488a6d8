"""The output grid: one rule for every stage (stereo tiles, tiling, mosaic, synthetic truth) and one
same-grid check (every product of an AOI lies on one grid).

The rule: north-up, square pixels of ``resolution`` metres in the output CRS, pixel edges on multiples of
the resolution (so grids of different extents paste into each other without resampling). A grid over given
bounds is the smallest such grid containing them: edges snap outwards, except that a bound within
``SNAP_TOL_PX`` pixel of a grid line counts as on it (floating-point noise of ``k * resolution``, not a
sliver of a pixel). Pure geometry: no file access, no dependency but the Affine class (rasterio).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

from rasterio.transform import Affine

#: a bound within this fraction of a pixel of a grid line is on it (coordinates of 1e6 m at 0.1 m pixels
#: carry ~1e-9 px of rounding error; a real offset is orders of magnitude larger)
SNAP_TOL_PX = 1e-6


def snap_bounds(bounds: Sequence[float], resolution: float) -> tuple[int, int, int, int]:
    """Pixel-index bounds ``(ix0, iy0, ix1, iy1)`` of the grid over ``bounds`` [xmin, ymin, xmax, ymax] (m):
    the grid spans x in [ix0, ix1] * resolution and y in [iy0, iy1] * resolution."""
    if not resolution > 0:
        raise ValueError(f"grid resolution must be > 0, got {resolution}")
    xmin, ymin, xmax, ymax = (float(b) for b in bounds)
    r = float(resolution)
    return (
        math.floor(xmin / r + SNAP_TOL_PX),
        math.floor(ymin / r + SNAP_TOL_PX),
        math.ceil(xmax / r - SNAP_TOL_PX),
        math.ceil(ymax / r - SNAP_TOL_PX),
    )


def grid_for_bounds(bounds: Sequence[float], resolution: float) -> tuple[Affine, tuple[int, int]]:
    """North-up grid covering ``bounds`` [xmin, ymin, xmax, ymax] (m) with edges on multiples of
    ``resolution``: (transform, (rows, cols))."""
    ix0, iy0, ix1, iy1 = snap_bounds(bounds, resolution)
    r = float(resolution)
    return Affine(r, 0.0, ix0 * r, 0.0, -r, iy1 * r), (iy1 - iy0, ix1 - ix0)


def pixel_offset(transform: Affine, grid: Affine) -> tuple[int, int]:
    """(row, col) of ``transform``'s upper-left corner in ``grid`` (same resolution and alignment; rounded)."""
    return int(round((grid.f - transform.f) / grid.a)), int(round((transform.c - grid.c) / grid.a))


class _Gridded(Protocol):
    transform: Affine
    crs: Any

    @property
    def shape(self) -> tuple[int, int]: ...


def same_grid(a: _Gridded, b: _Gridded) -> bool:
    """Whether two rasters (anything with ``transform``, ``crs`` and a (rows, cols) ``shape``, such as
    :class:`sat2lod.io.raster.Raster`) lie on one grid: same shape and CRS, transforms equal within
    ``SNAP_TOL_PX`` of a pixel."""
    if tuple(a.shape) != tuple(b.shape) or a.crs != b.crs:
        return False
    tol = SNAP_TOL_PX * max(abs(a.transform.a), abs(a.transform.e))
    return all(abs(p - q) <= tol for p, q in zip(tuple(a.transform)[:6], tuple(b.transform)[:6]))


def check_same_grid(
    a: _Gridded,
    b: _Gridded,
    name_a: object,
    name_b: object,
    fix: str = "both must come from the same output grid (config 'output')",
) -> None:
    """Raise ValueError naming both files when ``b`` is not on ``a``'s grid (see :func:`same_grid`)."""
    if not same_grid(a, b):
        raise ValueError(
            f"{name_b}: grid differs from {name_a} (shape {tuple(b.shape)} vs {tuple(a.shape)}, transform "
            f"{tuple(b.transform)[:6]} vs {tuple(a.transform)[:6]}, CRS {b.crs} vs {a.crs}); {fix}."
        )


def tile_windows(
    core: Sequence[float], transform: Affine, shape: tuple[int, int], halo_px: int, align: int = 1
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """Cell windows of a tile on a raster grid: its core, and the core grown by ``halo_px`` cells (start rounded
    down to a multiple of ``align`` cells of the grid, the phase of a stage's block-wise steps), both clipped
    to the raster. Used by the per-tile rules that read a tile with context (segment_tile, dtm_tile, and
    ortho_tile for its core).

    Args:
        core: [xmin, ymin, xmax, ymax] of the tile core (m), on the grid's cell edges.
        transform: north-up grid of the raster; shape: its (rows, cols).
    Returns:
        (core, read) windows as (row0, row1, col0, col1).
    Raises:
        ValueError: the core does not meet the raster.
    """
    res = transform.a
    r0 = max(0, round((transform.f - core[3]) / res))
    r1 = min(shape[0], round((transform.f - core[1]) / res))
    c0 = max(0, round((core[0] - transform.c) / res))
    c1 = min(shape[1], round((core[2] - transform.c) / res))
    if r1 <= r0 or c1 <= c0:
        raise ValueError(
            f"tile core {list(core)} does not meet the raster grid {tuple(transform)[:6]} {shape}"
        )
    read = (
        max(0, (r0 - halo_px) // align * align),
        min(shape[0], r1 + halo_px),
        max(0, (c0 - halo_px) // align * align),
        min(shape[1], c1 + halo_px),
    )
    return (r0, r1, c0, c1), read
