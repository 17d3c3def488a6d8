"""Accuracy of the stereo chain.

1. Real pair: s2p's Réunion Pléiades pair vs the DSM s2p made from it (``expected_dsm_s2p.tif``), on s2p's own
   grid (EPSG:32740, 0.5 m, same extent): median |dh|, p90 |dh|, mean dh, valid pixels (ours with and without
   hole filling) vs s2p's. Targets (issue 4): median <= 0.3 m, p90 <= 1.5 m, valid >= s2p's.
2. Synthetic city (``sat2lod.synth.generate_city``, exact truth), when the generator is importable: RMSE, NMAD,
   completeness outside water vs the truth DSM. Targets: RMSE <= 1 m, NMAD <= 0.5 m, completeness >= 95 %.

Variants: SGM with 4 and 8 paths (the config default is the better one here).
Run: python bench/stereo_accuracy.py [--synthetic] -> bench/results/stereo_accuracy.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

from sat2lod.stereo.pipeline import stereo_tile

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "s2p_pleiades_pair_reunion"
S2P_BOUNDS = [359746.0, 7651553.5, 360106.5, 7651923.0]  # 721 x 739 px at 0.5 m


def _write_inputs(
    tmp: Path, views: list[dict], epsg: int, heights: list[float], bounds: list[float], pairs: list[list[int]]
) -> tuple[Path, Path]:
    sheet = {"aoi": "bench", "epsg": epsg, "height_range": heights, "views": views, "pairs": pairs}
    grid = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}},
        "features": [
            {
                "type": "Feature",
                "geometry": None,
                "properties": {"tile": "t0000_0000", "row": 0, "col": 0, "core": bounds, "bounds": bounds},
            }
        ],
    }
    (tmp / "scenes.json").write_text(json.dumps(sheet))
    (tmp / "tiles.geojson").write_text(json.dumps(grid))
    return tmp / "scenes.json", tmp / "tiles.geojson"


def stats(ours: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    both = np.isfinite(ours) & np.isfinite(ref)
    d = ours[both] - ref[both]
    ad = np.abs(d)
    return {
        "median_abs_dh": float(np.median(ad)),
        "p90_abs_dh": float(np.percentile(ad, 90)),
        "mean_dh": float(d.mean()),
        "rmse": float(np.sqrt(np.mean(d * d))),
        "nmad": float(1.4826 * np.median(np.abs(d - np.median(d)))),
        "compared_pixels": int(both.sum()),
    }


def reunion(paths: int, tmp: Path) -> dict:
    views = [{"id": f"v{i}", "image": str(DATA / f"img_0{i + 1}.tif"), "rpc": None} for i in range(2)]
    scenes, tiles = _write_inputs(tmp, views, 32740, [2200.0, 2450.0], S2P_BOUNDS, [[0, 1]])
    dsm, qual = tmp / f"dsm_{paths}.tif", tmp / f"q_{paths}.tif"
    stereo_tile(scenes, tiles, "t0000_0000", dsm, qual, 0.5, paths=paths)
    with rasterio.open(dsm) as ds:
        ours = ds.read(1)
        assert ds.transform.c == S2P_BOUNDS[0] and ds.transform.f == S2P_BOUNDS[3]
    with rasterio.open(qual) as ds:
        filled = ds.read(4)
    with rasterio.open(DATA / "expected_dsm_s2p.tif") as ds:
        ref = ds.read(1)
    measured = np.where(filled == 0, ours, np.nan)
    out = stats(ours, ref)
    out.update(
        valid_ours=int(np.isfinite(ours).sum()),
        valid_ours_without_filling=int(np.isfinite(measured).sum()),
        valid_s2p=int(np.isfinite(ref).sum()),
        measured_only=stats(measured, ref),
    )
    return out


def synthetic(
    tmp: Path,
    size_m: float,
    paths: int = 8,
    out_dir: Path | None = None,
    tile_m: float = 300.0,
    margin_m: float = 20.0,
) -> dict:
    """Synthetic city (3 views; pairs (0,1), (1,2), (0,2) fused) as the demo runs it: tiles of ``tile_m`` with
    ``margin_m`` margins, one ``stereo_tile`` each, then ``mosaic_dsm``; compared with the exact truth DSM."""
    from sat2lod import synth
    from sat2lod.mosaic import mosaic_dsm_files

    out_dir = out_dir or tmp / "synth"
    if not (out_dir / "scene.json").exists():
        synth.generate_city(out_dir, seed=7, size_m=size_m, n_views=3, gsd_m=0.5)
    scene = json.loads((out_dir / "scene.json").read_text())
    n = len(scene["views"])
    views = [
        {"id": f"view_{i}", "image": str(out_dir / v["file"]), "rpc": None}
        for i, v in enumerate(scene["views"])
    ]
    pairs = [[0, 1], [1, 2], [0, 2]] if n == 3 else [[0, 1]]
    epsg = int(scene["epsg"])
    bx0, by0, bx1, by1 = (float(v) for v in scene["bounds"])
    feats = []
    nr, nc = int(np.ceil((by1 - by0) / tile_m - 1e-9)), int(np.ceil((bx1 - bx0) / tile_m - 1e-9))
    for r in range(nr):
        for c in range(nc):
            core = [
                bx0 + c * tile_m,
                max(by0, by1 - (r + 1) * tile_m),
                min(bx1, bx0 + (c + 1) * tile_m),
                by1 - r * tile_m,
            ]
            bounds = [core[0] - margin_m, core[1] - margin_m, core[2] + margin_m, core[3] + margin_m]
            feats.append(
                {
                    "type": "Feature",
                    "geometry": None,
                    "properties": {
                        "tile": f"t{r:04d}_{c:04d}",
                        "row": r,
                        "col": c,
                        "core": core,
                        "bounds": bounds,
                    },
                }
            )
    scenes, tiles = _write_inputs(tmp, views, epsg, list(scene["height_range"]), [bx0, by0, bx1, by1], pairs)
    grid = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}},
        "features": feats,
    }
    tiles.write_text(json.dumps(grid))
    infos, dsms = [], []
    t0 = time.perf_counter()
    for f in feats:
        tid = f["properties"]["tile"]
        dsm = tmp / tid / "dsm.tif"
        infos.append(stereo_tile(scenes, tiles, tid, dsm, tmp / tid / "quality.tif", 0.5, paths=paths))
        dsms.append(dsm)
    mosaic = tmp / "mosaic.tif"
    mosaic_dsm_files(dsms, tiles, mosaic, 0.5)
    seconds = time.perf_counter() - t0
    with rasterio.open(mosaic) as ds:
        ours, t_ours = ds.read(1), ds.transform
    with rasterio.open(out_dir / scene["truth"]["dsm"]) as ds:
        truth, t_truth = ds.read(1), ds.transform
    with rasterio.open(out_dir / scene["truth"]["classes"]) as ds:
        classes = ds.read(1)
    assert (t_ours.c, t_ours.f) == (t_truth.c, t_truth.f) and ours.shape == truth.shape, "grids differ"
    land = np.isfinite(truth) & (classes != 4) & (classes != 255)
    o = np.where(land, ours, np.nan)
    r = stats(o, truth)
    r["completeness_outside_water"] = float(np.isfinite(o[land]).mean())
    for name, cls in (("ground", 0), ("building", 1), ("vegetation", 2), ("road", 3)):
        m = land & (classes == cls)
        if m.any():
            r[f"{name}_rmse"] = stats(np.where(m, ours, np.nan), truth)["rmse"]
    r["tiles"] = len(feats)
    r["seconds_all_tiles_and_mosaic"] = seconds
    r["pairs"] = [
        {
            "tile": i["tile"],
            **{
                k: p[k]
                for k in ("pair", "pointing_dy_px", "valid_disparity", "disparities", "affine_fit_px")
                if k in p
            },
        }
        for i in infos
        for p in i["pairs"]
    ]
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synthetic", action="store_true", help="also the synthetic city (needs sat2lod.synth)")
    ap.add_argument("--synthetic-dir", default=None, help="reuse an existing generate_city output")
    ap.add_argument("--size-m", type=float, default=600.0)
    ap.add_argument("--out", default=str(REPO / "bench/results/stereo_accuracy.json"))
    args = ap.parse_args()
    result: dict = {"threads": os.environ.get("NUMBA_NUM_THREADS", "default"), "reunion_vs_s2p": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for paths in (4, 8):
            r = reunion(paths, Path(tmp))
            result["reunion_vs_s2p"][f"{paths}_paths"] = r
            print("reunion", paths, json.dumps(r))
        if args.synthetic:
            r = synthetic(
                Path(tmp), args.size_m, out_dir=Path(args.synthetic_dir) if args.synthetic_dir else None
            )
            result["synthetic_city"] = {"size_m": args.size_m, "seed": 7, **r}
            print("synthetic", json.dumps(r))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
