"""Projection of a full Pléiades scene (20 km x 20 km) from the scaling bench's measured figures (issue 16).

Usage:
    python bench/project_scene.py [--scaling bench/results/scaling_chain.json] [--side-km 20] [--nodes 16]
                                  [--cores-per-node 32] [--tile-m 300]
Writes bench/results/scene_projection.{json,md}.

The model, from the two largest cities of the scaling run (sizes a < b, areas A < B):
- a per-tile rule (jobs of ``--tiles-per-job`` tiles) costs its CPU per km2 at b times the scene's area (flat per km2 is what
  the bench checks), spread over every core of the cluster; its memory per job is its peak at b (flat with the
  area is what the bench checks);
- a single-job rule (a merge / streamed pass, or a rule over the scene sheet) costs a fixed part plus a marginal
  part per km2, both from the two sizes: marginal = (cpu_b - cpu_a) / (B - A), clipped at 0; it runs on one core
  and the chain of single jobs is serial (each waits for the per-tile stage before it);
- wall time = the per-tile stages' CPU over all cores (perfect packing: a lower bound) + the single jobs' CPU
  in series, + no allowance for the scheduler (tens of thousands of jobs: see the note written with the table).
synth_city (the synthetic source, not part of a user's run) and figures' growth are reported apart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PER_TILE_SUFFIX = "_tile"
NOT_CHAIN = ("synth_city",)
# single-job rules whose work stops growing past a size the larger city already reaches: their CPU at that city
SATURATING = {
    "lod2_scene": "edge-ramp calibration on at most 400 roofs (sat2lod.lod.roof.ramp_sample); 377 at 1.2 km",
}


def project(
    scaling: dict, side_km: float, nodes: int, cores_per_node: int, tile_m: float, tiles_per_job: int = 1
) -> dict:
    (a, b), (area_a, area_b) = scaling["sizes_m"][-2:], scaling["km2"][-2:]
    scene_km2 = side_km**2
    cores = nodes * cores_per_node
    n_tiles = int(round((side_km * 1000 / tile_m) ** 2))
    rows = {}
    for rule, r in sorted(scaling["rules"].items()):
        if rule in NOT_CHAIN:
            continue
        cpu_a, cpu_b = r["cpu_s"][-2:]
        if rule.endswith(PER_TILE_SUFFIX):
            cpu = r["cpu_s_per_km2"][-1] * scene_km2
            kind = "per tile"
            jobs = -(-n_tiles // tiles_per_job)
        elif rule in SATURATING:
            cpu, kind, jobs = cpu_b, "single job", 1
        else:
            marginal = max(0.0, (cpu_b - cpu_a) / (area_b - area_a))
            fixed = max(0.0, cpu_b - marginal * area_b)
            cpu = fixed + marginal * scene_km2
            kind = "single job"
            jobs = 1
        rss = r["peak_rss_mb"]
        rows[rule] = {
            "kind": kind,
            "jobs": jobs,
            "cpu_s": round(cpu, 1),
            "peak_rss_mb_measured": rss[-2:],
            "rss_growth": round(rss[-1] / rss[-2], 3) if rss[-2] else None,
        }
    tile_cpu = sum(v["cpu_s"] for v in rows.values() if v["kind"] == "per tile")
    single_cpu = sum(v["cpu_s"] for v in rows.values() if v["kind"] == "single job")
    wall = tile_cpu / cores + single_cpu
    return {
        "from": {"scaling": scaling.get("command"), "date": scaling.get("date"), "sizes_m": [a, b]},
        "scene_km2": scene_km2,
        "tile_m": tile_m,
        "tiles": n_tiles,
        "tiles_per_job": tiles_per_job,
        "jobs": sum(v["jobs"] for v in rows.values()),
        "cluster_cores": cores,
        "rules": rows,
        "cpu_hours": round((tile_cpu + single_cpu) / 3600, 1),
        "cpu_s_per_km2": round((tile_cpu + single_cpu) / scene_km2, 1),
        "per_tile_cpu_hours": round(tile_cpu / 3600, 1),
        "single_jobs_cpu_hours": round(single_cpu / 3600, 2),
        "wall_h_lower_bound": round(wall / 3600, 2),
        "largest_job_peak_rss_mb": max(v["peak_rss_mb_measured"][-1] for v in rows.values()),
    }


def markdown(p: dict) -> str:
    out = [
        f"# Projection of a {p['scene_km2']:.0f} km² scene (issue 16)",
        "",
        (
            f"From `{p['from']['scaling']}` ({p['from']['date']}), cities of {p['from']['sizes_m']} m. "
            f"Command: `python bench/project_scene.py`. Tiles of {p['tile_m']:.0f} m: {p['tiles']} tiles, "
            f"{p.get('tiles_per_job', 1)} per job of the per-tile rules, {p['jobs']} jobs; cluster of "
            f"{p['cluster_cores']} cores."
        ),
        "",
        "| rule | kind | jobs | CPU-s projected | peak RSS measured (MB, two sizes) | growth |",
        "|---|---|---|---|---|---|",
    ]
    for rule, v in p["rules"].items():
        rss = " → ".join(f"{x:.0f}" for x in v["peak_rss_mb_measured"])
        out.append(f"| {rule} | {v['kind']} | {v['jobs']} | {v['cpu_s']:.0f} | {rss} | {v['rss_growth']} |")
    out += [
        "",
        (
            f"- CPU: {p['cpu_hours']} CPU-hours ({p['cpu_s_per_km2']} CPU-s per km²): per-tile rules "
            f"{p['per_tile_cpu_hours']} h, single jobs {p['single_jobs_cpu_hours']} h"
        ),
        (
            f"- wall on {p['cluster_cores']} cores, lower bound (perfect packing, no scheduler time): "
            f"{p['wall_h_lower_bound']} h, most of it the single jobs in series"
        ),
        (
            f"- largest job: {p['largest_job_peak_rss_mb']:.0f} MB measured (memory per job does not grow with "
            "the area for the rules whose growth is ~1; see the scaling table for each)"
        ),
        "- constant past a size (measured at the larger city, not extrapolated): "
        + ", ".join(f"{k} ({v})" for k, v in SATURATING.items()),
        "",
    ]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scaling", type=Path, default=REPO / "bench/results/scaling_chain.json")
    ap.add_argument("--side-km", type=float, default=20.0)
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--cores-per-node", type=int, default=32)
    ap.add_argument("--tile-m", type=float, default=300.0)
    ap.add_argument(
        "--tiles-per-job",
        type=int,
        default=yaml.safe_load((REPO / "config/config.yaml").read_text())["tiling"]["tiles_per_job"],
        help="tiles per job of the per-tile rules (tiling.tiles_per_job; default: the demo config's)",
    )
    ap.add_argument("--name", default="scene_projection")
    args = ap.parse_args()
    scaling = json.loads(args.scaling.read_text())
    p = project(scaling, args.side_km, args.nodes, args.cores_per_node, args.tile_m, args.tiles_per_job)
    out = REPO / "bench" / "results"
    (out / f"{args.name}.json").write_text(json.dumps(p, indent=1) + "\n")
    (out / f"{args.name}.md").write_text(markdown(p))
    print(markdown(p))


if __name__ == "__main__":
    main()
