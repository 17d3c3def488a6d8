"""Synthetic city generator: determinism, RPC fit, truth consistency, kernels vs references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from rasterio import features
from shapely.geometry import box

from sat2lod.io.raster import read_raster
from sat2lod.io.rpc_files import read_rpc
from sat2lod.io.vector import read_vector
from sat2lod.synth import generate_city
from sat2lod.synth._kernels import _render, _shadow_mask, shadow_mask_reference
from sat2lod.synth.camera import make_camera
from sat2lod.synth.layout import Building, make_layout


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    out = tmp_path_factory.mktemp("city")
    meta = generate_city(out, seed=3, size_m=120.0, n_views=3, n_buildings=6)
    return out, meta


def test_outputs_and_metadata(city):
    out, meta = city
    assert len(meta["views"]) == 3
    for v in meta["views"]:
        with rasterio.open(out / v["file"]) as ds:
            assert ds.dtypes[0] == "uint16"
            assert ds.rpcs is not None
            assert ds.crs is None  # sensor geometry, as a raw Pléiades crop
            assert ds.transform.is_identity  # no geotransform: located by its RPCs only
            img = ds.read(1)
        assert img.std() > 20  # textured, not blank
    for name in ("dsm", "dtm", "ndsm"):
        r = read_raster(out / "truth" / f"{name}.tif")
        assert r.crs.to_epsg() == meta["epsg"]
        assert abs(r.transform.a - 0.5) < 1e-9
        assert "VERTICAL_DATUM" in r.tags
    assert "ellipsoid" in read_raster(out / "truth" / "dsm.tif").tags["VERTICAL_DATUM"].lower()


def test_views_differ_in_gain_and_geometry(city):
    _, meta = city
    gains = [v["gain"] for v in meta["views"]]
    assert len({round(g) for g in gains}) == 3
    pitches = sorted(v["pitch_deg"] for v in meta["views"])
    # tri-stereo base-to-height between the extreme views within 0.2-0.4 (ratio = tan(a) - tan(b))
    bh = math.tan(math.radians(pitches[-1])) - math.tan(math.radians(pitches[0]))
    assert 0.2 <= bh <= 0.45


def test_rpc_fit_residual(city):
    out, meta = city
    for v in meta["views"]:
        assert v["rpc_residual_max_px"] < 0.05
        rpc = read_rpc(out / v["file"])
        # round trip through the stored tags: localize then project
        r, c = np.meshgrid(np.linspace(0, v["rows"] - 1, 7), np.linspace(0, v["cols"] - 1, 7))
        h = np.full(r.shape, meta["height_range"][0] + 5.0)
        lon, lat = rpc.localize(r, c, h)
        r2, c2 = rpc.project(lon, lat, h)
        assert np.max(np.hypot(r2 - r, c2 - c)) < 1e-3


def test_truth_consistency(city):
    out, meta = city
    dsm = read_raster(out / "truth" / "dsm.tif").array
    dtm = read_raster(out / "truth" / "dtm.tif").array
    ndsm = read_raster(out / "truth" / "ndsm.tif").array
    cls = read_raster(out / "truth" / "classes.tif")
    assert np.all(dsm >= dtm - 1e-3)
    np.testing.assert_allclose(ndsm, dsm - dtm, atol=1e-4)
    gdf = read_vector(out / "truth" / "buildings.gpkg")
    assert len(gdf) == meta["n_buildings"] >= 3
    assert set(gdf.columns) >= {"id", "height", "eave_height", "ridge_height", "roof_type", "ground_height"}
    assert (gdf["ridge_height"] >= gdf["eave_height"]).all()
    # building pixels are exactly the rasterized polygons
    mask = features.rasterize(
        [(g, 1) for g in gdf.geometry], out_shape=cls.shape, transform=cls.transform, fill=0
    )
    np.testing.assert_array_equal(mask == 1, cls.array == 1)
    # heights inside each footprint: ground + something between eave and ridge
    for _, b in gdf.iterrows():
        m = features.rasterize([(b.geometry, 1)], out_shape=cls.shape, transform=cls.transform, fill=0) == 1
        rel = dsm[m] - b.ground_height
        assert rel.max() <= b.ridge_height + 1e-3
        assert rel.min() >= min(b.eave_height, b.ridge_height) - 1e-3


def test_deterministic(tmp_path):
    a = generate_city(tmp_path / "a", seed=5, size_m=60.0, n_views=2, n_buildings=3)
    b = generate_city(tmp_path / "b", seed=5, size_m=60.0, n_views=2, n_buildings=3)
    ia = read_raster(tmp_path / "a" / "view_0.tif").array
    ib = read_raster(tmp_path / "b" / "view_0.tif").array
    np.testing.assert_array_equal(ia, ib)
    assert a["height_range"] == b["height_range"]


def test_layout_has_orientations_and_roof_types():
    lay = make_layout(np.random.default_rng(7), (0.0, 0.0, 600.0, 600.0), 100)
    assert 50 <= len(lay.buildings) <= 150
    assert 2 <= len(lay.orientations) <= 3
    assert {b.roof_type for b in lay.buildings} >= {"flat", "gable", "hip", "shed"}
    assert lay.water is not None and len(lay.trees) > 0
    # row houses share walls: some pairs of footprints touch along a segment without overlapping
    rows = [b.footprint for b in lay.buildings if b.kind == "row"]
    shared = sum(1 for i, a in enumerate(rows) for b in rows[i + 1 :] if a.intersection(b).length > 5.0)
    assert shared >= 3
    assert all(a.intersection(b).area < 1e-6 for i, a in enumerate(rows) for b in rows[i + 1 :])


@pytest.mark.parametrize("roof", ["flat", "shed", "gable", "hip", "pyramid"])
def test_roof_shapes(roof):
    b = Building(
        1,
        box(-5, -4, 5, 4),
        roof,
        eave=6.0,
        ridge=9.0,
        ground=100.0,
        frame=(0.0, 0.0, 0.0, 5.0, 4.0),
        kind="detached",
    )
    x, y = np.array([0.0, 0.0, 4.9]), np.array([0.0, 3.9, 0.0])
    h = b.roof_height(x, y)
    assert h.max() <= 9.0 + 1e-9 and h.min() >= 6.0 - 1e-9
    if roof == "gable":
        assert h[0] == pytest.approx(9.0) and h[1] < 6.2
    if roof in ("hip", "pyramid"):
        assert h[2] < 6.3 and h[1] < 6.3


@pytest.mark.parametrize("az", [160, 200, 100, 260, 20, 340])
def test_shadow_sweep_matches_ray_march_reference(az):
    # the O(N) sweep (interpolating) and the ray-march reference (nearest cell) agree but at shadow edges
    dsm = np.zeros((80, 90), np.float32)
    dsm[30:45, 30:50] = 12.0
    dsm[60:70, 10:20] = 6.0
    args = (0.5, math.radians(az), math.radians(40), float(dsm.max()))
    fast, ref = _shadow_mask(dsm, *args), shadow_mask_reference(dsm, *args)
    assert (fast == ref).mean() > 0.97
    assert abs(int(fast.sum()) - int(ref.sum())) < 0.1 * ref.sum()
    # the shadow falls away from the sun
    _ys, xs = np.nonzero(fast)
    assert (
        np.sign(xs.mean() - 40) == -np.sign(round(math.sin(math.radians(az)), 6))
        or abs(math.sin(math.radians(az))) < 0.5
    )


def test_render_kernel_matches_python_and_camera():
    # a flat scene: the rendered image must equal the albedo sampled where the camera says each pixel looks
    res = 0.25
    n = 200
    alb = np.tile(np.linspace(0.1, 0.9, n, dtype=np.float32), (n, 1))
    dsm = np.full((n, n), 100.0, np.float32)
    ones = np.ones_like(dsm)
    zeros = np.zeros_like(dsm)
    cam = make_camera((10.0, -40.0, 40.0, -10.0), 99.0, 101.0, 8.0, 1.0, 185.0, 0.5)
    args = (
        dsm,
        alb,
        ones,
        zeros,
        zeros,
        0.0,
        0.0,
        res,
        cam.as_array(),
        cam.rows,
        cam.cols,
        1,
        99.0,
        101.0,
        0.0,
        0.0,
    )
    img = _render(*args, dsm, 1)  # no empty-space skipping
    np.testing.assert_allclose(img, _render.py_func(*args, dsm, 1), atol=1e-6)
    p, q = np.meshgrid(np.arange(cam.rows), np.arange(cam.cols), indexing="ij")
    x, y = cam.ground(p, q, 100.0)
    expected = alb[np.floor(-y / res).astype(int), np.floor(x / res).astype(int)]
    np.testing.assert_allclose(img, expected, atol=1e-6)


def test_render_empty_space_skipping_is_exact():
    # towers on a slope: skipping with a max-filtered DSM gives the same image as stepping every cell
    from scipy import ndimage

    res, n = 0.25, 240
    _yy, xx = np.mgrid[0:n, 0:n]
    dsm = (100.0 + 0.02 * xx).astype(np.float32)
    dsm[60:100, 50:90] = 130.0
    dsm[150:170, 140:200] = 115.0
    rng = np.random.default_rng(1)
    alb = rng.uniform(0.1, 0.9, (n, n)).astype(np.float32)
    irr = rng.uniform(0.3, 1.0, (n, n)).astype(np.float32)
    wnx = np.ones_like(dsm)
    wny = np.zeros_like(dsm)
    cam = make_camera((10.0, -50.0, 50.0, -10.0), 100.0, 131.0, 11.0, 2.0, 190.0, 0.5)
    args = (
        dsm,
        alb,
        irr,
        wnx,
        wny,
        0.0,
        0.0,
        res,
        cam.as_array(),
        cam.rows,
        cam.cols,
        2,
        99.0,
        131.0,
        0.5,
        -0.5,
    )
    plain = _render(*args, dsm, 1)
    skip = _render(*args, ndimage.maximum_filter(dsm, size=2 * 16 + 1, mode="nearest"), 16)
    np.testing.assert_allclose(skip, plain, atol=1e-6)
