"""Benchmark: rule lod0 over the whole AOI against lod0 per tile (issue 16): peak RSS and CPU of each job.

Synthetic city truth (sat2lod.synth layout, 100 buildings per 0.36 km², the demo's density) of each --sizes
side: the exact building mask and nDSM, written strip by strip (no ortho: no image-edge splits in either run).
Runs, each in its own process under GNU time (bench/measure.py):
- untiled: sat2lod.lod.pipeline.run_lod0 on the whole AOI (rule lod0 before this change);
- tiled: sat2lod.lod.tiled.lod0_tile for every tile of a --tile-m grid (rule lod0_tile), then merge_lod0
  (rule lod0); the merged footprints are checked equal to the untiled ones (ids, geometry to 1e-6 m).

Usage: python bench/lod0_tiled_memory.py [--sizes 600 1200 2400] [--tile-m 500] [--name lod0_tiled_memory]
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

import numpy as np

from sat2lod.grid import grid_for_bounds
from sat2lod.io.jsonio import write_json
from sat2lod.io.raster import write_raster_blocks
from sat2lod.io.vector import read_vector
from sat2lod.synth.blocked import truth_strips
from sat2lod.synth.layout import make_layout
from sat2lod.tiling import grid_spec, tile_cores, tiles_feature_collection

sys.path.insert(0, str(Path(__file__).parent))
from measure import REPO, run_measured

X0, Y0, EPSG = 374000.0, 4828000.0, 32631


def _scene(d: Path, size: float, tile_m: float, seed: int) -> list[str]:
    bounds = (X0, Y0, X0 + size, Y0 + size)
    layout = make_layout(np.random.default_rng(seed), bounds, round(100 * size * size / 360_000.0))
    tr, shape = grid_for_bounds(bounds, 0.5)
    write_raster_blocks(
        d / "mask.tif",
        ((w, (t["classes"] == 1).astype(np.uint8)) for w, t in truth_strips(layout, tr, shape)),
        (1, *shape),
        np.uint8,
        tr,
        EPSG,
        nodata=255,
    )
    write_raster_blocks(
        d / "ndsm.tif",
        ((w, t["dsm"] - t["dtm"]) for w, t in truth_strips(layout, tr, shape)),
        (1, *shape),
        np.float32,
        tr,
        EPSG,
        nodata=float("nan"),
        tags={"VERTICAL_DATUM": "height above DTM"},
    )
    spec = grid_spec(list(bounds), tile_m, 20.0, 0.5)
    fc = tiles_feature_collection(spec, tile_cores(spec), np.ones(spec.n_rows * spec.n_cols, bool), EPSG)
    write_json(d / "tiles.geojson", fc)
    return [f["properties"]["tile"] for f in fc["features"]]


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=float, nargs="+", default=[600.0, 1200.0, 2400.0])
    ap.add_argument("--tile-m", type=float, default=500.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--name", default="lod0_tiled_memory")
    args = ap.parse_args()
    runs = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            tiles = _scene(d, size, args.tile_m, args.seed)
            m, n = d / "mask.tif", d / "ndsm.tif"
            untiled = run_measured(
                _py(
                    f"from sat2lod.lod.pipeline import run_lod0; run_lod0({str(m)!r}, {str(n)!r}, {str(d / 'ref.gpkg')!r})"
                )
            )
            jobs = []
            for t in tiles:
                code = (
                    "from sat2lod.lod.tiled import lod0_tile; "
                    f"lod0_tile({str(m)!r}, {str(n)!r}, {str(d / 'tiles.geojson')!r}, {t!r}, {str(d / (t + '.gpkg'))!r})"
                )
                jobs.append(run_measured(_py(code)))
            parts = [str(d / f"{t}.gpkg") for t in tiles]
            merge = run_measured(
                _py(
                    f"from sat2lod.lod.tiled import merge_lod0; merge_lod0({parts!r}, {str(d / 'all.gpkg')!r})"
                )
            )
            ref, got = read_vector(d / "ref.gpkg"), read_vector(d / "all.gpkg")
            equal = (
                len(ref) == len(got)
                and all(a.equals_exact(b, 1e-6) for a, b in zip(ref.geometry, got.geometry))
                and (ref["id"].to_numpy() == got["id"].to_numpy()).all()
            )
        km2 = (size / 1000.0) ** 2
        row = {
            "size_m": size,
            "km2": km2,
            "tiles": len(tiles),
            "footprints": len(ref),
            "merged_equal_untiled": bool(equal),
            "untiled": untiled,
            "tile_jobs": {
                "peak_rss_mb_max": max(j["peak_rss_mb"] for j in jobs),
                "cpu_s_sum": round(sum(j["cpu_s"] for j in jobs), 2),
            },
            "merge": merge,
        }
        row["cpu_s_per_km2"] = {
            "untiled": round(untiled["cpu_s"] / km2, 1),
            "tiled": round((row["tile_jobs"]["cpu_s_sum"] + merge["cpu_s"]) / km2, 1),
        }
        runs.append(row)
        print(json.dumps(row), flush=True)
    res = {
        "command": "python bench/lod0_tiled_memory.py " + " ".join(sys.argv[1:]),
        "tile_m": args.tile_m,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "runs": runs,
    }
    out = REPO / "bench" / "results" / args.name
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [
        "# LOD0 over the whole AOI vs per tile (issue 16)",
        "",
        f"- command: `{res['command']}`; {res['machine']}; peak RSS and CPU of each job by GNU time",
        (
            f"- exact synthetic building mask + nDSM (100 buildings per 0.36 km²), tiles of {args.tile_m:.0f} m, halo = "
            "lod.tile_halo_m (schema default); no ortho"
        ),
        "",
        (
            "| side (m) | km² | footprints | tiles | whole-AOI lod0: peak RSS MB / CPU-s | lod0_tile: max peak RSS MB / "
            "CPU-s summed | merge: peak RSS MB / CPU-s | CPU-s/km² whole / tiled | merged == whole |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        u, tj, mg = r["untiled"], r["tile_jobs"], r["merge"]
        lines.append(
            f"| {r['size_m']:.0f} | {r['km2']:.2f} | {r['footprints']} | {r['tiles']} | {u['peak_rss_mb']:.0f} / "
            f"{u['cpu_s']:.1f} | {tj['peak_rss_mb_max']:.0f} / {tj['cpu_s_sum']:.1f} | {mg['peak_rss_mb']:.0f} / "
            f"{mg['cpu_s']:.1f} | {r['cpu_s_per_km2']['untiled']:.0f} / {r['cpu_s_per_km2']['tiled']:.0f} | "
            f"{'yes' if r['merged_equal_untiled'] else 'NO'} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
