"""sat2lod.grid: the one output-grid rule and same-grid check, against the formulas each stage used before
(stereo rasterize, tiling, mosaic, synthetic truth), so moving them here changed no grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.transform import Affine, from_origin

from sat2lod.grid import check_same_grid, grid_for_bounds, pixel_offset, same_grid, snap_bounds
from sat2lod.io.raster import Raster


def _old_rasterize(bounds, r):  # stereo.rasterize.grid_for_bounds before
    xmin = np.floor(bounds[0] / r + 1e-9) * r
    ymin = np.floor(bounds[1] / r + 1e-9) * r
    xmax = np.ceil(bounds[2] / r - 1e-9) * r
    ymax = np.ceil(bounds[3] / r - 1e-9) * r
    return Affine(r, 0.0, float(xmin), 0.0, -r, float(ymax)), (
        int(round((ymax - ymin) / r)),
        int(round((xmax - xmin) / r)),
    )


def _old_tiling(bounds, r):  # tiling.grid_spec before: origin and size in pixels
    eps = 1e-6
    ix0, ix1 = math.floor(bounds[0] / r + eps), math.ceil(bounds[2] / r - eps)
    iy0, iy1 = math.floor(bounds[1] / r + eps), math.ceil(bounds[3] / r - eps)
    return ix0 * r, iy1 * r, ix1 - ix0, iy1 - iy0


def _old_exact(bounds, r):  # synth.scene.grid and mosaic.blend_tiles before (bounds on the grid assumed)
    xmin, ymin, xmax, ymax = bounds
    return from_origin(xmin, ymax, r, r), (int(round((ymax - ymin) / r)), int(round((xmax - xmin) / r)))


@pytest.mark.parametrize("r", [0.5, 0.25, 1.0, 0.3, 2.0])
def test_same_grids_as_before(r):
    rng = np.random.default_rng(0)
    for _ in range(500):
        x0, y0 = rng.uniform(3e5, 7e5), rng.uniform(4.5e6, 5.5e6)
        b = (x0, y0, x0 + rng.uniform(1, 900), y0 + rng.uniform(1, 900))
        t, shape = grid_for_bounds(b, r)
        assert (t, shape) == _old_rasterize(b, r)
        assert (t.c, t.f, shape[1], shape[0]) == _old_tiling(b, r)
        # bounds already on the grid (tile cores, the synthetic AOI): the old exact-cover grids
        ib = [round(v / r) for v in b]
        on = (ib[0] * r, ib[1] * r, ib[2] * r, ib[3] * r)
        assert grid_for_bounds(on, r) == _old_exact(on, r)


def test_snapping_is_outward_with_a_tolerance():
    assert snap_bounds((0.1, 0.1, 9.9, 9.9), 1.0) == (0, 0, 10, 10)
    assert snap_bounds((1.0 - 1e-9, 0.0, 3.0 + 1e-9, 2.0), 1.0) == (1, 0, 3, 2)  # float noise: on the line
    assert snap_bounds((1.0 - 1e-3, 0.0, 3.0 + 1e-3, 2.0), 1.0) == (0, 0, 4, 2)  # a real sliver: outward
    t, (rows, cols) = grid_for_bounds((100.2, 50.1, 110.9, 60.0), 0.5)
    assert (t.c, t.f, rows, cols) == (100.0, 60.0, 20, 22)
    with pytest.raises(ValueError, match="resolution"):
        grid_for_bounds((0, 0, 1, 1), 0.0)


def test_pixel_offset():
    grid = Affine(0.5, 0, 100.0, 0, -0.5, 60.0)
    assert pixel_offset(Affine(0.5, 0, 103.0, 0, -0.5, 55.0), grid) == (10, 6)
    assert pixel_offset(Affine(0.5, 0, 99.0, 0, -0.5, 61.0), grid) == (-2, -2)


def _r(transform, shape=(4, 5), epsg=32631, bands=None):
    arr = np.zeros(shape if bands is None else (bands, *shape), np.float32)
    return Raster(arr, transform, CRS.from_epsg(epsg))


def test_same_grid_check():
    t = Affine(0.5, 0, 500000.0, 0, -0.5, 4800000.0)
    a = _r(t)
    assert same_grid(a, _r(t, bands=3))  # bands do not matter
    assert same_grid(a, _r(Affine(0.5, 0, 500000.0 + 1e-9, 0, -0.5, 4800000.0)))
    # half a pixel off: np.allclose (the lod/segment checks before) let up to ~5 m through at these
    # coordinates; the grid check does not
    shifted = _r(Affine(0.5, 0, 500000.25, 0, -0.5, 4800000.0))
    assert not same_grid(a, shifted)
    assert not same_grid(a, _r(t, shape=(4, 6)))
    assert not same_grid(a, _r(t, epsg=32632))
    with pytest.raises(ValueError, match=r"b.tif: grid differs from a.tif.*same output grid"):
        check_same_grid(a, shifted, "a.tif", "b.tif")
