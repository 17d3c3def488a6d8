"""Benchmark: the fixed cost of one ``stereo_tile`` job (issue 17: "the ~2 s start-up of each tile job"),
before and after a change, in one run.

A tiny synthetic scene (tests/data/config_tiny.yaml: 100 m, 2 views, 60 m tiles) is run by Snakemake up to
one stereo tile, keeping the script Snakemake generates for the job (``--skip-script-cleanup``: the pickled
``snakemake`` object + scripts/stereo_tile.py). That script is then rerun as its own process, as Snakemake runs
it, with the package source of each variant first on ``PYTHONPATH``:

- ``base``: ``git archive <--base>`` of ``src/`` (default: the commit before the start-up changes);
- ``new``: the working tree's ``src/``.

Both are fresh copies (no ``__pycache__``), so each variant's first job compiles every numba kernel
(``cold``: the first tile job after an install or an edit of a kernel); the next ``--repeat`` jobs, interleaved
between the variants, load them from numba's cache (``warm``: every other tile job). CPU is user + sys of the
job process (its numba threads included) and peak RSS by GNU time, min over the runs. Besides the job:

- ``imports``: the CPU of ``python -c <statement>`` for the import sets a job pays before its first pixel
  (the interpreter alone, numpy, numba, rasterio, scipy.ndimage, the schema defaults, the stereo pipeline);
- ``numba``: in one warm job, numba's own cost: kernels loaded from the cache and compiled in the job
  (0 when every kernel dispatched is a cache hit; a kernel without ``cache=True`` would count here), the CPU of the first dispatch (numba's target initialisation) and of all dispatches, and where in the
  job (process CPU) the first kernel is called: the fixed cost before the first pixel.

The two variants' tile DSM and quality layers are compared byte for byte.

Usage:  python bench/tile_startup.py [--base REV] [--repeat 3] [--render (only rewrite the .md from the .json)]
        -> bench/results/tile_startup.json + bench/results/tile_startup.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
CONFIG = "tests/data/config_tiny.yaml"
JOB = "results/stereo/tiny/j0000"  # the tiny config has one tile: one stereo job
TILE = f"{JOB}/t0000_0000"
#: the last commit before the start-up changes of issue 17 (branch s17)
DEFAULT_BASE = "497e3f5"

IMPORT_SETS = {
    "interpreter": "pass",
    "numpy": "import numpy",
    "snakemake_preamble": "import snakemake.iocontainers",
    "workflow_setup": "from sat2lod.workflow import cap_threads; cap_threads(2)",
    "numba": "import numba",
    "rasterio": "import rasterio",
    "scipy_ndimage": "import scipy.ndimage",
    "pyproj": "import pyproj",
    "schema_defaults": "from sat2lod.schema import defaults; defaults('stereo')",
    "stereo_pipeline": "import sat2lod.stereo.pipeline",
}

#: runs the job script under process-CPU probes of numba's dispatcher and cache (printed as one JSON line)
NUMBA_PROBE = r"""
import json, runpy, sys, time
import numba.core.caching as caching, numba.core.dispatcher as dispatcher
s = {"cache_loads": 0, "cache_load_cpu_s": 0.0, "compiles": 0, "dispatch_cpu_s": 0.0,
     "first_dispatch_cpu_s": None, "first_kernel_at_cpu_s": None}
load, compile_, dispatch = caching.Cache.load_overload, dispatcher.Dispatcher.compile, \
    dispatcher.Dispatcher._compile_for_args
def timed_load(self, *a, **k):
    t = time.process_time(); r = load(self, *a, **k)
    s["cache_load_cpu_s"] += time.process_time() - t; s["cache_loads"] += r is not None
    return r
def counted_compile(self, sig):  # new overloads: loaded from the cache or compiled here (cache=False too)
    n = len(self.overloads); r = compile_(self, sig); s["compiles"] += len(self.overloads) - n
    return r
def timed_dispatch(self, *a, **k):
    t = time.process_time()
    if s["first_kernel_at_cpu_s"] is None: s["first_kernel_at_cpu_s"] = t
    r = dispatch(self, *a, **k); d = time.process_time() - t; s["dispatch_cpu_s"] += d
    if s["first_dispatch_cpu_s"] is None: s["first_dispatch_cpu_s"] = d
    return r
caching.Cache.load_overload, dispatcher.Dispatcher.compile = timed_load, counted_compile
dispatcher.Dispatcher._compile_for_args = timed_dispatch
runpy.run_path(sys.argv[1], run_name="__main__")
s["job_cpu_s"] = time.process_time()
s["compiles"] -= s["cache_loads"]  # compiled in this process: not found in numba's cache
s = {k: round(v, 3) if isinstance(v, float) else v for k, v in s.items()}
sys.stderr.write("NUMBA_PROBE " + json.dumps(s) + "\n")
"""


def run_measured(cmd: list[str], src: Path, cwd: Path) -> dict:
    """Run ``cmd`` with ``src`` first on PYTHONPATH; its CPU (user + sys, s), peak RSS (MB) by GNU time
    (see bench/mosaic_memory.py for why not os.wait4), wall (s) and stderr."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as f:
        t0 = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M %U %S", "-o", f.name, *cmd],
            env=dict(os.environ, PYTHONPATH=str(src)),
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"failed ({proc.returncode}): {cmd}\n{proc.stderr[-3000:]}")
        kb, user, sys_s = f.read().split()[-3:]
    return {
        "cpu_s": round(float(user) + float(sys_s), 3),
        "peak_rss_mb": round(int(kb) / 1024, 1),
        "wall_s": round(wall, 2),
        "stderr": proc.stderr,
    }


def export_src(rev: str, dest: Path) -> str:
    """``src/`` of commit ``rev`` under ``dest``; returns the full commit id."""
    commit = subprocess.run(
        ["git", "rev-parse", rev], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    tar = subprocess.run(["git", "archive", commit, "src"], cwd=REPO, check=True, capture_output=True)
    with tarfile.open(fileobj=BytesIO(tar.stdout)) as t:
        t.extractall(dest, filter="data")
    return commit


def prepare_job(work: Path) -> Path:
    """Run the tiny scene up to one stereo tile in ``work``; the job script Snakemake generated for it."""
    from sat2lod.io.workdir import copy_workflow

    copy_workflow(work, REPO, extra=("tests/data",))
    cmd = [sys.executable, "-m", "snakemake", JOB, "--cores", "2", "--skip-script-cleanup"]
    proc = subprocess.run(
        [*cmd, "--configfile", CONFIG],
        cwd=work,
        env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
        capture_output=True,
        text=True,
        check=False,
    )
    scripts = sorted((work / ".snakemake" / "scripts").glob("*.stereo_tile.py"))
    if proc.returncode != 0 or not scripts:
        raise SystemExit(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return scripts[-1]


def digest(work: Path) -> str:
    h = hashlib.sha256()
    for name in ("dsm.tif", "quality.tif"):
        h.update((work / TILE / name).read_bytes())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=DEFAULT_BASE, help="commit of the 'base' variant (default %(default)s)")
    ap.add_argument("--repeat", type=int, default=3, help="warm jobs and import runs per variant (min taken)")
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    args = ap.parse_args()
    if args.render:
        (RESULTS / "tile_startup.md").write_text(
            markdown(json.loads((RESULTS / "tile_startup.json").read_text()))
        )
        return
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="tile_startup_") as tmp:
        tmp_path = Path(tmp)
        job = prepare_job(tmp_path / "work")
        probe = tmp_path / "numba_probe.py"
        probe.write_text(NUMBA_PROBE)
        srcs = {"base": tmp_path / "base" / "src", "new": tmp_path / "new" / "src"}
        base_commit = export_src(args.base, tmp_path / "base")
        shutil.copytree(REPO / "src", srcs["new"], ignore=shutil.ignore_patterns("__pycache__"))
        res: dict[str, dict] = {v: {"warm_runs": [], "imports": {}} for v in srcs}
        digests = {}
        for v, src in srcs.items():  # first job: the numba cache of this fresh copy is empty
            r = run_measured([py, str(job)], src, job.parent.parent.parent)
            res[v]["cold"] = {k: r[k] for k in ("cpu_s", "peak_rss_mb", "wall_s")}
            print(f"{v}: cold job {r['cpu_s']} CPU-s", flush=True)
        for _ in range(args.repeat):
            for v, src in srcs.items():
                r = run_measured([py, str(job)], src, job.parent.parent.parent)
                res[v]["warm_runs"].append({k: r[k] for k in ("cpu_s", "peak_rss_mb", "wall_s")})
                digests[v] = digest(job.parent.parent.parent)
                for name, stmt in IMPORT_SETS.items():
                    cpu = run_measured([py, "-c", stmt], src, tmp_path)["cpu_s"]
                    res[v]["imports"][name] = min(cpu, res[v]["imports"].get(name, float("inf")))
        for v, src in srcs.items():
            r = run_measured([py, str(probe), str(job)], src, job.parent.parent.parent)
            line = [ln for ln in r["stderr"].splitlines() if ln.startswith("NUMBA_PROBE ")][-1]
            res[v]["numba"] = json.loads(line.split(" ", 1)[1])
            warm = res[v]["warm_runs"]
            res[v]["warm"] = {k: min(w[k] for w in warm) for k in ("cpu_s", "peak_rss_mb", "wall_s")}
    out = {
        "what": "fixed cost of one stereo_tile job (tiny tile of tests/data/config_tiny.yaml)",
        "command": f"python bench/tile_startup.py --base {args.base} --repeat {args.repeat}",
        "base_commit": base_commit,
        "new_commit": head + (" + uncommitted changes in src/" if dirty else ""),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared: loaded by other work)",
        "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "products_bit_identical": digests["base"] == digests["new"],
        "variants": res,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tile_startup.json").write_text(json.dumps(out, indent=2) + "\n")
    (RESULTS / "tile_startup.md").write_text(markdown(out))
    print(markdown(out))


def markdown(out: dict) -> str:
    b, n = out["variants"]["base"], out["variants"]["new"]
    lines = [
        "# Fixed cost of a stereo_tile job (bench/tile_startup.py)",
        "",
        (
            f"`{out['command']}`, {out['date']}, Python {out['python']}, {out['machine']}, "
            f"load {out['load_avg_1min_at_end']}. base = `{out['base_commit'][:10]}`, "
            f"new = `{out['new_commit']}`. Tile DSM + quality bit-identical between the two: "
            f"**{out['products_bit_identical']}**."
        ),
        "",
        (
            "CPU-s = user + sys of the process (min of runs); cold = first job after a fresh copy of the "
            "source (numba compiles every kernel), warm = numba's cache hit."
        ),
        "",
        "| | base | new |",
        "|---|---|---|",
        f"| job, warm: CPU-s | {b['warm']['cpu_s']} | {n['warm']['cpu_s']} |",
        f"| job, warm: peak RSS MB | {b['warm']['peak_rss_mb']} | {n['warm']['peak_rss_mb']} |",
        f"| job, warm: wall s | {b['warm']['wall_s']} | {n['warm']['wall_s']} |",
        f"| job, cold (numba compiles): CPU-s | {b['cold']['cpu_s']} | {n['cold']['cpu_s']} |",
    ]
    for k in (
        "first_kernel_at_cpu_s",
        "first_dispatch_cpu_s",
        "dispatch_cpu_s",
        "cache_load_cpu_s",
        "cache_loads",
    ):
        lines.append(f"| numba (warm job): {k} | {b['numba'][k]} | {n['numba'][k]} |")
    lines.append(
        f"| numba (warm job): kernels compiled | {b['numba']['compiles']} | {n['numba']['compiles']} |"
    )
    for k in b["imports"]:
        lines.append(f'| `python -c "{IMPORT_SETS[k]}"` CPU-s | {b["imports"][k]} | {n["imports"][k]} |')
    nb = n["numba"]
    fixed = nb["first_kernel_at_cpu_s"] + nb["dispatch_cpu_s"]
    bare = n["imports"]["interpreter"]
    costs = ", ".join(
        f"{k} {n['imports'][k] - bare:.2f}"
        for k in IMPORT_SETS
        if k not in ("interpreter", "stereo_pipeline")
    )
    lines += [
        "",
        "Where the fixed cost of the warm job goes (new variant, the probed job):",
        "",
        (
            f"- {fixed:.2f} of its {nb['job_cpu_s']:.2f} CPU-s ({100 * fixed / nb['job_cpu_s']:.0f} %) before the "
            f"stereo work proper: {nb['first_kernel_at_cpu_s']:.2f} before the first kernel call (imports, logging, "
            f"scene sheet, RPC files), {nb['dispatch_cpu_s']:.2f} in numba's dispatches (the first alone "
            f"{nb['first_dispatch_cpu_s']:.2f}: it initialises numba's target; {nb['cache_load_cpu_s']:.2f} of the "
            f"dispatches load {nb['cache_loads']} kernels from the cache; {nb['compiles']} compiled)."
        ),
        f"- imports, CPU-s above the bare interpreter ({bare:.2f}; the sets overlap): {costs}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
