"""Benchmark: peak RSS and CPU of one interior dtm_tile job against the AOI's side (issue 16).

The --dsm (e.g. a demo run's results/mosaic/demo/dsm.tif) is repeated k x k times (k = each --repeats) into a
larger DSM COG, a grid of --tile-m tiles is laid over it (sat2lod.tiling, as rule tiles does), and the middle tile (away
from the edges from 3 x 3 tiles on) runs sat2lod.terrain.dtm_tile_from_files under GNU time (bench/measure.py), with the default
parameters (terrain.tile_halo_m 128 m). The job's memory should follow its window, not the AOI.

Usage: python bench/terrain_tile_memory.py --dsm DSM.tif [--repeats 1 4] [--tile-m 300] [--name terrain_tile_memory]
Writes bench/results/<name>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from sat2lod.grid import tile_windows
from sat2lod.io.jsonio import write_json
from sat2lod.io.raster import read_raster, write_raster
from sat2lod.terrain import WINDOW_ALIGN
from sat2lod.tiling import grid_spec, tile_cores, tiles_feature_collection

sys.path.insert(0, str(Path(__file__).parent))
from measure import REPO, run_measured


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsm", type=Path, required=True)
    ap.add_argument("--repeats", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--tile-m", type=float, default=300.0)
    ap.add_argument("--name", default="terrain_tile_memory")
    args = ap.parse_args()
    src = read_raster(args.dsm, bands=1)
    rows = []
    for k in args.repeats:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            arr = np.tile(np.squeeze(src.array), (k, k))
            write_raster(
                d / "dsm.tif", arr, src.transform, src.crs, nodata=float("nan"), tags=src.tags, cog=True
            )
            t = src.transform
            h, w = arr.shape
            spec = grid_spec([t.c, t.f + h * t.e, t.c + w * t.a, t.f], args.tile_m, 20.0, t.a)
            fc = tiles_feature_collection(
                spec, tile_cores(spec), np.ones(spec.n_rows * spec.n_cols, bool), src.crs.to_epsg()
            )
            write_json(d / "tiles.geojson", fc)
            r, c = (
                spec.n_rows // 2,
                spec.n_cols // 2,
            )  # away from the edges when the grid has 3 x 3 tiles or more
            tile = f"t{r:04d}_{c:04d}"
            core = fc["features"][r * spec.n_cols + c]["properties"]["core"]
            _, (ra, rb, ca, cb) = tile_windows(core, t, (h, w), round(128.0 / t.a), WINDOW_ALIGN)
            del arr
            code = (
                "from sat2lod.terrain import dtm_tile_from_files; "
                f"dtm_tile_from_files({str(d / 'dsm.tif')!r}, {str(d / 'tiles.geojson')!r}, {tile!r}, "
                f"{str(d / 'dtm.tif')!r}, {str(d / 'ndsm.tif')!r})"
            )
            job = run_measured([sys.executable, "-c", code])
        row = {
            "aoi_m": round(w * t.a),
            "aoi_cells": h * w,
            "tiles": spec.n_rows * spec.n_cols,
            "tile": tile,
            "window_cells": (rb - ra) * (cb - ca),
            **job,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    res = {"command": "python bench/terrain_tile_memory.py " + " ".join(sys.argv[1:]), "runs": rows}
    out = REPO / "bench" / "results" / args.name
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [
        "# One interior dtm_tile job vs the AOI's side (issue 16)",
        "",
        f"`{res['command']}`; tiles of {args.tile_m:g} m, halo 128 m (default).",
        "",
        "| AOI side (m) | AOI cells | tiles | tile | window cells | peak RSS (MB) | CPU (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['aoi_m']} | {r['aoi_cells']} | {r['tiles']} | {r['tile']} | {r['window_cells']} | {r['peak_rss_mb']} "
        f"| {r['cpu_s']} |"
        for r in rows
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
