"""Benchmark: the whole chain (acquire to figures) on each real Pléiades pair of ../shared/data, whole pairs, the
default configuration (shipped U-Net, every key at its default) with ``source.kind: local``, as a new user runs
it (issue 15: "Real Pléiades scenes ... are run through the landed code after each round").

Per scene: did every rule run (return code), CPU-s summed over the whole process tree (psutil samples and the
command's own rusage, :func:`stereo_vs_cars.run_tree_measured`), wall, peak RSS, per-rule CPU / max RSS
(Snakemake's benchmark files); the products: DSM valid share, share of the valid scene labelled building,
footprints, LOD1 / LOD2 buildings, the tallest footprint's median nDSM; Réunion's DSM against s2p's
(``expected_dsm_s2p.tif``: median and p90 of |dh|); Ventoux's DSM against the SRTM tile of the pair's folder
(N44E005.hgt, 3 arc-seconds, EGM96 heights made ellipsoidal with ../shared/data/geoid/egm96_15.gtx, bilinear):
90 m cells and ~10 m of error tell only blunders, so the figure is the share of the DSM's valid cells more than
:data:`BLUNDER_M` off it, and the share of all cells within it. A PNG of the building mask over the ortho per scene goes to
bench/out/ (git-ignored: it renders the scene's imagery) to check by eye.

Targets (issue 15): ventoux (with and without its XS image) and reunion (few or no buildings): <= 1 % of the scene labelled building. Gizeh has
buildings but no reference here: its figures are reported, not judged.

Run:  python bench/real_chains.py [--scenes ventoux reunion gizeh] [--work DIR]
      -> bench/results/real_chains.json + .md (a scene whose folder is absent is skipped with a message)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from segment_real import TARGETS, _figure
from stereo_vs_cars import local_config, run_tree_measured, snakemake_benchmarks, vs_dsm

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"
FIGURES = REPO / "bench" / "out"
#: name -> folder, the views ({image, rpc, ms_image, ms_rpc}: file names in the folder; rpc None = the GeoTIFF's
#: RPC tags), s2p's reference DSM or None, judged against the <= 1 % target. ventoux_xs: the same pair with the
#: bundle's multispectral (XS) image on the first view, as a user holding the whole Pléiades bundle runs it
#: (pansharpened ortho, NDVI gate of the segmentation).
VENTOUX = [
    {"image": "left_image.tif", "rpc": "left_image.geom"},
    {"image": "right_image.tif", "rpc": "right_image.geom"},
]
SCENES: dict[str, dict] = {
    "ventoux": {
        "folder": "cnes_pleiades_ventoux_pair",
        "views": VENTOUX,
        "reference": None,
        "judged": True,
        "srtm": "N44E005.hgt",
    },
    "ventoux_xs": {
        "folder": "cnes_pleiades_ventoux_pair",
        "views": [
            {**VENTOUX[0], "ms_image": "lowres_color_image.tif", "ms_rpc": "lowres_color_image.geom"},
            VENTOUX[1],
        ],
        "reference": None,
        "judged": True,
        "srtm": "N44E005.hgt",
    },
    "reunion": {
        "folder": "s2p_pleiades_pair_reunion",
        "views": [{"image": "img_01.tif", "rpc": None}, {"image": "img_02.tif", "rpc": None}],
        "reference": "expected_dsm_s2p.tif",
        "judged": True,
    },
    "gizeh": {
        "folder": "cnes_pleiades_gizeh_pair",
        "views": [{"image": "img1.tif", "rpc": "img1.geom"}, {"image": "img2.tif", "rpc": "img2.geom"}],
        "reference": None,
        "judged": False,
    },
}


#: a DSM cell more than this off SRTM is a blunder (m): SRTM's cells are 90 m wide (on Ventoux's 0.4 slopes,
#: +-18 m between cell centres), its heights ~10 m off, and forest stands up to ~25 m above it
BLUNDER_M = 50.0
GEOID = DATA / "geoid" / "egm96_15.gtx"


def vs_srtm(dsm_path: Path, hgt: Path) -> dict:
    """The DSM against an SRTM .hgt tile (1201 x 1201 big-endian int16, EGM96 heights, -32768 = void) made
    ellipsoidal with the EGM96 grid: valid share, blunder share of the valid cells (more than BLUNDER_M off),
    share of all cells within BLUNDER_M, median difference (m)."""
    from rasterio.transform import from_origin
    from rasterio.warp import Resampling, reproject

    lat, lon = (
        int(hgt.stem[1:3]) * (1 if hgt.stem[0] == "N" else -1),
        int(hgt.stem[4:7]) * (1 if hgt.stem[3] == "E" else -1),
    )
    z = np.frombuffer(hgt.read_bytes(), ">i2").reshape(1201, 1201).astype(np.float32)
    z[z == -32768] = np.nan
    step = 1.0 / 1200
    with rasterio.open(dsm_path) as ds:
        dsm = ds.read(1, masked=True).filled(np.nan).astype(np.float32)
        ref = np.full(dsm.shape, np.nan, np.float32)
        reproject(
            z,
            ref,
            src_transform=from_origin(lon - step / 2, lat + 1 + step / 2, step, step),
            src_crs="EPSG:4326",
            dst_transform=ds.transform,
            dst_crs=ds.crs,
            resampling=Resampling.bilinear,
            src_nodata=np.nan,
            dst_nodata=np.nan,
        )
        geoid = np.full(dsm.shape, np.nan, np.float32)
        with rasterio.open(GEOID) as g:
            reproject(
                rasterio.band(g, 1),
                geoid,
                dst_transform=ds.transform,
                dst_crs=ds.crs,
                resampling=Resampling.bilinear,
            )
    dh = dsm - (ref + geoid)
    ok = np.isfinite(dh)
    return {
        "dsm_valid_fraction": round(float(np.isfinite(dsm).mean()), 4),
        "blunder_share_of_valid": round(float(np.mean(np.abs(dh[ok]) > BLUNDER_M)), 4) if ok.any() else None,
        "within_fraction_of_all": round(float(np.mean(ok & (np.abs(np.nan_to_num(dh)) <= BLUNDER_M))), 4),
        "median_dh_m": round(float(np.median(dh[ok])), 2) if ok.any() else None,
        "blunder_m": BLUNDER_M,
    }


def scene_config(name: str, folder: Path) -> dict:
    """The demo configuration with only the AOI name and the image list changed (a new user's first run)."""
    images = [
        {k: None if v is None else str(folder / v) for k, v in view.items()} for view in SCENES[name]["views"]
    ]
    return local_config(name, images)


def products(res: Path, name: str, mask: np.ndarray, method: str) -> dict:
    """What the run made, in numbers (``mask``: its building_mask.tif, made by segmentation ``method``)."""
    from sat2lod.io.vector import read_vector

    with rasterio.open(res / f"mosaic/{name}/dsm.tif") as ds:
        dsm = ds.read(1, masked=True)
    valid = mask != 255
    fp = read_vector(res / f"lod0/{name}/footprints.gpkg")
    acc = json.loads((res / f"qualify/{name}/accuracy.json").read_text())["products"]
    return {
        "dsm_valid_fraction": round(float((~np.ma.getmaskarray(dsm)).mean()), 4),
        "segmentation": method,
        "building_fraction": round(float((mask[valid] == 1).mean()), 5) if valid.any() else None,
        "footprints": len(fp),
        "lod1_buildings": acc["lod1_buildings"],
        "lod2_buildings": acc["lod2_buildings"],
        "max_footprint_ndsm_median_m": round(float(fp["ndsm_median_m"].max()), 2) if len(fp) else None,
        "figures": len((res / f"figures/{name}/done.txt").read_text().split()),
    }


def run_scene(name: str, work: Path) -> dict | None:
    from sat2lod.io.workdir import copy_workflow

    reference, judged = SCENES[name]["reference"], SCENES[name]["judged"]
    folder = DATA / SCENES[name]["folder"]
    if not folder.is_dir():
        print(f"{name}: skipped, {folder} is absent (the real pairs live in ../shared/data beside the repo)")
        return None
    wf = copy_workflow(work / name, REPO, replace=True)
    (wf / "config/config.yaml").write_text(yaml.safe_dump(scene_config(name, folder)))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2"]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    m = run_tree_measured(cmd, wf, env, work / f"{name}.log", 0.1)
    out = {"returncode": m.pop("returncode"), "measure": m, "log": str(work / f"{name}.log")}
    out["rules"] = snakemake_benchmarks(wf / "benchmarks")
    if out["returncode"] != 0:
        print(f"{name}: the chain failed ({out['returncode']}): see {out['log']}")
        return out
    res = wf / "results"
    with rasterio.open(res / f"segment/{name}/building_mask.tif") as ds:
        mask = ds.read(1)
        method = ds.tags().get("SAT2LOD_METHOD", "?")
    out["products"] = products(res, name, mask, method)
    if reference:
        out["dsm_vs_s2p"] = vs_dsm(res / f"mosaic/{name}/dsm.tif", folder / reference)
    srtm = SCENES[name].get("srtm")
    if srtm and (folder / srtm).is_file() and GEOID.is_file():
        out["dsm_vs_srtm"] = vs_srtm(res / f"mosaic/{name}/dsm.tif", folder / srtm)
    frac = out["products"]["building_fraction"]
    if judged:
        out["target_building_fraction"] = {"value": frac, "target": TARGETS["chain_fraction"]}
        out["target_building_fraction"]["met"] = frac is not None and frac <= TARGETS["chain_fraction"]
    FIGURES.mkdir(exist_ok=True)
    fig = FIGURES / f"real_chains_{name}.png"
    _figure(mask, res / f"ortho/{name}/ortho.tif", fig, f"{name}: {frac:.2%} labelled building")
    out["figure"] = f"bench/out/{fig.name}"
    return out


def render(res: dict) -> str:
    lines = [
        "# The chain on the real Pléiades pairs (bench/real_chains.py)",
        "",
        (
            "Whole pairs, default configuration (shipped U-Net), `source.kind: local`, `snakemake --cores 2`; "
            "CPU summed over the process tree. Each scene's command, date and machine below the table."
        ),
        "",
        (
            "| scene | chain ran | CPU-s | wall s | peak RSS MB (tree / largest job) | DSM valid | labelled building | target <= 1 % | "
            "footprints | LOD1 / LOD2 | tallest footprint (median nDSM, m) | DSM vs s2p: median / p90 abs(dh) (m) | "
            "DSM vs SRTM: blunders (> 50 m off) of valid / cells within 50 m |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in res["scenes"].items():
        m, p = s["measure"], s.get("products", {})
        t = s.get("target_building_fraction")
        met = "–" if t is None else ("met" if t["met"] else "not met")
        frac = p.get("building_fraction")
        d = s.get("dsm_vs_s2p")
        job_rss = max((r["max_rss_mb"] for r in s["rules"].values()), default="–")
        vs_s2p = "–" if d is None else f"{d['median_abs_dh']} / {d['p90_abs_dh']}"
        e = s.get("dsm_vs_srtm")
        vs_srtm = (
            "–" if e is None else f"{e['blunder_share_of_valid']:.2%} / {e['within_fraction_of_all']:.2%}"
        )
        lines.append(
            f"| {name} | {'yes' if s['returncode'] == 0 else 'no (rc ' + str(s['returncode']) + ')'} | "
            f"{m['cpu_s']} | {m['wall_s']} | {m['peak_rss_mb']} / {job_rss} | {p.get('dsm_valid_fraction', '–')} | "
            f"{'–' if frac is None else f'{frac:.2%}'} | {met} | {p.get('footprints', '–')} | "
            f"{p.get('lod1_buildings', '–')} / {p.get('lod2_buildings', '–')} | "
            f"{p.get('max_footprint_ndsm_median_m', '–')} | "
            f"{vs_s2p} | {vs_srtm} |"
        )
    lines += [""] + [
        f"- {n}: `{s['command']}`, {s['date']}, {s['machine']}" for n, s in res["scenes"].items()
    ]
    lines += [
        "",
        "Figures (mask over the ortho, to check by eye): "
        + ", ".join(s["figure"] for s in res["scenes"].values() if "figure" in s),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", nargs="+", choices=list(SCENES), default=list(SCENES))
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "sat2lod_real_chains")
    ap.add_argument("--out", type=Path, default=RESULTS / "real_chains.json")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    header = {
        "command": "python bench/real_chains.py " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="minutes"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
    }
    for name in args.scenes:
        got = run_scene(name, args.work)
        if got is None:
            continue
        print(name, json.dumps({k: got.get(k) for k in ("returncode", "products", "dsm_vs_s2p")}), flush=True)
        # merged into the results as they are on disk (the other scenes of an earlier run are kept)
        res = json.loads(args.out.read_text()) if args.out.exists() else {"scenes": {}}
        res["scenes"][name] = {**header, **got}
        res["scenes"] = {n: res["scenes"][n] for n in SCENES if n in res["scenes"]}
        for path, text in (
            (args.out, json.dumps(res, indent=2) + "\n"),
            (args.out.with_suffix(".md"), render(res)),
        ):
            tmp = path.with_suffix(path.suffix + ".part")
            tmp.write_text(text)
            tmp.replace(path)
    print("wrote", args.out, args.out.with_suffix(".md"))


if __name__ == "__main__":
    main()
