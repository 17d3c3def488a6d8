"""End to end: the whole chain on a tiny synthetic scene (tests/data/config_tiny.yaml), in a copy of the
workflow, then checks of the products against the synthetic truth, a resumed rerun, and the lint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sat2lod.io.digest import product_digests
from sat2lod.io.raster import read_raster
from sat2lod.io.vector import read_vector
from sat2lod.io.workdir import copy_workflow

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
    _smk(["--cores", "2", "--configfile", "tests/data/config_tiny.yaml"], cwd=work)
    return work


@pytest.mark.slow
def test_products_exist_with_datum(tiny_run):
    res = tiny_run / "results"
    dsm = read_raster(res / "mosaic" / AOI / "dsm.tif")
    assert dsm.crs.to_epsg() == 32631 and abs(dsm.transform.a - 0.5) < 1e-9
    assert "ellipsoid" in dsm.tags["VERTICAL_DATUM"].lower()
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
@pytest.mark.slow
def test_products_bit_identical_with_one_core(tiny_run, tmp_path_factory):
    """The same config with --cores 1 gives the same products as with --cores 2 (tiny_run), bit for bit:
    the U-Net is trained and run with a fixed torch thread count (segmentation.torch_threads), the numba and
    NumPy stages are deterministic."""
    one = copy_workflow(tmp_path_factory.mktemp("tiny1") / "workflow", REPO, extra=("tests/data",))
    _smk(["--cores", "1", "--configfile", "tests/data/config_tiny.yaml"], cwd=one)
    a, b = product_digests(tiny_run / "results"), product_digests(one / "results")
    assert a.keys() == b.keys()
    # not compared: what records this run's transport or measured times. The synthetic source's local STAC
    # server listens on a free port chosen at run time, named in the catalog's and the scene sheet's URLs;
    # the throughput figure (and the PDF holding it) plots the jobs' measured times.
    varying = {
        k
        for k in a
        if (k.startswith("acquire/") and k.endswith((".json", ".yml")))
        or k.endswith(("throughput.png", ".pdf"))
    }
    assert len(varying) < len(a) / 3, varying
    a = {k: v for k, v in a.items() if k not in varying}
    assert any(k.startswith("models/") for k in a) and any(k.startswith("lod2/") for k in a)
    differ = sorted(k for k in a if a[k] != b[k])
    assert not differ, f"products that differ between --cores 2 and --cores 1: {differ}"
