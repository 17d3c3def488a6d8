"""Benchmark: the embedded demo end to end (snakemake --cores all on config/config.yaml).

Usage:
    python bench/demo_run.py                      # copy the workflow to a temp dir, run it, collect
    python bench/demo_run.py --collect RUN_DIR    # only collect figures from an existing run directory
    python bench/demo_run.py --configfile bench/second_city.yaml --out bench/results/second_city.json
                                                  # another synthetic city (config merged over the demo's)
Writes bench/results/demo_run.json and .md: wall time, peak RSS of the largest job, per-rule wall time
and max RSS (Snakemake benchmark files), and the accuracy summary of rule qualify (targets in the .md).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sat2lod.io.workdir import copy_workflow

REPO = Path(__file__).resolve().parents[1]


def run(dest: Path, configfile: Path | None = None) -> float:
    copy_workflow(dest, REPO, replace=True)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "all"]
    if configfile is not None:
        (dest / "config" / "extra.yaml").write_text(configfile.read_text())
        cmd += ["--configfile", "config/extra.yaml"]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=dest, check=True)
    return time.perf_counter() - t0


def collect(run_dir: Path, wall_s: float | None, peak_rss_mb: float | None) -> dict:
    rules = {}
    for tsv in sorted((run_dir / "benchmarks").rglob("*.tsv")):
        with tsv.open() as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        rule = tsv.relative_to(run_dir / "benchmarks").parts[0]
        r = rules.setdefault(rule, {"jobs": 0, "wall_s": 0.0, "max_rss_mb": 0.0})
        r["jobs"] += 1
        r["wall_s"] += float(row["s"])
        r["max_rss_mb"] = max(r["max_rss_mb"], float(row["max_rss"]))
    acc = json.loads(next((run_dir / "results" / "qualify").glob("*/accuracy.json")).read_text())
    return {
        "wall_s": wall_s,
        "peak_rss_mb_largest_job": peak_rss_mb or max(r["max_rss_mb"] for r in rules.values()),
        "rules": rules,
        "accuracy": acc,
        "load_avg_1min": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--collect", type=Path, default=None)
    ap.add_argument("--wall-s", type=float, default=None, help="wall time of the collected run, if measured")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "demo_run.json")
    ap.add_argument("--configfile", type=Path, default=None, help="config merged over config/config.yaml")
    args = ap.parse_args()
    if args.collect:
        res = collect(args.collect, args.wall_s, None)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            wall = run(Path(tmp), args.configfile)
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            res = collect(Path(tmp), wall, rss)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    title = "config/config.yaml" + (f" + {args.configfile}" if args.configfile else "")
    lines = [
        f"# Demo run ({title})",
        "",
        (
            f"wall time: {res['wall_s']} s; largest job peak RSS: "
            f"{res['peak_rss_mb_largest_job']:.0f} MB; {res['cpus']} CPUs"
        ),
        "",
        "| rule | jobs | wall s | max RSS MB |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {k} | {v['jobs']} | {v['wall_s']:.1f} | {v['max_rss_mb']:.0f} |" for k, v in res["rules"].items()
    ]
    lines += ["", "| target (rule qualify) | value | target | met |", "|---|---|---|---|"]
    lines += [
        f"| {k} | {v['value']} | {v['target']} | {v['met']} |" for k, v in res["accuracy"]["targets"].items()
    ]
    b = res["accuracy"].get("buildings", {})
    if b:
        fp, l2 = b.get("footprints", {}), b.get("lod2", {})
        lines += [
            "",
            (
                f"buildings: {fp.get('n_matched')} of {fp.get('n_ref')} reference buildings matched "
                f"({fp.get('n_pred')} predicted); roof type right for {l2.get('roof_type_recall')} of all "
                "reference buildings (the targets above are over the matched ones)"
            ),
        ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
