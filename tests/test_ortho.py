"""True ortho: flat scene = image resampled, occlusion detection (kernel vs reference), fallback view, file rule."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin
from scipy import ndimage

import sat2lod
from conftest import shared_file
from sat2lod.io.jsonio import write_json
from sat2lod.io.raster import write_raster
from sat2lod.ortho import (
    OrthoView,
    _occlusion,
    cell_centres,
    estimate_shift,
    occlusion_reference,
    ortho_from_files,
    orthorectify_bands,
    pansharpen,
    true_ortho,
)
from sat2lod.rpc import fit_rpc

EPSG = 32631
X0, Y0, RES = 500000.0, 4800000.0, 0.5
GSD = 0.5


def affine_camera(shift_x_per_m: float, shift_y_per_m: float, gain: float = 1.0):
    """RPC of a parallel-projection camera: col = (x - X0 - sx*h)/GSD - 0.5, row = (Y0 - y + sy*h)/GSD - 0.5.

    Points (x + sx*t, y + sy*t, h + t) share a pixel: the line of sight climbs along (sx, sy) metres per metre.
    Returns the fitted RPC and the exact camera function (x, y, h) -> (row, col).
    """
    to_ll = Transformer.from_crs(EPSG, 4326, always_xy=True)
    x, y, h = np.meshgrid(
        np.linspace(X0 - 20, X0 + 120, 15),
        np.linspace(Y0 - 120, Y0 + 20, 15),
        np.linspace(0.0, 60.0, 7),
        indexing="ij",
    )
    x, y, h = x.ravel(), y.ravel(), h.ravel()
    col = (x - X0 - shift_x_per_m * h) / GSD - 0.5
    row = (Y0 - y + shift_y_per_m * h) / GSD - 0.5
    lon, lat = to_ll.transform(x, y)
    return fit_rpc(lon, lat, h, row, col), (
        lambda xx, yy, hh: (
            (Y0 - yy + shift_y_per_m * hh) / GSD - 0.5,
            (xx - X0 - shift_x_per_m * hh) / GSD - 0.5,
        )
    )


def lowpass(a: np.ndarray) -> np.ndarray:
    """4 x 4 box low-pass (the Pléiades MS / PAN pixel ratio); NaN filled with 0 (uniform_filter spreads NaN)."""
    return ndimage.uniform_filter(np.nan_to_num(a), 4)


def texture(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (1000 + 300 * ndimage.gaussian_filter(rng.normal(size=shape), 2.0)).astype(np.float32)


def test_flat_scene_ortho_equals_resampled_image():
    rpc, cam = affine_camera(0.3, -0.1)
    img = texture((260, 260))
    dsm = np.full((180, 180), 12.0, np.float32)
    tr = from_origin(X0 + 8.0, Y0 - 6.0, RES, RES)
    ortho, source, info = true_ortho(dsm, tr, EPSG, [OrthoView(img, rpc, "v0")])
    x, y = cell_centres(tr, dsm.shape)
    r, c = cam(x, y, 12.0)
    expected = ndimage.map_coordinates(img, [r, c], order=1, mode="constant", cval=np.nan, prefilter=False)
    assert np.isfinite(ortho).all() and (source == 0).all()
    np.testing.assert_allclose(ortho, expected, rtol=0, atol=0.05)  # RPC fit error ~1e-4 px
    assert info["views"][0]["occluded_fraction"] == 0.0
    # the measured incidence comes from the RPC: tan = |(0.3, -0.1)|
    assert info["views"][0]["tan_incidence"] == pytest.approx(np.hypot(0.3, 0.1), rel=1e-3)


def box_scene():
    dsm = np.zeros((120, 160), np.float32)
    dsm[40:80, 50:70] = 20.0  # 20 m box, 10 m wide (x 25..35 m from the grid origin)
    return dsm


def test_occlusion_kernel_matches_reference_and_geometry():
    dsm = box_scene()
    dsm[5, 5] = np.nan
    # ray towards the sensor climbs towards -x (west): ground just east of the box is hidden over 20*0.4 = 8 m
    drow, dcol = 0.0, -0.4 / RES
    occ = _occlusion(dsm.astype(np.float64), drow, dcol, 20.0, 0.5)
    ref = occlusion_reference(dsm.astype(np.float64), drow, dcol, 20.0, 0.5)
    np.testing.assert_array_equal(occ, ref)
    assert occ[60, 70:84].all()  # 7 m of the 8 m shadow (ray marching in half pixels)
    assert not occ[60, 88:].any() and not occ[60, :50].any()
    assert not occ[40:80, 50:70].any()  # the roof itself is seen
    assert not occ[5, 5]
    rng = np.random.default_rng(1)
    rough = ndimage.gaussian_filter(rng.normal(0, 8, (60, 70)), 1.5).astype(np.float64)
    np.testing.assert_array_equal(
        _occlusion(rough, 0.7, 1.3, float(rough.max()), 0.3),
        occlusion_reference(rough, 0.7, 1.3, float(rough.max()), 0.3),
    )


def test_hidden_cells_take_the_other_view():
    dsm = box_scene()
    tr = from_origin(X0, Y0, RES, RES)
    west, _ = affine_camera(-0.4, 0.0)  # line of sight climbs towards -x: hides cells east of the box
    east, _ = affine_camera(0.5, 0.0)  # hides cells west of the box; more oblique -> lower priority
    img_w, img_e = texture((300, 300), 1), texture((300, 300), 2) * 2.0 + 10.0  # another gain
    ortho, source, info = true_ortho(
        dsm, tr, EPSG, [OrthoView(img_e, east, "east"), OrthoView(img_w, west, "west")]
    )
    assert (source[60, 72:82] == 0).all()  # east of the box: hidden from 'west', taken from 'east'
    assert (source[60, 20:40] == 1).all()  # elsewhere: the more nadir view
    assert info["views"][1]["occluded_fraction"] > 0.005
    # radiometric matching put 'east' on the scale of 'west': no jump at the seam
    seam = np.abs(np.diff(ortho[60, 80:86])).max()
    assert seam < 200
    plain, src2, _ = true_ortho(dsm, tr, EPSG, [OrthoView(img_w, west, "west")], detect_occlusions=True)
    assert np.isnan(plain[60, 72:82]).all() and (src2[60, 72:82] == -1).all()  # one view: hidden = masked


def test_pansharpen_keeps_low_pass_and_registers():
    pan = texture((96, 96), 3)
    low = ndimage.uniform_filter(pan, 4)
    ms = np.stack([np.roll(low, (2, -3), axis=(0, 1)) * k for k in (0.5, 0.8, 1.1)])  # MS misregistered
    assert estimate_shift(low, ms[0]) == pytest.approx((-2.0, 3.0), abs=0.1)
    sharp, shift = pansharpen(pan, ms)
    assert shift == pytest.approx((-2.0, 3.0), abs=0.1)
    inner = (slice(8, -8), slice(8, -8))
    # high frequencies come from PAN, the band means stay
    np.testing.assert_allclose(
        sharp[(slice(None),) + inner].mean(axis=(1, 2)),
        (ms[(slice(None),) + inner]).mean(axis=(1, 2)),
        rtol=0.02,
    )
    hp = (sharp[1] - lowpass(sharp[1]))[inner]
    assert np.corrcoef(hp.ravel(), (pan - low)[inner].ravel())[0, 1] > 0.9


def test_ortho_pan_and_ms_on_real_pleiades():
    """Ventoux Pléiades PAN + 4-band MS (real RPCs, .geom): both orthorectified, MS registered and pansharpened."""
    from sat2lod.io.raster import read_raster
    from sat2lod.io.rpc_files import read_rpc

    img = shared_file("cnes_pleiades_ventoux_pair", "left_image.tif")
    msf = shared_file("cnes_pleiades_ventoux_pair", "lowres_color_image.tif")
    pr, mr = read_rpc(img, img.with_suffix(".geom")), read_rpc(msf, msf.with_suffix(".geom"))
    pan = read_raster(img).array.astype(np.float32)
    ms = read_raster(msf).array.astype(np.float32)
    h = 537.0  # median ellipsoidal height of the scene (SOURCE.md): a flat DSM
    lon, lat = pr.localize(np.array([250.0]), np.array([250.0]), np.array([h]))
    x, y = Transformer.from_crs(4326, 32631, always_xy=True).transform(lon[0], lat[0])
    tr = from_origin(np.floor(x) - 80, np.floor(y) + 80, 0.5, 0.5)
    dsm = np.full((320, 320), h, np.float32)
    o, _, info = true_ortho(dsm, tr, 32631, [OrthoView(pan, pr, "pan")])
    m = orthorectify_bands(ms, mr, dsm, tr, 32631)
    assert np.isfinite(o).all() and np.isfinite(m).all() and m.shape == (4, 320, 320)
    assert 5 < info["views"][0]["incidence_deg"] < 15
    sharp, shift = pansharpen(o, m)
    assert max(abs(shift[0]), abs(shift[1])) < 6  # PAN/MS RPCs of the product agree within a few PAN pixels
    low = lowpass(o)
    inner = (slice(16, -16), slice(16, -16))
    # registration: the sharpened bands' low-pass matches the PAN's better than the raw MS ortho did
    before = np.corrcoef(m.mean(0)[inner].ravel(), low[inner].ravel())[0, 1]
    after = np.corrcoef(lowpass(sharp.mean(0))[inner].ravel(), low[inner].ravel())[0, 1]
    assert after > before and after > 0.95, (before, after)
    # and the PAN details are in every band
    for b in sharp:
        assert np.corrcoef((b - lowpass(b))[inner].ravel(), (o - low)[inner].ravel())[0, 1] > 0.8


def test_ortho_rule_entry(tmp_path):
    rpc, _ = affine_camera(0.2, 0.1)
    img = texture((300, 300)).astype(np.uint16)
    write_raster(tmp_path / "view_0.tif", img, from_origin(0, 0, 1, 1), None, rpcs=rpc.to_rasterio())
    dsm = box_scene()
    dsm[0:3, 0:3] = np.nan
    write_raster(
        tmp_path / "dsm.tif",
        dsm,
        from_origin(X0 + 5.0, Y0 - 5.0, RES, RES),
        EPSG,
        nodata=float("nan"),
        tags={"VERTICAL_DATUM": sat2lod.ELLIPSOID_DATUM},
    )
    write_json(
        tmp_path / "scenes.json",
        {"views": [{"id": "v0", "image": str(tmp_path / "view_0.tif"), "rpc": None}]},
    )
    info = ortho_from_files(tmp_path / "dsm.tif", tmp_path / "scenes.json", tmp_path / "ortho.tif")
    with rasterio.open(tmp_path / "ortho.tif") as ds:
        assert ds.crs.to_epsg() == EPSG and ds.dtypes[0] == "float32" and np.isnan(ds.nodata)
        assert ds.tags()["SAT2LOD_PRODUCT"] == "ortho"
        a = ds.read(1)
    assert np.isfinite(a[0:3, 0:3]).all()  # DSM holes filled for the projection
    assert info["masked_fraction"] > 0  # the box hides some ground from the single view
    write_json(tmp_path / "bad.json", {"views": []})
    with pytest.raises(ValueError, match="no views"):
        ortho_from_files(tmp_path / "dsm.tif", tmp_path / "bad.json", tmp_path / "o2.tif")


def test_windowed_view_reads_give_the_same_ortho_to_the_bit(tmp_path, caplog):
    """Issue 16: the views and the MS image are read only over the window that sees the DSM; the true ortho
    (occlusions, radiometric match, pansharpening) is the file the whole-view reads give, byte for byte.
    Ventoux Pléiades PAN pair + MS (real RPCs) under a 60 m DSM with a building, near the image centre."""
    left = shared_file("cnes_pleiades_ventoux_pair", "left_image.tif")
    right = shared_file("cnes_pleiades_ventoux_pair", "right_image.tif")
    msf = shared_file("cnes_pleiades_ventoux_pair", "lowres_color_image.tif")
    from sat2lod.io.rpc_files import read_rpc

    h = 537.0
    lon, lat = read_rpc(left, left.with_suffix(".geom")).localize(
        np.array([250.0]), np.array([250.0]), np.array([h])
    )
    x, y = Transformer.from_crs(4326, 32631, always_xy=True).transform(lon[0], lat[0])
    dsm = np.full((120, 120), h, np.float32) + np.linspace(0, 3, 120, dtype=np.float32)[None, :]
    dsm[40:70, 50:80] += 15.0  # a building: occlusions in the oblique view
    dsm[5:8, 5:8] = np.nan  # a hole, filled for the projection
    write_raster(
        tmp_path / "dsm.tif",
        dsm,
        from_origin(np.floor(x) - 30, np.floor(y) + 30, RES, RES),
        32631,
        nodata=float("nan"),
        tags={"VERTICAL_DATUM": sat2lod.ELLIPSOID_DATUM},
    )
    sheet = {
        "views": [
            {
                "id": "left",
                "image": str(left),
                "rpc": str(left.with_suffix(".geom")),
                "ms_image": str(msf),
                "ms_rpc": str(msf.with_suffix(".geom")),
            },
            {"id": "right", "image": str(right), "rpc": str(right.with_suffix(".geom"))},
        ]
    }
    write_json(tmp_path / "scenes.json", sheet)
    with caplog.at_level("INFO", logger="sat2lod.ortho"):
        info = ortho_from_files(tmp_path / "dsm.tif", tmp_path / "scenes.json", tmp_path / "windowed.tif")
    windows = [r.getMessage() for r in caplog.records if "reading rows" in r.getMessage()]
    assert len(windows) == 3, windows  # two PAN views and the MS image, each read over a window only
    ortho_from_files(tmp_path / "dsm.tif", tmp_path / "scenes.json", tmp_path / "whole.tif", windowed=False)
    assert info["pansharpened_bands"] == 4 and 0 < info["masked_fraction"] < 0.5
    with rasterio.open(tmp_path / "windowed.tif") as a, rasterio.open(tmp_path / "whole.tif") as b:
        assert a.count == 5 and np.isfinite(a.read(1)).mean() > 0.5
        assert np.array_equal(a.read(), b.read(), equal_nan=True) and a.tags() == b.tags()
    assert (tmp_path / "windowed.tif").read_bytes() == (tmp_path / "whole.tif").read_bytes()


def test_a_window_too_small_for_the_projection_is_refused():
    """The window check: a projected cell that needs view pixels outside the window raises instead of sampling
    NaN there (the ortho would silently differ from the whole-view one)."""
    from sat2lod.ortho import _sample_view

    img = texture((50, 60))
    rows, cols = np.array([[10.0, 30.2]]), np.array([[10.0, 20.5]])
    whole = _sample_view(img, rows, cols)
    win = img[5:40, 8:60]
    got = _sample_view(win, rows, cols, offset=(5, 8), full_shape=(50, 60))
    assert np.array_equal(got, whole)
    with pytest.raises(RuntimeError, match="outside its window"):
        _sample_view(img[12:40, 8:60], rows, cols, offset=(12, 8), full_shape=(50, 60))
    # beyond the whole view: NaN either way, no window needed
    far = _sample_view(win, np.array([[-30.0]]), np.array([[10.0]]), offset=(5, 8), full_shape=(50, 60))
    assert np.isnan(far).all()
