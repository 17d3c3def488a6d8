"""Rules lod0, lod1, lod2, qualify and figures run through Snakemake on a small synthetic block, and the
HTML report with their captions builds (a workflow made of common.smk + these rule files only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from rasterio.transform import from_origin
from shapely import affinity
from shapely.geometry import box

from cityjson_schema import official_schemas, schema_errors
from sat2lod.io.cityjson import validate_cityjson
from sat2lod.io.jsonio import write_json
from sat2lod.io.raster import write_raster
from sat2lod.io.vector import write_vector
from sat2lod.synth.layout import Building
from sat2lod.tiling import grid_spec, tile_cores, tiles_feature_collection

REPO = Path(__file__).resolve().parents[1]


def _scene(root: Path) -> None:
    """A 100 m x 100 m scene: three row houses (gable), a hip house, a flat L-shaped block; exact truth."""
    res, x0, y0 = 0.5, 374000.0, 4828000.0
    tr = from_origin(x0, y0 + 100, res, res)
    xs, ys = np.meshgrid(x0 + (np.arange(200) + 0.5) * res, y0 + 100 - (np.arange(200) + 0.5) * res)
    ground = 150.0 + 0.01 * (xs - x0)
    blds = []
    for i, (e, r) in enumerate([(6.0, 9.0), (9.0, 12.5), (5.0, 8.0)]):
        fp = box(x0 + 10 + 8 * i, y0 + 60, x0 + 18 + 8 * i, y0 + 72)
        blds.append(
            Building(i + 1, fp, "gable", e, r, 150.0, (fp.centroid.x, fp.centroid.y, 0.0, 4.0, 6.0), "row")
        )
    hip = affinity.rotate(box(x0 + 55, y0 + 60, x0 + 69, y0 + 68), 20, origin="centroid")
    c = hip.centroid
    blds.append(Building(4, hip, "hip", 5.0, 8.5, 150.0, (c.x, c.y, np.radians(20), 7.0, 4.0), "detached"))
    ell = box(x0 + 20, y0 + 15, x0 + 60, y0 + 25).union(box(x0 + 20, y0 + 15, x0 + 30, y0 + 45))
    blds.append(
        Building(5, ell, "flat", 12.0, 12.0, 150.0, (ell.centroid.x, ell.centroid.y, 0.0, 20, 15), "complex")
    )
    dsm = ground.copy()
    classes = np.zeros(dsm.shape, np.uint8)
    for b in blds:
        inside = shapely.contains_xy(b.footprint, xs, ys)
        dsm[inside] = ground[inside] + b.roof_height(xs[inside], ys[inside])
        classes[inside] = 1
    noisy = dsm + np.random.default_rng(0).normal(0, 0.15, dsm.shape)
    # true ortho stand-in: Lambert shading of the exact DSM (sun azimuth 145, elevation 60 degrees), one albedo
    # per building (rule lod2 reads roof faces from it, rule lod0 splits touching roofs along its edges)
    gy, gx = np.gradient(dsm, res)
    az, el = np.radians(145.0), np.radians(60.0)
    cosi = np.clip(
        (-gx * np.cos(el) * np.sin(az) + gy * np.cos(el) * np.cos(az) + np.sin(el))
        / np.sqrt(gx * gx + gy * gy + 1),
        0,
        1,
    )
    albedo = np.full(dsm.shape, 0.3)
    for b in blds:
        albedo[shapely.contains_xy(b.footprint, xs, ys)] = 0.2 + 0.07 * b.id
    ortho = albedo * (0.25 + 0.75 * cosi)
    tags = {"VERTICAL_DATUM": "WGS84 ellipsoid"}
    f32 = np.float32
    for path, arr in (
        ("results/mosaic/demo/dsm.tif", noisy),
        ("results/terrain/demo/dtm.tif", ground),
        ("results/terrain/demo/ndsm.tif", noisy - ground),
        ("results/synth/demo/truth/dsm.tif", dsm),
        ("results/synth/demo/truth/dtm.tif", ground),
        ("results/ortho/demo/ortho.tif", ortho),
    ):
        write_raster(root / path, arr.astype(f32), tr, 32631, nodata=float("nan"), tags=tags)
    write_raster(root / "results/segment/demo/building_mask.tif", classes, tr, 32631, nodata=255)
    write_raster(root / "results/synth/demo/truth/classes.tif", classes, tr, 32631, nodata=255)
    gdf = gpd.GeoDataFrame(
        {
            "id": [b.id for b in blds],
            "height": [b.ridge for b in blds],
            "eave_height": [b.eave for b in blds],
            "ridge_height": [b.ridge for b in blds],
            "roof_type": [b.roof_type for b in blds],
            "ground_height": [b.ground for b in blds],
        },
        geometry=[b.footprint for b in blds],
        crs=32631,
    )
    write_vector(root / "results/synth/demo/truth/buildings.gpkg", gdf, layer="buildings")
    (root / "benchmarks/dtm").mkdir(parents=True)
    (root / "benchmarks/dtm/demo.tsv").write_text("s\th:m:s\n3.0\t0:00:03\n")
    # the tiling checkpoint's grid (2 x 2 tiles of 60 m: rule lod0 runs per tile), given to the workflow by a
    # stand-in of rule tiles (the scene sheet it reads is not part of this workflow)
    spec = grid_spec([x0, y0, x0 + 100, y0 + 100], 60.0, 10.0, res)
    fc = tiles_feature_collection(spec, tile_cores(spec), np.ones(4, bool), 32631)
    write_json(root / "tiles_grid.geojson", fc)
    (root / "Snakefile").write_text(
        "from snakemake.utils import validate\n\n"
        f'configfile: "{REPO}/config/config.yaml"\n\n'
        f'validate(config, "{REPO}/config/schema.yaml")\n\n'
        f'include: "{REPO}/rules/common.smk"\ninclude: "{REPO}/rules/lod.smk"\n'
        f'include: "{REPO}/rules/qualify.smk"\ninclude: "{REPO}/rules/figures.smk"\n\n'
        "checkpoint tiles:\n"
        '    input: "tiles_grid.geojson"\n'
        '    output: tiles="results/tiles/{aoi}/tiles.geojson"\n'
        '    benchmark: "benchmarks/tiles/{aoi}.tsv"\n'
        '    shell: "cp {input} {output}"\n'
    )


def _smk(root: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(root / "Snakefile"),
        "--directory",
        str(root),
        "--cores",
        "1",
        "--workflow-profile",
        "none",
        *args,
    ]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_lod_qualify_figures_rules_and_report(tmp_path):
    _scene(tmp_path)
    r = _smk(tmp_path, "results/figures/demo/done.txt", "results/lod1/demo/city.json")
    assert r.returncode == 0, r.stderr[-3000:]
    fp = gpd.read_file(tmp_path / "results/lod0/demo/footprints.gpkg")
    assert len(fp) == 5 and (tmp_path / "results/lod0/demo/footprints.fgb").exists()
    official = official_schemas()
    for lod in ("lod1", "lod2"):
        doc = json.loads((tmp_path / f"results/{lod}/demo/city.json").read_text())
        assert validate_cityjson(doc) == [] and len(doc["CityObjects"]) == 5
        assert "WGS84 ellipsoid" in doc["metadata"]["title"]
        assert all(
            o["attributes"]["height_reference"] == "WGS84 ellipsoid" for o in doc["CityObjects"].values()
        )
        assert schema_errors(official[0], doc) == []
        seq = [json.loads(x) for x in (tmp_path / f"results/{lod}/demo/city.jsonl").read_text().splitlines()]
        assert schema_errors(official[0], seq[0]) == [] and len(seq) == 6
        assert not any(schema_errors(official[1], f) for f in seq[1:])
        assert (tmp_path / f"results/{lod}/demo/city.jsonl").exists()
    acc = json.loads((tmp_path / "results/qualify/demo/accuracy.json").read_text())
    assert acc["dsm"]["nva"]["class"] == "20-cm"  # noise 0.15 m: RMSE_V in (15, 20] cm
    b = acc["buildings"]
    assert b["footprints"]["n_matched"] == 5 and b["shared_walls"]["kept_shared"] == 1.0
    assert b["lod2"]["roof_type_accuracy"] == 1.0 and b["lod1"]["height_error"]["rmse"] < 1.0
    done = (tmp_path / "results/figures/demo/done.txt").read_text().split()
    assert len(done) == 8 and all(Path(tmp_path / p).exists() for p in done)
    r = _smk(tmp_path, "results/figures/demo/done.txt", "--report", str(tmp_path / "report.html"))
    assert r.returncode == 0, r.stderr[-3000:]
    html = (tmp_path / "report.html").read_text(errors="ignore")
    assert "Hillshade of the DSM" in html or "hillshade" in html.lower()
