"""Mosaic of tile DSMs: feathered overlaps, grid, COG, vertical datum."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

import sat2lod
from sat2lod.io.raster import write_raster
from sat2lod.mosaic import blend_tiles, feather_weights, mosaic_dsm_files

RES = 0.5


def _tile(
    core: list[float], margin: float, value: float
) -> tuple[np.ndarray, Affine, list[float], list[float]]:
    bounds = [core[0] - margin, core[1] - margin, core[2] + margin, core[3] + margin]
    cols = int(round((bounds[2] - bounds[0]) / RES))
    rows = int(round((bounds[3] - bounds[1]) / RES))
    t = Affine(RES, 0, bounds[0], 0, -RES, bounds[3])
    return np.full((rows, cols), value, np.float32), t, core, bounds


def test_feather_weights_sum_to_one_across_a_shared_edge() -> None:
    a = _tile([0, 0, 50, 50], 5, 10.0)
    b = _tile([50, 0, 100, 50], 5, 20.0)
    wa = feather_weights(a[0].shape, a[1], a[3], 5)
    wb = feather_weights(b[0].shape, b[1], b[3], 5)
    row = 50  # a row far from the top/bottom edges
    # columns of the overlap [45, 55] m in each tile's array
    xa = np.arange(a[0].shape[1]) * RES + a[1].c + RES / 2
    xb = np.arange(b[0].shape[1]) * RES + b[1].c + RES / 2
    for x in (45.25, 47.75, 50.25, 54.75):
        s = wa[row, np.argmin(np.abs(xa - x))] + wb[row, np.argmin(np.abs(xb - x))]
        assert s == pytest.approx(1.0, abs=1e-4)


def test_blend_is_continuous_and_covers_cores() -> None:
    a = _tile([0, 0, 50, 50], 5, 10.0)
    b = _tile([50, 0, 100, 50], 5, 20.0)
    b[0][:, -13:-10] = np.nan  # no data in the last 1.5 m of b's core (x in [98.5, 100] m)
    mosaic, t = blend_tiles([a, b], RES)
    assert mosaic.shape == (100, 200) and (t.c, t.f) == (0.0, 50.0)
    mid = mosaic[50]
    assert mid[0] == 10.0 and mid[-4] == 20.0
    assert np.all(np.diff(mid[:-3]) >= -1e-6)  # monotone ramp from 10 to 20, no seam
    assert np.max(np.diff(mid[:-3])) < 0.6  # spread over the 10 m overlap (20 cells), not a step
    assert np.isnan(mosaic[:, -3:]).all()  # b alone covers them, and b has no data there
    assert np.isfinite(mosaic[:, :-3]).all()


def test_mosaic_rule_function_writes_cog_with_datum(tmp_path: Path) -> None:
    tiles = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32631"}},
        "features": [],
    }
    paths = []
    for i, (core, v) in enumerate(
        [([600000, 5000000, 600150, 5000150], 100.0), ([600150, 5000000, 600300, 5000150], 101.0)]
    ):
        dsm, t, core, bounds = _tile([float(c) for c in core], 10.0, v)
        tid = f"t0000_{i:04d}"
        p = tmp_path / tid / "dsm.tif"
        write_raster(p, dsm, t, 32631, nodata=float("nan"), tags={"VERTICAL_DATUM": sat2lod.ELLIPSOID_DATUM})
        paths.append(p)
        tiles["features"].append(
            {
                "type": "Feature",
                "geometry": None,
                "properties": {"tile": tid, "row": 0, "col": i, "core": core, "bounds": bounds},
            }
        )
    (tmp_path / "tiles.geojson").write_text(json.dumps(tiles))
    out = tmp_path / "mosaic" / "dsm.tif"
    mosaic_dsm_files(paths, tmp_path / "tiles.geojson", out, RES)
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 32631 and ds.res == (RES, RES)
        assert ds.bounds.left == 600000 and ds.bounds.right == 600300 and ds.bounds.top == 5000150
        assert ds.tags()["VERTICAL_DATUM"] == sat2lod.ELLIPSOID_DATUM
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        a = ds.read(1)
    assert np.isfinite(a).all()
    assert a[:, 0] == pytest.approx(100.0) and a[:, -1] == pytest.approx(101.0)
    assert np.all(np.diff(a[150]) >= -1e-4) and np.nanmax(a) <= 101.0 + 1e-4


def test_mosaic_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no tile DSM"):
        from sat2lod.mosaic import mosaic_dsm

        mosaic_dsm([], [], tmp_path / "x.tif", RES)
