"""Benchmark: peak memory of the ortho rule's function with the views read whole or over their window (issue 16).

A synthetic view of S x S pixels (uint16, 0.5 m, a parallel-projection camera fitted as an RPC, as in
tests/test_ortho.py) is written to bench/out/ortho_view_window/, with a DSM tile of 600 x 600 cells (a 300 m
tile at 0.5 m) at its centre. ``ortho_from_files`` runs in a child process with ``windowed=False`` (every view
read whole, as before) and ``windowed=True``; peak RSS and CPU are the child's (GNU time), and the two orthos are
compared byte for byte.

Usage:  python bench/ortho_view_window.py [--sizes 4000 12000]
        -> bench/results/ortho_view_window.json + .md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from pyproj import Transformer
from rasterio.transform import from_origin

import sat2lod

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from measure import run_measured

OUT = REPO / "bench" / "out" / "ortho_view_window"
EPSG, X0, Y0, GSD = 32631, 500000.0, 4800000.0, 0.5
SX, SY = 0.2, 0.1  # line of sight, horizontal metres per metre of height


def make_scene(size: int, dest: Path) -> None:
    """View ``size`` x ``size`` px with its RPC + a 600 x 600 DSM at its centre + the scene sheet."""
    from sat2lod.io.jsonio import write_json
    from sat2lod.io.raster import write_raster
    from sat2lod.rpc import fit_rpc

    if (dest / "scenes.json").exists():
        return
    ext = size * GSD
    to_ll = Transformer.from_crs(EPSG, 4326, always_xy=True)
    x, y, h = np.meshgrid(
        np.linspace(X0, X0 + ext, 15), np.linspace(Y0 - ext, Y0, 15), np.linspace(0.0, 60.0, 7), indexing="ij"
    )
    x, y, h = x.ravel(), y.ravel(), h.ravel()
    lon, lat = to_ll.transform(x, y)
    rpc = fit_rpc(lon, lat, h, (Y0 - y + SY * h) / GSD - 0.5, (x - X0 - SX * h) / GSD - 0.5)
    rng = np.random.default_rng(0)
    patch = (1000 + 300 * rng.random((256, 256))).astype(np.uint16)
    img = np.tile(patch, (size // 256 + 1, size // 256 + 1))[:size, :size]
    write_raster(dest / "view.tif", img, from_origin(0, 0, 1, 1), None, rpcs=rpc.to_rasterio())
    del img
    dsm = np.full((600, 600), 20.0, np.float32)
    dsm[200:300, 250:400] = 35.0
    cx, cy = X0 + ext / 2, Y0 - ext / 2
    write_raster(
        dest / "dsm.tif",
        dsm,
        from_origin(cx - 150, cy + 150, 0.5, 0.5),
        EPSG,
        nodata=float("nan"),
        tags={"VERTICAL_DATUM": sat2lod.ELLIPSOID_DATUM},
    )
    write_json(dest / "scenes.json", {"views": [{"id": "v0", "image": str(dest / "view.tif"), "rpc": None}]})


def measure(dest: Path, windowed: bool) -> dict:
    out = dest / f"ortho_{'windowed' if windowed else 'whole'}.tif"
    code = (
        "import sys; from sat2lod.ortho import ortho_from_files; "
        f"ortho_from_files({str(dest / 'dsm.tif')!r}, {str(dest / 'scenes.json')!r}, {str(out)!r}, "
        f"windowed={windowed})"
    )
    return dict(run_measured([sys.executable, "-c", code]), out=out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4000, 12000], help="view side (pixels)")
    args = ap.parse_args()
    rows = []
    for size in args.sizes:
        dest = OUT / f"view{size}"
        dest.mkdir(parents=True, exist_ok=True)
        make_scene(size, dest)
        whole, win = measure(dest, False), measure(dest, True)
        same = whole.pop("out").read_bytes() == win.pop("out").read_bytes()
        rows.append({"view_px": size, "whole": whole, "windowed": win, "byte_identical": same})
        print(rows[-1], flush=True)
    result = {
        "command": "python bench/ortho_view_window.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dsm_cells": [600, 600],
        "runs": rows,
    }
    res = REPO / "bench" / "results"
    (res / "ortho_view_window.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Ortho with whole vs windowed view reads, {result['date']}",
        "",
        (
            "One synthetic uint16 view of S x S px, a 600 x 600 DSM (300 m tile at 0.5 m) at its centre; peak "
            "RSS and CPU of the ortho_from_files child (/usr/bin/time). Shared 2-core machine."
        ),
        f"Command: `{result['command']}`",
        "",
        "| view (px) | whole: peak RSS (MB) | CPU (s) | windowed: peak RSS (MB) | CPU (s) | byte-identical |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['view_px']} | {r['whole']['peak_rss_mb']} | {r['whole']['cpu_s']} | "
            f"{r['windowed']['peak_rss_mb']} | {r['windowed']['cpu_s']} | {r['byte_identical']} |"
        )
    (res / "ortho_view_window.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
