"""Accuracy of the stereo chain, before / after a change of method, side by side in one run.

1. Real pair: s2p's Réunion Pléiades pair vs the DSM s2p made from it (``expected_dsm_s2p.tif``), on s2p's own
   grid (EPSG:32740, 0.5 m, same extent): median |dh|, p90 |dh|, mean dh, valid pixels (ours with and without
   hole filling) vs s2p's. Targets (issue 17): median <= 0.20 m, p90 <= 0.6 m.
2. Synthetic city (``sat2lod.synth.generate_city``, exact truth), tiled as the demo runs it (500 m tiles, 20 m
   margins, one ``stereo_tile`` each, then ``mosaic_dsm``): RMSE, NMAD, completeness outside water vs the truth
   DSM, and RMSE / NMAD per truth class (road = flat ground). Cases: ``pair`` (600 m city, views 0+1),
   ``triplet`` (600 m, 3 views, 3 pairs fused), ``pair_1200`` (1200 m city, views 0+1; ``--large``). Targets
   (issue 17, CNES CARS 1.3.0 on the same inputs): pair NMAD and road NMAD <= 0.36 m, 1200 m pair <= 0.385,
   triplet <= 0.22, RMSE not worse, completeness >= 99 %.

Variants (``VARIANTS``): stereo parameters differing from the config defaults, e.g. the former sub-pixel method
(``subpixel: sgm``) next to the default. Each variant's stereo CPU time per input megapixel is reported
(``seconds_*`` of the pair logs: SGM, sub-pixel refinement, triangulation + rasterization).
Run: python bench/stereo_accuracy.py [--synthetic] [--large] -> bench/results/stereo_accuracy.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

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


#: stereo parameters of each compared variant (the rest are the config defaults): "before" = the method before
#: issue 17 (parabola through the census SGM costs, plain rasterization, no fattening correction), "no_edges" =
#: the defaults without the fattening correction at depth jumps (stereo.edge_radius_px 0: issue 15, stop 32)
VARIANTS: dict[str, dict] = {
    "before": {"subpixel": "sgm", "raster_radius": 0.0, "edge_radius_px": 0},
    "no_edges": {"edge_radius_px": 0},
    "after": {},
}


def _seconds(infos: list[dict]) -> dict[str, float]:
    """Stereo CPU-side timings summed over the pairs of all tiles, and per input megapixel (left image)."""
    pairs = [p for i in infos for p in i["pairs"]]
    mp = sum(p["input_pixels"] for p in pairs) / 1e6
    keys = ("seconds_sgm", "seconds_subpixel", "seconds_edges", "seconds_triangulate")
    out = {k: sum(p[k] for p in pairs) for k in keys}
    out.update({f"{k}_per_mp": v / mp for k, v in list(out.items())})
    out["input_mp"] = mp
    return out


def reunion(stereo: dict, tmp: Path) -> dict:
    views = [{"id": f"v{i}", "image": str(DATA / f"img_0{i + 1}.tif"), "rpc": None} for i in range(2)]
    scenes, tiles = _write_inputs(tmp, views, 32740, [2200.0, 2450.0], S2P_BOUNDS, [[0, 1]])
    dsm, qual = tmp / "dsm.tif", tmp / "q.tif"
    info = stereo_tile(scenes, tiles, "t0000_0000", dsm, qual, 0.5, **stereo)
    with rasterio.open(dsm) as ds:
        ours = ds.read(1)
        assert ds.transform.c == S2P_BOUNDS[0] and ds.transform.f == S2P_BOUNDS[3]
    with rasterio.open(qual) as ds:
        filled = ds.read(4)
    with rasterio.open(DATA / "expected_dsm_s2p.tif") as ds:
        ref = ds.read(1)
    measured = np.where(filled == 0, ours, np.nan)
    out = stats(measured, ref)
    out.update(
        valid_ours=int(np.isfinite(ours).sum()),
        valid_ours_without_filling=int(np.isfinite(measured).sum()),
        valid_s2p=int(np.isfinite(ref).sum()),
        **_seconds([info]),
    )
    return out


def city(out_dir: Path, size_m: float) -> dict:
    """The synthetic city of seed 7 (3 views) in ``out_dir``, generated when missing; its scene.json."""
    from sat2lod import synth

    if not (out_dir / "scene.json").exists():
        synth.generate_city(out_dir, seed=7, size_m=size_m, n_views=3, gsd_m=0.5)
    return json.loads((out_dir / "scene.json").read_text())


def synthetic(
    tmp: Path,
    out_dir: Path,
    pairs: list[list[int]],
    stereo: dict,
    tile_m: float = 500.0,
    margin_m: float = 20.0,
) -> dict:
    """Synthetic city in ``out_dir`` (see :func:`city`), matching ``pairs`` of its views, as the demo runs it:
    tiles of ``tile_m`` with ``margin_m`` margins (the config defaults), one ``stereo_tile`` each, then
    ``mosaic_dsm``; compared with the exact truth DSM outside water, overall and per truth class."""
    from sat2lod.mosaic import mosaic_dsm_files

    scene = json.loads((out_dir / "scene.json").read_text())
    views = [
        {"id": f"view_{i}", "image": str(out_dir / v["file"]), "rpc": None}
        for i, v in enumerate(scene["views"])
    ]
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
        infos.append(stereo_tile(scenes, tiles, tid, dsm, tmp / tid / "quality.tif", 0.5, **stereo))
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
            st = stats(np.where(m, ours, np.nan), truth)
            r[f"{name}_rmse"], r[f"{name}_nmad"] = st["rmse"], st["nmad"]
    r["tiles"] = len(feats)
    r["seconds_all_tiles_and_mosaic"] = seconds
    r.update(_seconds(infos))
    return r


def cpu_cost(size: int = 1000, ndisp: int = 41) -> dict[str, float]:
    """CPU seconds per megapixel (one numba thread, process time, best of 3) of SGM and of the sub-pixel
    refinement with the default parameters on a ``size``² textured pair over ``ndisp`` disparities (the
    refinement's cost grows with the disparity range of the map, not with its window)."""
    import numba
    from scipy import ndimage

    from sat2lod.schema import defaults
    from sat2lod.stereo.edges import edge_refine
    from sat2lod.stereo.sgm import sgm_disparity
    from sat2lod.stereo.subpixel import refine_disparity, refinement_weight, sgm_precision

    st = defaults("stereo")
    rng = np.random.default_rng(0)
    right = (ndimage.gaussian_filter(rng.normal(size=(size, size + ndisp)), 1.0) * 100 + 500).astype(
        np.float32
    )
    truth = np.repeat(np.linspace(2.0, ndisp - 3.0, size)[None, :], size, 0)  # a slope over the whole range
    ys = np.repeat(np.arange(size)[:, None], size, 1)
    left = ndimage.map_coordinates(right, [ys, np.arange(size)[None, :] + truth], order=3).astype(np.float32)
    left += rng.normal(0, 20, left.shape).astype(np.float32)
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:

        def best(f: Any) -> float:
            f()  # compiled / cached before timing
            times = []
            for _ in range(3):
                t = time.process_time()
                f()
                times.append(time.process_time() - t)
            return min(times) / (size * size / 1e6)

        disp = sgm_disparity(left, right, 0, ndisp - 1)
        sgm_s = best(lambda: sgm_disparity(left, right, 0, ndisp - 1))

        def refine() -> None:
            wt = refinement_weight(
                sgm_precision(left, right, tuple(st["census_window"])), st["subpixel_noise_px"]
            )
            refine_disparity(left, right, disp, "zncc2", tuple(st["subpixel_window"]), wt)

        sub_s = best(refine)
        # the fattening correction where a quarter of the pixels are roofs: 20 px blocks raised by 8 px every 40 px
        blocks = disp.copy()
        roof = (ys % 40 < 20) & (np.arange(size)[None, :] % 40 < 20)
        blocks[roof] += 8.0
        edges_s = best(
            lambda: edge_refine(blocks, left, st["edge_radius_px"], st["edge_sigma"], st["edge_jump_px"])
        )
    finally:
        numba.set_num_threads(before)
    return {
        "sgm_cpu_s_per_mp": sgm_s,
        "subpixel_cpu_s_per_mp": sub_s,
        "edges_cpu_s_per_mp": edges_s,
        "disparities": ndisp,
    }


def _md(result: dict) -> str:
    """Markdown table of every case, variants side by side."""
    keys = [
        ("nmad", "NMAD (m)"),
        ("road_nmad", "road NMAD"),
        ("rmse", "RMSE"),
        ("building_rmse", "building RMSE"),
        ("completeness_outside_water", "completeness"),
        ("median_abs_dh", "median abs(dh)"),
        ("p90_abs_dh", "p90 abs(dh)"),
        ("seconds_subpixel_per_mp", "sub-pixel s/MP (wall)"),
        ("seconds_edges_per_mp", "fattening correction s/MP (wall)"),
        ("seconds_sgm_per_mp", "SGM s/MP (wall)"),
    ]
    lines = ["# Stereo accuracy (python bench/stereo_accuracy.py)", ""]
    for case, res in result["cases"].items():
        names = list(res)
        lines += [f"## {case}", "", "| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for k, label in keys:
            if all(k in res[n] for n in names):
                lines.append(f"| {label} | " + " | ".join(f"{res[n][k]:.3f}" for n in names) + " |")
        lines.append("")
    lines.append("Variants: " + json.dumps(result["variants"]))
    if "note" in result:
        lines += ["", result["note"]]
    if "cpu_per_mp" in result:
        lines.append("")
        lines.append("CPU per megapixel (one thread, cpu_cost()): " + json.dumps(result["cpu_per_mp"]))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--synthetic", action="store_true", help="also the synthetic cities (needs sat2lod.synth)"
    )
    ap.add_argument("--large", action="store_true", help="also the 1200 m pair (with --synthetic)")
    ap.add_argument("--cities", default=None, help="folder keeping the generated cities between runs")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help="names in VARIANTS")
    ap.add_argument(
        "--extra",
        nargs="*",
        default=[],
        help="more variants, NAME=JSON (e.g. w7='{\"subpixel_window\": [7, 7]}')",
    )
    ap.add_argument("--cases", nargs="*", default=None, help="only these cases")
    ap.add_argument(
        "--workdir", default=None, help="keep the tiles and mosaics here (default: a temporary folder)"
    )
    ap.add_argument("--update", action="store_true", help="keep the other cases already in --out")
    ap.add_argument("--out", default=str(REPO / "bench/results/stereo_accuracy.json"))
    args = ap.parse_args()
    variants = {n: VARIANTS[n] for n in args.variants}
    variants.update({e.split("=", 1)[0]: json.loads(e.split("=", 1)[1]) for e in args.extra})
    result: dict = {
        "threads": os.environ.get("NUMBA_NUM_THREADS", "default"),
        "variants": variants,
        "cases": {},
    }
    if args.update and Path(args.out).exists():
        old = json.loads(Path(args.out).read_text())
        if old.get("variants") != variants:
            raise SystemExit(f"--update: {args.out} holds other variants ({old.get('variants')})")
        result["cases"] = old["cases"]
    # first: it also compiles the numba kernels, so that no case's timings include compilation
    result["cpu_per_mp"] = cpu_cost()
    print("cpu", result["cpu_per_mp"])
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(args.workdir or tmp_s)
        cities = Path(args.cities) if args.cities else tmp / "cities"
        cases: dict = {"reunion_vs_s2p": lambda st, d: reunion(st, d)}
        if args.synthetic:
            c600 = cities / "city600"
            cases["pair"] = lambda st, d: synthetic(d, c600, [[0, 1]], st)
            cases["triplet"] = lambda st, d: synthetic(d, c600, [[0, 1], [1, 2], [0, 2]], st)
            city(c600, 600.0)
            if args.large:
                c1200 = cities / "city1200"
                cases["pair_1200"] = lambda st, d: synthetic(d, c1200, [[0, 1]], st)
                city(c1200, 1200.0)
        for case, run in cases.items():
            if args.cases and case not in args.cases:
                continue
            result["cases"][case] = {}
            for name, stereo in variants.items():  # interleaved: same load on both
                d = tmp / case / name
                d.mkdir(parents=True)
                r = run(stereo, d)
                result["cases"][case][name] = r
                print(case, name, json.dumps({k: round(v, 4) for k, v in r.items() if isinstance(v, float)}))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    Path(args.out).with_suffix(".md").write_text(_md(result))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
