"""sat2lod's stereo chain side by side with CNES CARS 1.3.0 (issue 17): CPU, peak RSS and accuracy on the same inputs.

Cases (``--cases``, default all):

- ``synth600_pair``: synthetic 600 m city (``sat2lod.synth.generate_city``, seed 7, 3 views, 0.5 m), views 0+1;
- ``synth1200_pair``: the same generator at 1200 m, views 0+1;
- ``synth600_triplet``: the 600 m city, views 0, 1, 2 (CARS pairs (0,1), (0,2), (1,2), as sat2lod fuses them);
- ``reunion``: s2p's Réunion Pléiades pair (../shared/data/s2p_pleiades_pair_reunion), compared with s2p's DSM
  (``expected_dsm_s2p.tif``) on s2p's grid;
- ``gizeh``: CNES's Giza Pléiades pair (../shared/data/cnes_pleiades_gizeh_pair), no reference: sat2lod - CARS.

Both pipelines take the whole images (the whole area seen by all views; no ROI) and write an ellipsoidal-height
DSM at 0.5 m in the same UTM zone:

- sat2lod: the default config (config/config.yaml) with ``source.kind: local``, in a fresh copy of the workflow,
  ``snakemake results/mosaic/<case>/dsm.tif --cores 2`` (acquire, tiles, stereo_tile per tile, mosaic_dsm);
- CARS 1.3.0: its default pipeline, ``orchestrator: {mode: multiprocessing, nb_workers: 2}``,
  ``output: {resolution: 0.5, geoid: false, epsg: <same UTM zone>}``, run by the ``cars`` command of its own venv
  (``--cars-venv``; ``--build-cars`` makes it with ``pip install cars==1.3.0``).

Measurement: each command runs in its own process group, watched by psutil every ``--sample-s`` seconds over the
whole process tree (CARS's workers are forkserver grandchildren, which GNU time on the command only partly
sees). CPU-s = max of two lower bounds of the tree's user + system time: (a) the sum over every process ever seen
of its last sampled own CPU time, (b) the command's own rusage as ``os.wait4`` reaps it (itself and every
descendant reaped by its parent up to the command). Peak RSS = the largest sum of the tree's resident sets at
one sample (pages shared between processes, e.g. forked workers, count once per process: an upper side), and
the largest single process.
For sat2lod the per-rule CPU and max RSS come from Snakemake's ``benchmarks/`` files. The runs are interleaved
(case by case, the pipeline order alternating between repeats); the figures are the min CPU of ``--repeat`` runs.

Réunion's crops see terrain at ~2300 m; CARS starts from 0 m without a DEM, where the two footprints do not
intersect ("The two envelopes do not intersect one another"), so it gets a flat initial-elevation DEM at 2320 m
(``cars_initial_elevation``); sat2lod finds its height range from the RPCs and tie points.

Accuracy: every DSM is resampled (nearest: the grids are 0.5 m-aligned, so it is a pure shift) onto the
reference grid. Synthetic: vs the exact truth DSM, outside water: NMAD, RMSE, median and p90 |dh|, road NMAD,
completeness; CARS fills some holes (its ``filling.tif`` layer), so its figures are also given without the
filled cells. Réunion: vs s2p's DSM, median |dh|, p90 |dh|, NMAD, mean dh. Gizeh: sat2lod - CARS on sat2lod's
grid, the same statistics.

The numba cache of sat2lod must be warm (a first run after an edit of a kernel compiles them: ~50 CPU-s per job);
``--warmup`` runs sat2lod once on the first case, unmeasured.

Usage:
    python bench/stereo_vs_cars.py [--cars-venv /work/cars_venv | --build-cars --cars-venv DIR]
        [--cases gizeh reunion ...] [--pipelines sat2lod cars] [--repeat N] [--work DIR] [--render]
    -> bench/results/stereo_vs_cars.json + .md: the cases and pipelines of this run merged into the file as it is
       on disk (each entry keeps its command and date). With ``--pipelines`` one pipeline runs alone (not
       interleaved); ``--merge OTHER.json`` merges another run's file (``--out`` elsewhere) and re-evaluates the
       cases from the DSMs left in ``--work`` (Gizeh's sat2lod - CARS needs both).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import rasterio
import rasterio.transform
import yaml
from measure import cpu_model
from rasterio.warp import Resampling, reproject

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"
CARS_VERSION = "1.3.0"
SYNTH = {"seed": 7, "n_views": 3, "gsd_m": 0.5}
#: case -> how its inputs are made and what it is compared with
CASES: dict[str, dict] = {
    "synth600_pair": {"kind": "synthetic", "size_m": 600.0, "views": [0, 1]},
    "synth1200_pair": {"kind": "synthetic", "size_m": 1200.0, "views": [0, 1]},
    "synth600_triplet": {"kind": "synthetic", "size_m": 600.0, "views": [0, 1, 2]},
    "reunion": {
        "kind": "real",
        "folder": "s2p_pleiades_pair_reunion",
        "images": [("img_01.tif", None), ("img_02.tif", None)],
        "epsg": 32740,
        "reference": "expected_dsm_s2p.tif",
        # CARS starts from 0 m without a DEM, where these crops' footprints (terrain ~2300 m) do not
        # intersect: it gets a flat a-priori DEM at this height (above its geoid), over this lon/lat box
        "cars_initial_elevation": {"height_m": 2320.0, "lonlat_box": [55.55, -21.33, 55.75, -21.13]},
    },
    "gizeh": {
        "kind": "real",
        "folder": "cnes_pleiades_gizeh_pair",
        "images": [("img1.tif", "img1.geom"), ("img2.tif", "img2.geom")],
        "epsg": 32636,
        "reference": None,
    },
}
PIPELINES = ("sat2lod", "cars")


# ---------------------------------------------------------------------------------------------- measurement
def run_tree_measured(cmd: list[str], cwd: Path, env: dict, log: Path, sample_s: float) -> dict:
    """Run ``cmd`` (its own session); CPU-s and peak RSS of its whole process tree, sampled by psutil.

    Returns cpu_s (max of the sampled sum and the command's own rusage as reaped by ``os.wait4``, itself
    and the descendants it waited for: both lower bounds), both bounds, peak_rss_mb (largest sum of the
    tree's RSS at one sample), max_process_rss_mb, wall_s, processes (seen). The reaped figure is the
    command's alone (not RUSAGE_CHILDREN of this process, which also counts any other child reaped
    meanwhile, e.g. by another thread)."""
    last_cpu: dict[tuple[int, float], float] = {}
    root_cpu = 0.0
    peak_sum, peak_one = 0, 0
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        root = psutil.Process(proc.pid)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                procs = []
            rss = 0
            for p in procs:
                try:
                    with p.oneshot():
                        t = p.cpu_times()
                        m = p.memory_info().rss
                        key = (p.pid, p.create_time())
                except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                    continue
                last_cpu[key] = t.user + t.system
                if p.pid == proc.pid:
                    root_cpu = t.user + t.system
                rss += m
                peak_one = max(peak_one, m)
            peak_sum = max(peak_sum, rss)
            time.sleep(sample_s)
    wall = time.perf_counter() - t0
    try:  # nothing of the tree may outlive the command (e.g. an orphaned worker)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    reaped = usage.ru_utime + usage.ru_stime
    sampled = sum(last_cpu.values())
    return {
        "returncode": proc.returncode,
        "cpu_s": round(max(sampled, reaped), 2),
        "cpu_s_sampled_tree": round(sampled, 2),
        "cpu_s_rusage_children": round(reaped, 2),
        "cpu_s_root": round(root_cpu, 2),
        "peak_rss_mb": round(peak_sum / 2**20, 1),
        "max_process_rss_mb": round(peak_one / 2**20, 1),
        "wall_s": round(wall, 2),
        "processes": len(last_cpu),
    }


# ------------------------------------------------------------------------------------------------- inputs
def synthetic_city(work: Path, size_m: float) -> Path:
    """The synthetic city of ``size_m`` (generated once into ``work``; the generator is deterministic)."""
    out = work / f"city_{size_m:g}m"
    if not (out / "scene.json").exists():
        from sat2lod import synth

        if out.exists():
            shutil.rmtree(out)
        print(f"generating the synthetic city {size_m:g} m in {out}", flush=True)
        synth.generate_city(out, size_m=size_m, **SYNTH)
    return out


def case_inputs(name: str, work: Path) -> dict:
    """images [(image, rpc file or None)], epsg, and the reference: truth (dsm, classes) / s2p DSM / None."""
    spec = CASES[name]
    if spec["kind"] == "synthetic":
        city = synthetic_city(work, spec["size_m"])
        scene = json.loads((city / "scene.json").read_text())
        return {
            "images": [(city / scene["views"][i]["file"], None) for i in spec["views"]],
            "epsg": int(scene["epsg"]),
            "truth_dsm": city / scene["truth"]["dsm"],
            "truth_classes": city / scene["truth"]["classes"],
        }
    folder = DATA / spec["folder"]
    if not folder.is_dir():
        raise SystemExit(
            f"{name}: {folder} is absent (the real pairs live in ../shared/data beside the repo)"
        )
    return {
        "images": [(folder / img, folder / rpc if rpc else None) for img, rpc in spec["images"]],
        "epsg": spec["epsg"],
        "reference": folder / spec["reference"] if spec["reference"] else None,
    }


# ---------------------------------------------------------------------------------------------- pipelines
def dsm_path(pipeline: str, name: str, work: Path) -> Path:
    """Where ``pipeline`` writes its DSM of case ``name`` under ``work``."""
    if pipeline == "cars":
        return work / "cars" / name / "dsm" / "dsm.tif"
    return work / "sat2lod" / name / "results" / "mosaic" / name / "dsm.tif"


def local_config(name: str, images: list[dict]) -> dict:
    """The demo configuration (config/config.yaml) with only the AOI name and ``source`` changed: ``kind: local``
    on ``images`` (the entries of ``source.local.images``: image, rpc, optionally ms_image, ms_rpc)."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["aoi"] = {"name": name}
    config["source"] = {"kind": "local", "local": {"images": images}}
    return config


def run_sat2lod(name: str, inputs: dict, work: Path, sample_s: float) -> tuple[dict, Path]:
    from sat2lod.io.workdir import copy_workflow

    wf = copy_workflow(work / "sat2lod" / name, REPO, replace=True)
    images = [{"image": str(i), "rpc": None if r is None else str(r)} for i, r in inputs["images"]]
    (wf / "config/config.yaml").write_text(yaml.safe_dump(local_config(name, images)))
    dsm = dsm_path("sat2lod", name, work)
    cmd = [sys.executable, "-m", "snakemake", str(dsm.relative_to(wf)), "--cores", "2"]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    m = run_tree_measured(cmd, wf, env, work / f"sat2lod_{name}.log", sample_s)
    if m["returncode"] != 0 or not dsm.exists():
        raise SystemExit(f"sat2lod failed on {name} ({m['returncode']}): see {work / f'sat2lod_{name}.log'}")
    m["jobs"] = snakemake_benchmarks(wf / "benchmarks")
    return m, dsm


def snakemake_benchmarks(folder: Path) -> dict:
    """Per rule: jobs, summed cpu_time (s) and largest max_rss (MB) of Snakemake's benchmark files."""
    rules: dict[str, dict] = {}
    for tsv in sorted(folder.rglob("*.tsv")):
        rule = tsv.relative_to(folder).parts[0]
        with open(tsv) as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        r = rules.setdefault(rule, {"jobs": 0, "cpu_s": 0.0, "max_rss_mb": 0.0})
        r["jobs"] += 1
        r["cpu_s"] = round(r["cpu_s"] + float(row["cpu_time"]), 2)
        r["max_rss_mb"] = max(r["max_rss_mb"], float(row["max_rss"]))
    return rules


def flat_dem(path: Path, height_m: float, lonlat_box: list[float]) -> Path:
    """A flat DEM (EPSG:4326, 0.001 deg cells) at ``height_m`` over ``lonlat_box``: CARS's initial elevation."""
    x0, y0, x1, y1 = lonlat_box
    w, h = round((x1 - x0) / 0.001), round((y1 - y0) / 0.001)
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": 1,
        "dtype": "float32",
        "crs": "EPSG:4326",
        "transform": rasterio.transform.from_origin(x0, y1, 0.001, 0.001),
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.full((1, h, w), height_m, "float32"))
    return path


def cars_config(name: str, inputs: dict, out: Path) -> dict:
    sensors = {}
    for i, (img, rpc) in enumerate(inputs["images"]):
        sensors[f"view{i}"] = {"image": str(img), **({"geomodel": str(rpc)} if rpc else {})}
    keys = list(sensors)
    pairing = [[a, b] for k, a in enumerate(keys) for b in keys[k + 1 :]]
    inp: dict = {"sensors": sensors, "pairing": pairing}
    flat = CASES[name].get("cars_initial_elevation")
    if flat:
        inp["initial_elevation"] = {"dem": str(flat_dem(out.parent / f"{name}_flat_dem.tif", **flat))}
    return {
        "input": inp,
        "orchestrator": {"mode": "multiprocessing", "nb_workers": 2},
        "output": {"directory": str(out), "resolution": 0.5, "geoid": False, "epsg": inputs["epsg"]},
    }


def run_cars(name: str, inputs: dict, work: Path, venv: Path, sample_s: float) -> tuple[dict, Path]:
    out = work / "cars" / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    conf = out.parent / f"{name}.json"
    conf.write_text(json.dumps(cars_config(name, inputs, out), indent=2))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    m = run_tree_measured(
        [str(venv / "bin" / "cars"), str(conf)], out.parent, env, work / f"cars_{name}.log", sample_s
    )
    dsm = dsm_path("cars", name, work)
    if m["returncode"] != 0 or not dsm.exists():
        raise SystemExit(f"CARS failed on {name} ({m['returncode']}): see {work / f'cars_{name}.log'}")
    return m, dsm


def build_cars(venv: Path) -> None:
    """A venv with cars==1.3.0 (pip, from the configured index), then ``READY`` in it."""
    if (venv / "READY").exists():
        return
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"cars=={CARS_VERSION}"], check=True)
    (venv / "READY").write_text(f"cars=={CARS_VERSION}\n")


# ----------------------------------------------------------------------------------------------- accuracy
def read_on(path: Path, ref_profile: dict, crs_if_none: object = None) -> np.ndarray:
    """The DSM of ``path`` (nodata -> NaN) resampled by nearest onto the reference grid (``crs_if_none``: the
    CRS of a raster written without one, e.g. CARS's filling.tif beside its dsm.tif)."""
    with rasterio.open(path) as ds:
        src = ds.read(1, masked=True).astype("float64").filled(np.nan)
        dst = np.full((ref_profile["height"], ref_profile["width"]), np.nan)
        reproject(
            src,
            dst,
            src_transform=ds.transform,
            src_crs=ds.crs or crs_if_none,
            dst_transform=ref_profile["transform"],
            dst_crs=ref_profile["crs"],
            src_nodata=np.nan,
            dst_nodata=np.nan,
            resampling=Resampling.nearest,
        )
    return dst


def grid_of(path: Path) -> dict:
    with rasterio.open(path) as ds:
        return {"height": ds.height, "width": ds.width, "transform": ds.transform, "crs": ds.crs}


def diff_stats(d: np.ndarray) -> dict:
    d = d[np.isfinite(d)]
    if d.size == 0:
        return {"compared_cells": 0}
    ad = np.abs(d)
    return {
        "median_abs_dh": round(float(np.median(ad)), 4),
        "p90_abs_dh": round(float(np.percentile(ad, 90)), 4),
        "nmad": round(float(1.4826 * np.median(np.abs(d - np.median(d)))), 4),
        "rmse": round(float(np.sqrt(np.mean(d * d))), 4),
        "mean_dh": round(float(d.mean()), 4),
        "median_dh": round(float(np.median(d)), 4),
        "compared_cells": int(d.size),
    }


def vs_truth(dsm: Path, inputs: dict, filled: Path | None) -> dict:
    grid = grid_of(inputs["truth_dsm"])
    ours = read_on(dsm, grid)
    with rasterio.open(inputs["truth_dsm"]) as ds:
        truth = ds.read(1, masked=True).astype("float64").filled(np.nan)
    with rasterio.open(inputs["truth_classes"]) as ds:
        classes = ds.read(1)
    land = np.isfinite(truth) & (classes != 4) & (classes != 255)
    d = np.where(land, ours - truth, np.nan)
    out = diff_stats(d)
    out["completeness"] = round(float(np.isfinite(ours[land]).mean()), 4)
    out["road_nmad"] = diff_stats(np.where(classes == 3, d, np.nan)).get("nmad")
    if filled is not None:  # CARS's filled cells, left out here: filling.tif 0 = no data, 1 = no_edition
        f = read_on(
            filled, grid, grid_of(dsm)["crs"]
        )  # (measured), >= 2 = a filling method (3: interpolation)
        measured = np.where(np.isfinite(f) & (f >= 2), np.nan, d)
        out["without_filled"] = diff_stats(measured)
        out["without_filled"]["completeness"] = round(float(np.isfinite(measured[land]).mean()), 4)
        out["without_filled"]["road_nmad"] = diff_stats(np.where(classes == 3, measured, np.nan)).get("nmad")
    return out


def vs_truth_common(dsms: dict[str, Path], inputs: dict) -> dict[str, dict]:
    """Each pipeline against the truth on the same cells: land cells that both measured (CARS's filled cells
    left out). Each pipeline's own figures (:func:`vs_truth`) are on the cells it kept, which differ: a pipeline
    that leaves its hardest cells empty gains RMSE there."""
    grid = grid_of(inputs["truth_dsm"])
    with rasterio.open(inputs["truth_dsm"]) as ds:
        truth = ds.read(1, masked=True).astype("float64").filled(np.nan)
    with rasterio.open(inputs["truth_classes"]) as ds:
        classes = ds.read(1)
    land = np.isfinite(truth) & (classes != 4) & (classes != 255)
    heights = {}
    for pipe, dsm in dsms.items():
        h = read_on(dsm, grid)
        filled = filling_layer(dsm) if pipe == "cars" else None
        if filled is not None:
            f = read_on(filled, grid, grid_of(dsm)["crs"])
            h = np.where(np.isfinite(f) & (f >= 2), np.nan, h)
        heights[pipe] = h
    both = land & np.logical_and.reduce([np.isfinite(h) for h in heights.values()])
    out = {}
    for pipe, h in heights.items():
        d = np.where(both, h - truth, np.nan)
        out[pipe] = diff_stats(d) | {"share_of_land": round(float(both.sum() / max(land.sum(), 1)), 4)}
        out[pipe]["road_nmad"] = diff_stats(np.where(classes == 3, d, np.nan)).get("nmad")
    return out


def vs_dsm(dsm: Path, ref: Path) -> dict:
    """``dsm`` - ``ref`` on ``ref``'s grid; valid cells of both."""
    grid = grid_of(ref)
    ours = read_on(dsm, grid)
    with rasterio.open(ref) as ds:
        r = ds.read(1, masked=True).astype("float64").filled(np.nan)
    out = diff_stats(ours - r)
    out["valid_fraction_of_reference"] = round(float(np.isfinite(ours[np.isfinite(r)]).mean()), 4)
    return out


def filling_layer(cars_dsm: Path) -> Path | None:
    p = cars_dsm.parent / "filling.tif"
    return p if p.exists() else None


def evaluate(name: str, inputs: dict, dsms: dict[str, Path]) -> dict[str, dict]:
    spec = CASES[name]
    out: dict[str, dict] = {}
    for pipe, dsm in dsms.items():
        if spec["kind"] == "synthetic":
            out[pipe] = {"vs_truth": vs_truth(dsm, inputs, filling_layer(dsm) if pipe == "cars" else None)}
        elif inputs["reference"] is not None:
            out[pipe] = {"vs_s2p": vs_dsm(dsm, inputs["reference"])}
    if spec["kind"] == "synthetic" and len(dsms) == 2:
        for pipe, stats in vs_truth_common(dsms, inputs).items():
            out[pipe]["vs_truth_common_cells"] = stats
    if spec["kind"] == "real" and inputs["reference"] is None and len(dsms) == 2:
        out["sat2lod"] = {"sat2lod_minus_cars": vs_dsm(dsms["cars"], dsms["sat2lod"])}
        # vs_dsm(a, b) = a - b on b's grid: flip the sign so that it reads sat2lod - CARS
        s = out["sat2lod"]["sat2lod_minus_cars"]
        s["mean_dh"], s["median_dh"] = -s["mean_dh"], -s["median_dh"]
    return out


# ------------------------------------------------------------------------------------------------- report
def _loads(entry: dict) -> str:
    return ", ".join(str(r.get("loadavg_1min_at_end", "-")) for r in entry.get("runs", [])) or "-"


def render(res: dict) -> str:
    lines = [
        "# Stereo: sat2lod vs CNES CARS 1.3.0 (bench/stereo_vs_cars.py)",
        "",
        (
            "Commands: "
            + "; ".join(
                sorted({f"`{e['command']}` ({e['date']})" for c in res["cases"].values() for e in c.values()})
            )
            + ". CPU = user + sys summed over each command's whole process tree "
            "(psutil); min of the runs. Peak RSS = largest sum of the tree's RSS at one sample (largest single process in "
            "brackets). Both on the whole images, 0.5 m, ellipsoidal heights; sat2lod = default config through "
            "Snakemake `--cores 2`, CARS = default pipeline, `nb_workers: 2`. Shared 2-core machine: the load "
            "(1-min load average at the end of each run) inflates the CPU time of both; runs of one pipeline alone "
            "(`--pipelines`) were not interleaved with the other's."
        ),
        "",
        (
            "| case | CARS CPU-s | CARS peak RSS MB | sat2lod CPU-s | sat2lod peak RSS MB | CPU ratio CARS/sat2lod "
            "| >= 10 | load at end CARS / sat2lod |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, c in res["cases"].items():
        ca, sa = c.get("cars", {}), c.get("sat2lod", {})
        ratio = res["cpu_ratio_cars_over_sat2lod"].get(name)
        lines.append(
            f"| {name} | {ca.get('cpu_s', '-')} | {ca.get('peak_rss_mb', '-')} ({ca.get('max_process_rss_mb', '-')}) "
            f"| {sa.get('cpu_s', '-')} | {sa.get('peak_rss_mb', '-')} ({sa.get('max_process_rss_mb', '-')}) "
            f"| {ratio if ratio is not None else '-'} | {'yes' if ratio and ratio >= 10 else 'no'} "
            f"| {_loads(ca)} / {_loads(sa)} |"
        )
    lines += [
        "",
        "## Accuracy",
        "",
        (
            "| case | pipeline | vs | NMAD | RMSE | median abs dh | p90 abs dh | median dh | road NMAD | completeness "
            "(common cells: their share of the land) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in res["cases"].items():
        for pipe in PIPELINES:
            for key, s in c.get(pipe, {}).get("metrics", {}).items():
                rows = [(key, s)] + (
                    [(key + " (filled cells left out)", s["without_filled"])] if "without_filled" in s else []
                )
                for label, t in rows:
                    lines.append(
                        f"| {name} | {pipe} | {label} | {t.get('nmad')} | {t.get('rmse')} | {t.get('median_abs_dh')} "
                        f"| {t.get('p90_abs_dh')} | {t.get('median_dh')} | {t.get('road_nmad', '-')} "
                        f"| {t.get('completeness', t.get('valid_fraction_of_reference', t.get('share_of_land', '-')))} |"
                    )
    lines += [
        "",
        "## sat2lod CPU by rule (Snakemake benchmarks, summed over jobs; the rest is Snakemake itself)",
        "",
    ]
    lines += [
        "| case | total CPU-s | snakemake process | acquire | tiles | stereo_tile | mosaic_dsm |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in res["cases"].items():
        jobs = c.get("sat2lod", {}).get("jobs", {})
        cells = [
            f"{jobs[r]['cpu_s']} ({jobs[r]['jobs']} jobs, {jobs[r]['max_rss_mb']:.0f} MB)"
            if r in jobs
            else "-"
            for r in ("acquire", "tiles", "stereo_tile", "mosaic_dsm")
        ]
        sa = c.get("sat2lod", {})
        lines.append(
            f"| {name} | {sa.get('cpu_s', '-')} | {sa.get('cpu_s_root', '-')} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def save_case(out: Path, header: dict, name: str, entries: dict[str, dict], metrics: dict[str, dict]) -> dict:
    """Merge one case's new entries (and every pipeline's metrics) into ``out`` as it is on disk now (another
    run of this script may have written other cases or pipelines meanwhile), recompute the ratios, write
    ``out`` and its .md atomically; returns the merged results."""
    res = json.loads(out.read_text()) if out.exists() else {}
    res.update(header)
    case = res.setdefault("cases", {}).setdefault(name, {})
    case.update(entries)
    for pipe in case:
        case[pipe]["metrics"] = metrics.get(pipe, case[pipe].get("metrics", {}))
    res["cpu_ratio_cars_over_sat2lod"] = {
        n: round(c["cars"]["cpu_s"] / c["sat2lod"]["cpu_s"], 2)
        for n, c in res["cases"].items()
        if "cars" in c and "sat2lod" in c
    }
    for path, text in ((out, json.dumps(res, indent=2) + "\n"), (out.with_suffix(".md"), render(res))):
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_text(text)
        tmp.replace(path)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=list(PIPELINES))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--cars-venv", type=Path, default=Path("/work/cars_venv"))
    ap.add_argument(
        "--build-cars", action="store_true", help=f"make --cars-venv with pip install cars=={CARS_VERSION}"
    )
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "sat2lod_stereo_vs_cars")
    ap.add_argument("--sample-s", type=float, default=0.1, help="psutil sampling period of the process tree")
    ap.add_argument("--warmup", action="store_true", help="run sat2lod once, unmeasured, first (numba cache)")
    ap.add_argument("--out", type=Path, default=RESULTS / "stereo_vs_cars.json")
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    ap.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=[],
        help="only merge the entries of other results files of this script (e.g. one pipeline run apart) into "
        "--out, re-evaluating each case from the DSMs left in --work",
    )
    args = ap.parse_args()
    md = args.out.with_suffix(".md")
    if args.render:
        md.write_text(render(json.loads(args.out.read_text())))
        return
    if args.merge:
        for other in args.merge:
            got = json.loads(other.read_text())
            for name, entries in got["cases"].items():
                dsms = {
                    p: dsm_path(p, name, args.work)
                    for p in PIPELINES
                    if dsm_path(p, name, args.work).exists()
                }
                metrics = evaluate(name, case_inputs(name, args.work), dsms)
                save_case(args.out, {k: got[k] for k in ("machine", "cars_version")}, name, entries, metrics)
        print("merged", *args.merge, "into", args.out)
        return
    if "cars" in args.pipelines:
        if args.build_cars:
            build_cars(args.cars_venv)
        if not (args.cars_venv / "bin" / "cars").exists():
            raise SystemExit(
                f"no CARS in {args.cars_venv}: pass --build-cars (pip install cars=={CARS_VERSION})"
            )
    args.work.mkdir(parents=True, exist_ok=True)
    header = {
        "command": "python bench/stereo_vs_cars.py " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now().isoformat(timespec="minutes"),
        "machine": f"{platform.machine()} {cpu_model()}, {os.cpu_count()} cores (shared)",
        "cars_version": CARS_VERSION,
    }
    inputs = {}
    if args.warmup and "sat2lod" in args.pipelines:
        inputs[args.cases[0]] = case_inputs(args.cases[0], args.work)
        run_sat2lod(args.cases[0], inputs[args.cases[0]], args.work, args.sample_s)
    runs: dict[str, dict[str, list]] = {n: {p: [] for p in args.pipelines} for n in args.cases}
    for rep in range(args.repeat):
        for name in args.cases:
            if name not in inputs:
                inputs[name] = case_inputs(name, args.work)
            order = args.pipelines if rep % 2 == 0 else args.pipelines[::-1]
            dsms = {}
            for pipe in order:
                print(f"[{time.strftime('%H:%M:%S')}] {name} {pipe} run {rep + 1}/{args.repeat}", flush=True)
                if pipe == "sat2lod":
                    m, dsms[pipe] = run_sat2lod(name, inputs[name], args.work, args.sample_s)
                else:
                    m, dsms[pipe] = run_cars(name, inputs[name], args.work, args.cars_venv, args.sample_s)
                m["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
                runs[name][pipe].append(m)
                print(
                    f"    cpu {m['cpu_s']} s, peak RSS {m['peak_rss_mb']} MB, wall {m['wall_s']} s",
                    flush=True,
                )
            for (
                pipe
            ) in PIPELINES:  # the other pipeline's DSM of an earlier run in --work (Gizeh's difference)
                if pipe not in dsms and dsm_path(pipe, name, args.work).exists():
                    dsms[pipe] = dsm_path(pipe, name, args.work)
            metrics = evaluate(name, inputs[name], dsms)
            entries = {}
            for pipe in args.pipelines:
                best = min(runs[name][pipe], key=lambda r: r["cpu_s"])
                entries[pipe] = {
                    **header,
                    "cpu_s": best["cpu_s"],
                    "peak_rss_mb": max(r["peak_rss_mb"] for r in runs[name][pipe]),
                    "max_process_rss_mb": max(r["max_process_rss_mb"] for r in runs[name][pipe]),
                    "wall_s": best["wall_s"],
                    "cpu_s_root": best["cpu_s_root"],
                    **({"jobs": best["jobs"]} if "jobs" in best else {}),
                    "runs": runs[name][pipe],
                }
            res = save_case(args.out, header, name, entries, metrics)
            print(json.dumps({p: res["cases"][name][p]["metrics"] for p in args.pipelines}), flush=True)
    print("wrote", args.out, md)


if __name__ == "__main__":
    main()
