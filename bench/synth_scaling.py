"""Benchmark: peak memory and CPU of the synthetic city generator against the city's size (issue 16).

Cities up to ``sat2lod.synth.blocked.WHOLE_GRID_MAX_M`` a side are rendered on one fine grid (~30 bytes per
0.25 m cell); larger ones block by block (sat2lod.synth.blocked), with memory bounded by the block. Each size
runs ``sat2lod synth`` in its own process under GNU time (bench/measure.py); buildings scale with the area
(100 per 0.36 km², the demo's density) unless --n-buildings is given.

Usage: python bench/synth_scaling.py [--sizes 600 1200 2400] [--n-views 2] [--name synth_scaling]
Writes bench/results/<name>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

from sat2lod.synth.blocked import BLOCK_PX, WHOLE_GRID_MAX_M

sys.path.insert(0, str(Path(__file__).parent))
from measure import REPO, run_measured


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=float, nargs="+", default=[600.0, 1200.0, 2400.0])
    ap.add_argument("--n-views", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--n-buildings", type=int, default=None, help="default: 100 per 0.36 km2")
    ap.add_argument("--name", default="synth_scaling")
    args = ap.parse_args()
    rows = []
    for size in args.sizes:
        n_b = args.n_buildings or round(100 * size * size / 360_000.0)
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "sat2lod.cli", "synth", "--out", tmp, "--seed", str(args.seed)]
            cmd += ["--size-m", str(size), "--n-views", str(args.n_views), "--n-buildings", str(n_b)]
            m = run_measured(cmd)
            meta = json.loads((Path(tmp) / "scene.json").read_text())
        km2 = (size / 1000.0) ** 2
        rows.append(
            {
                "size_m": size,
                "km2": km2,
                "path": "blocks" if size > WHOLE_GRID_MAX_M else "whole grid",
                "n_buildings": meta["n_buildings"],
                "view_px": [[v["rows"], v["cols"]] for v in meta["views"]],
                **m,
                "cpu_s_per_km2": round(m["cpu_s"] / km2, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    res = {
        "command": "python bench/synth_scaling.py " + " ".join(sys.argv[1:]),
        "whole_grid_max_m": WHOLE_GRID_MAX_M,
        "block_px": BLOCK_PX,
        "n_views": args.n_views,
        "seed": args.seed,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "runs": rows,
    }
    out = REPO / "bench" / "results" / args.name
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [
        "# Synthetic city generation against size (issue 16)",
        "",
        f"- command: `{res['command']}`; {res['machine']}; peak RSS and CPU by GNU time (bench/measure.py)",
        f"- cities up to {WHOLE_GRID_MAX_M:.0f} m a side: one fine grid; larger: blocks of {BLOCK_PX} px",
        "",
        "| side (m) | km² | path | buildings | view px | peak RSS (MB) | CPU-s | CPU-s/km² | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size_m']:.0f} | {r['km2']:.2f} | {r['path']} | {r['n_buildings']} | "
            f"{r['view_px'][0][0]} x {r['view_px'][0][1]} | {r['peak_rss_mb']:.0f} | {r['cpu_s']:.0f} | "
            f"{r['cpu_s_per_km2']:.0f} | {r['wall_s']:.0f} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
