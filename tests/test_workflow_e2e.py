"""End to end: the whole chain on a tiny synthetic scene (tests/data/config_tiny.yaml), in a copy of the
workflow, then checks of the products against the synthetic truth, a resumed rerun, and the lint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sat2lod
from sat2lod.io.digest import comparable, product_digests
from sat2lod.io.raster import read_raster
from sat2lod.io.vector import read_vector
from sat2lod.io.workdir import copy_workflow
from sat2lod.lod.solid import Surface, check_solid

REPO = Path(__file__).resolve().parents[1]
AOI = "tiny"


def _smk(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    work = copy_workflow(tmp_path_factory.mktemp("tiny") / "workflow", REPO, extra=("tests/data",))
    proc = _smk(["--cores", "2", "--configfile", "tests/data/config_tiny.yaml"], cwd=work)
    (work / "snakemake_run.txt").write_text(proc.stdout + proc.stderr)
    return work


@pytest.mark.slow
def test_run_log_is_readable(tiny_run):
    """The run starts by saying what runs and how long; no noise a person would take for a failure."""
    out = (tiny_run / "snakemake_run.txt").read_text()
    assert "AOI 'tiny' (0.01 km²)" in out and "Expected: roughly" in out
    assert "Shell command: None" not in out
    acquire_log = (tiny_run / "logs" / "acquire" / f"{AOI}.log").read_text()
    assert "unknown collection" not in acquire_log and "Download url" not in acquire_log
    assert "downloaded and verified" in acquire_log
    # EODAG's scratch config (with a copied __pycache__) is not left in the results
    assert not list((tiny_run / "results").rglob("__pycache__"))


@pytest.mark.slow
def test_products_exist_with_datum(tiny_run):
    res = tiny_run / "results"
    dsm = read_raster(res / "mosaic" / AOI / "dsm.tif")
    assert dsm.crs.to_epsg() == 32631 and abs(dsm.transform.a - 0.5) < 1e-9
    assert "ellipsoid" in dsm.tags["VERTICAL_DATUM"].lower()
    # every height product states the datum its values are in: absolute heights on the ellipsoid,
    # the nDSM above the DTM (sat2lod.HEIGHT_ABOVE_DTM), the ortho the heights it was made with
    datums = {
        "mosaic/tiny/dsm.tif": sat2lod.ELLIPSOID_DATUM,
        "terrain/tiny/dtm.tif": sat2lod.ELLIPSOID_DATUM,
        "terrain/tiny/ndsm.tif": sat2lod.HEIGHT_ABOVE_DTM,
        "synth/tiny/truth/dsm.tif": sat2lod.ELLIPSOID_DATUM,
        "synth/tiny/truth/dtm.tif": sat2lod.ELLIPSOID_DATUM,
        "synth/tiny/truth/ndsm.tif": sat2lod.HEIGHT_ABOVE_DTM,
    }
    for p, datum in datums.items():
        assert read_raster(res / p).tags["VERTICAL_DATUM"] == datum, p
    assert read_raster(res / "ortho/tiny/ortho.tif").tags["HEIGHTS_USED"] == sat2lod.ELLIPSOID_DATUM
    for lod in ("lod1", "lod2"):
        cj = json.loads((res / lod / AOI / "city.json").read_text())
        assert sat2lod.ELLIPSOID_DATUM in cj["metadata"]["title"], lod
    for p in [
        "terrain/tiny/dtm.tif",
        "terrain/tiny/ndsm.tif",
        "ortho/tiny/ortho.tif",
        "segment/tiny/building_mask.tif",
    ]:
        assert (res / p).is_file(), p
    gdf = read_vector(res / "lod0" / AOI / "footprints.gpkg")
    assert len(gdf) >= 1 and gdf.crs.to_epsg() == 32631
    for lod in ("lod1", "lod2"):
        cj = json.loads((res / lod / AOI / "city.json").read_text())
        assert cj["type"] == "CityJSON" and cj["version"] == "2.0"
        assert len(cj["CityObjects"]) >= 1
    assert any((res / "figures" / AOI).glob("*.png"))


@pytest.mark.slow
def test_lod2_solids_have_valid_faces(tiny_run):
    """Every face of every LOD2 solid in the file: planar, simple (no bow-tie), shell closed and outward."""
    cj = json.loads((tiny_run / "results" / "lod2" / AOI / "city.json").read_text())
    v = cj["vertices"]
    assert cj["transform"]["scale"] == [0.001, 0.001, 0.001]  # integer vertices are millimetres
    for oid, o in cj["CityObjects"].items():
        g = o["geometry"][0]
        sems = g["semantics"]["surfaces"]
        surfaces = [
            Surface([[tuple(v[i]) for i in ring] for ring in surf], sems[val]["type"])
            for surf, val in zip(g["boundaries"][0], g["semantics"]["values"][0])
        ]
        chk = check_solid(surfaces)
        assert chk["closed"] and chk["planar"] and chk["simple"] and chk["volume_m3"] > 0, (oid, chk)


@pytest.mark.slow
def test_accuracy_against_truth(tiny_run):
    acc = json.loads((tiny_run / "results" / "qualify" / AOI / "accuracy.json").read_text())
    text = json.dumps(acc)
    assert "rmse" in text.lower() and "nmad" in text.lower()
    # an independent check of the DSM against the exact truth, on the common grid
    dsm = read_raster(tiny_run / "results" / "mosaic" / AOI / "dsm.tif")
    truth = read_raster(tiny_run / "results" / "synth" / AOI / "truth" / "dsm.tif")
    assert dsm.transform == truth.transform and dsm.shape == truth.shape
    err = dsm.array - truth.array
    valid = np.isfinite(err)
    assert valid.mean() > 0.8, f"completeness {valid.mean():.2f}"
    e = err[valid]
    nmad = 1.4826 * np.median(np.abs(e - np.median(e)))
    assert abs(np.median(e)) < 0.5 and nmad < 1.0, (np.median(e), nmad)


@pytest.mark.slow
def test_segment_per_tile_matches_untiled(tiny_run, tmp_path):
    """Rule segment assembles the per-tile jobs (segment_tile, 2 x 2 tiles + halo): the mask equals the untiled
    segmentation of the whole AOI (sat2lod.segment.predict.segment_from_files, same model and parameters) but
    for a few cells, and the probability differs only by where the inference tiles are blended (the tiny
    config's 128 px inference tiles are smaller than a tile + halo; with larger ones they are equal to the bit:
    tests/test_segment_tiled.py)."""
    import yaml

    from sat2lod.segment.predict import segment_from_files

    cfg = yaml.safe_load((tiny_run / "tests" / "data" / "config_tiny.yaml").read_text())["segmentation"]
    res = tiny_run / "results"
    segment_from_files(
        res / "ortho" / AOI / "ortho.tif",
        res / "terrain" / AOI / "ndsm.tif",
        tmp_path / "prob.tif",
        tmp_path / "mask.tif",
        checkpoint=tiny_run / cfg["checkpoint"],
        tile_px=cfg["tile_px"],
        overlap_px=cfg["overlap_px"],
    )
    tiled_m, whole_m = (
        read_raster(res / "segment" / AOI / "building_mask.tif"),
        read_raster(tmp_path / "mask.tif"),
    )
    tiled_p, whole_p = (
        read_raster(res / "segment" / AOI / "building_prob.tif"),
        read_raster(tmp_path / "prob.tif"),
    )
    assert tiled_m.transform == whole_m.transform and tiled_m.shape == whole_m.shape
    assert not list((res / "segment" / AOI).glob("[tj]0*"))  # the jobs' tile outputs are temporary
    assert (whole_m.array == 1).any()
    assert np.mean(tiled_m.array != whole_m.array) < 0.002
    np.testing.assert_array_equal(np.isnan(tiled_p.array), np.isnan(whole_p.array))
    assert np.nanmax(np.abs(tiled_p.array - whole_p.array)) < 0.05


@pytest.mark.slow
def test_terrain_per_tile_matches_untiled(tiny_run, tmp_path):
    """Rule dtm pastes the per-tile jobs (dtm_tile, 2 x 2 tiles of up to 60 m + the 128 m default halo, so each
    window is the whole 100 m AOI): the DTM and nDSM equal the untiled ones (sat2lod.terrain.dtm_from_dsm_file, same
    DSM and parameters) to the bit, and the tiles' outputs are temporary (tests/test_terrain.py covers windows
    smaller than the AOI)."""
    from sat2lod.terrain import dtm_from_dsm_file

    res = tiny_run / "results"
    dtm_from_dsm_file(res / "mosaic" / AOI / "dsm.tif", tmp_path / "dtm.tif", tmp_path / "ndsm.tif")
    for name in ("dtm.tif", "ndsm.tif"):
        tiled, whole = read_raster(res / "terrain" / AOI / name), read_raster(tmp_path / name)
        assert tiled.transform == whole.transform and tiled.tags == whole.tags
        np.testing.assert_array_equal(tiled.array, whole.array)
    assert not list((res / "terrain" / AOI).glob("[tj]0*"))


@pytest.mark.slow
def test_rerun_resumes_without_work(tiny_run):
    proc = _smk(
        ["-n", "--cores", "2", "--configfile", "tests/data/config_tiny.yaml"], cwd=tiny_run, timeout=300
    )
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_lint_is_clean():
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "--cores", "1"],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Lints for" not in out, out[-5000:]


# ------------------------------------------------------------------ reproducible to the bit, whatever --cores
def one_core_run(tmp: Path) -> Path:
    """The tiny chain with --cores 1, in the background from the session's start (tests/background.py: one
    core of the two is idle during such a run)."""
    one = copy_workflow(tmp / "workflow", REPO, extra=("tests/data",))
    _smk(["--cores", "1", "--configfile", "tests/data/config_tiny.yaml"], cwd=one)
    return one


@pytest.mark.slow
@pytest.mark.background("one_core_run")
def test_products_bit_identical_with_one_core(tiny_run, background_run):
    """The same config with --cores 1 gives the same products as with --cores 2 (tiny_run), bit for bit:
    the U-Net is trained and run with a fixed torch thread count (segmentation.torch_threads), the numba and
    NumPy stages are deterministic."""
    one = background_run
    a, b = product_digests(tiny_run / "results"), product_digests(one / "results")
    assert a.keys() == b.keys()
    # not compared: what records the run itself (sat2lod.io.digest.is_run_record: the local STAC server's
    # port in the acquisition's catalog and scene sheet, the measured times of the throughput figure)
    assert len(a) - len(comparable(a)) < len(a) / 3
    a, b = comparable(a), comparable(b)
    assert any(k.startswith("models/") for k in a) and any(k.startswith("lod2/") for k in a)
    differ = sorted(k for k in a if a[k] != b[k])
    assert not differ, f"products that differ between --cores 2 and --cores 1: {differ}"
