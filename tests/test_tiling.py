"""Tile grid: alignment on the output pixel grid, exact cover of the AOI, visibility by all views, GeoJSON format."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import box

from acquire_fakes import affine_camera_rpc, write_fake_view
from sat2lod.acquire.geometry import utm_epsg
from sat2lod.tiling import grid_spec, make_tiles, select_tiles, tile_cores, tiles_feature_collection

LON0, LAT0 = 2.35, 48.85


def test_grid_is_aligned_and_covers_the_aoi_exactly() -> None:
    aoi = [431_003.3, 5_411_000.2, 432_317.9, 5_411_777.7]
    spec = grid_spec(aoi, tile_size_m=300.2, margin_m=20.1, resolution_m=0.5)
    assert (spec.tile_px, spec.margin_px) == (600, 41)  # 300.2 m -> 600 px; margin rounded up to 20.5 m
    assert (spec.x0, spec.y0) == (431_003.0, 5_411_778.0)  # snapped outwards on multiples of 0.5 m
    assert (spec.n_rows, spec.n_cols) == (3, 5)  # 1556 x 2630 px in 600 px tiles
    cores = tile_cores(spec)
    assert cores.shape == (15, 4)
    # every edge on the pixel grid
    assert np.all(np.abs(cores / 0.5 - np.round(cores / 0.5)) < 1e-9)
    # cores tile the snapped AOI: no overlap, no gap
    boxes = shapely.box(*cores.T)
    snapped = box(431_003.0, 5_411_000.0, 432_318.0, 5_411_778.0)
    assert shapely.area(boxes).sum() == pytest.approx(snapped.area)
    assert shapely.union_all(boxes).equals(snapped)
    # row 0 is the northern row, columns go east; the last row and column are clipped to the AOI
    assert cores[0].tolist() == [431_003.0, 5_411_478.0, 431_303.0, 5_411_778.0]
    assert cores[-1].tolist() == [432_203.0, 5_411_000.0, 432_318.0, 5_411_178.0]


def test_grid_errors() -> None:
    with pytest.raises(ValueError, match="empty AOI"):
        grid_spec([0, 0, 0, 10], 100, 0, 0.5)
    with pytest.raises(ValueError, match="more than 10000 per axis"):
        grid_spec([0, 0, 1_000_000, 10], 50, 0, 0.5)


def test_select_tiles_by_visible_area() -> None:
    spec = grid_spec([0, 0, 1000, 1000], 250, 10, 1.0)
    cores = tile_cores(spec)
    visible = box(0, 0, 600, 1000)  # western 60 %
    keep = select_tiles(cores, visible)
    assert keep.reshape(4, 4).tolist() == [[True, True, True, False]] * 4
    keep = select_tiles(cores, visible, min_coverage=0.5)  # column 2 is only 40 % visible
    assert keep.reshape(4, 4).tolist() == [[True, True, False, False]] * 4
    assert select_tiles(cores, None).all()


def test_feature_collection_format() -> None:
    spec = grid_spec([0, 0, 1000, 600], 500, 20, 0.5)
    cores = tile_cores(spec)
    keep = np.array([True, False, True, True])
    fc = tiles_feature_collection(spec, cores, keep, 32631)
    assert [f["properties"]["tile"] for f in fc["features"]] == ["t0000_0000", "t0001_0000", "t0001_0001"]
    f = fc["features"][2]["properties"]
    assert (f["row"], f["col"]) == (1, 1)
    assert f["core"] == [500.0, 0.0, 1000.0, 100.0]
    assert f["bounds"] == [480.0, -20.0, 1020.0, 120.0]
    assert shapely.geometry.shape(fc["features"][2]["geometry"]).bounds == tuple(f["bounds"])


def _sheet(tmp_path: Path, shift_px: tuple[float, float] = (0.0, 0.0)) -> tuple[Path, float, float]:
    """Scene sheet of a pair; each view sees a 100 m square (200 px at 0.5 m) around (LON0, LAT0) at h = 0.

    View 0 looks from the north (incidence 10 deg), view 1 from the south and ``shift_px`` (drow, dcol) off, so
    over heights [0, 50] m both see northings within +-(50 - 50 tan 10) = +-41.2 m. The AOI is the 120 m square
    around the centre, snapped to the 0.5 m grid. Returns (sheet path, centre easting, centre northing).
    """
    epsg = utm_epsg(LON0, LAT0)
    views = []
    for i, (az, shift) in enumerate([(0.0, (0.0, 0.0)), (180.0, shift_px)]):
        rpc = affine_camera_rpc(LON0, LAT0, 200, 0.5, 10.0, az, (0.0, 50.0), shift_px=shift)
        p = write_fake_view(tmp_path / f"v{i}.tif", rpc, 200, seed=i)
        views.append({"id": f"view{i}", "image": str(p), "rpc": None, "width": 200, "height": 200})
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(LON0, LAT0)
    x, y = round(x / 0.5) * 0.5, round(y / 0.5) * 0.5
    sheet = {
        "aoi": "t",
        "epsg": epsg,
        "aoi_bounds": [x - 60, y - 60, x + 60, y + 60],
        "height_range": [0.0, 50.0],
        "views": views,
        "pairs": [[0, 1]],
        "truth": None,
    }
    (tmp_path / "scenes.json").write_text(json.dumps(sheet))
    return tmp_path / "scenes.json", x, y


def test_make_tiles_keeps_tiles_seen_by_all_views(tmp_path: Path) -> None:
    # view 1 looks 90 px (45 m) further east: it sees eastings [x - 5, x + 95], view 0 [x - 50, x + 50]
    scenes, x, y = _sheet(tmp_path, shift_px=(0.0, -90.0))
    out = tmp_path / "tiles" / "tiles.geojson"
    fc = make_tiles(scenes=scenes, tiles=out, tile_size_m=20.0, margin_m=2.0, resolution_m=0.5)
    # 6 x 6 tiles of 20 m from x - 60; columns 2..5 reach the common eastings [x - 5, x + 50]; every row is
    # partly inside the common northings [y - 41.2, y + 41.2]
    kept = sorted((f["properties"]["row"], f["properties"]["col"]) for f in fc["features"])
    assert kept == [(r, c) for r in range(6) for c in range(2, 6)]
    # with a coverage threshold: column 2 (25 % seen) goes, column 5 (50 %) stays. Rows 0 and 5: at h = 0 both
    # views see northings [y - 50, y + 50] (half of these rows), at every height only [y - 41.2, y + 41.2] (6 %)
    fc = make_tiles(
        scenes=scenes, tiles=out, tile_size_m=20.0, margin_m=2.0, resolution_m=0.5, min_coverage=0.3
    )
    kept = sorted((f["properties"]["row"], f["properties"]["col"]) for f in fc["features"])
    assert kept == [(r, c) for r in range(6) for c in range(3, 6) if (r, c) not in {(0, 5), (5, 5)}]  # 25 %
    fc = make_tiles(
        scenes=scenes,
        tiles=out,
        tile_size_m=20.0,
        margin_m=2.0,
        resolution_m=0.5,
        min_coverage=0.3,
        visibility="all_heights",
    )
    kept = sorted((f["properties"]["row"], f["properties"]["col"]) for f in fc["features"])
    assert kept == [(r, c) for r in range(1, 5) for c in range(3, 6)]
    f = fc["features"][0]["properties"]
    assert f["tile"] == "t0001_0003"
    assert f["core"] == [x, y + 20, x + 20, y + 40]
    assert f["bounds"] == [x - 2, y + 18, x + 22, y + 42]
    # the file is GeoJSON with the CRS member, readable by GDAL
    sheet = json.loads(scenes.read_text())
    gdf = gpd.read_file(out)
    assert gdf.crs.to_epsg() == sheet["epsg"] and len(gdf) == 12
    assert gdf.geometry.iloc[0].bounds == tuple(f["bounds"])
    assert json.loads(out.read_text())["features"] == fc["features"]


def test_make_tiles_without_common_view_is_an_error(tmp_path: Path) -> None:
    scenes, _, _ = _sheet(tmp_path)
    fc = make_tiles(
        scenes=scenes, tiles=tmp_path / "a.geojson", tile_size_m=40.0, margin_m=5.0, resolution_m=0.5
    )
    assert len(fc["features"]) == 9
    far = tmp_path / "far"
    far.mkdir()
    scenes, _, _ = _sheet(far, shift_px=(0.0, -400.0))  # view 1 sees eastings [x + 150, x + 250]
    with pytest.raises(ValueError, match=r"no tile of the AOI .* is seen by all 2 views"):
        make_tiles(scenes=scenes, tiles=far / "b.geojson", tile_size_m=40.0, margin_m=5.0, resolution_m=0.5)
    assert not (far / "b.geojson").exists()
