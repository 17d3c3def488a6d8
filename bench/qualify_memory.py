"""Benchmark: rule qualify streamed block by block against the whole-grid comparison (issue 16): peak RSS, CPU.

Synthetic city truth (sat2lod.synth layout, 100 buildings per 0.36 km², the demo's density) of each --sizes
side, written strip by strip: reference DSM, DTM, classes and buildings; the "products" are the truth plus
Gaussian noise (DSM 0.3 m, DTM 0.2 m), the reference footprints shifted by 0.3 m and an LOD1 model of their
blocks (CityJSONSeq, as the rule reads it). Runs, each in its own process under GNU time (bench/measure.py):
- streamed: sat2lod.qualify.qualify, the rule's function (block_px from the schema), buildings included;
- whole: the raster comparisons on whole arrays (read_raster + compare_heights + the NVA), as rule qualify did
  before; their ``all`` figures are checked equal to the streamed ones (exact figures to 1e-9 relative, median /
  NMAD / LE90 / p95 within the histogram bin, NMAD within 1.4826 bins).

Usage: python bench/qualify_memory.py [--sizes 600 1200 2400] [--whole-max-m 2400] [--name qualify_memory]
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

import geopandas as gpd
import numpy as np
from shapely.affinity import translate

from sat2lod.grid import grid_for_bounds
from sat2lod.io.cityjson import CityBuilding, city_model, write_cityjsonseq
from sat2lod.io.raster import write_raster_blocks
from sat2lod.io.vector import write_vector
from sat2lod.lod.solid import build_solid
from sat2lod.qualify.stats import BIN_M
from sat2lod.synth.blocked import truth_strips
from sat2lod.synth.layout import make_layout

sys.path.insert(0, str(Path(__file__).parent))
from measure import REPO, run_measured

X0, Y0, EPSG = 374000.0, 4828000.0, 32631
NOISE_M = {"dsm": 0.3, "dtm": 0.2}


def _scene(d: Path, size: float, seed: int) -> int:
    """Write the reference and the noisy products of a ``size`` m city into ``d``; the number of buildings."""
    bounds = (X0, Y0, X0 + size, Y0 + size)
    layout = make_layout(np.random.default_rng(seed), bounds, round(100 * size * size / 360_000.0))
    tr, shape = grid_for_bounds(bounds, 0.5)

    def strips(key: str, noise: float | None):
        for i, (w, t) in enumerate(truth_strips(layout, tr, shape)):
            a = t[key]
            if noise is not None:
                a = a + np.random.default_rng([seed, i]).normal(0, noise, a.shape).astype(np.float32)
            yield w, a

    for key in ("dsm", "dtm"):
        write_raster_blocks(
            d / f"ref_{key}.tif", strips(key, None), (1, *shape), np.float32, tr, EPSG, nodata=np.nan
        )
        write_raster_blocks(
            d / f"{key}.tif", strips(key, NOISE_M[key]), (1, *shape), np.float32, tr, EPSG, nodata=np.nan
        )
    write_raster_blocks(
        d / "classes.tif", strips("classes", None), (1, *shape), np.uint8, tr, EPSG, nodata=255
    )
    bs = layout.buildings
    crs = f"EPSG:{EPSG}"
    ref = gpd.GeoDataFrame(
        {"id": [b.id for b in bs], "height": [b.ridge for b in bs]},
        geometry=[b.footprint for b in bs],
        crs=crs,
    )
    write_vector(d / "ref.gpkg", ref, layer="buildings")
    fps = [translate(b.footprint, 0.3, 0.0) for b in bs]
    write_vector(
        d / "fp.gpkg", gpd.GeoDataFrame({"id": [b.id for b in bs]}, geometry=fps, crs=crs), layer="footprints"
    )
    blocks = []
    for b, p in zip(bs, fps, strict=True):
        h = float(b.eave + 0.8 * (b.ridge - b.eave))
        s = build_solid([p], [(b.ground + h, 0, 0)], b.ground)
        blocks.append(
            CityBuilding(
                f"b{b.id}", [(x.rings, x.semantic) for x in s], "1.2", {"height": h, "roof_percentile": 90.0}
            )
        )
    write_cityjsonseq(d / "lod1.jsonl", city_model(blocks, EPSG, "bench", "qualify_memory"))
    return len(bs)


def _streamed_code(d: Path) -> str:
    return (
        "from sat2lod.qualify import qualify; "
        f"d = {str(d)!r}; "
        "qualify(d + '/dsm.tif', d + '/dtm.tif', d + '/fp.gpkg', d + '/lod1.jsonl', ref_dsm=d + '/ref_dsm.tif', "
        "ref_dtm=d + '/ref_dtm.tif', ref_classes=d + '/classes.tif', ref_buildings=d + '/ref.gpkg', "
        "out_json=d + '/streamed.json', out_md=d + '/streamed.md')"
    )


def _whole_code(d: Path) -> str:
    return (
        "import json; from sat2lod.io.raster import read_raster; from sat2lod.qualify import compare_heights, on_grid; "
        f"d = {str(d)!r}; c = read_raster(d + '/classes.tif').array; out = {{}}\n"
        "for k in ('dsm', 'dtm'):\n"
        "    r = read_raster(d + f'/ref_{k}.tif', masked_to_nan=True)\n"
        "    p = on_grid(read_raster(d + f'/{k}.tif', masked_to_nan=True), r)\n"
        "    out[k] = compare_heights(p, r.array, c, 0.5, [0.5, 1.0, 3.0], [0, 10, 30, 90])\n"
        "json.dump(out, open(d + '/whole.json', 'w'))"
    )


def _equal(streamed: dict, whole: dict) -> bool:
    for k in ("dsm", "dtm"):
        a, b = streamed[k]["all"], whole[k]["all"]
        for key, v in b.items():
            if key in ("median", "le90", "p95"):
                tol = BIN_M / 2 + 1e-4  # accuracy.json rounds to 0.1 mm
            elif key == "nmad":
                tol = 1.4826 * BIN_M + 1e-4
            else:
                tol = 1e-4 + 1e-9 * abs(v)
            if abs(a[key] - v) > tol:
                print(f"{k} {key}: streamed {a[key]} whole {v}", flush=True)
                return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=float, nargs="+", default=[600.0, 1200.0, 2400.0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--name", default="qualify_memory")
    ap.add_argument(
        "--whole-max-m", type=float, default=2400.0, help="whole-grid run only up to this side (m)"
    )
    args = ap.parse_args()
    runs = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            n_buildings = _scene(d, size, args.seed)
            streamed = run_measured([sys.executable, "-c", _streamed_code(d)])
            whole, equal = None, None
            if size <= args.whole_max_m:
                whole = run_measured([sys.executable, "-c", _whole_code(d)])
                equal = _equal(
                    json.loads((d / "streamed.json").read_text()), json.loads((d / "whole.json").read_text())
                )
            lod1 = json.loads((d / "streamed.json").read_text())["buildings"]["lod1"]["height_error"]
        km2 = (size / 1000.0) ** 2
        row = {
            "size_m": size,
            "km2": km2,
            "buildings": n_buildings,
            "lod1_matched": lod1["n"],
            "streamed": streamed,
            "whole_rasters_only": whole,
            "streamed_equal_whole": equal,
            "cpu_s_per_km2_streamed": round(streamed["cpu_s"] / km2, 1),
        }
        runs.append(row)
        print(json.dumps(row), flush=True)
    res = {
        "command": "python bench/qualify_memory.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "histogram_bin_m": BIN_M,
        "runs": runs,
    }
    out = REPO / "bench" / "results" / args.name
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [
        "# Rule qualify streamed block by block vs the whole-grid comparison (issue 16)",
        "",
        f"- command: `{res['command']}`; {res['machine']}; peak RSS and CPU of each job by GNU time",
        (
            "- synthetic truth (100 buildings per 0.36 km²) as reference; products = truth + noise (DSM 0.3 m, DTM "
            "0.2 m), footprints shifted 0.3 m, LOD1 blocks; streamed = sat2lod.qualify.qualify (DSM, DTM, buildings, "
            "LOD1 like for like); whole = the DSM and DTM comparisons on whole arrays only (the former rule)"
        ),
        f"- streamed == whole: exact figures to 1e-9, median / LE90 / p95 within {BIN_M / 2 * 1000:g} mm, NMAD within 1.4826 x {BIN_M * 1000:g} mm",
        "",
        "| side (m) | km² | buildings (LOD1 matched) | streamed qualify: peak RSS MB / CPU-s | whole-grid rasters only: peak RSS MB / CPU-s | streamed CPU-s/km² | streamed == whole |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        s, w = r["streamed"], r["whole_rasters_only"] or {"peak_rss_mb": float("nan"), "cpu_s": float("nan")}
        lines.append(
            f"| {r['size_m']:.0f} | {r['km2']:.2f} | {r['buildings']} ({r['lod1_matched']}) | {s['peak_rss_mb']:.0f} / {s['cpu_s']:.1f} | "
            f"{w['peak_rss_mb']:.0f} / {w['cpu_s']:.1f} | {r['cpu_s_per_km2_streamed']:.1f} | { {True: 'yes', False: 'NO', None: 'not run'}[r['streamed_equal_whole']] } |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
