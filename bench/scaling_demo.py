"""Benchmark: intra-node parallelism and tile scaling of the workflow's tile stage (stereo per tile + mosaic).

Two measurements on synthetic scenes (the real rules, run with `snakemake` in a copy of the workflow under
bench/out/scaling/, so the repository's results/ are never touched):

1. Tiles 1 -> 4 -> 16: scenes of side 1, 2, 4 x the tile size (the grid is aligned on the output CRS, so a
   scene usually straddles one more tile per axis: the actual count is reported) (same tile size and margin, so each tile
   job does the same work). Cost per km2 of AOI = stage wall time x cores / AOI area, and CPU seconds
   of the stereo_tile jobs (from their benchmark: files) per km2. Flat = tiles scale linearly.
2. Cores: the same 4-tile stage with `--cores 1`, `--cores 2` (one tile at a time, 2 numba/GDAL threads:
   intra-job parallelism), and `--cores 2 --set-threads stereo_tile=1` (two 1-thread tiles at once:
   inter-job parallelism). Speed-up = wall(cores 1) / wall(cores 2), all three in the same script run.

The scene (synth_city, acquire, tiles) is built once per size, outside the timed part; each timed run
deletes the stereo and mosaic outputs first (`--forcerun stereo_tile`). The machine is shared: the 1-min
load average is recorded before each timed run, and each configuration can be repeated (--repeat).

Usage:  python bench/scaling_demo.py [--tile-size 50] [--n-views 2] [--sizes 1 2 4] [--repeat 1]
        -> bench/results/scaling_demo.json + bench/results/scaling_demo.md
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from sat2lod.io.workdir import copy_workflow

REPO = Path(__file__).resolve().parents[1]


def workflow_copy(dest: Path) -> Path:
    return copy_workflow(dest, REPO, replace=True)


def write_config(workdir: Path, size_m: float, tile_m: float, n_views: int) -> Path:
    """The demo configuration (config/config.yaml) with the scene size, tile size and view count changed."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["aoi"]["name"] = "scaling"
    cfg["source"]["synthetic"]["size_m"] = float(size_m)
    cfg["source"]["synthetic"]["n_views"] = int(n_views)
    cfg["tiling"]["tile_size_m"] = float(tile_m)
    path = workdir / "config" / "scaling.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def snakemake(workdir: Path, args: list[str], timeout_s: int = 3600) -> tuple[float, float]:
    """Run snakemake in ``workdir``; return (wall s, CPU s of snakemake and all its jobs).

    The CPU time is exact (getrusage of the waited-for process tree), unlike the benchmark: files, which
    sample each job once per second; it is also what a shared machine's load does not inflate.
    """
    cmd = ["timeout", "-s", "INT", str(timeout_s), sys.executable, "-m", "snakemake", *args]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(
            f"snakemake failed in {workdir}: {' '.join(cmd)}\n{(proc.stdout + proc.stderr)[-4000:]}"
        )
    return wall, (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)


def tile_benchmarks(workdir: Path) -> list[dict[str, float]]:
    rows = []
    for tsv in sorted((workdir / "benchmarks" / "stereo_tile").rglob("*.tsv")):
        with open(tsv) as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        rows.append(
            {"s": float(row["s"]), "cpu_time": float(row["cpu_time"]), "max_rss": float(row["max_rss"])}
        )
    return rows


def n_tiles(workdir: Path) -> int:
    grid = json.loads((workdir / "results" / "tiles" / "scaling" / "tiles.geojson").read_text())
    return len(grid["features"])


def timed_stage(workdir: Path, config: Path, cores: int, extra: list[str]) -> dict[str, float]:
    """Time stereo_tile x N + mosaic_dsm from a built scene."""
    for d in ("results/stereo", "results/mosaic", "benchmarks/stereo_tile", "benchmarks/mosaic_dsm"):
        shutil.rmtree(workdir / d, ignore_errors=True)
    load = os.getloadavg()[0]
    # target first: --configfile, --forcerun and --set-threads take several values
    wall, cpu = snakemake(
        workdir,
        [
            "results/mosaic/scaling/dsm.tif",
            "--cores",
            str(cores),
            "--configfile",
            str(config.relative_to(workdir)),
            "--forcerun",
            "stereo_tile",
            *extra,
        ],
    )
    tiles = tile_benchmarks(workdir)
    return {
        "cores": cores,
        "extra": " ".join(extra),
        "wall_s": round(wall, 2),
        "load1_before": round(load, 2),
        "stage_cpu_s": round(cpu, 2),
        "tile_jobs": len(tiles),
        "tile_s_sum": round(sum(t["s"] for t in tiles), 2),
        "tile_cpu_s_sum": round(sum(t["cpu_time"] for t in tiles), 2),
        # > 1 means the job used more than one core (numba/GDAL threads)
        "tile_cpu_per_wall": round(
            sum(t["cpu_time"] for t in tiles) / max(sum(t["s"] for t in tiles), 1e-9), 2
        ),
        "tile_max_rss_mb": round(max((t["max_rss"] for t in tiles), default=0.0), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tile-size", type=float, default=50.0, help="tile side without margin (m)")
    ap.add_argument("--n-views", type=int, default=2, choices=[2, 3], help="views of the synthetic scene")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4], help="scene side in tiles")
    ap.add_argument("--cores-scene", type=int, default=2, help="scene side in tiles for the cores comparison")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=REPO / "bench" / "out" / "scaling")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scaling_demo.json")
    args = ap.parse_args()

    result: dict = {
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()},
        "tile_size_m": args.tile_size,
        "n_views": args.n_views,
        "tiles": [],
        "cores": [],
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for k in sorted(set(args.sizes) | {args.cores_scene}):
        size = k * args.tile_size
        wd = workflow_copy(args.workdir / f"side{k}")
        cfg = write_config(wd, size, args.tile_size, args.n_views)
        build_s, _ = snakemake(
            wd,
            ["results/tiles/scaling/tiles.geojson", "--cores", "2", "--configfile", str(cfg.relative_to(wd))],
        )
        area_km2 = (size / 1000.0) ** 2
        runs = []
        if k in args.sizes:
            for _ in range(args.repeat):
                r = timed_stage(wd, cfg, 2, [])
                runs.append(r)
            runs_cores2 = runs
            best = min(runs, key=lambda r: r["wall_s"])
            result["tiles"].append(
                {
                    "side_tiles": k,
                    "scene_m": size,
                    "area_km2": area_km2,
                    "n_tiles": n_tiles(wd),
                    "scene_build_s": round(build_s, 1),
                    **best,
                    "wall_core_s_per_km2": round(best["wall_s"] * 2 / area_km2, 1),
                    "stage_cpu_s_per_km2": round(best["stage_cpu_s"] / area_km2, 1),
                    "tile_cpu_s_per_km2": round(best["tile_cpu_s_sum"] / area_km2, 1),
                    # per km2 of tile cores actually processed (the grid may straddle the scene edges)
                    "tile_cpu_s_per_core_km2": round(
                        best["tile_cpu_s_sum"] / (n_tiles(wd) * (args.tile_size / 1000) ** 2), 1
                    ),
                    "all_runs_wall_s": [r["wall_s"] for r in runs],
                }
            )
            print(json.dumps(result["tiles"][-1]), flush=True)
        if k == args.cores_scene:
            for cores, extra in [(1, []), (2, []), (2, ["--set-threads", "stereo_tile=1"])]:
                if (cores, extra) == (2, []) and k in args.sizes:
                    runs = runs_cores2  # the tile-scaling run of this scene is this configuration
                else:
                    runs = [timed_stage(wd, cfg, cores, extra) for _ in range(args.repeat)]
                best = min(runs, key=lambda r: r["wall_s"])
                result["cores"].append(
                    {
                        "side_tiles": k,
                        "n_tiles": n_tiles(wd),
                        **best,
                        "all_runs_wall_s": [r["wall_s"] for r in runs],
                    }
                )
                print(json.dumps(result["cores"][-1]), flush=True)

    c = {(r["cores"], r["extra"]): r["wall_s"] for r in result["cores"]}
    if (1, "") in c:
        result["speedup_cores2_vs_cores1"] = round(c[(1, "")] / c[(2, "")], 2)
        result["speedup_cores2_threads1_vs_cores1"] = round(
            c[(1, "")] / c[(2, "--set-threads stereo_tile=1")], 2
        )
    t = result["tiles"]
    if len(t) > 1:
        base = t[0]["tile_cpu_s_per_km2"]
        result["tile_cpu_per_km2_ratio_vs_1_tile"] = [round(r["tile_cpu_s_per_km2"] / base, 2) for r in t]
        base = t[0]["wall_core_s_per_km2"]
        result["wall_core_per_km2_ratio_vs_1_tile"] = [round(r["wall_core_s_per_km2"] / base, 2) for r in t]
        base = t[0]["stage_cpu_s_per_km2"]
        result["stage_cpu_per_km2_ratio_vs_1_tile"] = [round(r["stage_cpu_s_per_km2"] / base, 2) for r in t]
        base = t[0]["tile_cpu_s_per_core_km2"]
        result["tile_cpu_per_core_km2_ratio_vs_1_tile"] = [
            round(r["tile_cpu_s_per_core_km2"] / base, 2) for r in t
        ]

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    md = [
        f"# Scaling of the tile stage (stereo_tile x N + mosaic_dsm), {result['date']}",
        "",
        (
            f"Host: {result['host']['cpus']} CPUs (shared machine: see load1_before). Demo config, "
            f"{args.n_views} views, tile {args.tile_size:g} m + margin."
        ),
        "Command: `python bench/scaling_demo.py " + " ".join(sys.argv[1:]) + "`",
        "",
        "## Tiles (--cores 2)",
        "",
        (
            "| tiles | scene (m) | km2 | stage wall (s) | wall core-s / km2 | stage CPU-s | stage CPU-s / km2 "
            "| tile-job CPU-s / km2 | CPU/wall per tile job | max RSS (MB) | load1 |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in t:
        md.append(
            f"| {r['n_tiles']} | {r['scene_m']:g} | {r['area_km2']:.4f} | {r['wall_s']} | {r['wall_core_s_per_km2']} "
            f"| {r['stage_cpu_s']} | {r['stage_cpu_s_per_km2']} | {r['tile_cpu_s_per_km2']} | {r['tile_cpu_per_wall']} | {r['tile_max_rss_mb']} | {r['load1_before']} |"
        )
    md += [
        "",
        f"## Cores ({result['cores'][0]['n_tiles'] if result['cores'] else '?'} tiles)",
        "",
        "| run | stage wall (s) | stage CPU-s | tile-job CPU-s | CPU/wall per tile job | load1 |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["cores"]:
        md.append(
            f"| --cores {r['cores']} {r['extra']} | {r['wall_s']} | {r['stage_cpu_s']} | {r['tile_cpu_s_sum']} "
            f"| {r['tile_cpu_per_wall']} | {r['load1_before']} |"
        )
    for key in (
        "speedup_cores2_vs_cores1",
        "speedup_cores2_threads1_vs_cores1",
        "stage_cpu_per_km2_ratio_vs_1_tile",
        "tile_cpu_per_km2_ratio_vs_1_tile",
        "wall_core_per_km2_ratio_vs_1_tile",
        "tile_cpu_per_core_km2_ratio_vs_1_tile",
    ):
        if key in result:
            md.append(f"\n{key}: {result[key]}")
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
