"""Benchmark: the embedded demo end to end (snakemake --cores all on config/config.yaml).

Usage:
    python bench/demo_run.py                      # copy the workflow to a temp dir, run it, collect
    python bench/demo_run.py --collect RUN_DIR    # only collect figures from an existing run directory
    python bench/demo_run.py --configfile bench/second_city.yaml --out bench/results/second_city.json
                                                  # another synthetic city (config merged over the demo's)
    python bench/demo_run.py --check              # run on a fresh copy and compare with the committed results:
                                                  # exit 1 unless the products and the figures are the same
Writes bench/results/demo_run.json and .md: wall time and CPU time of the whole process tree, peak RSS of the
largest job, per-rule wall time and max RSS (Snakemake benchmark files), the accuracy summary of rule qualify
(targets in the .md), the building mask's IoU against the synthetic truth's building class (issue 15: >= 0.90 on
the demo), and the content digest of every product (sat2lod.io.digest), so that a fresh clone can check it makes
the same products and figures bit for bit.
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

from sat2lod.io.digest import comparable, product_digests
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


def mask_iou(run_dir: Path) -> float | None:
    """IoU of the chain's building mask (building_mask.tif == 1) with the truth's building class (classes.tif of
    the synthetic city), over the cells of both; None without a synthetic truth."""
    import rasterio

    from sat2lod.synth.scene import BUILDING

    truth = next((run_dir / "results" / "synth").glob("*/truth/classes.tif"), None)
    if truth is None:
        return None
    mask = run_dir / "results" / "segment" / truth.parents[1].name / "building_mask.tif"
    with rasterio.open(truth) as t, rasterio.open(mask) as m:
        tb, mb = t.read(1) == BUILDING, m.read(1) == 1
    return round(float((tb & mb).sum() / max(int((tb | mb).sum()), 1)), 4)


def collect(
    run_dir: Path, wall_s: float | None, peak_rss_mb: float | None, cpu_s: float | None = None
) -> dict:
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
    digests = product_digests(run_dir / "results")
    return {
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "peak_rss_mb_largest_job": peak_rss_mb or max(r["max_rss_mb"] for r in rules.values()),
        "rules": rules,
        "accuracy": acc,
        "mask_iou": mask_iou(run_dir),
        "load_avg_1min": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "product_digests": digests,
    }


def check(new: dict, committed: dict, path: Path) -> int:
    """0 when ``new`` has the products and the qualify figures of ``committed``; else 1, listing the differences."""
    # the run records (local server port, measured times) differ between runs by nature: not compared
    old_d, new_d = comparable(committed.get("product_digests", {})), comparable(new["product_digests"])
    differ = sorted(k for k in old_d.keys() | new_d.keys() if old_d.get(k) != new_d.get(k))
    same_acc = new["accuracy"] == committed["accuracy"] and new.get("mask_iou") == committed.get("mask_iou")
    print(f"products compared with {path}: {len(new_d)} files, {len(differ)} differ: {differ}")
    print(f"qualify figures {'identical' if same_acc else 'DIFFERENT'} to the committed ones")
    return 0 if not differ and same_acc else 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--collect", type=Path, default=None)
    ap.add_argument("--wall-s", type=float, default=None, help="wall time of the collected run, if measured")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "demo_run.json")
    ap.add_argument("--configfile", type=Path, default=None, help="config merged over config/config.yaml")
    ap.add_argument(
        "--check", action="store_true", help="compare with --out instead of writing it; exit 1 when different"
    )
    args = ap.parse_args()
    if args.collect:
        res = collect(args.collect, args.wall_s, None)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            wall = run(Path(tmp), args.configfile)
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)
            # every job is a child process that Snakemake waited for: their CPU is in RUSAGE_CHILDREN
            res = collect(Path(tmp), wall, ru.ru_maxrss / 1024, ru.ru_utime + ru.ru_stime)
    if args.check:
        raise SystemExit(check(res, json.loads(args.out.read_text()), args.out))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    title = "config/config.yaml" + (f" + {args.configfile}" if args.configfile else "")
    lines = [
        f"# Demo run ({title})",
        "",
        (
            f"wall time: {res['wall_s']} s; CPU time (all jobs): {res.get('cpu_s')} s; largest job peak RSS: "
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
    if res.get("mask_iou") is not None:
        lines += [
            "",
            f"building mask IoU against the truth's building class: {res['mask_iou']} (issue 15: >= 0.90)",
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
