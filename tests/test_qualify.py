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
