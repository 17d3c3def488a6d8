"""Mosaic of tile DSMs: feathered overlaps, grid, COG, vertical datum."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

import sat2lod
from sat2lod.io.raster import read_raster, write_raster
from sat2lod.mosaic import blend_tiles, feather_weights, feather_window, mosaic_dsm, mosaic_dsm_files

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


def _reference_mosaic(paths: list[Path], metas: list[dict], out: Path) -> None:
    """The in-memory mosaic as it was before streaming: every tile read whole, blend_tiles over the whole area,
    write_raster(cog=True)."""
    tiles, crs, datum = [], None, sat2lod.ELLIPSOID_DATUM
    for p, m in zip(paths, metas):
        r = read_raster(p, masked_to_nan=True)
        crs = r.crs
        datum = r.tags.get("VERTICAL_DATUM", datum)
        tiles.append((r.array.astype(np.float32), r.transform, m["core"], m["bounds"]))
    mosaic, t = blend_tiles(tiles, RES)
    tags = {"VERTICAL_DATUM": datum, "PRODUCT": "DSM", "TILES": len(tiles)}
    write_raster(out, mosaic, t, crs, nodata=float("nan"), cog=True, tags=tags)


def _random_tiles(tmp_path: Path, core_m: float, margin: float, missing: set[tuple[int, int]]) -> tuple:
    """3 x 3 tiles of random heights (a different nodata convention in one), NaN holes, one tile missing (so the
    mosaic has an edge inside its bounding box), in the order the tile grid lists them."""
    rng = np.random.default_rng(7)
    paths, metas = [], []
    for r in range(3):
        for c in range(3):
            if (r, c) in missing:
                continue
            x0, y1 = 600000.0 + c * core_m, 5000000.0 - r * core_m
            dsm, t, core, bounds = _tile([x0, y1 - core_m, x0 + core_m, y1], margin, 0.0)
            dsm[:] = 100.0 + rng.normal(0.0, 3.0, dsm.shape).cumsum(axis=1) * 0.05 + 10 * rng.random()
            dsm[rng.random(dsm.shape) < 0.02] = np.nan  # scattered holes
            dsm[40:70, 5:90] = np.nan  # a hole across the tile's western overlap
            nodata = float("nan")
            if (r, c) == (1, 1):  # a tile with a finite nodata value, as a foreign tool writes it
                nodata = -9999.0
                dsm = np.where(np.isnan(dsm), nodata, dsm).astype(np.float32)
            p = tmp_path / f"t{r:04d}_{c:04d}" / "dsm.tif"
            datum = "EPSG:4979" if (r, c) != (2, 2) else "EPSG:4979+test"
            write_raster(
                p, dsm, t, 32631, nodata=nodata, tags={"VERTICAL_DATUM": datum}, compress="zstd", level=1
            )
            paths.append(p)
            metas.append({"core": core, "bounds": bounds})
    return paths, metas


@pytest.mark.parametrize("block", [256, 300, 1024])
def test_streamed_mosaic_equals_the_in_memory_one_to_the_bit(tmp_path: Path, block: int) -> None:
    """Block by block (blocks smaller than, unaligned with and larger than a tile) the mosaic COG has the values,
    overviews, grid, nodata and tags of the whole-area mosaic, to the bit."""
    paths, metas = _random_tiles(tmp_path, 150.0, 10.0, missing={(0, 2)})
    ref, got = tmp_path / "ref.tif", tmp_path / "streamed" / "dsm.tif"
    _reference_mosaic(paths, metas, ref)
    mosaic_dsm(paths, metas, got, RES, block=block)
    with rasterio.open(ref) as a, rasterio.open(got) as b:
        assert (b.crs, b.transform, b.shape, b.dtypes, b.nodata is not None and np.isnan(b.nodata)) == (
            a.crs,
            a.transform,
            a.shape,
            a.dtypes,
            True,
        )
        assert b.tags() == a.tags() and b.tags()["VERTICAL_DATUM"] == "EPSG:4979+test"
        assert b.tags(ns="IMAGE_STRUCTURE") == a.tags(ns="IMAGE_STRUCTURE")
        assert b.block_shapes == a.block_shapes and b.overviews(1) == a.overviews(1) != []
        va, vb = a.read(1), b.read(1)
        assert np.isnan(va).any() and np.isfinite(va).mean() > 0.5  # the comparison covers holes and data
        assert np.array_equal(va.view(np.uint32), vb.view(np.uint32))  # same bits, NaN included
        for f in a.overviews(1):
            oa = a.read(1, out_shape=(a.height // f, a.width // f))
            ob = b.read(1, out_shape=(b.height // f, b.width // f))
            assert np.array_equal(oa, ob, equal_nan=True)
    assert not [p.name for p in got.parent.iterdir() if p.name != "dsm.tif"]  # no staging file left
    assert got.read_bytes() == ref.read_bytes()  # same GDAL, same data and options: the very same file


def test_feather_window_is_the_slice_of_the_tile_weights_to_the_bit() -> None:
    """At UTM coordinates and a margin that is no multiple of the pixel, a window's weights computed alone are
    the bits of the whole tile's weights sliced (what the streamed mosaic relies on)."""
    t = Affine(RES, 0, 612345.5, 0, -RES, 4987654.0)
    bounds = [612345.5, 4987654.0 - 170.5, 612345.5 + 163.0, 4987654.0]
    for margin in (7.3, 0.0):
        whole = feather_weights((341, 326), t, bounds, margin)
        for rows, cols in [((0, 341), (0, 326)), ((17, 300), (250, 326)), ((340, 341), (3, 4))]:
            part = feather_window(t, bounds, margin, rows, cols)
            assert np.array_equal(part, whole[rows[0] : rows[1], cols[0] : cols[1]])


def test_bad_tiles_are_refused_naming_the_file_and_nothing_is_written(tmp_path: Path) -> None:
    """A tile in another CRS, at another resolution, or truncated: a clear error naming it, no mosaic."""
    from sat2lod.io.raster import RasterReadError

    paths, metas = _random_tiles(tmp_path, 150.0, 10.0, missing=set())
    out = tmp_path / "m" / "dsm.tif"
    dsm, t, _, _ = _tile(metas[4]["core"], 10.0, 5.0)
    write_raster(paths[4], dsm, t, 32632, nodata=float("nan"))
    with pytest.raises(ValueError, match=rf"{paths[4]}: CRS .* differs from the other tiles'"):
        mosaic_dsm(paths, metas, out, RES)
    coarse = Affine(1.0, 0, t.c, 0, -1.0, t.f)
    write_raster(paths[4], dsm[::2, ::2], coarse, 32631, nodata=float("nan"))
    with pytest.raises(ValueError, match="resolution 1.0 differs from the mosaic resolution 0.5"):
        mosaic_dsm(paths, metas, out, RES)
    write_raster(paths[4], dsm, t, 32631, nodata=float("nan"))
    paths[4].write_bytes(paths[4].read_bytes()[:1000])  # truncated: the header reads, the blocks do not
    with pytest.raises(RasterReadError, match=rf"{paths[4]}: not a readable raster"):
        mosaic_dsm(paths, metas, out, RES)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
