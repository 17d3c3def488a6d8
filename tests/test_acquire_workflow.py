"""Rules ``acquire`` and checkpoint ``tiles`` through Snakemake (common.smk + acquire.smk + tiling.smk only):
synthetic source fetched through the 127.0.0.1 STAC server + EODAG, local source, per-tile fan-out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pyproj import Transformer

from acquire_fakes import fake_triplet
from sat2lod.acquire.geometry import utm_epsg

REPO = Path(__file__).resolve().parents[1]
LON0, LAT0 = 2.35, 48.85
TIMES = ["2024-05-01T10:30:00+00:00", "2024-05-01T10:30:40+00:00", "2024-05-01T10:31:20+00:00"]

SNAKEFILE = f"""
from snakemake.utils import validate
configfile: "{REPO}/config/config.yaml"
validate(config, "{REPO}/config/schema.yaml")


include: "{REPO}/rules/common.smk"
include: "{REPO}/rules/acquire.smk"
include: "{REPO}/rules/tiling.smk"


rule per_tile:
    input:
        "results/tiles/{{aoi}}/tiles.geojson",
    output:
        "results/stereo/{{aoi}}/{{tile}}/done.txt",
    shell:
        "echo {{wildcards.tile}} > {{output}}"


rule gather:
    input:
        lambda w: expand("results/stereo/{{aoi}}/{{tile}}/done.txt", aoi=w.aoi, tile=tile_ids(w)),
    output:
        "results/mosaic/{{aoi}}/tiles.txt",
    shell:
        "cat {{input}} > {{output}}"
"""


def _smk(root: Path, config: dict, *targets: str) -> subprocess.CompletedProcess:
    (root / "Snakefile").write_text(SNAKEFILE)
    (root / "over.yaml").write_text(yaml.safe_dump(config))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        *targets,
        "--snakefile",
        str(root / "Snakefile"),
        "--directory",
        str(root),
        "--cores",
        "1",
        "--workflow-profile",
        "none",
        "--configfile",
        str(REPO / "config/config.yaml"),
        str(root / "over.yaml"),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)


def _fake_synth(root: Path) -> None:
    """Pre-made outputs of rule synth_city (views with RPC tags, scene.json, truth placeholders): 120 m scene."""
    d = root / "results/synth/demo"
    (d / "truth").mkdir(parents=True)
    views = fake_triplet(d, LON0, LAT0, size_px=300)
    epsg = utm_epsg(LON0, LAT0)
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(LON0, LAT0)
    x, y, h = round(x), round(y), 60.0
    to_ll = Transformer.from_crs(epsg, 4326, always_xy=True)
    lo, hi = to_ll.transform(x - h, y - h), to_ll.transform(x + h, y + h)
    scene = {
        "epsg": epsg,
        "bounds": [x - h, y - h, x + h, y + h],
        "lonlat_bounds": [*lo, *hi],
        "height_range": [0.0, 100.0],
        "seed": 7,
        "views": [dict(v, datetime=t) for v, t in zip(views, TIMES)],
    }
    (d / "scene.json").write_text(json.dumps(scene))
    for name in ("dsm.tif", "dtm.tif", "ndsm.tif", "classes.tif", "buildings.gpkg"):
        (d / "truth" / name).write_text("placeholder")


@pytest.mark.slow
def test_synthetic_source_acquire_and_tiles_through_snakemake(tmp_path: Path) -> None:
    _fake_synth(tmp_path)
    cfg = {
        "source": {"kind": "synthetic", "providers_file": str(REPO / "config/eodag_providers.yaml")},
        "tiling": {"tile_size_m": 50.0, "margin_m": 5.0},
    }
    r = _smk(tmp_path, cfg, "results/mosaic/demo/tiles.txt")
    assert r.returncode == 0, r.stderr[-4000:]
    sheet = json.loads((tmp_path / "results/acquire/demo/scenes.json").read_text())
    assert len(sheet["views"]) == 3 and sheet["source"]["provider"] == "sat2lod_stac"
    assert all(v["image"].startswith("results/acquire/demo/downloads/") for v in sheet["views"])
    assert all((tmp_path / v["image"]).is_file() for v in sheet["views"])
    assert sheet["truth"]["ndsm"] == "results/synth/demo/truth/ndsm.tif"
    assert (tmp_path / "results/acquire/demo/catalog/catalog.json").is_file()
    grid = json.loads((tmp_path / "results/tiles/demo/tiles.geojson").read_text())
    ids = [f["properties"]["tile"] for f in grid["features"]]
    assert ids == [f"t{r:04d}_{c:04d}" for r in range(3) for c in range(3)]  # 120 m in 50 m tiles, all seen
    assert (tmp_path / "results/mosaic/demo/tiles.txt").read_text().split() == ids
    log = (tmp_path / "logs/acquire/demo.log").read_text()
    assert "STAC server started at http://127.0.0.1:" in log and "stopped" in log
    assert (tmp_path / "benchmarks/acquire/demo.tsv").is_file() and (
        tmp_path / "benchmarks/tiles/demo.tsv"
    ).is_file()


@pytest.mark.slow
def test_local_source_through_snakemake_and_clear_failure(tmp_path: Path) -> None:
    views = fake_triplet(tmp_path, LON0, LAT0)
    images = [
        {"image": str(tmp_path / v["file"]), "rpc": None, "datetime": t, "id": f"img{i}"}
        for i, (v, t) in enumerate(zip(views, TIMES))
    ]
    cfg = {
        "aoi": {"name": "paris"},
        "source": {"kind": "local", "local": {"images": images}},
        "tiling": {"tile_size_m": 40.0, "margin_m": 5.0},
    }
    r = _smk(tmp_path, cfg, "results/tiles/paris/tiles.geojson")
    assert r.returncode == 0, r.stderr[-4000:]
    sheet = json.loads((tmp_path / "results/acquire/paris/scenes.json").read_text())
    assert [v["id"] for v in sheet["views"]] == ["img0", "img1", "img2"]
    # paths inside the working directory are written relative to it
    assert [v["image"] for v in sheet["views"]] == ["view_0.tif", "view_1.tif", "view_2.tif"]
    assert len(json.loads((tmp_path / "results/tiles/paris/tiles.geojson").read_text())["features"]) == 9
    # a missing image: Snakemake refuses to start and names it (it is an input of the rule)
    cfg["aoi"]["name"] = "broken"
    cfg["source"]["local"]["images"][1]["image"] = str(tmp_path / "missing.tif")
    r = _smk(tmp_path, cfg, "results/acquire/broken/scenes.json")
    assert r.returncode != 0 and "missing.tif" in r.stderr
