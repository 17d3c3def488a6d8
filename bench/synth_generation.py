"""Benchmark: synthetic city generation time and peak memory at demo size (target < 60 s on 2 cores).

Usage: python bench/synth_generation.py [--size-m 600] [--n-views 3] [--out bench/results/synth_generation.json]
Runs the generator twice (the first run includes numba compilation when the cache is cold) and records both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from sat2lod.synth import generate_city


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-m", type=float, default=600.0)
    ap.add_argument("--n-views", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="bench/results/synth_generation.json")
    args = ap.parse_args()
    runs = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            meta = generate_city(tmp, seed=args.seed, size_m=args.size_m, n_views=args.n_views)
            runs.append(time.perf_counter() - t0)
    res = {
        "size_m": args.size_m,
        "n_views": args.n_views,
        "seed": args.seed,
        "view_px": [[v["rows"], v["cols"]] for v in meta["views"]],
        "n_buildings": meta["n_buildings"],
        "rpc_residual_max_px": max(v["rpc_residual_max_px"] for v in meta["views"]),
        "wall_s_first_run": runs[0],
        "wall_s_warm": runs[1],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cpus": os.cpu_count(),
        "load_avg_1min_at_end": os.getloadavg()[0],
        "machine": platform.machine(),
        "target": "generation < 60 s on 2 cores",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
