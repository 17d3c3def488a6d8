"""Block-wise generation of large synthetic cities (sat2lod.synth.blocked): the files do not depend on the
block size, the truth is the layout's, the views see the city where the camera says."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.transform import Affine

from sat2lod import synth
from sat2lod.io.raster import read_raster
from sat2lod.io.rpc_files import read_rpc
from sat2lod.synth import blocked
from sat2lod.synth._kernels import _render
from sat2lod.synth.camera import make_camera
from sat2lod.synth.scene import rasterize_layout


def _blocked_city(out, monkeypatch, block_px: int, strip_rows: int) -> dict:
    monkeypatch.setattr(synth, "WHOLE_GRID_MAX_M", 50.0)  # force the block-wise path on a small city
    monkeypatch.setattr(blocked, "BLOCK_PX", block_px)
    monkeypatch.setattr(blocked, "STRIP_ROWS", strip_rows)
    return synth.generate_city(out, seed=4, size_m=150.0, n_views=2, n_buildings=8)


@pytest.fixture(scope="module")
def cities(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    try:
        small = tmp_path_factory.mktemp("small_blocks")
        big = tmp_path_factory.mktemp("one_block")
        meta_s = _blocked_city(small, mp, 96, 128)
        meta_b = _blocked_city(big, mp, 4096, 4096)
    finally:
        mp.undo()
    return (small, meta_s), (big, meta_b)


def test_files_do_not_depend_on_the_block_size(cities):
    (small, meta_s), (big, meta_b) = cities
    assert meta_s == meta_b
    for v in meta_s["views"]:
        a, b = read_raster(small / v["file"]).array, read_raster(big / v["file"]).array
        assert a.shape == (v["rows"], v["cols"])
        np.testing.assert_array_equal(a, b)  # ray casting per block window == one window: same bits
    for name in ("dsm", "dtm", "ndsm", "classes"):
        np.testing.assert_array_equal(
            read_raster(small / "truth" / f"{name}.tif").array,
            read_raster(big / "truth" / f"{name}.tif").array,
        )


def test_blocked_city_is_a_city(cities):
    (out, meta), _ = cities
    dsm = read_raster(out / "truth" / "dsm.tif")
    cls = read_raster(out / "truth" / "classes.tif").array
    assert "ellipsoid" in dsm.tags["VERTICAL_DATUM"].lower()
    assert (cls == 1).sum() > 100 and meta["n_buildings"] >= 3
    assert meta["height_range"] == [float(np.nanmin(dsm.array)), float(np.nanmax(dsm.array))]
    for v in meta["views"]:
        img = read_raster(out / v["file"]).array
        assert img.std() > 20 and img.min() > 0  # textured, nothing left unrendered (DN 0)
        assert v["rpc_residual_max_px"] < 0.05
        rpc = read_rpc(out / v["file"])
        lon, lat = rpc.localize(np.array([10.0]), np.array([10.0]), np.array([meta["height_range"][0]]))
        assert np.isfinite(lon).all() and np.isfinite(lat).all()


def test_render_block_equals_the_whole_image_there():
    rng = np.random.default_rng(2)
    res, n = 0.25, 240
    dsm = (100.0 + rng.uniform(0, 1, (n, n))).astype(np.float32)
    dsm[60:100, 50:90] = 125.0
    alb = rng.uniform(0.1, 0.9, (n, n)).astype(np.float32)
    ones = np.ones_like(dsm)
    cam = make_camera((10.0, -50.0, 50.0, -10.0), 100.0, 126.0, 9.0, 1.0, 185.0, 0.5)
    common = (dsm, alb, ones, ones, 0 * ones, 0.0, 0.0, res, cam.as_array())
    tail = (2, 99.0, 126.0, 0.3, 0.3, dsm, 1)
    whole = _render(*common, cam.rows, cam.cols, *tail)
    part = _render(*common, 17, 23, *tail, 11, 29)
    np.testing.assert_array_equal(part, whole[11:28, 29:52])
    np.testing.assert_allclose(part, _render.py_func(*common, 17, 23, *tail, 11, 29), atol=1e-6)


def test_lattice_noise_is_keyed_by_position():
    xs, ys = np.arange(300) * 0.25 + 1000.125, 5000.0 - np.arange(200) * 0.25
    full = blocked.lattice_noise(7, xs, ys, 3.0)
    part = blocked.lattice_noise(7, xs[120:260], ys[50:90], 3.0)
    np.testing.assert_array_equal(part, full[50:90, 120:260])
    assert -1.5 <= full.min() < -0.3 and 0.3 < full.max() <= 1.5
    assert not np.array_equal(full, blocked.lattice_noise(8, xs, ys, 3.0))
    # smooth at the lattice scale: neighbouring cells (0.25 m apart) differ far less than the range
    assert np.abs(np.diff(full, axis=1)).mean() < 0.1 * (full.max() - full.min())


def test_pixel_noise_is_standard_normal_and_keyed():
    r, c = np.arange(400)[:, None], np.arange(500)[None, :]
    z = blocked.pixel_normal(11, r, c)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01
    np.testing.assert_array_equal(blocked.pixel_normal(11, r[100:150], c[:, 30:60]), z[100:150, 30:60])


def test_truth_strips_cover_the_grid_once():
    from sat2lod.synth.layout import make_layout

    layout = make_layout(np.random.default_rng(1), (0.0, 0.0, 100.0, 100.0), 5)
    t = Affine(0.5, 0, 0.0, 0, -0.5, 100.0)
    whole = rasterize_layout(layout, t, (200, 200))
    rows = []
    for win, part in blocked.truth_strips(layout, t, (200, 200)):
        rows.append((win.row_off, win.height))
        np.testing.assert_array_equal(
            part["classes"], whole["classes"][win.row_off : win.row_off + win.height]
        )
        np.testing.assert_allclose(
            part["dsm"], whole["dsm"][win.row_off : win.row_off + win.height], atol=1e-4
        )
    assert sum(h for _, h in rows) == 200
