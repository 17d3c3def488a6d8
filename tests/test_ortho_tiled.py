"""True ortho per tile (sat2lod.ortho_tiled): the pasted tiles equal the whole-AOI ortho, occlusions across tile
edges included (the halo), with one set of gains, pansharpening shift and match for every tile."""

from __future__ import annotations

import json

import numpy as np
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage

import sat2lod
from sat2lod.io.jsonio import write_json
from sat2lod.io.raster import write_raster
from sat2lod.ortho import ortho_from_files
from sat2lod.ortho_tiled import (
    assemble_ortho,
    occlusion_halo,
    ortho_globals_from_files,
    ortho_tile_from_files,
    read_ortho_globals,
)
from test_ortho import EPSG, RES, X0, Y0, affine_camera, texture

TILE_M = 40.0
N = round(2 * TILE_M / RES)  # 160 x 160 cells, 2 x 2 tiles of 80 x 80
GX0, GY1 = X0 + 10.0, Y0 - 10.0  # north-west corner of the DSM grid


def _scene(d):
    """DSM with buildings, one 30 m tower 3 m west of the vertical tile edge (the nadir view's line of sight
    climbs west: it hides 9 cells of ground east of the tower, 3 in the east tile), one across the horizontal
    edge, holes (one across the vertical edge); two views of different gains,
    the first with a 3-band MS image misregistered by (2, -1) pixels; the 2 x 2 grid of 40 m tiles."""
    yy, xx = np.mgrid[0:N, 0:N]
    dsm = (100.0 + 0.02 * xx + 0.01 * yy).astype(np.float32)
    dsm[20:40, 60:74] += 30.0  # tower: cols 60-73, tile edge at col 80
    dsm[70:95, 100:130] += 12.0  # across the horizontal edge (row 80)
    dsm[120:140, 20:45] += 8.0
    dsm[130:133, 110:113] = np.nan  # a hole, filled with the nearest height
    dsm[100:106, 77:84] = (
        np.nan
    )  # one across the vertical tile edge: filled from both sides as in the whole AOI
    dsm[104:106, 84:87] = (
        140.0  # with a roof at its east edge, 3 cells beyond the edge: the fill must reach it
    )
    d.mkdir(parents=True, exist_ok=True)
    write_raster(
        d / "dsm.tif",
        dsm,
        from_origin(GX0, GY1, RES, RES),
        EPSG,
        nodata=float("nan"),
        tags={"VERTICAL_DATUM": sat2lod.ELLIPSOID_DATUM},
    )
    nadir, _ = affine_camera(-0.15, 0.05)
    oblique, _ = affine_camera(0.45, -0.1)  # climbs east: hides the ground west of the buildings
    pan0, pan1 = texture((300, 300), 1), texture((300, 300), 2) * 1.7 + 40.0
    low = ndimage.uniform_filter(pan0, 4)
    ms = np.stack([np.roll(low, (2, -1), axis=(0, 1)) * k for k in (0.6, 0.9, 1.2)]).astype(np.float32)
    views = []
    for i, (img, rpc) in enumerate([(pan0, nadir), (pan1, oblique)]):
        write_raster(d / f"view_{i}.tif", img, from_origin(0, 0, 1, 1), None, rpcs=rpc.to_rasterio())
        views.append({"id": f"v{i}", "image": str(d / f"view_{i}.tif"), "rpc": None})
    write_raster(d / "ms_0.tif", ms, from_origin(0, 0, 1, 1), None, rpcs=nadir.to_rasterio())
    views[0].update(ms_image=str(d / "ms_0.tif"), ms_rpc=None)
    write_json(d / "scenes.json", {"views": views})
    feats = []
    for r in range(2):
        for c in range(2):
            core = [GX0 + c * TILE_M, GY1 - (r + 1) * TILE_M, GX0 + (c + 1) * TILE_M, GY1 - r * TILE_M]
            props = {"tile": f"t{r:04d}_{c:04d}", "row": r, "col": c, "core": core, "bounds": core}
            feats.append({"type": "Feature", "geometry": None, "properties": props})
    crs = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{EPSG}"}}
    (d / "tiles.geojson").write_text(json.dumps({"type": "FeatureCollection", "crs": crs, "features": feats}))
    return [f["properties"]["tile"] for f in feats]


def _tiled(d, ids, **params):
    ortho_globals_from_files(d / "dsm.tif", d / "scenes.json", d / "shared.json", **params)
    paths, summaries = [], []
    for t in ids:
        paths.append(d / f"{t}.tif")
        summaries.append(
            ortho_tile_from_files(
                d / "dsm.tif",
                d / "scenes.json",
                d / "shared.json",
                d / "tiles.geojson",
                t,
                paths[-1],
                **params,
            )
        )
    assemble_ortho(paths, d / "dsm.tif", d / "shared.json", d / "scenes.json", d / "tiled.tif")
    return summaries


def test_tiles_equal_the_whole_aoi_ortho(tmp_path):
    """Equal to the whole-AOI ortho_from_files everywhere (float rounding), the tower's shadow across the tile
    edge included; same bands, band names and tags. The 'seam' figures printed are the differences within
    8 cells of a tile edge, all zero here."""
    ids = _scene(tmp_path)
    summaries = _tiled(tmp_path, ids)
    info = ortho_from_files(tmp_path / "dsm.tif", tmp_path / "scenes.json", tmp_path / "whole.tif")
    assert info["pansharpened_bands"] == 3 and 0.01 < info["views"][0]["occluded_fraction"]
    with rasterio.open(tmp_path / "tiled.tif") as a, rasterio.open(tmp_path / "whole.tif") as b:
        assert (
            (a.count, a.shape, a.transform, a.crs)
            == (b.count, b.shape, b.transform, b.crs)
            == (
                4,
                (N, N),
                b.transform,
                b.crs,
            )
        )
        assert a.tags() == b.tags() and a.tags()["SAT2LOD_PRODUCT"] == "ortho"
        assert [a.tags(i) for i in (1, 2, 3, 4)] == [b.tags(i) for i in (1, 2, 3, 4)]
        ta, tb = a.read(), b.read()
    assert np.array_equal(np.isnan(ta), np.isnan(tb)) and np.isfinite(tb[0]).mean() > 0.9
    diff = np.abs(np.nan_to_num(ta - tb))
    seam = np.zeros((N, N), bool)
    seam[80 - 8 : 80 + 8] = seam[:, 80 - 8 : 80 + 8] = True
    print(
        "max |tiled - whole| away from seams",
        diff[:, ~seam].max(),
        "within 8 cells of a seam",
        diff[:, seam].max(),
    )
    assert diff.max() <= 1e-3  # DN of ~1000: float rounding of the windows' cell positions
    # the ground the tower hides from the nadir view in the east tile (cols 80-82): the east tile's halo reaches
    # the tower's east wall (col 73) on the side the nadir ray climbs to (west), and only a cell on the others
    east = next(s for s in summaries if s["tile"] == "t0000_0001")
    assert east["halo_px"][2] >= 80 - 73


def test_without_the_halo_the_shadow_across_the_edge_is_lost(tmp_path, monkeypatch):
    """The same tiles without the occlusion halo differ from the whole-AOI ortho east of the tile edge."""
    import sat2lod.ortho_tiled as ot

    ids = _scene(tmp_path)
    monkeypatch.setattr(ot, "occlusion_halo", lambda *a, **k: (0, 0, 0, 0))
    _tiled(tmp_path, ids, pansharpen=False)
    ortho_from_files(tmp_path / "dsm.tif", tmp_path / "scenes.json", tmp_path / "whole.tif", pansharpen=False)
    with rasterio.open(tmp_path / "tiled.tif") as a, rasterio.open(tmp_path / "whole.tif") as b:
        ta, tb = a.read(1), b.read(1)
    differs = ~np.isclose(ta, tb, rtol=0, atol=1e-3, equal_nan=True)
    assert differs[20:40, 80:90].any() and not differs[:, :80].any()


def test_occlusion_halo_follows_the_rays_and_the_heights():
    """Halo per side: only on the side each ray climbs towards, as far as the tallest block within reach."""
    zmax = np.full((4, 4), 10.0)  # 4 x 4 blocks of 10 cells, ground at 10 m
    core = (10, 20, 10, 20)  # block (1, 1)
    # ray climbing east (+cols) 2 cells per metre: flat ground, reach 1 cell
    assert occlusion_halo(core, 10.0, [(0.0, 2.0)], zmax, 10, (40, 40)) == (0, 0, 0, 1)
    zmax[1, 3] = 25.0  # a 15 m tower 10-19 cells east of the core: within its reach 2 * 15 + 1 = 31 cells
    assert occlusion_halo(core, 10.0, [(0.0, 2.0)], zmax, 10, (40, 40)) == (0, 0, 0, 31)
    # the same tower west of the core (ray climbing east): out of the ray's way
    zmax[1, 3], zmax[1, 0] = 10.0, 25.0
    assert occlusion_halo(core, 10.0, [(0.0, 2.0)], zmax, 10, (40, 40)) == (0, 0, 0, 1)
    # two views: north-east and west; a 5 m block too far for its reach (20 cells away, reach 2 * 5 + 1)
    zmax[1, 0], zmax[3, 1] = 10.0, 15.0
    assert occlusion_halo(core, 10.0, [(-1.0, 1.0), (0.0, -2.0)], zmax, 10, (40, 40)) == (1, 0, 1, 1)


def test_the_shared_quantities_come_from_the_central_block(tmp_path):
    """gains_window_m smaller than the AOI: lines of sight, gains, MS shift and PAN match are the whole-AOI
    ortho's of the central block; the height range and block maxima are the whole DSM's."""
    from sat2lod.io.raster import read_raster

    _scene(tmp_path)
    doc = ortho_globals_from_files(
        tmp_path / "dsm.tif", tmp_path / "scenes.json", tmp_path / "s.json", gains_window_m=30.0
    )
    assert doc["block"] == [50, 50, 60, 60]
    shared, blocks, side = read_ortho_globals(tmp_path / "s.json")
    dsm = read_raster(tmp_path / "dsm.tif")
    assert (shared.zmin, shared.zmax) == (float(np.nanmin(dsm.array)), float(np.nanmax(dsm.array)))
    assert blocks.shape == (2, 2) and side == 128 and blocks.max() == shared.zmax
    crop = dsm.array[50:110, 50:110]
    write_raster(
        tmp_path / "block.tif",
        crop,
        from_origin(GX0 + 25.0, GY1 - 25.0, RES, RES),
        EPSG,
        nodata=float("nan"),
        tags={"VERTICAL_DATUM": sat2lod.ELLIPSOID_DATUM},
    )
    info = ortho_from_files(tmp_path / "block.tif", tmp_path / "scenes.json", tmp_path / "block_ortho.tif")
    assert [tuple(p) for p in info["los"]] == list(shared.los)
    assert [tuple(g) for g in info["gains"]] == list(shared.gains)
    assert tuple(info["ms_registration_shift_px"]) == shared.ms_shift != (0.0, 0.0)
    assert tuple(info["pan_match"]) == shared.pan_match


def test_fill_halo_reaches_as_far_as_the_holes_take_their_heights():
    """A hole cell d cells from its nearest valid cell of the core needs the window d cells beyond it."""
    from sat2lod.ortho_tiled import fill_halo

    z = np.ones((10, 10))
    assert fill_halo(z) == (0, 0, 0, 0)
    z[0:3, 4:6] = np.nan  # at the top edge: (0, 4) is 1 cell from (0, 3), 0 cells from the edge
    z[5, 7:10] = np.nan  # at the right edge: (5, 9) is 1 cell from (4, 9)
    assert fill_halo(z) == (1, 0, 0, 1)
    z[6:10, 0:10] = np.nan  # the bottom rows: (9, 0) is 4 cells from (5, 0), (9, 9) 5 from (4, 9)
    assert fill_halo(z) == (1, 5, 4, 5) and fill_halo(z, max_px=3) == (1, 3, 3, 3)
    assert fill_halo(np.full((4, 4), np.nan), max_px=7) == (7, 7, 7, 7)


def test_a_central_block_without_heights_is_refused(tmp_path):
    """ortho_gains needs heights in its block to estimate the gains: the error names the key to raise."""
    import pytest

    from sat2lod.io.raster import read_raster

    _scene(tmp_path)
    dsm = read_raster(tmp_path / "dsm.tif", bands=1)
    a = dsm.array.copy()
    a[60:100, 60:100] = np.nan
    write_raster(tmp_path / "dsm.tif", a, dsm.transform, EPSG, nodata=float("nan"), tags=dsm.tags)
    with pytest.raises(ValueError, match="ortho.gains_window_m"):
        ortho_globals_from_files(
            tmp_path / "dsm.tif", tmp_path / "scenes.json", tmp_path / "s.json", gains_window_m=10.0
        )
    assert not (tmp_path / "s.json").exists()
