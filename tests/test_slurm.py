"""profiles/slurm against a real SLURM cluster (tests/cluster/start_local_slurm.sh starts one on localhost).

Each test runs a workflow twice, locally and through `--profile profiles/slurm`, then checks that
(1) every job went through sbatch: job ids in snakemake's log, one SLURM log file per job, the jobs known
to squeue as COMPLETED under the run's name, with the CPUs / memory / time limit the rules asked for, and
the job's own environment saw that SLURM_JOB_ID; (2) the outputs equal those of the local run.

Skipped, with the reason, when no SLURM cluster answers. Every snakemake run is bounded with
`timeout -s INT` (the slurm plugin ignores SIGTERM; SIGINT makes it scancel its jobs and exit).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
        out = subprocess.run(["sinfo", "-h", "-o", "%P|%a|%t"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        return None
    for line in out.stdout.splitlines():
        part, avail, state = line.split("|")
        if avail == "up" and state.rstrip("*~#") in {"idle", "mix", "alloc"}:
            return part.rstrip("*")
    return None


@pytest.fixture(scope="module")
def slurm_partition() -> str:
    part = _slurm_partition()
    if part is None:
        pytest.skip(
            "no SLURM cluster answers (sinfo/sbatch missing or no idle node): start one with "
            "`sudo tests/cluster/start_local_slurm.sh` before pytest, stop it with tests/cluster/stop_local_slurm.sh"
        )
    return part


def run_snakemake(args: list[str], cwd: Path, timeout_s: int, env: dict[str, str] | None = None) -> str:
    """Run snakemake in ``cwd`` bounded by ``timeout -s INT``; return its combined output, fail with it."""
    cmd = ["timeout", "-s", "INT", "-k", "60", str(timeout_s), sys.executable, "-m", "snakemake", *args]
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(f"snakemake exited {proc.returncode} ({' '.join(cmd)}):\n{out[-6000:]}")
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
        capture_output=True, text=True, check=True, timeout=30,
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
        [*common, "--profile", str(PROFILE), *FAST_POLL], cwd=remote, timeout_s=300,
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
    seen = {re.search(r"SLURM_JOB_ID=(\S+)", (remote / "logs" / "part" / f"{i}.log").read_text())[1] for i in range(3)}
    assert seen == set(part_jobs)
    assert "SLURM_CPUS_PER_TASK=2" in (remote / "logs" / "part" / "0.log").read_text()
    # and without SLURM nothing of the kind
    assert "SLURM_JOB_ID=none" in (local / "logs" / "part" / "0.log").read_text()

    for name in ["part_0.txt", "part_1.txt", "part_2.txt", "sum.txt"]:
        assert (remote / "out" / name).read_text() == (local / "out" / name).read_text(), name
