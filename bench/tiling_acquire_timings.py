"""Benchmark: time of the first two steps on the synthetic demo city (acquire, then the tiles checkpoint).

acquire(kind="synthetic") = publish the views as a STAC catalog + start a 127.0.0.1 server + EODAG gateway,
search, selection, download, verification (size, SHA-256, rasterio, RPC), scene sheet. Its peer, in the same
script on the same views: acquire(kind="local"), which verifies the same files in place without HTTP or EODAG,
so the ratio is the cost of going through the STAC server and EODAG. Then make_tiles (RPC footprints + grid)
for the demo tile size and for small tiles.

Usage:  python bench/tiling_acquire_timings.py [--repeat 3] [--size-m 600] [--out bench/results/tiling_acquire_timings.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sat2lod.acquire.pipeline import acquire
from sat2lod.synth import generate_city
from sat2lod.tiling import make_tiles

SELECTION = {"max_views": 3, "bh_min": 0.05, "bh_max": 1.0}


def timed(fn, repeat: int) -> tuple[float, list[float], object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size-m", type=float, default=600.0)
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/tiling_acquire_timings.json")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="sat2lod-bench-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        meta = generate_city(work / "synth", seed=7, size_m=a.size_m, n_views=3, gsd_m=0.5)
        t_synth = time.perf_counter() - t
        views = [work / "synth" / v["file"] for v in meta["views"]]
        size_mb = sum(p.stat().st_size for p in views) / 1e6
        run = iter(range(10_000))

        def synthetic() -> dict:
            d = work / f"acq{next(run)}"
            return acquire(
                kind="synthetic",
                aoi="demo",
                sheet=d / "scenes.json",
                downloads=d / "downloads",
                catalog_dir=d / "catalog",
                synthetic_scene=work / "synth" / "scene.json",
                providers_file=REPO / "config/eodag_providers.yaml",
                selection=SELECTION,
            )

        def local() -> dict:
            d = work / f"acq{next(run)}"
            return acquire(
                kind="local",
                aoi="demo",
                sheet=d / "scenes.json",
                downloads=d / "downloads",
                catalog_dir=d / "catalog",
                local={"images": [{"image": str(p)} for p in views]},
                selection=SELECTION,
                height_range=meta["height_range"],
                bbox_lonlat=meta["lonlat_bounds"],
            )

        t_syn, all_syn, sheet = timed(synthetic, a.repeat)
        t_loc, all_loc, _ = timed(local, a.repeat)
        sheet_path = work / "acq0" / "scenes.json"
        tiles = {}
        for tile_m in (300.0, 50.0):
            med, all_t, fc = timed(
                functools.partial(
                    make_tiles,
                    scenes=sheet_path,
                    tiles=work / f"tiles_{tile_m:g}.geojson",
                    tile_size_m=tile_m,
                    margin_m=20.0,
                    resolution_m=0.5,
                ),
                a.repeat,
            )
            tiles[f"{tile_m:g}m"] = {"median_s": med, "all_s": all_t, "n_tiles": len(fc["features"])}
    result = {
        "what": "acquire (synthetic via 127.0.0.1 STAC + EODAG) vs acquire (local, same files), and make_tiles",
        "command": f"python bench/tiling_acquire_timings.py --repeat {a.repeat} --size-m {a.size_m:g}",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1min_start": load_start,
            "load_avg_1min_end": os.getloadavg()[0],
        },
        "scene": {
            "size_m": a.size_m,
            "views": len(views),
            "views_total_mb": round(size_mb, 2),
            "view_px": [[v["rows"], v["cols"]] for v in meta["views"]],
            "generate_city_s": t_synth,
            "pairs": sheet["pairs"],
            "base_to_height": sheet["base_to_height"],
        },
        "acquire_synthetic_eodag": {"median_s": t_syn, "all_s": all_syn},
        "acquire_local_peer": {"median_s": t_loc, "all_s": all_loc},
        "ratio_eodag_over_local": t_syn / t_loc,
        "tiles": tiles,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
