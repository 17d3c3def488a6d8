"""Benchmark: the per-tile segmentation (rules segment_tile + segment, issue 16) against the untiled one, on
the same city: how many cells differ, and where (distance to the nearest tile seam).

Compares the products of two runs of ``bench/scaling_chain.py`` on the same synthetic city: one before the
segmentation was per tile (``--before``: one whole-AOI job, ``segment_from_files``, inference tiles blended
over the AOI) and one after (``--after``). Their ortho and nDSM are checked to be identical first (the chain is
reproducible to the bit), so any difference is the segmentation's. Also reports the difference of each to
the network run on the whole AOI at once (``predict_full``): the per-tile product equals it to the bit when the
inference tile covers a tile + halo.

Usage:  python bench/segment_tiled.py --before bench/out/scaling_chain/scaling_chain_before/600 \\
            --after bench/out/scaling_chain/scaling_chain/600 [--name segment_tiled]
        -> bench/results/<name>.json + .md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from sat2lod.io.raster import read_raster
from sat2lod.io.sensor_image import read_tiles

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def seam_distance(tiles: Path, transform, shape: tuple[int, int]) -> np.ndarray:
    """(rows, cols) distance (cells) of each cell to the nearest edge between two tile cores."""
    res = transform.a
    edge = np.zeros(shape, bool)
    for t in read_tiles(tiles).values():
        xmin, ymin, xmax, ymax = t["core"]
        r0, r1 = round((transform.f - ymax) / res), round((transform.f - ymin) / res)
        c0, c1 = round((xmin - transform.c) / res), round((xmax - transform.c) / res)
        for r in (r0, r1):
            if 0 < r < shape[0]:
                edge[r, max(c0, 0) : min(c1, shape[1])] = True
        for c in (c0, c1):
            if 0 < c < shape[1]:
                edge[max(r0, 0) : min(r1, shape[0]), c] = True
    return ndimage.distance_transform_edt(~edge)


def compare(before: Path, after: Path) -> dict:
    aoi = next((after / "results" / "segment").iterdir()).name
    for p in (f"ortho/{aoi}/ortho.tif", f"terrain/{aoi}/ndsm.tif"):
        a, b = read_raster(before / "results" / p).array, read_raster(after / "results" / p).array
        if not np.array_equal(a, b, equal_nan=True):
            raise SystemExit(f"{p} differs between the runs: not the same inputs to the segmentation")
    seg = f"results/segment/{aoi}"
    pb, pa = read_raster(before / seg / "building_prob.tif"), read_raster(after / seg / "building_prob.tif")
    mb, ma = (
        read_raster(before / seg / "building_mask.tif").array,
        read_raster(after / seg / "building_mask.tif").array,
    )
    dist = seam_distance(after / "results" / "tiles" / aoi / "tiles.geojson", pa.transform, ma.shape)
    diff_m = mb != ma
    d = np.abs(np.nan_to_num(pb.array) - np.nan_to_num(pa.array))
    out = {
        "aoi": aoi,
        "cells": int(ma.size),
        "mask_cells_differing": int(diff_m.sum()),
        "mask_share_differing": float(diff_m.mean()),
        "mask_differing_seam_distance_px": sorted(int(v) for v in dist[diff_m])[:50],
        "prob_max_abs_diff": float(d.max()),
        "prob_share_differing": float((d > 0).mean()),
        "prob_share_differing_gt_1e-3": float((d > 1e-3).mean()),
        "building_cells_before": int((mb == 1).sum()),
        "building_cells_after": int((ma == 1).sum()),
    }
    out |= whole_aoi_reference(after, aoi, pb.array, pa.array)
    return out


def whole_aoi_reference(run: Path, aoi: str, before: np.ndarray, after: np.ndarray) -> dict:
    """Max |difference| of each product to the network run on the whole AOI at once (shipped model)."""
    from sat2lod.segment.features import make_input
    from sat2lod.segment.infer import load_segmenter, predict_full

    o = read_raster(run / "results" / "ortho" / aoi / "ortho.tif", bands=1, masked_to_nan=True).array
    n = read_raster(run / "results" / "terrain" / aoi / "ndsm.tif", bands=1, masked_to_nan=True).array
    model, _, _, _ = load_segmenter(None, "cpu", 1)
    full = predict_full(model, make_input(o, n))
    ok = np.isfinite(after)
    return {
        "before_vs_whole_aoi_max_abs": float(np.abs(before[ok] - full[ok]).max()),
        "after_vs_whole_aoi_max_abs": float(np.abs(after[ok] - full[ok]).max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, required=True)
    ap.add_argument("--name", default="segment_tiled")
    args = ap.parse_args()
    res = {
        "command": "python bench/segment_tiled.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **compare(args.before, args.after),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [f"# Per-tile vs untiled segmentation, {res['date']}", "", f"Command: `{res['command']}`", ""]
    lines += [f"- {k}: {v}" for k, v in res.items() if k not in ("command", "date")]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
