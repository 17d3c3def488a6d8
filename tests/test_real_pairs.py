"""The whole chain (acquire to figures) on each real Pléiades pair in ../shared/data, with ``source.kind: local``,
in a copy of the workflow: every product is made and valid, whatever the real masks and DSMs hold.

Each run is cropped to a 100 m x 100 m ``aoi.bbox_lonlat`` (one tile) so that the three pairs stay within the CI
budget; the crop is placed where the pair's DSM has valid data and, for Giza and Réunion, some raised objects.
Segmentation is ``ndsm_threshold`` (no network to train). Skipped, with the reason, when the data is absent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from cityjson_schema import official_schemas
from conftest import REPO, shared_file
from sat2lod.figures import FIGURES
from sat2lod.io.cityjson import validate_cityjson
from sat2lod.io.raster import read_raster
from sat2lod.io.vector import read_vector
from sat2lod.io.workdir import copy_workflow

#: name -> (folder, [(image, RPC file or None for GeoTIFF RPC tags)], bbox_lonlat of a 100 m square)
PAIRS = {
    "ventoux": (
        "cnes_pleiades_ventoux_pair",
        [("left_image.tif", "left_image.geom"), ("right_image.tif", "right_image.geom")],
        [5.194075, 44.205828, 5.195356, 44.206614],  # wooded mountain slope (EPSG:32631, 100 x 90 m)
    ),
    "gizeh": (
        "cnes_pleiades_gizeh_pair",
        [("img1.tif", "img1.geom"), ("img2.tif", "img2.geom")],
        [31.135734, 29.977910, 31.136753, 29.978827],  # buildings east of the pyramid (EPSG:32636)
    ),
    "reunion": (
        "s2p_pleiades_pair_reunion",
        [("img_01.tif", None), ("img_02.tif", None)],
        [55.649293, -21.230894, 55.650265, -21.229998],  # volcanic slope (EPSG:32740)
    ),
}
LOD0_COLUMNS = {"id", "block", "area_m2", "perimeter_m", "n_vertices", "ndsm_median_m", "geometry"}


def _config(name: str) -> dict:
    folder, views, bbox = PAIRS[name]
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["aoi"] = {"name": name, "bbox_lonlat": bbox}
    config["source"] = {
        "kind": "local",
        "local": {
            "images": [
                {
                    "image": str(shared_file(folder, img)),
                    "rpc": None if rpc is None else str(shared_file(folder, rpc)),
                }
                for img, rpc in views
            ]
        },
    }
    config["segmentation"] = {"method": "ndsm_threshold"}
    return config


def _run(work: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2"],
        check=False,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_chain_to_figures_on_real_pair(name: str, tmp_path: Path) -> None:
    config = _config(name)  # skips when the pair is not in ../shared/data
    work = copy_workflow(tmp_path / "wf", REPO)
    (work / "config/config.yaml").write_text(yaml.safe_dump(config))
    proc = _run(work)
    assert proc.returncode == 0, f"{name}: snakemake failed\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    res = work / "results"
    dsm = read_raster(res / f"mosaic/{name}/dsm.tif", masked_to_nan=True)
    assert np.isfinite(dsm.array).mean() > 0.2, "DSM nearly empty"
    assert dsm.tags["VERTICAL_DATUM"].startswith("WGS84 ellipsoid")
    for p in ("terrain/{n}/dtm.tif", "terrain/{n}/ndsm.tif", "ortho/{n}/ortho.tif"):
        r = read_raster(res / p.format(n=name))
        assert r.shape == dsm.shape and r.transform == dsm.transform and r.crs == dsm.crs, p
    mask = read_raster(res / f"segment/{name}/building_mask.tif").array
    assert mask.shape == dsm.shape and set(np.unique(mask)) <= {0, 1, 255}
    fp = read_vector(res / f"lod0/{name}/footprints.gpkg")
    assert LOD0_COLUMNS <= set(fp.columns) and fp.crs == dsm.crs
    assert fp.geometry.is_valid.all() and (fp.geometry.area > 0).all()
    cj_schema, _ = official_schemas()
    counts = {}
    for lod in ("lod1", "lod2"):
        doc = json.loads((res / f"{lod}/{name}/city.json").read_text())
        assert validate_cityjson(doc) == [], lod
        cj_schema.validate(doc)
        counts[lod] = len(doc["CityObjects"])
        assert counts[lod] <= len(fp), lod
        assert all(
            o["attributes"]["height_reference"].startswith("WGS84 ellipsoid")
            for o in doc["CityObjects"].values()
        )
    acc = json.loads((res / f"qualify/{name}/accuracy.json").read_text())
    assert acc["products"]["footprints"] == len(fp)
    assert acc["products"]["lod1_buildings"] == counts["lod1"]
    assert acc["products"]["lod2_buildings"] == counts["lod2"]
    done = (res / f"figures/{name}/done.txt").read_text().split()
    assert len(done) == len(FIGURES) + 1
    assert all((work / p).stat().st_size > 0 for p in done)
