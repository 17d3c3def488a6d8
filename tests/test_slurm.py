"""profiles/slurm against a real SLURM cluster (tests/cluster/start_local_slurm.sh starts one on localhost).

Each test runs a workflow twice, locally and through `--profile profiles/slurm`, then checks that
(1) every job went through sbatch: job ids in snakemake's log, one SLURM log file per job, the jobs known
to squeue as COMPLETED under the run's name, with the CPUs / memory / time limit the rules asked for, and
the job's own environment saw that SLURM_JOB_ID; (2) the outputs equal those of the local run.

Skipped, with the reason, when no SLURM cluster answers. Every snakemake run is bounded with
`timeout -s INT` (the slurm plugin ignores SIGTERM; SIGINT makes it scancel its jobs and exit).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sat2lod.io.digest import comparable, product_digests
from sat2lod.io.workdir import copy_workflow

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "slurm"
TINY_SNAKEFILE = REPO / "tests" / "cluster" / "Snakefile"

pytestmark = pytest.mark.slurm

SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")


def _slurm_partition() -> str | None:
    """Name of an up partition with a usable node, or None when no SLURM cluster answers."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return None
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%P|%a|%t"], capture_output=True, text=True, timeout=20, check=False
        )
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        return None
    for line in out.stdout.splitlines():
        part, avail, state = line.split("|")
        if avail == "up" and state.rstrip("*~#") in {"idle", "mix", "alloc"}:
            return part.rstrip("*")
    return None


def require_slurm() -> str:
    """The partition to use, or skip (with how to start the local cluster) when no SLURM cluster answers."""
    part = _slurm_partition()
    if part is None:
        pytest.skip(
            "no SLURM cluster answers (sinfo/sbatch missing or no idle node): start one with "
            "`sudo tests/cluster/start_local_slurm.sh` before pytest, stop it with tests/cluster/stop_local_slurm.sh"
        )
    return part


@pytest.fixture(scope="module")
def slurm_partition() -> str:
    return require_slurm()


def run_snakemake(args: list[str], cwd: Path, timeout_s: int, env: dict[str, str] | None = None) -> str:
    """Run snakemake in ``cwd`` bounded by ``timeout -s INT``; return its combined output, fail with it."""
    cmd = ["timeout", "-s", "INT", "-k", "60", str(timeout_s), sys.executable, "-m", "snakemake", *args]
    proc = subprocess.run(
        cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False
    )
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(f"snakemake exited {proc.returncode} ({' '.join(cmd)}):\n{out[-6000:]}")
    return out


class Background:
    """A snakemake run in the background, bounded like run_snakemake; output in ``cwd/snakemake.out``."""

    def __init__(self, args: list[str], cwd: Path, timeout_s: int) -> None:
        self.cmd = [
            "timeout",
            "-s",
            "INT",
            "-k",
            "60",
            str(timeout_s),
            sys.executable,
            "-m",
            "snakemake",
            *args,
        ]
        self.out_path = cwd / "snakemake.out"
        with open(self.out_path, "w") as out:
            self.proc = subprocess.Popen(self.cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)

    def wait(self) -> str:
        rc = self.proc.wait()
        out = self.out_path.read_text()
        if rc != 0:
            pytest.fail(f"snakemake exited {rc} ({' '.join(self.cmd)}):\n{out[-6000:]}")
        return out


def slurm_env(partition: str) -> dict[str, str]:
    """The site variables profiles/slurm reads (no account on the test cluster)."""
    return {"SAT2LOD_SLURM_PARTITION": partition, "SAT2LOD_SLURM_ACCOUNT": ""}


# Fast status polling for tests (the profile keeps the plugin's 40 s default, gentle on a real scheduler).
FAST_POLL = ["--slurm-init-seconds-before-status-checks", "2"]


def squeue_jobs(job_ids: list[str]) -> dict[str, dict[str, str]]:
    """State, name, CPUs, memory and time limit of finished jobs (MinJobAge keeps them in squeue)."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%j|%T|%C|%m|%l"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    rows = {}
    for line in out.splitlines():
        jid, name, state, cpus, mem, limit = line.split("|")
        rows[jid] = {"name": name, "state": state, "cpus": cpus, "mem": mem, "limit": limit}
    return rows


def submitted_jobs(log: str) -> list[tuple[str, str, Path]]:
    """(snakemake job id, SLURM job id, SLURM log path) of every sbatch submission in a snakemake log."""
    return [(m[1], m[2], Path(m[3])) for m in SUBMITTED.finditer(log)]


def test_tiny_workflow_through_slurm_matches_local(tmp_path: Path, slurm_partition: str) -> None:
    local, remote = tmp_path / "local", tmp_path / "slurm"
    local.mkdir()
    remote.mkdir()
    common = ["-s", str(TINY_SNAKEFILE), "--workflow-profile", "none"]
    run_snakemake([*common, "--cores", "2"], cwd=local, timeout_s=120)
    log = run_snakemake(
        [*common, "--profile", str(PROFILE), *FAST_POLL],
        cwd=remote,
        timeout_s=300,
        env=slurm_env(slurm_partition),
    )

    jobs = submitted_jobs(log)
    assert len(jobs) == 4, f"expected 3 x part + gather submitted through sbatch, got {jobs}:\n{log[-3000:]}"
    run_id = re.search(r"SLURM run ID: (\S+)", log)[1]
    info = squeue_jobs([j for _, j, _ in jobs])
    assert set(info) == {j for _, j, _ in jobs}
    for _, jid, slurm_log in jobs:
        row = info[jid]
        assert row["state"] == "COMPLETED", row
        assert row["name"] == run_id, row
        assert row["limit"] == "5:00", row  # runtime=5 (minutes) -> sbatch -t 5
        assert row["mem"] == "200M", row  # mem_mb=200 -> sbatch --mem 200
        assert slurm_log.is_file(), f"SLURM log of job {jid} missing (slurm-keep-successful-logs)"
        assert slurm_log.name == f"{jid}.log"
    part_jobs = [jid for _, jid, p in jobs if "rule_part" in str(p)]
    assert len(part_jobs) == 3 and all(info[j]["cpus"] == "2" for j in part_jobs)  # threads: 2
    # each rule's shell ran inside its own allocation
    seen = {
        re.search(r"SLURM_JOB_ID=(\S+)", (remote / "logs" / "part" / f"{i}.log").read_text())[1]
        for i in range(3)
    }
    assert seen == set(part_jobs)
    assert "SLURM_CPUS_PER_TASK=2" in (remote / "logs" / "part" / "0.log").read_text()
    # and without SLURM nothing of the kind
    assert "SLURM_JOB_ID=none" in (local / "logs" / "part" / "0.log").read_text()

    for name in ["part_0.txt", "part_1.txt", "part_2.txt", "sum.txt"]:
        assert (remote / "out" / name).read_text() == (local / "out" / name).read_text(), name


# ------------------------------------------------------------------ the real chain, tiny synthetic scene
TINY_CONFIG = REPO / "tests" / "data" / "config_tiny.yaml"
# one tile: each per-tile rule runs once through SLURM (tests/data/config_one_tile.yaml says why)
ONE_TILE = REPO / "tests" / "data" / "config_one_tile.yaml"


def workflow_copy(dest: Path) -> Path:
    """A copy of the workflow files (and the tiny config), so that runs never touch the repository's results/."""
    return copy_workflow(dest, REPO, extra=("tests/data",))


def assert_same_raster(a: Path, b: Path) -> None:
    """Same grid, dtype, nodata and datum exactly; values equal up to float rounding (NaN where NaN)."""
    from sat2lod.io.raster import read_raster

    ra, rb = read_raster(a), read_raster(b)
    assert ra.crs == rb.crs and ra.transform == rb.transform, a.name
    assert ra.array.dtype == rb.array.dtype and ra.array.shape == rb.array.shape, a.name
    assert (ra.nodata == rb.nodata) or (np.isnan(ra.nodata) and np.isnan(rb.nodata)), a.name
    assert ra.tags.get("VERTICAL_DATUM") == rb.tags.get("VERTICAL_DATUM"), a.name
    if np.issubdtype(ra.array.dtype, np.floating):
        np.testing.assert_allclose(ra.array, rb.array, rtol=0, atol=1e-4, equal_nan=True, err_msg=str(a))
    else:
        np.testing.assert_array_equal(ra.array, rb.array, err_msg=str(a))


def chain_run(tmp: Path) -> tuple[Path, Path, str, dict[str, dict[str, str]]]:
    """The run phase of the chain test, in the background from the session's start (tests/background.py):
    the chain locally and through profiles/slurm. Returns the two run folders, the SLURM run's log and the
    squeue rows of its jobs (read right after the run)."""
    partition = require_slurm()
    if not TINY_CONFIG.is_file():
        pytest.fail(f"{TINY_CONFIG} missing: the tiny synthetic configuration of the workflow tests")
    local = workflow_copy(tmp / "local")
    remote = workflow_copy(tmp / "slurm")
    config = ["--configfile", *(str(p.relative_to(REPO)) for p in (TINY_CONFIG, ONE_TILE))]
    # the local reference run goes on while the SLURM run mostly waits on the scheduler
    local_run = Background(["--cores", "2", *config], cwd=local, timeout_s=1500)
    log = run_snakemake(
        ["--profile", "profiles/slurm", *FAST_POLL, *config],
        cwd=remote,
        timeout_s=1500,
        env=slurm_env(partition),
    )
    local_run.wait()
    return local, remote, log, squeue_jobs([j for _, j, _ in submitted_jobs(log)])


@pytest.mark.slow
@pytest.mark.background("chain_run")  # mostly waits on the scheduler: runs while the rest of the suite does
def test_tiny_sat2lod_chain_through_slurm_matches_local(background_run: tuple) -> None:
    local, remote, log, info = background_run
    # inside each SLURM job, sat2lod.workflow.setup() saw the rule's threads (numba/torch/GDAL caps)
    tile_logs = list((remote / "logs" / "stereo_tile").rglob("*.log"))
    assert tile_logs and all("threads=2" in p.read_text() for p in tile_logs)

    # every job of the chain, except the local `all`, was an sbatch job that completed
    jobs = submitted_jobs(log)
    rules = {re.search(r"rule_(\w+)", str(p))[1] for _, _, p in jobs}
    assert {"synth_city", "stereo_tile", "mosaic_dsm", "dtm", "lod2", "qualify"} <= rules, rules
    assert {j for _, j, _ in jobs} == set(info)
    assert all(row["state"] == "COMPLETED" for row in info.values()), info
    for _, jid, slurm_log in jobs:
        assert slurm_log.is_file() and slurm_log.name == f"{jid}.log"
    stereo = [jid for _, jid, p in jobs if "rule_stereo_tile" in str(p)]
    assert stereo and all(info[j]["cpus"] == "2" for j in stereo), "stereo_tile asks threads: 2"

    # same products as the local run, bit for bit (what records the run itself aside: sat2lod.io.digest)
    res_l, res_s = local / "results", remote / "results"
    dig_l, dig_s = comparable(product_digests(res_l)), comparable(product_digests(res_s))
    assert dig_l.keys() == dig_s.keys(), sorted(dig_l.keys() ^ dig_s.keys())
    assert not [k for k in dig_l if dig_l[k] != dig_s[k]], [k for k in dig_l if dig_l[k] != dig_s[k]]
    rasters = sorted(p.relative_to(res_l) for p in res_l.rglob("*.tif") if not p.name.startswith("."))
    assert any(str(r).startswith("mosaic/") for r in rasters), rasters
    for rel in rasters:
        assert (res_s / rel).is_file(), f"missing from the SLURM run: {rel}"
        assert_same_raster(res_l / rel, res_s / rel)
    for rel in [p.relative_to(res_l) for p in res_l.rglob("city.json")]:
        a, b = (json.loads((r / rel).read_text()) for r in (res_l, res_s))
        assert a["vertices"] == b["vertices"] and a["CityObjects"].keys() == b["CityObjects"].keys(), rel
    acc_l = json.loads(next(res_l.glob("qualify/*/accuracy.json")).read_text())
    acc_s = json.loads(next(res_s.glob("qualify/*/accuracy.json")).read_text())
    assert acc_l == acc_s
