"""Qualification: statistics with known answers, ASPRS Ed. 2 class assignment, end to end on small rasters."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import shapely
from rasterio.transform import from_origin
from shapely.geometry import box

from sat2lod.io.raster import write_raster
from sat2lod.io.vector import write_vector
from sat2lod.qualify import asprs_horizontal_class, asprs_vertical_class, error_stats, qualify


def test_error_stats_known_answers():
    e = np.array([-1.0, 0.0, 0.0, 1.0, 2.0, np.nan])
    s = error_stats(e, (0.5, 1.5))
    assert s["n"] == 5
    assert s["mean"] == pytest.approx(0.4)
    assert s["median"] == 0.0
    assert s["rmse"] == pytest.approx(np.sqrt(6 / 5))
    assert s["nmad"] == pytest.approx(1.4826 * 1.0)  # |e - 0| = 1, 0, 0, 1, 2 -> median 1
    assert s["above_0.5m"] == pytest.approx(3 / 5) and s["above_1.5m"] == pytest.approx(1 / 5)
    assert s["le90"] == pytest.approx(np.percentile([1, 0, 0, 1, 2], 90))
    # no silent outlier removal: one gross error moves the RMSE, not the NMAD
    g = error_stats(np.r_[np.zeros(99), 100.0])
    assert g["rmse"] == pytest.approx(10.0) and g["nmad"] == 0.0 and g["max_abs"] == 100.0


@pytest.mark.parametrize(
    "rmse_m,expected",
    [
        (0.004, "1-cm"),
        (0.025, "2.5-cm"),
        (0.026, "5-cm"),
        (0.30, "33.3-cm"),
        (0.334, "66.7-cm"),
        (0.9, "100-cm"),
        (2.5, "333.3-cm"),
        (20.0, ">1000-cm (unclassified)"),
    ],
)
def test_asprs_vertical_class(rmse_m, expected):
    c = asprs_vertical_class(rmse_m, 100)
    assert c["class"] == expected and c["note"] == ""
    assert c["rmse_v_cm"] == pytest.approx(rmse_m * 100)


def test_asprs_checkpoint_rules():
    assert "not conformant" in asprs_vertical_class(0.1, 29)["note"]
    # Ed. 2: the reference (checkpoint) error is added in quadrature
    assert asprs_vertical_class(0.3, 100, reference_rmse_m=0.4)["rmse_v_cm"] == pytest.approx(50.0)
    h = asprs_horizontal_class(0.3, 0.4, 50)
    assert h["rmse_h_cm"] == pytest.approx(50.0) and h["class"] == "50-cm"
    assert asprs_vertical_class(None, 0)["class"] is None


def test_qualify_end_to_end(tmp_path):
    tr = from_origin(500000.0, 4800100.0, 1.0, 1.0)
    rng = np.random.default_rng(0)
    ref = np.full((100, 100), 150.0, np.float32)
    ref[20:40, 20:50] = 160.0
    classes = np.zeros((100, 100), np.uint8)
    classes[20:40, 20:50] = 1
    classes[70:80, 70:80] = 2
    dsm = ref + rng.normal(0, 0.2, ref.shape).astype(np.float32)
    dsm[70:80, 70:80] += 3.0  # vegetation badly reconstructed: VVA reports it, NVA is not affected
    dsm[0, :10] = np.nan  # holes lower completeness
    tags = {"VERTICAL_DATUM": "WGS84 ellipsoid"}
    for name, a in (("dsm", dsm), ("ref", ref), ("dtm", np.full_like(ref, 150.0))):
        write_raster(tmp_path / f"{name}.tif", a, tr, 32631, nodata=float("nan"), tags=tags)
    write_raster(tmp_path / "classes.tif", classes, tr, 32631, nodata=255)
    out = qualify(
        tmp_path / "dsm.tif",
        tmp_path / "dtm.tif",
        ref_dsm=tmp_path / "ref.tif",
        ref_dtm=tmp_path / "dtm.tif",
        ref_classes=tmp_path / "classes.tif",
        out_json=tmp_path / "a.json",
        out_md=tmp_path / "a.md",
    )
    back = json.loads((tmp_path / "a.json").read_text())
    assert back["vertical_datum"] == "WGS84 ellipsoid"
    assert back["dsm"]["completeness"] == pytest.approx(1 - 10 / 10000)
    assert back["dsm"]["nva"]["class"] == "20-cm"  # RMSE ~ 0.2 m without the vegetation
    assert back["dsm"]["vva"]["rmse_v_cm"] > 250
    assert back["dsm"]["by_class"]["building"]["rmse"] == pytest.approx(0.2, abs=0.03)
    assert back["dtm"]["nva"]["class"] == "1-cm"
    assert out["targets"]["ciou_mean"]["met"] is None  # no building reference: not assessed, not passed
    md = (tmp_path / "a.md").read_text()
    assert "20-cm" in md and "| class vegetation |" in md


def test_building_scores_through_qualify(tmp_path):
    from sat2lod.io.cityjson import CityBuilding, city_model, write_cityjson
    from sat2lod.lod.solid import build_solid

    tr = from_origin(500000.0, 4800100.0, 1.0, 1.0)
    write_raster(tmp_path / "dsm.tif", np.full((100, 100), 150.0, np.float32), tr, 32631, nodata=float("nan"))
    polys = [box(500010 + 20 * i, 4800010, 500020 + 20 * i, 4800030) for i in range(3)]
    # a 4th reference building that no footprint matches (missed): it counts in the roof-type recall only
    ref = gpd.GeoDataFrame(
        {
            "id": [1, 2, 3, 4],
            "height": [8.0, 9.0, 10.0, 7.0],
            "ridge_height": [8.0, 9.0, 10.0, 7.0],
            "eave_height": [8.0, 6.0, 7.0, 7.0],
            "roof_type": ["flat", "gable", "hip", "flat"],
        },
        geometry=[*polys, box(500010, 4800060, 500020, 4800070)],
        crs=32631,
    )
    fp = gpd.GeoDataFrame({"id": [1, 2, 3]}, geometry=[p.buffer(0.2, join_style=2) for p in polys], crs=32631)
    write_vector(tmp_path / "ref.gpkg", ref, layer="buildings")
    write_vector(tmp_path / "fp.gpkg", fp, layer="footprints")
    blds = []
    for i, (p, h, rt) in enumerate(zip(polys, [8.5, 9.0, 9.0], ["flat", "gable", "gable"]), start=1):
        s = build_solid([p], [(150.0 + h, 0, 0)], 150.0)
        blds.append(
            CityBuilding(
                f"b{i}",
                [(x.rings, x.semantic) for x in s],
                "2.2",
                {"height": h, "roof_type": rt, "ridge_height": h, "eave_height": h - 1},
            )
        )
    write_cityjson(tmp_path / "c.json", city_model(blds, 32631, "x", "t"))
    out = qualify(
        tmp_path / "dsm.tif",
        footprints=tmp_path / "fp.gpkg",
        lod1=tmp_path / "c.json",
        lod2=tmp_path / "c.json",
        ref_buildings=tmp_path / "ref.gpkg",
        out_json=tmp_path / "a.json",
        out_md=tmp_path / "a.md",
    )
    b = out["buildings"]
    assert b["footprints"]["n_matched"] == 3 and b["footprints"]["polis_mean_m"] == pytest.approx(
        (0.2 * np.sqrt(2) + 0.2) / 2, abs=1e-3
    )
    assert b["lod1"]["height_error"]["rmse"] == pytest.approx(np.sqrt((0.25 + 0 + 1) / 3))
    assert b["lod2"]["roof_type_accuracy"] == pytest.approx(2 / 3)
    assert b["lod2"]["roof_type_recall"] == pytest.approx(2 / 4) and b["lod2"]["n_ref"] == 4
    assert b["lod2"]["confusion_truth_to_predicted"]["hip"]["gable"] == 1
    assert out["targets"]["roof_type_accuracy"]["met"] is False
    # the rule reads the models' CityJSONSeq feature by feature (attributes only): same scores
    from sat2lod.io.cityjson import read_cityjson, write_cityjsonseq

    write_cityjsonseq(tmp_path / "c.jsonl", read_cityjson(tmp_path / "c.json"))
    seq = qualify(
        tmp_path / "dsm.tif",
        footprints=tmp_path / "fp.gpkg",
        lod1=tmp_path / "c.jsonl",
        lod2=tmp_path / "c.jsonl",
        ref_buildings=tmp_path / "ref.gpkg",
        out_json=tmp_path / "s.json",
        out_md=tmp_path / "s.md",
    )
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "s.json"))
    assert b["buildings"] == a["buildings"] and b["products"] == a["products"]
    assert seq["products"]["lod2_buildings"] == 3


def test_lod1_height_is_compared_like_for_like_on_a_gable(tmp_path):
    # a gable house on exact rasters: the LOD1 block (90th percentile of the nDSM) is by construction below the
    # ridge; against the same rule applied to the reference nDSM the error is exactly 0
    from sat2lod.io.cityjson import city_model, write_cityjson
    from sat2lod.lod.models import lod1_building
    from sat2lod.synth.layout import Building

    tr = from_origin(500000.0, 4800100.0, 0.5, 0.5)
    xs, ys = np.meshgrid(500000.25 + 0.5 * np.arange(200), 4800099.75 - 0.5 * np.arange(200))
    fp = box(500040, 4800040, 500054, 4800050)  # 14 m x 10 m, ridge along x at y = 4800045
    b = Building(1, fp, "gable", 6.0, 10.0, 150.0, (500047.0, 4800045.0, 0.0, 7.0, 5.0), "detached")
    dtm = np.full(xs.shape, 150.0, np.float32)
    dsm = dtm.copy()
    inside = shapely.contains_xy(fp, xs, ys)
    dsm[inside] += b.roof_height(xs[inside], ys[inside]).astype(np.float32)
    for name, a in (("dsm", dsm), ("dtm", dtm)):
        write_raster(tmp_path / f"{name}.tif", a, tr, 32631, nodata=float("nan"))
    write_vector(
        tmp_path / "ref.gpkg",
        gpd.GeoDataFrame({"id": [1], "height": [10.0]}, geometry=[fp], crs=32631),
        layer="buildings",
    )
    write_vector(
        tmp_path / "fp.gpkg", gpd.GeoDataFrame({"id": [1]}, geometry=[fp], crs=32631), layer="footprints"
    )
    blk = lod1_building("b1", fp, dtm, dsm - dtm, tr, roof_percentile=90.0)
    write_cityjson(tmp_path / "c.json", city_model([blk], 32631, "x", "t"))
    out = qualify(
        tmp_path / "dsm.tif",
        tmp_path / "dtm.tif",
        tmp_path / "fp.gpkg",
        lod1=tmp_path / "c.json",
        ref_dsm=tmp_path / "dsm.tif",
        ref_dtm=tmp_path / "dtm.tif",
        ref_buildings=tmp_path / "ref.gpkg",
        out_json=tmp_path / "a.json",
        out_md=tmp_path / "a.md",
    )
    l1 = out["buildings"]["lod1"]
    h = blk.attributes["height"]
    assert 8.5 < h < 10.0  # the 90th percentile of a 4 m rise gable: below the ridge
    assert l1["height_error"]["rmse"] == pytest.approx(0.0, abs=1e-3)
    assert l1["height_error_vs_ridge"]["mean"] == pytest.approx(h - 10.0, abs=1e-3)
    # mean roof height of a gable on the shrunk footprint: eave + rise * mean(1 - |t| / hw), pixel rows |t| <= 4.25 m
    ts = np.abs(np.arange(-4.25, 4.26, 0.5))
    assert l1["height_error_vs_mean_roof"]["mean"] == pytest.approx(
        h - (6.0 + 4.0 * np.mean(1 - ts / 5.0)), abs=0.05
    )
    assert out["targets"]["lod1_height_rmse_m"]["value"] == pytest.approx(0.0, abs=1e-3)
    assert set(l1["definitions"]) == {"height_error", "height_error_vs_mean_roof", "height_error_vs_ridge"}
    md = (tmp_path / "a.md").read_text()
    assert "height_error_vs_ridge" in md and "like for like" in md


def _whole_grid_figures(pred, ref, classes, res, nva_codes):
    """The figures of the former whole-array qualify (compare_heights + NVA), the reference of the streamed ones."""
    from sat2lod.qualify import compare_heights

    out = compare_heights(pred, ref, classes, res, [0.5, 1.0, 3.0], [0, 10, 30, 90])
    ok = np.isfinite(ref) & np.isfinite(pred)
    out["nva"] = error_stats((pred - ref)[ok & np.isin(classes, nva_codes)])
    out["vva"] = error_stats((pred - ref)[ok & (classes == 2)])
    return out


def _assert_streamed_equal(got, want):
    """Exact figures equal (to float rounding), histogram ones within the 1 mm bin (NMAD: 1.4826 bins)."""
    from sat2lod.qualify.stats import BIN_M

    assert set(got) == set(want)
    for k, v in want.items():
        if v is None or k == "n":
            assert got[k] == v, k
        elif k in ("median", "le90", "p95"):
            assert abs(got[k] - v) <= BIN_M / 2 + 1e-9, k
        elif k == "nmad":
            assert abs(got[k] - v) <= 1.4826 * BIN_M + 1e-9, k
        else:
            assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-9), k


@pytest.mark.parametrize("block_px", [16, 23, 1024])
def test_streamed_comparison_equals_whole_grid(tmp_path, block_px):
    # a sloped terrain (all three slope bands), classes with nodata, holes, gross errors; blocks that do not divide
    # the grid: the streamed figures are the whole-grid ones (slopes across block borders included)
    from sat2lod.qualify.streamed import compare_files

    rng = np.random.default_rng(1)
    h, w, res = 61, 75, 0.5
    yy, xx = np.mgrid[0:h, 0:w] * res
    # rough terrain, slopes of ~0 to 50 degrees: a block without its 1-cell halo would change slopes at its borders
    ref = (0.02 * (xx - 10) ** 2 + 0.05 * yy + rng.normal(0, 0.05, xx.shape)).astype(np.float32)
    ref[5:9, 40:44] = np.nan
    pred = ref + rng.normal(0.1, 0.4, ref.shape).astype(np.float32)
    pred[rng.random(ref.shape) < 0.05] = np.nan
    pred[30, 30], pred[31, 50] = ref[30, 30] + 40.0, ref[31, 50] - 25.0  # gross errors stay in
    classes = rng.integers(0, 5, ref.shape).astype(np.uint8)
    classes[:, :3] = 255
    tr = from_origin(500000.0, 4800100.0, res, res)
    for name, a in (("pred", pred), ("ref", ref)):
        write_raster(tmp_path / f"{name}.tif", a, tr, 32631, nodata=float("nan"))
    write_raster(tmp_path / "classes.tif", classes, tr, 32631, nodata=255)
    got = compare_files(
        tmp_path / "pred.tif",
        tmp_path / "ref.tif",
        tmp_path / "classes.tif",
        thresholds=(0.5, 1.0, 3.0),
        slope_bins=(0, 10, 30, 90),
        nva_codes=(0, 1, 3),
        vva_code=2,
        block_px=block_px,
    )
    want = _whole_grid_figures(pred, ref, classes, res, (0, 1, 3))
    assert got["completeness"] == pytest.approx(want["completeness"], rel=1e-12)
    _assert_streamed_equal(got["all"], want["all"])
    assert (
        set(got["by_class"]) == set(want["by_class"]) == {"ground", "building", "vegetation", "road", "water"}
    )
    for name, s in want["by_class"].items():
        assert got["by_class"][name]["completeness"] == pytest.approx(s.pop("completeness"), rel=1e-12)
        _assert_streamed_equal({k: v for k, v in got["by_class"][name].items() if k != "completeness"}, s)
    assert list(got["by_slope"]) == list(want["by_slope"]) == ["0-10deg", "10-30deg", "30-90deg"]
    for band, s in want["by_slope"].items():
        _assert_streamed_equal(got["by_slope"][band], s)
    assert got["nva"]["n_checkpoints"] == want["nva"]["n"]
    assert got["nva"]["rmse_v_cm"] == round(100 * want["nva"]["rmse"], 2)
    assert abs(got["nva"]["le90_m"] - want["nva"]["le90"]) <= 0.0005 + 1e-9
    assert got["vva"]["n"] == want["vva"]["n"] and got["vva"]["rmse_v_cm"] == round(
        100 * want["vva"]["rmse"], 2
    )


def test_error_accumulator_merges_to_the_union():
    # partial statistics of separate blocks (or tiles) merge to those of all errors at once, in any order
    from sat2lod.qualify.stats import ErrorAccumulator

    rng = np.random.default_rng(2)
    e = np.r_[rng.normal(0.3, 0.5, 5000), rng.standard_cauchy(500), np.nan]
    whole = ErrorAccumulator((0.5, 1.0))
    whole.add(e)
    parts = [ErrorAccumulator((0.5, 1.0)) for _ in range(3)]
    for p, chunk in zip(parts, np.array_split(e, [1000, 4200]), strict=True):
        p.add(chunk)
    merged = ErrorAccumulator((0.5, 1.0))
    for p in (parts[2], parts[0], ErrorAccumulator((0.5, 1.0)), parts[1]):
        merged.merge(p)
    a, b = whole.stats(), merged.stats()
    assert a.keys() == b.keys() and a["n"] == b["n"] == 5500
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-9), k
    _assert_streamed_equal(a, error_stats(e, (0.5, 1.0)))
    with pytest.raises(ValueError, match="same qualify parameters"):
        merged.merge(ErrorAccumulator((0.5,)))
    assert ErrorAccumulator().stats()["median"] is None
    # absurd errors (an undeclared float32 nodata) are counted on their side, not wrapped around an int64
    odd = ErrorAccumulator()
    odd.add(np.r_[np.zeros(5), np.full(6, 3.4e38)])
    assert odd.stats()["max_abs"] == 3.4e38 and odd.stats()["median"] > 1e15


def test_streamed_resampling_equals_whole_grid(tmp_path):
    # a product on another grid (offset by a third of a cell, coarser): resampled block by block as on the whole grid
    from sat2lod.io.raster import open_windows, read_raster
    from sat2lod.qualify import on_grid
    from sat2lod.qualify.streamed import block_windows, on_grid_window

    rng = np.random.default_rng(3)
    src = rng.normal(100, 5, (40, 45)).astype(np.float32)
    src[10:12, 5:30] = np.nan
    write_raster(
        tmp_path / "src.tif", src, from_origin(500000.3, 4800100.2, 0.75, 0.75), 32631, nodata=float("nan")
    )
    write_raster(
        tmp_path / "ref.tif",
        np.zeros((60, 62), np.float32),
        from_origin(500000.0, 4800100.0, 0.5, 0.5),
        32631,
    )
    want = on_grid(read_raster(tmp_path / "src.tif", masked_to_nan=True), read_raster(tmp_path / "ref.tif"))
    got = np.full_like(want, -1.0)
    with open_windows(tmp_path / "src.tif") as s, open_windows(tmp_path / "ref.tif") as r:
        for win in block_windows(r.header.shape, 16):
            rows, cols = win.toslices()
            got[rows, cols] = on_grid_window(s, r.header, win)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, atol=1e-4)
