"""Building segmentation: U-Net training on tiny fake data, tiled = untiled inference, labels, fallback, metrics."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from shapely.geometry import box

from sat2lod.io.checkpoint import CheckpointReadError, load_checkpoint, save_checkpoint
from sat2lod.io.raster import write_raster
from sat2lod.io.vector import write_vector
from sat2lod.segment.features import make_input
from sat2lod.segment.infer import (
    model_from_checkpoint,
    ndsm_threshold_probability,
    predict_full,
    predict_tiled,
    probability_to_mask,
)
from sat2lod.segment.labels import rasterize_footprints, rasterize_footprints_file
from sat2lod.segment.metrics import instance_f1
from sat2lod.segment.predict import segment_from_files
from sat2lod.segment.train import (
    CHECKPOINT_FORMAT,
    Sample,
    TrainParams,
    checkpoint_payload,
    fatten,
    iou,
    train_model,
)
from sat2lod.segment.unet import UNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fake_scene(seed: int, n: int = 96):
    """Bright flat boxes (buildings, 3-12 m tall) and dark bumpy blobs (trees) on a noisy textured ground."""
    rng = np.random.default_rng(seed)
    ortho = rng.normal(500, 40, (n, n)).astype(np.float32)
    ndsm = rng.normal(0, 0.1, (n, n)).astype(np.float32)
    y = np.zeros((n, n), np.uint8)
    for _ in range(4):
        r, c = rng.integers(0, n - 24, 2)
        h, w = rng.integers(8, 24, 2)
        ortho[r : r + h, c : c + w] = rng.uniform(800, 1000)
        ndsm[r : r + h, c : c + w] = rng.uniform(3, 12)
        y[r : r + h, c : c + w] = 1
    for _ in range(3):
        r, c = rng.integers(5, n - 5, 2)
        rr, cc = np.ogrid[:n, :n]
        blob = ((rr - r) ** 2 + (cc - c) ** 2 < 16) & (y == 0)
        ortho[blob] = 300
        ndsm[blob] = rng.uniform(2, 8, blob.sum())
    return ortho, ndsm, y


def test_tiny_unet_trains_and_loss_decreases():
    samples = [
        Sample(make_input(o, n), y, f"s{k}") for k, (o, n, y) in enumerate(fake_scene(k) for k in range(3))
    ]
    params = TrainParams(
        steps=60, batch_size=4, patch_px=64, lr=1e-2, base_channels=8, depth=2, seed=1, ndsm_dropout=0.0
    )
    model, metrics = train_model(samples, params, val=[samples[0]])
    losses = [h["loss"] for h in metrics["history"]]
    assert len(losses) == 6 and losses[-1] < 0.7 * losses[0], losses
    prob = predict_full(model, samples[0].x)
    assert prob[samples[0].y == 1].mean() > prob[samples[0].y == 0].mean() + 0.3  # it separates buildings
    assert 0.0 <= metrics["val_iou_mean"] <= 1.0
    # deterministic for a seed
    short = TrainParams(**{**params.__dict__, "steps": 8})
    m1, _ = train_model(samples, short)
    m2, _ = train_model(samples, short)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_fatten_spreads_raised_cells_one_way_only():
    n = np.zeros((9, 9), np.float32)
    n[3:6, 3:6] = 5.0
    east = fatten(n, 2, 0.0)
    assert (east[3:6, 3:8] == 5).all() and east.sum() == 5 * 15  # 2 columns more, on the +column side only
    south = fatten(n, 1, np.pi / 2)
    assert (south[3:7, 3:6] == 5).all() and south.sum() == 5 * 12
    diag = fatten(n, 2, np.pi / 4)
    assert (
        diag[6, 6] == 5 and diag[7, 7] == 0 and diag[2, 2] == 0 and (diag >= n).all()
    )  # 2 cells: (1, 1) diagonally


def test_tiled_inference_equals_untiled_away_from_borders():
    torch.manual_seed(0)
    model = UNet(3, base=4, depth=2).eval()  # receptive half-width 20 px <= overlap / 4
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 300, 331)).astype(np.float32)
    full = predict_full(model, x)
    tiled = predict_tiled(model, x, tile_px=128, overlap_px=80, batch_size=3)
    assert tiled.shape == full.shape
    np.testing.assert_allclose(tiled[:-24, :-24], full[:-24, :-24], atol=1e-5)
    # with no overlap, tile seams differ: the blending is what makes them agree
    seams = predict_tiled(model, x, tile_px=128, overlap_px=0)
    assert np.abs(seams[:-24, :-24] - full[:-24, :-24]).max() > 1e-3
    with pytest.raises(ValueError, match="multiples"):
        predict_tiled(model, x, tile_px=130, overlap_px=80)


def test_label_rasterizer_reprojects_footprints(tmp_path):
    tr = from_origin(500000.0, 4800000.0, 0.5, 0.5)
    gdf = gpd.GeoDataFrame(
        {"id": [1, 2]},
        geometry=[box(500010, 4799980, 500020, 4799990), box(500030, 4799960, 500034, 4799965)],
        crs=32631,
    )
    m = rasterize_footprints(gdf, tr, (100, 100), 32631)
    assert m.dtype == np.uint8 and m.sum() == 20 * 20 + 8 * 10
    # the same footprints in WGS84 (GeoJSON) land on the same cells (up to edge cells)
    path = tmp_path / "fp.geojson"
    write_vector(path, gdf.to_crs(4326))
    write_raster(tmp_path / "like.tif", np.zeros((100, 100), np.float32), tr, 32631, nodata=float("nan"))
    m2 = rasterize_footprints_file(path, tmp_path / "like.tif", tmp_path / "labels.tif")
    assert np.sum(m2 != m) <= 4
    with pytest.raises(ValueError, match="no CRS"):
        rasterize_footprints(gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)]), tr, (10, 10), 32631)


def test_ndsm_threshold_separates_roofs_from_trees():
    n = np.zeros((80, 80), np.float32)
    n[10:40, 10:40] = 8.0  # flat roof
    rng = np.random.default_rng(0)
    rr, cc = np.mgrid[0:80, 0:80]
    # isolated tree crowns (domes 2-3 m in radius; a closed canopy would look like a roof to this method)
    for r, c in [(52, 52), (52, 64), (64, 52), (64, 66), (74, 58), (74, 72)]:
        rad = rng.uniform(4, 6)
        dome = rng.uniform(5, 9) * np.sqrt(np.clip(1 - ((rr - r) ** 2 + (cc - c) ** 2) / rad**2, 0, 1))
        n = np.maximum(n, dome.astype(np.float32))
    p = ndsm_threshold_probability(n, 0.5)
    m = probability_to_mask(p, 0.5, 0.5, 10.0)
    assert m[15:35, 15:35].all() and not m[46:, 46:].any() and not m[:5].any()


def test_instance_f1():
    truth = np.zeros((50, 50), int)
    truth[5:15, 5:15] = 1
    truth[20:30, 20:30] = 2
    truth[40:45, 40:45] = 3
    pred = np.zeros((50, 50), np.uint8)
    pred[5:15, 6:15] = 1  # IoU 0.9 with 1
    pred[20:30, 26:30] = 1  # IoU 0.4 with 2: not a match
    pred[0:3, 40:43] = 1  # false positive
    r = instance_f1(pred, truth)
    assert (r["tp"], r["n_pred"], r["n_truth"]) == (1, 3, 3)
    assert r["f1"] == pytest.approx(2 / 6)
    assert iou(pred, (truth > 0).astype(np.uint8)) == pytest.approx((90 + 40) / (100 + 100 + 25 + 9))


def test_segment_rule_entry_unet_and_fallback(tmp_path):
    o, n, y = fake_scene(5, n=120)
    tr = from_origin(500000.0, 4800000.0, 0.5, 0.5)
    o[:4, :4] = np.nan
    n[:4, :4] = np.nan
    write_raster(tmp_path / "ortho.tif", o, tr, 32631, nodata=float("nan"))
    write_raster(tmp_path / "ndsm.tif", n, tr, 32631, nodata=float("nan"))
    params = TrainParams(
        steps=60, batch_size=4, patch_px=64, lr=1e-2, base_channels=8, depth=2, seed=0, ndsm_dropout=0.0
    )
    samples = [Sample(make_input(*fake_scene(k)[:2]), fake_scene(k)[2]) for k in range(2)]
    model, met = train_model(samples, params)
    save_checkpoint(tmp_path / "m.pt", checkpoint_payload(model, params, met, {"source": "fake"}))
    payload = load_checkpoint(tmp_path / "m.pt", CHECKPOINT_FORMAT)
    torch.testing.assert_close(
        model_from_checkpoint(payload).state_dict()["head.weight"], model.state_dict()["head.weight"]
    )
    for method in ("unet", "ndsm_threshold"):
        s = segment_from_files(
            tmp_path / "ortho.tif",
            tmp_path / "ndsm.tif",
            tmp_path / f"p_{method}.tif",
            tmp_path / f"m_{method}.tif",
            method=method,
            checkpoint=tmp_path / "m.pt",
            tile_px=64,
            overlap_px=16,
            min_area_m2=2.0,
            threshold=0.3,
        )
        with rasterio.open(tmp_path / f"m_{method}.tif") as ds:
            m = ds.read(1)
            assert ds.nodata == 255 and ds.dtypes[0] == "uint8" and ds.transform == tr
        with rasterio.open(tmp_path / f"p_{method}.tif") as ds:
            assert ds.dtypes[0] == "float32" and np.isnan(ds.read(1)[:4, :4]).all()
        assert (m[:4, :4] == 255).all() and set(np.unique(m)) <= {0, 1, 255}
        assert iou(m, y) > 0.5, method
        assert s["mp_per_s"] > 0
    with pytest.raises(CheckpointReadError, match="train_segmenter"):
        segment_from_files(
            tmp_path / "ortho.tif",
            tmp_path / "ndsm.tif",
            tmp_path / "p.tif",
            tmp_path / "m.tif",
            checkpoint=tmp_path / "missing.pt",
        )
    with pytest.raises(ValueError, match="method"):
        segment_from_files(
            tmp_path / "ortho.tif",
            tmp_path / "ndsm.tif",
            tmp_path / "p.tif",
            tmp_path / "m.tif",
            method="magic",
        )
