"""I/O: atomic writes (nothing half-written is left, permissions as usual), clear errors on bad files."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from rasterio.transform import from_origin

from sat2lod.io.raster import RasterReadError, atomic_path, raster_shape, read_raster, write_raster


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("job killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_permissions_follow_umask(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("done")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_raster_round_trip_with_datum(tmp_path):
    a = np.arange(300 * 280, dtype=np.float32).reshape(300, 280)
    a[0, 0] = np.nan
    t = from_origin(370000.0, 4830000.0, 0.5, 0.5)
    for cog in (False, True):
        p = write_raster(
            tmp_path / f"r{cog}.tif",
            a,
            t,
            32631,
            nodata=float("nan"),
            tags={"VERTICAL_DATUM": "WGS84 ellipsoid"},
            cog=cog,
        )
        r = read_raster(p)
        assert r.crs.to_epsg() == 32631 and r.transform == t and np.isnan(r.nodata)
        assert r.tags["VERTICAL_DATUM"] == "WGS84 ellipsoid"
        np.testing.assert_array_equal(r.array, a)


def test_corrupt_or_missing_raster_names_the_file(tmp_path):
    bad = tmp_path / "truncated.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 20)
    with pytest.raises(RasterReadError, match="truncated.tif.*corrupt"):
        read_raster(bad)
    with pytest.raises(RasterReadError, match="missing.tif: file not found"):
        read_raster(tmp_path / "missing.tif")


def test_codec_and_level_are_lossless_and_recorded(tmp_path):
    """Intermediate tiles use ZSTD level 1 (fast); deflate with a level and the COG path take the level too."""
    import rasterio

    rng = np.random.default_rng(0)
    a = (np.cumsum(rng.normal(size=(300, 280)), axis=1) + 2300).astype(np.float32)
    a[rng.random(a.shape) < 0.1] = np.nan
    t = from_origin(500000, 4000000, 0.5, 0.5)
    for name, kw in [
        ("z.tif", {"compress": "zstd", "level": 1}),
        ("d.tif", {"compress": "deflate", "level": 1}),
        ("c.tif", {"compress": "deflate", "level": 9, "cog": True}),
    ]:
        p = write_raster(
            tmp_path / name, a, t, 32631, nodata=float("nan"), tags={"VERTICAL_DATUM": "x"}, **kw
        )
        back = read_raster(p, masked_to_nan=True).array
        np.testing.assert_array_equal(np.isnan(back), np.isnan(a))
        np.testing.assert_array_equal(back[np.isfinite(back)], a[np.isfinite(a)])
        with rasterio.open(p) as ds:
            assert ds.profile["compress"].lower() == kw["compress"]
            assert ds.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "3" or kw.get("cog")


def test_window_read_is_the_slice_with_its_transform(tmp_path):
    """read_raster(window=...) returns the window's cells (nodata -> NaN as for a whole read) and the window's
    transform; raster_shape reads the header only and names a missing file."""
    from rasterio.windows import Window

    a = np.arange(300 * 280, dtype=np.float32).reshape(300, 280)
    a[100:110, 60:70] = -9999.0
    t = from_origin(600000.0, 5000000.0, 0.5, 0.5)
    write_raster(tmp_path / "a.tif", a, t, 32631, nodata=-9999.0)
    whole = read_raster(tmp_path / "a.tif", masked_to_nan=True)
    part = read_raster(tmp_path / "a.tif", masked_to_nan=True, window=Window(50, 90, 100, 40))
    assert np.array_equal(part.array, whole.array[90:130, 50:150], equal_nan=True)
    assert np.isnan(part.array[10:20, 10:20]).all()
    assert part.transform == from_origin(600000.0 + 50 * 0.5, 5000000.0 - 90 * 0.5, 0.5, 0.5)
    assert raster_shape(tmp_path / "a.tif") == (1, 300, 280)
    with pytest.raises(RasterReadError, match="missing.tif: file not found"):
        raster_shape(tmp_path / "missing.tif")


@pytest.mark.parametrize("suffix", [".fgb", ".geojson", ".gpkg"])
def test_vector_bytes_do_not_name_the_temporary_file(tmp_path, suffix):
    """Two writes of the same frame give the same bytes (FlatGeobuf and GeoJSON store the layer name, which
    was the atomic write's random temporary name); the layer is named after the product."""
    import geopandas as gpd
    from shapely.geometry import box

    from sat2lod.io.vector import read_vector, write_vector

    gdf = gpd.GeoDataFrame({"h": [1.0, 2.5]}, geometry=[box(0, 0, 1, 1), box(2, 0, 3, 2)], crs="EPSG:32631")
    a = write_vector(tmp_path / "a" / f"footprints{suffix}", gdf)
    b = write_vector(tmp_path / "b" / f"footprints{suffix}", gdf)
    if suffix != ".gpkg":  # a GeoPackage records its write time
        assert a.read_bytes() == b.read_bytes()
    assert b".part" not in a.read_bytes()
    assert sorted(read_vector(a)["h"]) == [1.0, 2.5]  # FlatGeobuf's spatial index orders the features
