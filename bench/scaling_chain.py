"""Benchmark: the whole chain on synthetic cities of growing size, per-rule peak RSS and CPU per km² (issue 16).

For each side length (``--sizes``, metres) the workflow is copied to ``bench/out/scaling_chain/<name>/<size>/`` and run
with ``snakemake --cores 2`` on the demo configuration (config/config.yaml: 3 views, 300 m tiles, 0.5 m) with
``source.synthetic.size_m`` set to the size and the demo's building density (100 buildings per 0.36 km²; the
schema's default caps the count at 150, which would make the larger cities sparser). The segmentation takes
the shipped default model: no training in the timing. The city is made by rule ``synth_city`` (whole-area
arrays: it is the benchmark's scene generator, excluded from the targets). The worktree's numba caches are
copied into each run's copy of the package (``warm_numba_cache``): the timing is that of an installed package's
run, not of the kernels' first compilation.

Each job is measured exactly, not sampled: the run's Snakefile is a two-line wrapper that sets Snakemake's
``shell.prefix`` to ``/usr/bin/time -a -o <run>/job_times.txt``, so every rule's script process runs under GNU
time, which records the kernel's high-water RSS (``%M``) and CPU time of that process when it exits (see
``bench/measure.py`` for why GNU time and not ``wait4`` from a big parent). A script's temporary copy is named
``tmp<random>.<rule>.py`` by Snakemake, which gives the rule. Per rule: peak RSS = max over its jobs, CPU =
sum over its jobs; wall = the whole ``snakemake`` command.

Usage:  python bench/scaling_chain.py [--sizes 600 1200 2400 4800] [--name scaling_chain]
                                     [--reuse-synth bench/out/scaling_chain/scaling_chain]   # keep the cities
        python bench/scaling_chain.py --collect bench/out/scaling_chain/scaling_chain   # re-read finished runs
        -> bench/results/<name>.json ({"sizes_m", "km2", "rules": {rule: {"peak_rss_mb", "cpu_s_per_km2", ...}},
           "wall_s", ...}) + bench/results/<name>.md
Targets (issue 16): for every rule but synth_city, peak RSS at the largest size <= 1.3 x the smallest and
<= 2 GB; CPU-s per km² within +-30 % across sizes; whole chain <= 100 CPU-s per km².
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from measure import cpu_model

from sat2lod.io.workdir import copy_workflow

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out" / "scaling_chain"
RESULTS = REPO / "bench" / "results"
TIMES = "job_times.txt"
#: GNU time's line per job: peak RSS (KB), user and system CPU (s), wall (s), the command
TIME_FORMAT = "%M %U %S %e %C"
_LINE = re.compile(r"^(\d+) ([\d.]+) ([\d.]+) ([\d.]+) .*tmp[^/ ]*\.(\w+)\.py")
#: rule left out of the targets: the scene generator of the benchmark
NOT_TARGETED = ("synth_city",)
#: tile side of the runs without --tile-m (and of the runs recorded before tile_m was): the demo config's
DEMO_TILE_M = float(yaml.safe_load((REPO / "config" / "config.yaml").read_text())["tiling"]["tile_size_m"])


def run_config(size_m: float, tile_m: float | None = None) -> dict:
    """Config merged over the demo's for a city of ``size_m`` a side (the demo's building density); tiles of
    ``tile_m`` (None: the demo's, :data:`DEMO_TILE_M`)."""
    km2 = (size_m / 1000) ** 2
    config = {
        "aoi": {"name": f"city{int(size_m)}"},
        "source": {"synthetic": {"size_m": float(size_m), "n_buildings": round(100 * km2 / 0.36)}},
    }
    if tile_m is not None:
        config["tiling"] = {"tile_size_m": float(tile_m)}
    return config


def warm_numba_cache(src: Path) -> int:
    """Copy the worktree's numba caches (``__pycache__/*.nbi|nbc``) into the run's copy of the package.

    ``copy_workflow`` leaves ``__pycache__`` out, so without this the first job of each rule compiles its numba
    kernels (one stereo_tile job took 70-83 CPU-s against 7-9 for the others): a cost of the first run after an
    install, not of the area. numba keys a cache entry on the source file's mtime and size, which ``copy2`` keeps;
    a kernel missing from the worktree's cache still compiles in the run, and shows as an outlier job.
    Returns the number of files copied.
    """
    n = 0
    for f in (REPO / "src").rglob("__pycache__/*.nb[ic]"):
        target = src / f.relative_to(REPO / "src")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
        n += 1
    return n


#: what rule synth_city leaves in a run directory (its outputs, benchmark table and log: Snakemake reruns a job one
#: of whose outputs, the benchmark table included, is missing)
SYNTH_PATHS = ("results/synth", "benchmarks/synth_city", "logs/synth_city")


def reuse_synth(dest: Path, previous: Path) -> None:
    """Take the synthetic city of an earlier run of the same size (``previous``: its run directory, or a copy
    of its :data:`SYNTH_PATHS`, config and GNU time lines) instead of making it again: its files and its
    synth_city line of GNU time (the generator's cost stays in the table, marked reused in run.json). The
    generator is seeded: the same config gives the same city, and ``synth_city`` is not a target (it took 53 of
    the 70 min of the 4.8 km run)."""
    lines = [ln for ln in (previous / TIMES).read_text().splitlines() if ln.endswith(".synth_city.py")]
    if not all((previous / p).is_dir() for p in SYNTH_PATHS) or len(lines) != 1:
        raise SystemExit(
            f"--reuse-synth: no finished synth_city in {previous} ({', '.join(SYNTH_PATHS)}, {TIMES})"
        )
    prev_cfg = yaml.safe_load((previous / "config" / "extra.yaml").read_text())
    new_cfg = yaml.safe_load((dest / "config" / "extra.yaml").read_text())
    if prev_cfg.get("source") != new_cfg.get("source") or prev_cfg.get("aoi") != new_cfg.get("aoi"):
        raise SystemExit(f"--reuse-synth: {previous} made another city ({prev_cfg} vs {new_cfg})")
    for p in SYNTH_PATHS:
        (dest / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(previous / p, dest / p)
    (dest / TIMES).write_text(lines[0] + "\n")


def run_one(
    size_m: float, cores: int, out: Path, tile_m: float | None = None, synth_from: Path | None = None
) -> Path:
    """Run the chain for one size in a fresh copy of the workflow under ``out``; return the run directory.
    ``synth_from``: a folder of earlier runs (``<size>/`` in it) whose synthetic city is reused, when it has
    this size's."""
    dest = out / str(int(size_m))
    previous = None
    old = None if synth_from is None else synth_from / str(int(size_m))
    if old is not None and all((old / p).is_dir() for p in SYNTH_PATHS):
        # moved aside first: the fresh copy below replaces dest, which may be that very folder
        previous = out / f".previous_{int(size_m)}"
        shutil.rmtree(previous, ignore_errors=True)
        for p in (*SYNTH_PATHS, "config"):
            shutil.copytree(old / p, previous / p)
        shutil.copy2(old / TIMES, previous / TIMES)
    # the package too: the run imports this copy, not the worktree that may change while it runs
    copy_workflow(dest, REPO, extra=("src",), replace=True)
    warm_numba_cache(dest / "src")
    (dest / "config" / "extra.yaml").write_text(yaml.safe_dump(run_config(size_m, tile_m)))
    if previous is not None:
        reuse_synth(dest, previous)
        shutil.rmtree(previous)
    # every job's script runs as "/usr/bin/time ... python tmpXXXX.<rule>.py" (Snakemake's shell prefix)
    (dest / "measured.smk").write_text(
        f"shell.prefix(\"set -euo pipefail; /usr/bin/time -a -o {dest / TIMES} -f '{TIME_FORMAT}' \")\n\n\n"
        'include: "Snakefile"\n'
    )
    # target "all" named: a rule of an included Snakefile is not the default target of the wrapper
    cmd = [sys.executable, "-m", "snakemake", "all", "--snakefile", "measured.smk", "--cores", str(cores)]
    cmd += ["--configfile", "config/extra.yaml"]
    load1 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with (dest / "snakemake.log").open("w") as log:
        subprocess.run(
            cmd, cwd=dest, check=True, stdout=log, stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=str(dest / "src")),
        )  # fmt: skip
    wall = time.perf_counter() - t0
    (dest / "run.json").write_text(
        json.dumps(
            {
                "size_m": size_m,
                "wall_s": round(wall, 1),
                "load1": load1,
                "cores": cores,
                "tile_m": tile_m or DEMO_TILE_M,
                "synth_reused": previous is not None,
            }
        )
    )
    return dest


def job_times(run_dir: Path) -> dict[str, dict]:
    """Per rule: number of jobs, peak RSS (MB, max over jobs), CPU (s, sum over jobs), from GNU time's lines."""
    rules: dict[str, dict] = {}
    for line in (run_dir / TIMES).read_text().splitlines():
        m = _LINE.match(line)
        if not m:  # "Command exited with non-zero status", or a command that is not a rule's script
            continue
        kb, user, system, _, rule = m.groups()
        r = rules.setdefault(rule, {"jobs": 0, "peak_rss_mb": 0.0, "cpu_s": 0.0})
        r["jobs"] += 1
        r["peak_rss_mb"] = max(r["peak_rss_mb"], round(int(kb) / 1024, 1))
        r["cpu_s"] = round(r["cpu_s"] + float(user) + float(system), 2)
    return rules


def collect(run_dirs: list[Path], command: str) -> dict:
    """The results dict over finished run directories (sorted by size)."""
    runs = sorted(
        ((json.loads((d / "run.json").read_text()), job_times(d)) for d in run_dirs),
        key=lambda r: r[0]["size_m"],
    )
    sizes = [r["size_m"] for r, _ in runs]
    km2 = [round((s / 1000) ** 2, 4) for s in sizes]
    names = sorted({rule for _, t in runs for rule in t})
    rules = {}
    for rule in names:
        per = [t.get(rule, {"jobs": 0, "peak_rss_mb": None, "cpu_s": None}) for _, t in runs]
        rules[rule] = {
            "jobs": [p["jobs"] for p in per],
            "peak_rss_mb": [p["peak_rss_mb"] for p in per],
            "cpu_s": [p["cpu_s"] for p in per],
            "cpu_s_per_km2": [
                None if p["cpu_s"] is None else round(p["cpu_s"] / a, 1) for p, a in zip(per, km2)
            ],
        }
    total_cpu = [round(sum(t[r]["cpu_s"] for r in t if r not in NOT_TARGETED), 1) for _, t in runs]
    result = {
        "command": command,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"cpus": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version()},
        "cores": runs[0][0]["cores"],
        "tile_m": runs[0][0].get("tile_m", DEMO_TILE_M),
        "sizes_m": sizes,
        "km2": km2,
        "rules": rules,
        "wall_s": [r["wall_s"] for r, _ in runs],
        "load1_before": [round(r["load1"], 2) for r, _ in runs],
        "chain_cpu_s_per_km2": [round(c / a, 1) for c, a in zip(total_cpu, km2)],
    }
    result["targets"] = targets(result)
    return result


def targets(res: dict) -> dict:
    """Issue 16's targets over the measured sizes (largest vs smallest)."""
    out = {}
    for rule, r in res["rules"].items():
        rss, cpu = r["peak_rss_mb"], r["cpu_s_per_km2"]
        if rule in NOT_TARGETED or None in rss or len(rss) < 2:
            continue
        spread = max(cpu) / min(cpu) if min(cpu) > 0 else float("inf")
        mean = sum(cpu) / len(cpu)
        dev = max(abs(c / mean - 1) for c in cpu) if mean > 0 else float("inf")
        out[rule] = {
            "rss_ratio_largest_vs_smallest": round(rss[-1] / rss[0], 2),
            "rss_flat": rss[-1] <= 1.3 * rss[0] and rss[-1] <= 2048,
            "cpu_per_km2_max_over_min": round(spread, 2),
            # the two readings of "within +-30 % across sizes": every size within 30 % of the sizes' mean, and
            # the strict one, largest / smallest <= 1.3
            "cpu_per_km2_max_dev_from_mean": round(dev, 2),
            "cpu_within_30pct_of_mean": dev <= 0.3,
            "cpu_max_over_min_le_1_3": spread <= 1.3,
        }
    out["chain_cpu_s_per_km2_le_100"] = all(c <= 100 for c in res["chain_cpu_s_per_km2"])
    return out


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.0%}"


def write(res: dict, name: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    sizes = " → ".join(f"{s / 1000:g} km" for s in res["sizes_m"])
    lines = [
        f"# Whole chain vs city size, {res['date']}",
        "",
        (
            f"Synthetic cities {sizes} a side (demo config, tiles of {res['tile_m']:g} m, 100 buildings "
            "per 0.36 km², shipped model), "
            f"`snakemake --cores {res['cores']}` on a shared {res['host']['cpus']}-CPU machine"
            f"{' (' + res['host']['cpu'] + ')' if res['host'].get('cpu') else ''} (load1 before each run: "
            f"{res['load1_before']}). Peak RSS and CPU of every job by GNU time (max RSS / summed CPU over "
            f"the rule's jobs)."
        ),
        f"Command: `{res['command']}`",
        "",
        (
            f"| rule | jobs | peak RSS (MB) {sizes} | CPU-s / km² {sizes} | RSS ratio | flat (≤ 1.3×, ≤ 2 GB) | "
            "CPU/km² largest dev. from mean (≤ 30 %) | CPU/km² max / min (≤ 1.3) |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for rule, r in res["rules"].items():
        t = res["targets"].get(rule, {})
        lines.append(
            f"| {rule} | {' / '.join(map(str, r['jobs']))} | {' → '.join(map(str, r['peak_rss_mb']))} | "
            f"{' → '.join(map(str, r['cpu_s_per_km2']))} | {t.get('rss_ratio_largest_vs_smallest', '–')} | "
            f"{t.get('rss_flat', '–')} | {_pct(t.get('cpu_per_km2_max_dev_from_mean'))} | "
            f"{t.get('cpu_per_km2_max_over_min', '–')} |"
        )
    lines += [
        "",
        f"- wall (s): {res['wall_s']}",
        f"- chain CPU-s per km² (all rules but synth_city): {res['chain_cpu_s_per_km2']}",
    ]
    tg = {r: t for r, t in res["targets"].items() if isinstance(t, dict)}
    for key, text in (
        ("rss_flat", "peak RSS flat (≤ 1.3×, ≤ 2 GB)"),
        ("cpu_within_30pct_of_mean", "CPU-s per km² within 30 % of the sizes' mean"),
        ("cpu_max_over_min_le_1_3", "CPU-s per km² largest / smallest ≤ 1.3"),
    ):
        miss = [r for r, t in tg.items() if not t.get(key)]
        lines.append(f"- {text}: {len(tg) - len(miss)} of {len(tg)} rules; not: {', '.join(miss) or 'none'}")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[600, 1200, 2400, 4800], help="city sides (m)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--tile-m", type=float, help="tiling.tile_size_m (default: the demo config's)")
    ap.add_argument("--name", default="scaling_chain", help="results file stem under bench/results/")
    ap.add_argument("--collect", type=Path, help="only re-read the finished runs under this folder")
    ap.add_argument(
        "--reuse-synth",
        type=Path,
        help="folder of earlier runs (e.g. bench/out/scaling_chain/scaling_chain): a size found there takes its "
        "synthetic city (and that generator's measured cost) instead of making it again",
    )
    args = ap.parse_args()
    command = "python bench/scaling_chain.py " + " ".join(sys.argv[1:])
    if args.collect:
        dirs = [d for d in sorted(args.collect.iterdir()) if (d / "run.json").exists()]
    else:
        dirs = []
        for s in args.sizes:
            dirs.append(run_one(s, args.cores, OUT / args.name, args.tile_m, args.reuse_synth))
            print(f"{s:g} m done: {json.loads((dirs[-1] / 'run.json').read_text())}", flush=True)
    write(collect(dirs, command), args.name)


if __name__ == "__main__":
    main()
