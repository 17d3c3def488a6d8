"""Benchmark: peak memory and CPU of the DSM mosaic (rule ``mosaic_dsm``) as a function of the area, before and
after streaming (issue 16).

For each size, N x N synthetic tile DSMs are written to bench/out/mosaic_memory/ as ``stereo_tile`` writes them
(float32, NaN nodata, zstd level 1, the project's tile size and margin at 0.5 m: config/config.yaml ``tiling``
and ``output``): smooth terrain + box buildings + noise, 2 % scattered holes and a hole block per tile, seeded.
The mosaic then runs in a child process, once per method; its peak RSS and CPU time are measured by GNU time
(``/usr/bin/time -f %M``: the kernel's high-water mark, not sampled; see :func:`run_measured` for why not
``os.wait4`` from the bench process):

- ``before``: the whole-area mosaic as it was up to this change (every tile read whole, :func:`blend_tiles`
  over the area, ``write_raster(cog=True)``: the GeoTIFF in memory), kept here as ``_mosaic_in_memory``;
- ``after``: :func:`sat2lod.mosaic.mosaic_dsm`, block by block.

Both outputs are compared byte for byte. ``import_rss_mb`` is the peak RSS of a child that only imports the
mosaic module (the interpreter, numpy, rasterio/GDAL): the floor under both.

Usage:  python bench/mosaic_memory.py [--grids 2 4 8] [--methods before after] [--name mosaic_memory]
        -> bench/results/<name>.json + bench/results/<name>.md
        (committed: the default, and ``--grids 2 4 8 16 --methods after --name mosaic_memory_large``)
Target (issue 16): peak RSS at the largest size <= 1.3 x the smallest and <= 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from rasterio.transform import Affine

import sat2lod

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from measure import run_measured

OUT = REPO / "bench" / "out" / "mosaic_memory"
RESULTS = REPO / "bench" / "results"
EPSG = 32631
X0, Y1 = 600000.0, 5000000.0  # upper-left corner of the tile grid (UTM 31N)


def make_tiles(n: int, tile_m: float, margin_m: float, res: float, dest: Path) -> list[dict]:
    """Write the N x N tile DSMs under ``dest`` (one tile in memory at a time); return their metas (``path``,
    ``core``, ``bounds``) in the tile grid's order (rows north to south, columns west to east)."""
    from sat2lod.io.raster import write_raster

    metas = []
    for r in range(n):
        for c in range(n):
            core = [X0 + c * tile_m, Y1 - (r + 1) * tile_m, X0 + (c + 1) * tile_m, Y1 - r * tile_m]
            bounds = [core[0] - margin_m, core[1] - margin_m, core[2] + margin_m, core[3] + margin_m]
            path = dest / f"t{r:04d}_{c:04d}" / "dsm.tif"
            metas.append({"path": str(path), "core": core, "bounds": bounds})
            if path.exists():
                continue
            cols, rows = round((bounds[2] - bounds[0]) / res), round((bounds[3] - bounds[1]) / res)
            x = bounds[0] + (np.arange(cols) + 0.5) * res
            y = bounds[3] - (np.arange(rows) + 0.5) * res
            h = 100.0 + 8.0 * np.sin(y[:, None] / 90.0) * np.cos(x[None, :] / 130.0)
            on_block = (np.mod(x[None, :], 40.0) < 22.0) & (np.mod(y[:, None], 35.0) < 18.0)
            roof = 6.0 + 3.0 * np.sin(np.floor(x[None, :] / 40.0) + np.floor(y[:, None] / 35.0))
            h = h + np.where(on_block, roof, 0.0)
            rng = np.random.default_rng(r * 1000 + c)
            dsm = (h + rng.normal(0.0, 0.3, h.shape)).astype(np.float32)
            dsm[rng.random(dsm.shape) < 0.02] = np.nan
            dsm[rows // 3 : rows // 3 + 40, cols // 2 : cols // 2 + 60] = np.nan
            t = Affine(res, 0.0, bounds[0], 0.0, -res, bounds[3])
            write_raster(
                path,
                dsm,
                t,
                EPSG,
                nodata=float("nan"),
                tags={"VERTICAL_DATUM": sat2lod.ELLIPSOID_DATUM},
                compress="zstd",
                level=1,
            )
    return metas


def _mosaic_in_memory(paths: list[str], metas: list[dict], out: Path, res: float) -> None:
    """The mosaic before streaming (sat2lod.mosaic.mosaic_dsm up to issue 16), verbatim in substance."""
    from sat2lod.io.raster import read_raster, write_raster
    from sat2lod.mosaic import blend_tiles

    tiles, crs, datum = [], None, sat2lod.ELLIPSOID_DATUM
    for p, m in zip(paths, metas):
        r = read_raster(p, masked_to_nan=True)
        crs = r.crs
        datum = r.tags.get("VERTICAL_DATUM", datum)
        tiles.append((r.array.astype(np.float32), r.transform, m["core"], m["bounds"]))
    mosaic, t = blend_tiles(tiles, res)
    tags = {"VERTICAL_DATUM": datum, "PRODUCT": "DSM", "TILES": len(tiles)}
    write_raster(out, mosaic, t, crs, nodata=float("nan"), cog=True, tags=tags)


def child(method: str, metas_json: Path, out: Path, res: float) -> None:
    """Body of the measured child process."""
    from sat2lod.mosaic import mosaic_dsm

    if method == "import":
        return
    metas = json.loads(metas_json.read_text())
    paths = [m["path"] for m in metas]
    if method == "before":
        _mosaic_in_memory(paths, metas, out, res)
    else:
        mosaic_dsm(paths, metas, out, res)


def measure(method: str, metas_json: Path, out: Path, res: float) -> dict:
    """Run one mosaic in a child process: its peak RSS, CPU and wall time (:func:`run_measured`)."""
    if out.exists():
        out.unlink()
    return run_measured([sys.executable, __file__, "--child", method, str(metas_json), str(out), str(res)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grids", type=int, nargs="+", default=[2, 4, 8], help="N of the N x N tile grids")
    ap.add_argument("--methods", nargs="+", default=["before", "after"], choices=["before", "after"])
    ap.add_argument("--name", default="mosaic_memory", help="results file stem under bench/results/")
    args = ap.parse_args()
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    tile_m, margin_m = float(cfg["tiling"]["tile_size_m"]), float(cfg["tiling"]["margin_m"])
    res = float(cfg["output"]["resolution_m"])
    km2 = [round((n * tile_m / 1000) ** 2, 4) for n in args.grids]
    OUT.mkdir(parents=True, exist_ok=True)
    imp = measure("import", OUT / "none.json", OUT / "none.tif", res)
    runs: dict[str, dict[str, list]] = {
        m: {"peak_rss_mb": [], "cpu_s": [], "wall_s": []} for m in args.methods
    }
    identical, cells, load1 = [], [], []
    for n in args.grids:
        dest = OUT / f"grid{n}"
        metas = make_tiles(n, tile_m, margin_m, res, dest)
        metas_json = dest / "tiles.json"
        metas_json.write_text(json.dumps(metas))
        cells.append(round(n * tile_m / res) ** 2)
        load1.append(round(os.getloadavg()[0], 2))
        outs = {}
        for m in args.methods:
            outs[m] = dest / f"mosaic_{m}.tif"
            r = measure(m, metas_json, outs[m], res)
            for k, v in r.items():
                runs[m][k].append(v)
            print(f"{n}x{n} tiles ({km2[args.grids.index(n)]} km2) {m}: {r}", flush=True)
        if len(outs) == 2:
            identical.append(outs["before"].read_bytes() == outs["after"].read_bytes())
    for run in runs.values():
        run["cpu_s_per_km2"] = [round(c / a, 2) for c, a in zip(run["cpu_s"], km2)]
        rss = run["peak_rss_mb"]
        run["rss_ratio_largest_vs_smallest"] = round(rss[-1] / rss[0], 3)
        run["meets_target"] = rss[-1] <= 1.3 * rss[0] and rss[-1] <= 2048
    result = {
        "command": "python bench/mosaic_memory.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "tile_size_m": tile_m,
        "margin_m": margin_m,
        "resolution_m": res,
        "grids": args.grids,
        "km2": km2,
        "mosaic_cells": cells,
        "load1_before": load1,
        "import_rss_mb": imp["peak_rss_mb"],
        "methods": runs,
        "outputs_byte_identical": identical,
        "target": "peak RSS at the largest size <= 1.3 x the smallest and <= 2048 MB",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# DSM mosaic memory vs area, {result['date']}",
        "",
        (
            f"Host: {os.cpu_count()} CPUs (shared machine, load1 before each size: {load1}). Tiles {tile_m:g} m "
            f"+ {margin_m:g} m margin at {res:g} m (config/config.yaml), float32 zstd, as stereo_tile writes "
            "them. Peak RSS and CPU of the mosaic child process (/usr/bin/time). Floor (interpreter + numpy + "
            f"rasterio imported): {imp['peak_rss_mb']} MB."
        ),
        f"Command: `{result['command']}`",
        "",
        "| tiles | km2 | mosaic cells | method | peak RSS (MB) | CPU (s) | CPU-s / km2 | wall (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, n in enumerate(args.grids):
        for m, r in runs.items():
            lines.append(
                f"| {n}x{n} | {km2[i]} | {cells[i]:,} | {m} | {r['peak_rss_mb'][i]} | {r['cpu_s'][i]} | "
                f"{r['cpu_s_per_km2'][i]} | {r['wall_s'][i]} |"
            )
    lines += [""]
    for m in runs:
        lines.append(
            f"- {m}: peak RSS largest / smallest = {runs[m]['rss_ratio_largest_vs_smallest']}, "
            f"target met: {runs[m]['meets_target']}"
        )
    if identical:
        lines.append(f"- before and after outputs byte-identical: {identical}")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), float(sys.argv[5]))
    else:
        main()
