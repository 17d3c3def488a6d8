"""`sat2lod segment` on one image: PNG without georeferencing, GeoTIFF with nDSM, RGB(A) to PAN, GSD resampling,
default model lookup. A tiny U-Net is trained here in seconds on the fake scenes of test_segment."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

from sat2lod.cli import main
from sat2lod.io.checkpoint import save_checkpoint
from sat2lod.io.raster import write_raster
from sat2lod.schema import defaults
from sat2lod.segment import image as image_mod
from sat2lod.segment.features import make_input
from sat2lod.segment.train import Sample, TrainParams, checkpoint_payload, iou, train_model
from test_segment import fake_scene

pytestmark = pytest.mark.usefixtures("one_torch_thread")
EPSG = 32631


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A U-Net trained 80 steps on fake scenes, half of them without nDSM (image-only works), at 0.5 m."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    samples = [Sample(make_input(o, n), y) for o, n, y in (fake_scene(k) for k in range(3))]
    params = TrainParams(
        steps=80, batch_size=4, patch_px=64, lr=1e-2, base_channels=8, depth=2, seed=0, ndsm_dropout=0.5
    )
    model, met = train_model(samples, params)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, checkpoint_payload(model, params, met, {"source": "fake", "gsd_m": 0.5}))
    torch.set_num_threads(before)
    return path


def rgb_of(pan: np.ndarray) -> np.ndarray:
    """(3, H, W) uint8 colour image whose band mean is ``pan`` scaled to 0-255 (bands differ by +-10)."""
    g = np.clip((pan - 300) / 800 * 235 + 10, 10, 245)
    return np.stack([g - 10, g + 10, g]).round().astype(np.uint8)


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.transform, ds.crs, ds.nodata


def test_cli_png_image_only(tmp_path, tiny_checkpoint, capsys):
    o, _, y = fake_scene(11, n=120)
    o, y = o[:, :100], y[:, :100]  # not square: the mask must keep (H, W)
    png = tmp_path / "img.png"
    with rasterio.open(png, "w", driver="PNG", width=100, height=120, count=3, dtype="uint8") as ds:
        ds.write(rgb_of(o))
    out = tmp_path / "mask.tif"
    rc = main(["segment", "--image", str(png), "--checkpoint", str(tiny_checkpoint), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    m, tr, crs, _ = read(out)
    assert m.shape == (120, 100) and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1}
    assert crs is None and tr.is_identity
    assert iou(m, y) > 0.6  # the bright boxes, from the image alone
    # a PNG output holds the same mask
    rc = main(
        [
            "segment",
            "--image",
            str(png),
            "--checkpoint",
            str(tiny_checkpoint),
            "--out",
            str(tmp_path / "m.png"),
        ]
    )
    assert rc == 0
    np.testing.assert_array_equal(read(tmp_path / "m.png")[0], m)


def test_cli_geotiff_with_ndsm_keeps_georeferencing(tmp_path, tiny_checkpoint, capsys):
    o, n, y = fake_scene(12, n=128)
    tr = from_origin(500000.0, 4800000.0, 0.5, 0.5)
    img = o.round().astype(np.uint16)
    img[:5, :5] = 0
    write_raster(tmp_path / "img.tif", img, tr, EPSG, nodata=0)
    write_raster(tmp_path / "ndsm.tif", n, tr, EPSG, nodata=float("nan"))
    for method in ("unet", "ndsm_threshold"):
        out = tmp_path / f"{method}.tif"
        args = ["segment", "--image", str(tmp_path / "img.tif"), "--ndsm", str(tmp_path / "ndsm.tif")]
        rc = main([*args, "--checkpoint", str(tiny_checkpoint), "--method", method, "--out", str(out)])
        assert rc == 0, capsys.readouterr().err
        m, tr_out, crs, nodata = read(out)
        assert m.shape == (128, 128) and m.dtype == np.uint8 and nodata == 255
        assert tr_out == tr and crs.to_epsg() == EPSG
        assert set(np.unique(m[5:, 5:])) <= {0, 1}
        if method == "unet":  # the image's nodata corner
            assert (m[:5, :5] == 255).all()
        assert iou(m, y) > 0.6, method
    # ndsm_threshold without an nDSM, a wrong-size nDSM: clear errors, nothing written
    rc = main(
        [
            "segment",
            "--image",
            str(tmp_path / "img.tif"),
            "--method",
            "ndsm_threshold",
            "--out",
            str(tmp_path / "x.tif"),
        ]
    )
    assert rc == 1 and "needs an nDSM" in capsys.readouterr().err
    write_raster(tmp_path / "small.tif", n[:50], tr, EPSG, nodata=float("nan"))
    rc = main(
        ["segment", "--image", str(tmp_path / "img.tif"), "--ndsm", str(tmp_path / "small.tif")]
        + ["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "x.tif")]
    )
    assert rc == 1 and "small.tif" in capsys.readouterr().err
    assert not (tmp_path / "x.tif").exists()


def test_read_image_rgba_and_grey(tmp_path):
    rgb = np.zeros((3, 4, 5), np.uint8)
    rgb[0], rgb[1], rgb[2] = 30, 60, 120
    alpha = np.full((4, 5), 255, np.uint8)
    alpha[0, 0] = 0
    with rasterio.open(
        tmp_path / "a.png", "w", driver="PNG", width=5, height=4, count=4, dtype="uint8"
    ) as ds:
        ds.write(np.concatenate([rgb, alpha[None]]))
    r = image_mod.read_image(tmp_path / "a.png")
    assert r.bands_used == 3 and not r.georeferenced and r.pan.shape == (4, 5)
    assert np.isnan(r.pan[0, 0]) and np.all(r.pan.ravel()[1:] == 70.0)  # band mean, alpha 0 is nodata
    write_raster(
        tmp_path / "g.tif", np.arange(20, dtype=np.uint16).reshape(4, 5), from_origin(0, 4, 1, 1), EPSG
    )
    g = image_mod.read_image(tmp_path / "g.tif")
    assert g.bands_used == 1 and g.georeferenced and g.pan[3, 4] == 19.0


def _rgbn(pan: np.ndarray, veg: np.ndarray) -> np.ndarray:
    """(4, H, W) uint16 R, G, B, NIR of ``pan`` (rgb_of); NDVI 0.09 (roofs, roads), 0.5 on ``veg`` (leaves)."""
    rgb = rgb_of(pan).astype(np.uint16)
    nir = np.where(veg, rgb[0] * 3, rgb[0] * 6 // 5)
    return np.concatenate([rgb, nir[None].astype(np.uint16)])


def test_read_image_red_and_nir_bands(tmp_path):
    veg = np.zeros((4, 5), bool)
    veg[:, 3:] = True
    pan = np.linspace(500, 900, 20, dtype=np.float32).reshape(4, 5)
    a = _rgbn(pan, veg)
    rgb_mean = a[:3].astype(np.float32).mean(0)
    write_raster(tmp_path / "rgbn.tif", a, from_origin(0, 4, 1, 1), EPSG)
    # by default a 4th band is not taken for NIR: the plain RGB reading, no NDVI
    r = image_mod.read_image(tmp_path / "rgbn.tif")
    assert r.ndvi is None and r.bands_used == 3 and np.array_equal(r.pan, rgb_mean)
    # told which bands are red and NIR: the same PAN (NIR left out of the mean), and their NDVI
    r = image_mod.read_image(tmp_path / "rgbn.tif", (1, 4))
    assert r.ndvi_bands == (1, 4) and np.array_equal(r.pan, rgb_mean)
    assert np.all(r.ndvi[:, 4] > 0.45) and np.all(np.abs(r.ndvi[:, :2] - 0.09) < 0.02)
    # the same from the bands' colour interpretation
    with rasterio.open(tmp_path / "rgbn.tif", "r+") as ds:
        ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.nir]
    d = image_mod.read_image(tmp_path / "rgbn.tif")
    assert d.ndvi_bands == (1, 4) and np.array_equal(d.ndvi, r.ndvi)
    # NIR named as an alpha band, or a band the image lacks: the file and the fix are named
    with rasterio.open(
        tmp_path / "a.png", "w", driver="PNG", width=5, height=4, count=4, dtype="uint8"
    ) as ds:
        ds.write(a.clip(0, 255).astype(np.uint8))
    with pytest.raises(ValueError, match=r"a\.png: band 4.*alpha"):
        image_mod.read_image(tmp_path / "a.png", (1, 4))
    with pytest.raises(ValueError, match=r"rgbn\.tif.*band 5.*4 band"):
        image_mod.read_image(tmp_path / "rgbn.tif", (1, 5))


def test_read_image_of_a_chain_ortho_takes_its_pan_band(tmp_path):
    from scipy import ndimage

    _, ortho_ms, _, _, veg = _ortho_pair(tmp_path, 0.5)
    pan = rasterio.open(ortho_ms).read(1)
    r = image_mod.read_image(ortho_ms)
    assert r.layout == "sat2lod_ortho" and np.array_equal(r.pan, pan)
    assert r.ndvi_bands == tuple(defaults("segmentation")["ndvi_bands"]) and np.all(
        r.ndvi[ndimage.binary_erosion(veg)] > 0.45
    )
    with pytest.raises(ValueError, match="ortho_ms.tif.*4 MS band"):
        image_mod.read_image(ortho_ms, (1, 5))


def test_cli_ndvi_gate_on_an_rgb_nir_image(tmp_path, tiny_checkpoint, capsys):
    from scipy import ndimage

    o, n, y = fake_scene(16, n=128)
    lab, k = ndimage.label(y)
    veg = lab == 1 + np.argmax(ndimage.sum(y, lab, range(1, k + 1)))  # the largest box: a tree crown
    tr = from_origin(500000.0, 4800000.0, 0.5, 0.5)
    write_raster(tmp_path / "rgbn.tif", _rgbn(o, veg), tr, EPSG)
    write_raster(tmp_path / "rgb.tif", _rgbn(o, veg)[:3], tr, EPSG)
    write_raster(tmp_path / "ndsm.tif", n, tr, EPSG, nodata=float("nan"))
    base = ["segment", "--ndsm", str(tmp_path / "ndsm.tif"), "--checkpoint", str(tiny_checkpoint)]

    def run(name: str, *extra: str) -> tuple[np.ndarray, dict]:
        out = tmp_path / f"{name}.tif"
        assert main([*base, *extra, "--out", str(out)]) == 0, capsys.readouterr().err
        with rasterio.open(out) as ds:
            return ds.read(1), ds.tags()

    rgb, _ = run("rgb", "--image", str(tmp_path / "rgb.tif"))
    plain, tags = run("plain", "--image", str(tmp_path / "rgbn.tif"))
    np.testing.assert_array_equal(plain, rgb)  # a 4th band nobody named changes nothing
    assert "MAX_NDVI" not in tags and np.mean(plain[veg] == 1) > 0.5
    gated, tags = run("gated", "--image", str(tmp_path / "rgbn.tif"), "--ndvi-bands", "1", "4")
    assert tags["NDVI_BANDS"] == "[1, 4]" and tags["MAX_NDVI"] == str(defaults("segmentation")["max_ndvi"])
    assert np.mean(gated[veg] == 1) < 0.05  # the crown is gone
    assert iou(gated, y * ~veg) > 0.8 * iou(plain, y)  # the roofs (NDVI 0.09) are kept
    loose, _ = run(
        "loose", "--image", str(tmp_path / "rgbn.tif"), "--ndvi-bands", "1", "4", "--max-ndvi", "0.9"
    )
    assert np.mean(loose[veg] == 1) > 0.5  # --max-ndvi reaches the gate


def test_cli_threads_set_torch_threads(tmp_path, tiny_checkpoint, capsys):
    write_raster(tmp_path / "i.tif", fake_scene(17, n=64)[0], from_origin(0, 32, 0.5, 0.5), EPSG)
    args = ["segment", "--image", str(tmp_path / "i.tif"), "--checkpoint", str(tiny_checkpoint)]
    torch.set_num_threads(2)
    assert main([*args, "--out", str(tmp_path / "a.tif")]) == 0, capsys.readouterr().err
    assert torch.get_num_threads() == defaults("segmentation")["torch_threads"] == 1
    assert main([*args, "--threads", "3", "--out", str(tmp_path / "b.tif")]) == 0
    assert torch.get_num_threads() == 3
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert a.read(1).shape == b.read(1).shape == (64, 64)


def test_image_at_another_gsd_is_resampled_to_the_model_gsd(tiny_checkpoint):
    o, _, y = fake_scene(13, n=96)
    _, m05, info05 = image_mod.segment_image(o, gsd_m=0.5, checkpoint=tiny_checkpoint)
    assert not info05["resampled_to_model_gsd"]
    fine = np.kron(o, np.ones((2, 2), np.float32))  # the same scene at 0.25 m
    _, m025, info025 = image_mod.segment_image(fine, gsd_m=0.25, checkpoint=tiny_checkpoint)
    assert info025["resampled_to_model_gsd"] and m025.shape == (192, 192)
    assert iou(m025[::2, ::2], m05) > 0.8 and iou(m025[::2, ::2], y) > 0.6


def test_default_checkpoint_missing_names_the_file(monkeypatch, tmp_path, capsys):
    from sat2lod.segment import shipped

    monkeypatch.setattr(shipped, "DEFAULT_MODEL_FILE", "no_such_model.pt")
    monkeypatch.setattr(shipped, "IMAGE_ONLY_MODEL_FILE", "no_such_image_only_model.pt")
    with pytest.raises(FileNotFoundError, match="no_such_model.pt"):
        shipped.default_checkpoint()
    write_raster(tmp_path / "i.tif", np.ones((16, 16), np.uint8), from_origin(0, 16, 1, 1), EPSG)
    write_raster(tmp_path / "n.tif", np.ones((16, 16), np.float32), from_origin(0, 16, 1, 1), EPSG)
    # an image alone needs the image-only model, an image with its nDSM the default one
    for extra, name in (
        ([], "no_such_image_only_model.pt"),
        (["--ndsm", str(tmp_path / "n.tif")], "no_such_model.pt"),
    ):
        args = ["segment", "--image", str(tmp_path / "i.tif"), *extra, "--out", str(tmp_path / "m.tif")]
        assert main(args) == 1
        assert name in capsys.readouterr().err and not (tmp_path / "m.tif").exists()


@pytest.mark.parametrize("image_only", [False, True])
def test_shipped_default_checkpoint_loads(image_only):
    from sat2lod.io.checkpoint import load_checkpoint
    from sat2lod.segment.infer import CHECKPOINT_FORMAT
    from sat2lod.segment.shipped import default_checkpoint

    try:
        path = default_checkpoint(image_only)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    assert load_checkpoint(path, CHECKPOINT_FORMAT)["format"] == CHECKPOINT_FORMAT


def test_image_alone_uses_the_image_only_model():
    """Without an nDSM and without --checkpoint, the shipped image-only model runs; with an nDSM the default."""
    from sat2lod.segment.shipped import default_checkpoint

    rng = np.random.default_rng(0)
    pan = rng.random((32, 32)).astype(np.float32)
    _, _, alone = image_mod.segment_image(pan, gsd_m=0.5)
    _, _, with_ndsm = image_mod.segment_image(pan, np.zeros_like(pan), gsd_m=0.5)
    assert alone["checkpoint"] == str(default_checkpoint(image_only=True))
    assert with_ndsm["checkpoint"] == str(default_checkpoint())


def test_stereo_ndsm_defects_fattens_and_holes_without_touching_input():
    from sat2lod.segment.train import stereo_ndsm_defects

    n = np.zeros((64, 64), np.float32)
    n[20:40, 20:40] = 0.8  # an 8 m block in network units
    before = n.copy()
    rng = np.random.default_rng(0)
    d, holes = stereo_ndsm_defects(n, rng, fatten_px=3, fatten_share=1.0, hole_share=1.0)
    np.testing.assert_array_equal(n, before)
    assert d.shape == n.shape and d.dtype == np.float32 and holes.any() and (d[holes] == 0).all()
    raised = (d > 0.4) & ~holes
    assert raised.sum() > ((n > 0.4) & ~holes).sum()  # the block spreads (fattening, blur)
    # the same seed, the same defects; no fattening nor holes when their shares are 0
    d2, h2 = stereo_ndsm_defects(n, np.random.default_rng(0), 3, 1.0, 1.0)
    np.testing.assert_array_equal(d, d2)
    np.testing.assert_array_equal(holes, h2)
    _, h0 = stereo_ndsm_defects(n, np.random.default_rng(0), 3, 0.0, 0.0)
    assert not h0.any()


def _coarsen(a: np.ndarray, k: int) -> np.ndarray:
    """Mean of k x k blocks of (H, W) ``a``."""
    h, w = a.shape[0] // k, a.shape[1] // k
    return a[: h * k, : w * k].reshape(h, k, w, k).mean((1, 3)).astype(np.float32)


def _ortho_pair(d, res: float, seed: int = 14):
    """The chain's products on a ``res`` grid: ortho.tif (PAN only), ortho_ms.tif (PAN + 4 pansharpened MS bands
    R, G, B, NIR, as rule ortho writes them) and ndsm.tif; the largest building box has the NDVI of leaves (0.5, the
    others 0.09). Returns the paths, the truth and the 'vegetation' box, at ``res``."""
    o, n, y = fake_scene(seed, n=128)
    veg = np.zeros_like(y, bool)
    from scipy import ndimage

    lab, k = ndimage.label(y)
    veg[lab == 1 + np.argmax(ndimage.sum(y, lab, range(1, k + 1)))] = True  # the largest box
    if res != 0.5:
        k = round(res / 0.5)
        o, n = _coarsen(o, k), _coarsen(n, k)
        y, veg = _coarsen(y, k) > 0.5, _coarsen(veg, k) > 0.5
    red = o * 0.8
    nir = np.where(veg, red * 3.0, red * 1.2)
    tr = from_origin(500000.0, 4800000.0, res, res)
    d.mkdir(exist_ok=True)
    write_raster(d / "ortho.tif", o, tr, EPSG, nodata=float("nan"))
    names = [{"NAME": "pan"}] + [{"NAME": f"ms{b}_pansharpened"} for b in range(1, 5)]
    ms = np.stack([o, red, red * 0.95, red * 0.9, nir])
    write_raster(d / "ortho_ms.tif", ms, tr, EPSG, nodata=float("nan"), band_tags=names)
    write_raster(d / "ndsm.tif", n, tr, EPSG, nodata=float("nan"))
    return d / "ortho.tif", d / "ortho_ms.tif", d / "ndsm.tif", y.astype(np.uint8), veg


@pytest.mark.parametrize("res", [0.5, 1.0])
def test_one_image_command_equals_rule_segment(tmp_path, tiny_checkpoint, res):
    """`sat2lod segment` and rule segment share the network, the resampling to the model's GSD, the NDVI gate
    and the post-processing: on the same ortho (PAN only, or PAN + MS as the chain writes it) + nDSM they write
    the same mask, on the model's 0.5 m grid and on a 1.0 m grid (a step added to one path only fails here)."""
    from sat2lod.io.raster import read_raster
    from sat2lod.segment.predict import segment_from_files

    ortho, ortho_ms, ndsm, _, veg = _ortho_pair(tmp_path / "in", res)
    for method in ("unet", "ndsm_threshold"):
        masks = {}
        for o in (ortho, ortho_ms):
            kw = {"method": method, "checkpoint": tiny_checkpoint, "tile_px": 64, "overlap_px": 16}
            segment_from_files(o, ndsm, tmp_path / "p.tif", tmp_path / "rule.tif", **kw)
            image_mod.segment_image_file(o, tmp_path / "cli.tif", ndsm=ndsm, **kw)
            rule, cli = read_raster(tmp_path / "rule.tif"), read_raster(tmp_path / "cli.tif")
            assert (rule.array == 1).any(), method
            np.testing.assert_array_equal(cli.array, rule.array, err_msg=f"{method} {o.name}")
            gated = o == ortho_ms
            assert ("MAX_NDVI" in rule.tags) == gated and ("MAX_NDVI" in cli.tags) == gated
            assert ("MODEL_GSD_M" in rule.tags) == (method == "unet" and res != 0.5)
            masks[o.name] = rule.array
        # the leafy box is a building to the PAN and the nDSM, not once the MS bands tell its NDVI
        assert np.mean(masks["ortho.tif"][veg] == 1) > 0.3, method
        assert np.mean(masks["ortho_ms.tif"][veg] == 1) < 0.05, method


def test_rule_segment_resamples_an_ortho_off_the_model_gsd(tmp_path, tiny_checkpoint):
    """Rule segment on a 1.0 m ortho (model trained at 0.5 m) runs the network at 0.5 m: its mask agrees with the
    0.5 m run's, and the mask's tags say it was resampled."""
    from sat2lod.io.raster import read_raster
    from sat2lod.segment.predict import segment_from_files
    from sat2lod.segment.train import iou

    kw = {"checkpoint": tiny_checkpoint, "tile_px": 64, "overlap_px": 16}
    out = {}
    for res in (0.5, 1.0):
        ortho, _, ndsm, y, _ = _ortho_pair(tmp_path / str(res), res)
        segment_from_files(ortho, ndsm, tmp_path / "p.tif", tmp_path / f"m{res}.tif", **kw)
        out[res] = read_raster(tmp_path / f"m{res}.tif")
        assert iou(out[res].array, y) > 0.6, res
    assert out[1.0].array.shape == (64, 64) and out[1.0].transform.a == 1.0
    assert out[1.0].tags["MODEL_GSD_M"] == "0.5" and "MODEL_GSD_M" not in out[0.5].tags
    assert iou(out[1.0].array, (_coarsen(out[0.5].array, 2) > 0.5).astype(np.uint8)) > 0.8
