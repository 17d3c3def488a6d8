"""Benchmark: rule dtm over the whole AOI against dtm_tile per tile + the streamed paste (issue 16): the
difference of the DTM by distance to the nearest tile seam, and the peak RSS and CPU of each job.

For each --dsm (a DSM mosaic COG: e.g. a demo run's results/mosaic/demo/dsm.tif, or the s2p Reunion DSM of
/work/shared/data) a tile grid of --tile-m cores is laid over the DSM's own extent (sat2lod.tiling, as rule
tiles does), then, each in its own process under GNU time (bench/measure.py):
- untiled: sat2lod.terrain.dtm_from_dsm_file on the whole DSM (rule dtm before this change);
- tiled, for each --halos: sat2lod.terrain.dtm_tile_from_files for every tile (rule dtm_tile), then
  assemble_terrain (rule dtm).
The merged DTM is compared with the untiled one cell by cell: the same NaN cells, and |difference| (max, 99.9th
percentile, fraction of cells over 1 mm and 1 cm, fraction equal to the bit) by distance to the nearest seam.
The CPU of the tile jobs is also given per km2 of the DSM.
Then, in this process, the untiled extract_dtm's harmonic fills (first pass and refinement) are each compared
with the exact sparse solve of the same equation (sat2lod.terrain.harmonic_fill_reference): max |fill - exact|,
the fill's own CPU (skipped for a DSM of more than --exact-max-cells cells: the direct solve's memory).

Usage: python bench/terrain_tiled.py --dsm A.tif [B.tif ...] [--tile-m 150] [--halos 64 128] [--name terrain_tiled]
       [--exact-max-cells 2000000]
Writes bench/results/<name>.json and .md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sat2lod.io.jsonio import write_json
from sat2lod.io.raster import raster_header, read_raster
from sat2lod.tiling import grid_spec, tile_cores, tiles_feature_collection

sys.path.insert(0, str(Path(__file__).parent))
from measure import REPO, run_measured

#: distance-to-seam classes (m) of the comparison
SEAM_BINS_M = (0.0, 10.0, 50.0, 1e9)


def _tiles(dsm: Path, d: Path, tile_m: float) -> list[str]:
    head = raster_header(dsm)
    h, w = head.shape
    t = head.transform
    bounds = [t.c, t.f + h * t.e, t.c + w * t.a, t.f]
    spec = grid_spec(bounds, tile_m, 20.0, t.a)
    fc = tiles_feature_collection(
        spec, tile_cores(spec), np.ones(spec.n_rows * spec.n_cols, bool), head.crs.to_epsg()
    )
    write_json(d / "tiles.geojson", fc)
    return [f["properties"]["tile"] for f in fc["features"]]


def _seam_distance(shape: tuple[int, int], tile_px: int, res: float) -> np.ndarray:
    """(H, W) distance (m) from each cell centre to the nearest inner tile edge (inf with one tile)."""
    rows, cols = np.arange(shape[0]) + 0.5, np.arange(shape[1]) + 0.5
    edges_r = np.arange(tile_px, shape[0], tile_px)
    edges_c = np.arange(tile_px, shape[1], tile_px)
    dr = np.abs(rows[:, None] - edges_r[None]).min(axis=1) if edges_r.size else np.full(shape[0], np.inf)
    dc = np.abs(cols[:, None] - edges_c[None]).min(axis=1) if edges_c.size else np.full(shape[1], np.inf)
    return np.minimum(dr[:, None], dc[None, :]) * res


def _compare(ref: Path, got: Path, tile_px: int) -> dict:
    a, b = read_raster(ref), read_raster(got)
    res = abs(a.transform.a)
    dist = _seam_distance(a.shape, tile_px, res)
    za, zb = np.squeeze(a.array).astype(np.float64), np.squeeze(b.array)
    out = {"nan_equal": bool((np.isnan(za) == np.isnan(zb)).all())}
    err = np.abs(za - zb)
    for lo, hi in itertools.pairwise(SEAM_BINS_M):
        e = err[(dist >= lo) & (dist < hi) & np.isfinite(err)]
        if not e.size:
            continue
        key = f"{lo:g}-{hi:g} m" if hi < 1e9 else f">= {lo:g} m"
        out[key] = {
            "cells": int(e.size),
            "max_m": float(e.max()),
            "p999_m": float(np.percentile(e, 99.9)),
            "over_1mm": float((e > 1e-3).mean()),
            "over_1cm": float((e > 1e-2).mean()),
            "bit_equal": float((e == 0).mean()),
        }
    return out


def _fills_vs_exact(dsm: Path) -> list[dict]:
    """Each harmonic fill of the untiled :func:`sat2lod.terrain.extract_dtm` of ``dsm`` (default parameters)
    against the exact sparse solve of its (z, known): cells, unknown fraction, the fill's CPU-s, max |fill -
    exact| (m). The fill is wrapped in place for the call (a bench's look inside, not a package API)."""
    from sat2lod import terrain

    src = read_raster(dsm, bands=1, masked_to_nan=True)
    fill, fills = terrain._harmonic_fill_multiscale, []

    def measured(z: np.ndarray, known: np.ndarray) -> np.ndarray:
        t0 = time.process_time()
        out = fill(z, known)
        cpu = time.process_time() - t0
        exact = terrain.harmonic_fill_reference(z, known)
        fills.append(
            {
                "cells": int(known.size),
                "unknown": round(float((~known).mean()), 4),
                "fill_cpu_s": round(cpu, 3),
                "max_m": float(np.abs(out - exact).max()),
            }
        )
        return out

    fill(np.zeros((40, 40)), np.eye(40, dtype=bool))  # compiled (or loaded from the cache) outside the timing
    terrain._harmonic_fill_multiscale = measured
    try:
        terrain.extract_dtm(src.array.astype(np.float32), abs(src.transform.a))
    finally:
        terrain._harmonic_fill_multiscale = fill
    return fills


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsm", type=Path, nargs="+", required=True)
    ap.add_argument("--tile-m", type=float, default=150.0)
    ap.add_argument("--halos", type=float, nargs="+", default=[64.0, 128.0])
    ap.add_argument("--name", default="terrain_tiled")
    ap.add_argument("--exact-max-cells", type=int, default=2_000_000)
    args = ap.parse_args()
    runs = []
    for dsm in args.dsm:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            tiles = _tiles(dsm, d, args.tile_m)
            ref = d / "ref_dtm.tif"
            untiled = run_measured(
                _py(
                    "from sat2lod.terrain import dtm_from_dsm_file; "
                    f"dtm_from_dsm_file({str(dsm)!r}, {str(ref)!r}, {str(d / 'ref_ndsm.tif')!r})"
                )
            )
            res = abs(raster_header(dsm).transform.a)
            shape = raster_header(dsm).shape
            row = {
                "dsm": str(dsm),
                "shape": list(shape),
                "km2": shape[0] * shape[1] * res**2 / 1e6,
                "tiles": len(tiles),
                "untiled": untiled,
            }
            for halo in args.halos:
                jobs = []
                for t in tiles:
                    code = (
                        "from sat2lod.terrain import dtm_tile_from_files; "
                        f"dtm_tile_from_files({str(dsm)!r}, {str(d / 'tiles.geojson')!r}, {t!r}, "
                        f"{str(d / (t + '_dtm.tif'))!r}, {str(d / (t + '_ndsm.tif'))!r}, tile_halo_m={halo!r})"
                    )
                    jobs.append(run_measured(_py(code)))
                dtms = [str(d / f"{t}_dtm.tif") for t in tiles]
                ndsms = [str(d / f"{t}_ndsm.tif") for t in tiles]
                merge = run_measured(
                    _py(
                        "from sat2lod.terrain import assemble_terrain; "
                        f"assemble_terrain({dtms!r}, {ndsms!r}, {str(dsm)!r}, {str(d / 'dtm.tif')!r}, "
                        f"{str(d / 'ndsm.tif')!r})"
                    )
                )
                row[f"halo_{halo:g}"] = {
                    "tile_jobs": {
                        "peak_rss_mb_max": max(j["peak_rss_mb"] for j in jobs),
                        "cpu_s_sum": round(sum(j["cpu_s"] for j in jobs), 2),
                    },
                    "merge": merge,
                    "difference": _compare(ref, d / "dtm.tif", round(args.tile_m / res)),
                }
        if shape[0] * shape[1] <= args.exact_max_cells:
            row["fills_vs_exact"] = _fills_vs_exact(dsm)
        runs.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "command": "python bench/terrain_tiled.py " + " ".join(sys.argv[1:]),
        "tile_m": args.tile_m,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "runs": runs,
    }
    out = REPO / "bench" / "results" / args.name
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# DTM over the whole AOI vs per tile (issue 16)",
        "",
        (
            f"`{result['command']}` ({result['machine']}); tiles of {args.tile_m:g} m; |tiled - untiled| DTM "
            "by distance to the nearest tile seam."
        ),
        "",
        (
            "| DSM | tiles | halo (m) | seam distance | cells | max (m) | p99.9 (m) | > 1 mm | > 1 cm "
            "| equal to the bit | NaN equal | peak RSS tile / whole (MB) | CPU-s tiles+merge / whole "
            "| tile jobs CPU-s per km2 |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        for halo in args.halos:
            h = r[f"halo_{halo:g}"]
            cpu = h["tile_jobs"]["cpu_s_sum"] + h["merge"]["cpu_s"]
            for k, v in h["difference"].items():
                if k == "nan_equal":
                    continue
                lines.append(
                    f"| {Path(r['dsm']).name} {r['shape'][0]}x{r['shape'][1]} | {r['tiles']} | {halo:g} | {k} | "
                    f"{v['cells']} | {v['max_m']:.4f} | {v['p999_m']:.5f} | {100 * v['over_1mm']:.3f} % | "
                    f"{100 * v['over_1cm']:.3f} % | {100 * v['bit_equal']:.2f} % | {h['difference']['nan_equal']} | "
                    f"{h['tile_jobs']['peak_rss_mb_max']:.0f} / {r['untiled']['peak_rss_mb']:.0f} | "
                    f"{cpu:.1f} / {r['untiled']['cpu_s']:.1f} | {h['tile_jobs']['cpu_s_sum'] / r['km2']:.0f} |"
                )
    lines += [
        "",
        "Untiled harmonic fills (extract_dtm, default parameters) against the exact sparse solve:",
        "",
        "| DSM | fill | cells | unknown | fill CPU-s | max \\|fill - exact\\| (m) |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        for k, f in enumerate(r.get("fills_vs_exact", [])):
            lines.append(
                f"| {Path(r['dsm']).name} | {('first', 'refinement')[min(k, 1)]} | {f['cells']} | "
                f"{100 * f['unknown']:.1f} % | {f['fill_cpu_s']:.2f} | {f['max_m']:.2e} |"
            )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
