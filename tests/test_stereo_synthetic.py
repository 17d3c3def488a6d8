"""The stereo chain on a small synthetic city (tri-stereo, exact truth): accuracy and completeness."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from sat2lod.stereo.pipeline import stereo_tile

synth = pytest.importorskip("sat2lod.synth", reason="synthetic city generator not available")


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("city")
    synth.generate_city(out, seed=3, size_m=200.0, n_views=3, gsd_m=0.5)
    return out


@pytest.mark.slow
def test_tristereo_dsm_against_exact_truth(city: Path, tmp_path: Path) -> None:
    scene = json.loads((city / "scene.json").read_text())
    views = [
        {"id": f"v{i}", "image": str(city / v["file"]), "rpc": None} for i, v in enumerate(scene["views"])
    ]
    epsg = int(scene["epsg"])
    bounds = [float(b) for b in scene["bounds"]]
    sheet = {
        "aoi": "t",
        "epsg": epsg,
        "height_range": scene["height_range"],
        "views": views,
        "pairs": [[0, 1], [1, 2], [0, 2]],
    }
    (tmp_path / "scenes.json").write_text(json.dumps(sheet))
    grid = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}},
        "features": [
            {
                "type": "Feature",
                "geometry": None,
                "properties": {"tile": "t0000_0000", "row": 0, "col": 0, "core": bounds, "bounds": bounds},
            }
        ],
    }
    (tmp_path / "tiles.geojson").write_text(json.dumps(grid))
    info = stereo_tile(
        tmp_path / "scenes.json",
        tmp_path / "tiles.geojson",
        "t0000_0000",
        tmp_path / "dsm.tif",
        tmp_path / "q.tif",
        0.5,
    )
    assert len(info["pairs"]) == 3
    # the synthetic RPCs are exact: no relative pointing error to correct
    assert all(abs(p["pointing_dy_px"]) < 0.2 for p in info["pairs"])
    with rasterio.open(tmp_path / "dsm.tif") as ds:
        ours = ds.read(1)
        assert ds.crs.to_epsg() == epsg and ds.tags()["VERTICAL_DATUM"] == scene["vertical_datum"]
    with rasterio.open(city / "truth" / "dsm.tif") as ds:
        truth = ds.read(1)
    with rasterio.open(city / "truth" / "classes.tif") as ds:
        classes = ds.read(1)
    land = np.isfinite(truth) & (classes != 4) & (classes != 255)
    ok = land & np.isfinite(ours)
    d = ours[ok] - truth[ok]
    assert ok.sum() / land.sum() > 0.95  # completeness outside water
    assert np.sqrt(np.mean(d**2)) < 1.3
    assert 1.4826 * np.median(np.abs(d - np.median(d))) < 0.5
    print(
        f"completeness {ok.sum() / land.sum():.4f} rmse {np.sqrt(np.mean(d**2)):.3f} median {np.median(d):.3f}"
    )
    assert abs(np.median(d)) < 0.2  # no height bias: the ellipsoidal heights of the RPCs come through
