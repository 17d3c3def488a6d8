"""The stereo rules on real data: two Réunion tiles through ``stereo_tile`` + ``mosaic_dsm`` (Snakemake),
compared with the DSM s2p made from the same pair; the same products whether one job takes both tiles or each
tile has its own (tiling.tiles_per_job); and ``snakemake --lint`` on the stereo rules."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import rasterio
import yaml

from conftest import REPO, shared_file

S2P_DSM_UL = (359746.0, 7651923.0)  # upper-left corner of s2p's reference DSM (SOURCE.md)
CORES = [[359830.0, 7651700.0, 359930.0, 7651800.0], [359930.0, 7651700.0, 360030.0, 7651800.0]]
MARGIN = 10.0


def _workflow(tmp: Path, tiles_per_job: int | None = None) -> Path:
    d = "s2p_pleiades_pair_reunion"
    views = [
        {"id": f"v{i}", "image": str(shared_file(d, f"img_0{i + 1}.tif")), "rpc": None} for i in range(2)
    ]
    sheet = {
        "aoi": "reunion",
        "epsg": 32740,
        "height_range": [2200.0, 2450.0],
        "views": views,
        "pairs": [[0, 1]],
    }
    (tmp / "results/acquire/reunion").mkdir(parents=True)
    (tmp / "results/acquire/reunion/downloads").mkdir()  # the scene's files, as acquire declares them
    (tmp / "results/acquire/reunion/scenes.json").write_text(json.dumps(sheet))
    feats = []
    for i, core in enumerate(CORES):
        bounds = [core[0] - MARGIN, core[1] - MARGIN, core[2] + MARGIN, core[3] + MARGIN]
        feats.append(
            {
                "type": "Feature",
                "geometry": None,
                "properties": {"tile": f"t0000_{i:04d}", "row": 0, "col": i, "core": core, "bounds": bounds},
            }
        )
    grid = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32740"}},
        "features": feats,
    }
    (tmp / "grid_template.geojson").write_text(json.dumps(grid))
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["aoi"]["name"] = "reunion"
    if tiles_per_job is not None:
        config["tiling"]["tiles_per_job"] = tiles_per_job
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp / "Snakefile").write_text(f'''
configfile: "config.yaml"

include: "{REPO}/rules/common.smk"
include: "{REPO}/rules/stereo.smk"


checkpoint tiles:
    input:
        "grid_template.geojson",
    output:
        tiles="results/tiles/{{aoi}}/tiles.geojson",
    log:
        "logs/tiles/{{aoi}}.log",
    shell:
        "cp {{input}} {{output.tiles}}"
''')
    return tmp


def _run_mosaic(wf: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        "2",
        "--snakefile",
        str(wf / "Snakefile"),
        "-d",
        str(wf),
        "results/mosaic/reunion/dsm.tif",
    ]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_stereo_rules_on_real_pair_match_s2p(tmp_path: Path) -> None:
    wf = _workflow(tmp_path)
    _run_mosaic(wf)
    # the demo config's tiles_per_job takes both tiles in one job: one archive of the tiles' files
    assert sorted(p.name for p in (wf / "results/stereo/reunion").iterdir()) == ["j0000.tar"]
    job_log = (wf / "logs/stereo_tile/reunion/j0000.log").read_text()
    assert job_log.count("pointing correction") == 2  # once per tile
    with tarfile.open(wf / "results/stereo/reunion/j0000.tar") as tar:
        names = tar.getnames()
        assert names == sorted(
            f"{t}/{n}" for t in ("t0000_0000", "t0000_0001") for n in ("dsm.tif", "quality.tif")
        )
        assert {m.mtime for m in tar.getmembers()} == {0}  # the same bytes for the same files
        tar.extractall(tmp_path / "j0000", filter="data")
    for t in ("t0000_0000", "t0000_0001"):
        with rasterio.open(tmp_path / f"j0000/{t}/dsm.tif") as ds:
            assert ds.tags()["VERTICAL_DATUM"].startswith("WGS84 ellipsoid")
            assert ds.res == (0.5, 0.5) and ds.transform.c % 0.5 == 0 and ds.transform.f % 0.5 == 0
        with rasterio.open(tmp_path / f"j0000/{t}/quality.tif") as ds:
            assert ds.count == 4 and ds.tags(1)["NAME"] == "intersection_residual_px"
            assert np.nanmedian(ds.read(1)) < 0.3
    with rasterio.open(wf / "results/mosaic/reunion/dsm.tif") as ds:
        ours = ds.read(1)
        t = ds.transform
        assert ds.tags()["VERTICAL_DATUM"].startswith("WGS84 ellipsoid")
        assert (ds.bounds.left, ds.bounds.right) == (CORES[0][0], CORES[1][2])
    with rasterio.open(shared_file("s2p_pleiades_pair_reunion", "expected_dsm_s2p.tif")) as ds:
        ref = ds.read(1)
    r0 = int(round((S2P_DSM_UL[1] - t.f) / 0.5))
    c0 = int(round((t.c - S2P_DSM_UL[0]) / 0.5))
    ref = ref[r0 : r0 + ours.shape[0], c0 : c0 + ours.shape[1]]
    both = np.isfinite(ours) & np.isfinite(ref)
    diff = np.abs(ours[both] - ref[both])
    assert np.isfinite(ours).mean() >= np.isfinite(ref).mean()  # at least s2p's completeness
    assert np.median(diff) < 0.35
    assert np.percentile(diff, 90) < 1.5

    # one job per tile: the same tile products and mosaic, to the bit
    wf1 = _workflow(tmp_path / "one_tile_per_job", tiles_per_job=1)
    _run_mosaic(wf1)
    assert sorted(p.name for p in (wf1 / "results/stereo/reunion").iterdir()) == ["j0000.tar", "j0001.tar"]
    for job, t in (("j0000", "t0000_0000"), ("j0001", "t0000_0001")):
        assert (wf1 / f"logs/stereo_tile/reunion/{job}.log").read_text().count("pointing correction") == 1
        with tarfile.open(wf1 / f"results/stereo/reunion/{job}.tar") as tar:
            assert tar.getnames() == [f"{t}/dsm.tif", f"{t}/quality.tif"]
            for name in ("dsm.tif", "quality.tif"):
                own = tar.extractfile(f"{t}/{name}").read()
                assert own == (tmp_path / f"j0000/{t}/{name}").read_bytes()  # the same file, byte for byte
    with rasterio.open(wf1 / "results/mosaic/reunion/dsm.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), ours)


def test_stereo_rules_lint_clean(tmp_path: Path) -> None:
    wf = _workflow(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "--snakefile", str(wf / "Snakefile"), "-d", str(wf)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = proc.stdout + proc.stderr
    assert "Lints for snakefile" in text  # lint ran (it flags the test's own absolute includes)
    assert "Lints for snakefile " + str(REPO / "rules/stereo.smk") not in text, text[-3000:]
    for rule in ("stereo_tile", "mosaic_dsm"):
        assert f"rule {rule} " not in text, text[-3000:]
