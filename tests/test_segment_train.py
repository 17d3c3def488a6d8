"""Rule entry train_segmenter end to end on tiny cities in the generator's file layout (no rendering needed)."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
from pyproj import Transformer
from rasterio.transform import from_origin
from shapely.geometry import box

import sat2lod
from sat2lod.io.checkpoint import load_checkpoint
from sat2lod.io.jsonio import write_json
from sat2lod.io.raster import write_raster
from sat2lod.io.vector import write_vector
from sat2lod.rpc import fit_rpc
from sat2lod.segment import train as train_mod

EPSG, X0, Y0, RES, N = 32631, 374000.0, 4828000.0, 0.5, 128


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_tiny_city(out, seed: int, size_m: float = 64.0, n_views: int = 1, gsd_m: float = 0.5, **_) -> dict:
    """A flat city of boxes in the layout of sat2lod.synth.generate_city, seen by a vertical camera."""
    rng = np.random.default_rng(seed)
    n = int(size_m / RES)
    tr = from_origin(X0, Y0, RES, RES)
    dtm = np.full((n, n), 150.0, np.float32)
    dsm = dtm.copy()
    img = rng.normal(400, 30, (n, n)).astype(np.float32)
    polys = []
    for _ in range(5):
        r, c = rng.integers(0, n - 30, 2)
        h, w = rng.integers(10, 30, 2)
        dsm[r : r + h, c : c + w] = 150.0 + rng.uniform(4, 15)
        img[r : r + h, c : c + w] = rng.uniform(700, 900)
        polys.append(box(X0 + c * RES, Y0 - (r + h) * RES, X0 + (c + w) * RES, Y0 - r * RES))
    (out / "truth").mkdir(parents=True, exist_ok=True)
    tags = {"VERTICAL_DATUM": sat2lod.ELLIPSOID_DATUM}
    write_raster(out / "truth" / "dsm.tif", dsm, tr, EPSG, nodata=float("nan"), tags=tags)
    write_raster(out / "truth" / "ndsm.tif", dsm - dtm, tr, EPSG, nodata=float("nan"), tags=tags)
    write_vector(
        out / "truth" / "buildings.gpkg",
        gpd.GeoDataFrame({"id": range(len(polys))}, geometry=polys, crs=EPSG),
    )
    # vertical camera: pixel (row, col) = grid cell, any height
    to_ll = Transformer.from_crs(EPSG, 4326, always_xy=True)
    x, y, h = np.meshgrid(
        np.linspace(X0, X0 + size_m, 9), np.linspace(Y0 - size_m, Y0, 9), np.linspace(100.0, 200.0, 5)
    )  # >= 4 heights: a cubic RPC in z is determined
    lon, lat = to_ll.transform(x.ravel(), y.ravel())
    rpc = fit_rpc(lon, lat, h.ravel(), (Y0 - y.ravel()) / RES - 0.5, (x.ravel() - X0) / RES - 0.5)
    write_raster(
        out / "view_0.tif", img.astype(np.uint16), from_origin(0, 0, 1, 1), None, rpcs=rpc.to_rasterio()
    )
    meta = {
        "views": [{"file": "view_0.tif"}],
        "truth": {"dsm": "truth/dsm.tif", "ndsm": "truth/ndsm.tif", "buildings": "truth/buildings.gpkg"},
    }
    write_json(out / "scene.json", meta)
    return meta


def test_train_segmenter_writes_checkpoint_and_metrics(tmp_path, monkeypatch):
    import sat2lod.synth

    monkeypatch.setattr(sat2lod.synth, "generate_city", write_tiny_city)
    met = train_mod.train_segmenter(
        tmp_path / "m.pt",
        tmp_path / "m.json",
        seeds=[1, 2],
        val_seeds=[3],
        city_size_m=64.0,
        steps=30,
        batch_size=4,
        patch_px=64,
        lr=1e-2,
        base_channels=8,
        depth=2,
        seed=0,
        ndsm_dropout=0.0,
        work_dir=tmp_path / "c",
    )
    payload = load_checkpoint(tmp_path / "m.pt", train_mod.CHECKPOINT_FORMAT)
    assert payload["data"]["seeds"] == [1, 2] and payload["train"]["steps"] == 30
    assert payload["model"] == {"in_channels": 3, "base": 8, "depth": 2}
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["val_seeds"] == [3] and 0.0 <= saved["val_iou_mean"] <= 1.0
    assert saved["history"][-1]["loss"] < saved["history"][0]["loss"]
    assert 0.05 < met["building_fraction"] < 0.6
    # the label raster of a city matches its footprints and the ortho comes through the RPC
    s = train_mod.city_sample(tmp_path / "c" / "city_s1")
    assert s.x.shape == (3, 128, 128) and set(np.unique(s.y)) <= {0, 1, 255}
    assert s.x[0][s.y == 1].mean() > s.x[0][s.y == 0].mean() + 0.5  # roofs are bright in the ortho
    with pytest.raises(ValueError, match="overlap"):
        train_mod.train_segmenter(tmp_path / "x.pt", tmp_path / "x.json", seeds=[1], val_seeds=[1])


def test_rescale_patch_keeps_image_and_labels_aligned():
    """A window zoomed in twice: each label cell becomes 2 x 2 patch cells, and the image is sampled at the
    same cell centres (a linear ramp comes out as the centres' coordinates)."""
    h, w = 40, 50
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float32)
    x = np.stack([cc, rr, np.ones((h, w), np.float32)])
    y = np.zeros((h, w), np.uint8)
    y[12:19, 20:31] = 1
    y[25, 5] = 255
    r, c, side, patch = 8, 4, 16, 32
    xo, yo = train_mod.rescale_patch(x, y, r, c, side, patch)
    assert xo.shape == (3, patch, patch) and xo.dtype == np.float32 and yo.dtype == np.uint8
    win = y[r : r + side, c : c + side]
    assert np.array_equal(yo, np.repeat(np.repeat(win, 2, 0), 2, 1))
    t = (np.arange(patch) + 0.5) / 2 - 0.5  # patch cell centres in window cells
    np.testing.assert_allclose(
        xo[0][4:-4, 1:-1], np.broadcast_to(c + t[1:-1], (patch - 8, patch - 2)), atol=1e-4
    )
    np.testing.assert_allclose(
        xo[1][1:-1, 4:-4].T, np.broadcast_to(r + t[1:-1], (patch - 8, patch - 2)), atol=1e-4
    )
    # zoomed out past the sample's edge: outside cells are ignored in the labels, 0 in the input
    xo, yo = train_mod.rescale_patch(x, y, 30, 40, 32, 16)
    assert (yo[-4:, :] == 255).all() and (yo[:, -4:] == 255).all() and (xo[2][-2:, :] == 0).all()
    assert set(np.unique(yo)) <= {0, 1, 255}


def test_augmentation_options_are_deterministic_and_keep_labels():
    rng0 = np.random.default_rng(0)
    h = w = 200
    y = np.zeros((h, w), np.uint8)
    for _ in range(12):
        r, c = rng0.integers(0, h - 20, 2)
        y[r : r + 15, c : c + 12] = 1
    x = np.stack([0.2 + 0.6 * y + rng0.normal(0, 0.02, (h, w)), np.zeros((h, w)), np.zeros((h, w))])
    s = train_mod.Sample(x.astype(np.float32), y)
    kw = {"scale_aug": 0.5, "photometric": True, "normalize": True}
    a = train_mod._batch([s], np.random.default_rng(3), 6, 64, 1.0, 0, **kw)
    b = train_mod._batch([s], np.random.default_rng(3), 6, 64, 1.0, 0, **kw)
    assert torch_equal(a, b)
    xb, yb = (t.numpy() for t in a)
    assert set(np.unique(yb)) <= {0, 1, 255} and (yb == 1).any()
    assert (xb[:, 1:] == 0).all()  # image-only: the nDSM hidden
    for xo, yo in zip(xb, yb):
        o, lab = xo[0], yo
        if (lab == 1).sum() > 20 and (lab == 0).sum() > 20:
            # roofs stay brighter than the ground: the labels follow the (zoomed, rotated) image, nothing inverted
            assert o[lab == 1].mean() > o[lab == 0].mean() + 0.2
        # each patch's ortho scaled by its own percentiles, as at inference
        lo, hi = np.percentile(o[lab != 255], [2, 98])
        assert abs(lo) < 1e-3 and abs(hi - 1) < 1e-3
    # with the options off the batch is the default recipe's (no extra random draw)
    off = train_mod._batch([s], np.random.default_rng(3), 6, 64, 1.0, 0)
    assert not torch_equal(a, off)
    assert torch_equal(off, train_mod._batch([s], np.random.default_rng(3), 6, 64, 1.0, 0, 0.0, False, False))


def test_photometric_jitter_and_normalize_patch():
    rng = np.random.default_rng(1)
    o = rng.random((64, 64)).astype(np.float32)
    before = o.copy()
    j1 = train_mod.photometric_jitter(o, np.random.default_rng(5))
    j2 = train_mod.photometric_jitter(o, np.random.default_rng(5))
    assert np.array_equal(j1, j2) and np.array_equal(o, before) and j1.dtype == np.float32
    assert np.corrcoef(j1.ravel(), o.ravel())[0, 1] > 0  # not inverted
    n = train_mod.normalize_patch(o)
    np.testing.assert_allclose(np.percentile(n, [2, 98]), [0, 1], atol=1e-5)
    np.testing.assert_allclose(train_mod.normalize_patch(3 * o + 7), n, atol=1e-5)  # gain / offset free
    assert n.min() >= -0.5 and n.max() <= 1.5


def torch_equal(a, b) -> bool:
    return all(np.array_equal(u.numpy(), v.numpy()) for u, v in zip(a, b))


def test_material_gain_redraws_brightness_order_and_keeps_texture():
    rng0 = np.random.default_rng(0)
    mat = np.zeros((96, 96), np.uint8)
    mat[40:56, :] = 3  # a road across
    mat[8:28, 8:30] = 1  # two buildings
    mat[64:90, 60:88] = 1
    mat[70:80, 10:24] = 2  # a tree
    o = (0.2 + 0.05 * rng0.random((96, 96))).astype(np.float32)
    o[mat == 1] += 0.2  # roofs brighter than everything, as the synthetic renders make them
    before = o.copy()
    a = train_mod.material_gain(o, mat, np.random.default_rng(4))
    assert np.array_equal(a, train_mod.material_gain(o, mat, np.random.default_rng(4)))  # deterministic
    assert np.array_equal(o, before) and a.dtype == np.float32
    core = ndimage_erode(mat)
    gains = {}
    for name, sl in (("b1", np.s_[8:28, 8:30]), ("b2", np.s_[64:90, 60:88]), ("road", np.s_[40:56, :])):
        inner = core[sl]
        g = a[sl][inner] / o[sl][inner]
        np.testing.assert_allclose(g, g.mean(), rtol=1e-5)  # one gain per region: its texture kept
        gains[name] = g.mean()
    assert gains["b1"] != gains["b2"]  # each building its own gain
    for g, (lo, hi) in ((gains["b1"], (0.4, 2.5)), (gains["road"], (0.67, 3.5))):
        assert lo <= g <= hi
    # over many draws a roof is sometimes darker than the road beside it: brightness no longer tells a roof
    darker = 0
    for seed in range(40):
        b = train_mod.material_gain(o, mat, np.random.default_rng(seed))
        darker += b[12:24, 12:26].mean() < b[44:52, 40:60].mean()
    assert 5 <= darker <= 35
    assert (
        train_mod.material_gain(np.full((8, 8), 1.4, np.float32), np.ones((8, 8), np.uint8), rng0).max()
        <= 1.5
    )


def ndimage_erode(mat: np.ndarray) -> np.ndarray:
    """Cells whose 9 x 9 neighbourhood has one material (beyond the reach of the gain field's smoothing)."""
    from scipy import ndimage

    return ndimage.maximum_filter(mat, 9) == ndimage.minimum_filter(mat, 9)


def test_material_aug_in_batches():
    rng0 = np.random.default_rng(0)
    y = np.zeros((120, 120), np.uint8)
    y[20:50, 30:70] = 1
    y[80:110, 10:40] = 1
    x = np.stack([0.2 + 0.6 * y + rng0.normal(0, 0.02, y.shape), np.zeros(y.shape), np.zeros(y.shape)])
    plain = train_mod.Sample(x.astype(np.float32), y)
    with_mat = train_mod.Sample(x.astype(np.float32), y, materials=y.copy())
    # off, or a sample without materials: no extra random draw, the default recipe's batch
    ref = train_mod._batch([plain], np.random.default_rng(2), 4, 64, 1.0, 0)
    assert torch_equal(ref, train_mod._batch([with_mat], np.random.default_rng(2), 4, 64, 1.0, 0))
    assert torch_equal(
        ref, train_mod._batch([plain], np.random.default_rng(2), 4, 64, 1.0, 0, material_aug=1.0)
    )
    on = train_mod._batch([with_mat], np.random.default_rng(2), 4, 64, 1.0, 0, material_aug=1.0)
    assert not torch_equal(ref, on)
    assert torch_equal(
        on, train_mod._batch([with_mat], np.random.default_rng(2), 4, 64, 1.0, 0, material_aug=1.0)
    )
    assert set(np.unique(on[1].numpy())) <= {0, 1, 255}
    # with scale augmentation the materials follow the labels' window
    np.testing.assert_array_equal(train_mod.nearest_window(y, 5, 7, 64, 64, 0), y[5:69, 7:71])
    zoomed = train_mod.nearest_window(y, 10, 10, 96, 64, 0)
    _, yz = train_mod.rescale_patch(x.astype(np.float32), y, 10, 10, 96, 64)
    np.testing.assert_array_equal(zoomed, yz)
