"""Terrain filter: the wider object buffer on flat ground (terrain.flat_object_buffer_m), off / on, same DSMs.

A stereo DSM stands above the ground for 2-4 m beside a wall (foreground fattening); grown by only
``object_buffer_m`` (1.5 m), the buildings leave those wall feet as ground and the DTM rises beside and under
them, so every nDSM-derived height (LOD1 blocks, LOD2 eaves) comes out low. "off" sets
``flat_object_buffer_m`` to ``object_buffer_m`` (one buffer everywhere, the filter before this option).

Cases:
- ``--stereo NAME=ROOT``: the chain's own stereo DSM of a synthetic city (ROOT = a workflow folder after a run:
  ``results/mosaic/{aoi}/dsm.tif``, exact truth in ``results/synth/{aoi}/truth/``): DTM RMSE, mean error under
  the buildings (truth class building) and on the open ground;
- the DSMs of bench/terrain_compare.py (a Gaussian hill with boxes, the IGN LiDAR HD tile with IGN's DTM,
  a synthetic city's exact DSM, clean and with stereo-like noise): DTM error against their reference;
- ``--real NAME=DSM.tif`` (the chain's DSM mosaics of real pairs): share of the valid scene that the
  ``ndsm_threshold`` segmentation labels building on the resulting nDSM (relief and vegetation left above the
  terrain on scenes without buildings), as bench/terrain_adaptive.py counts it.

Whole-AOI :func:`sat2lod.terrain.extract_dtm` with the schema defaults otherwise.

Usage:
  python bench/terrain_flat_buffer.py --stereo demo=DIR [...] --real reunion=DSM.tif [...] [--note TEXT]
Writes bench/results/terrain_flat_buffer.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from sat2lod.io.raster import read_raster
from sat2lod.synth.scene import BUILDING, GROUND
from sat2lod.terrain import DTMParams, extract_dtm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from terrain_adaptive import real_row
from terrain_compare import cases, metrics

REPO = Path(__file__).resolve().parents[1]
OFF = {"flat_object_buffer_m": DTMParams().object_buffer_m}
SETTINGS = {"off": OFF, "on (default)": {}}


def _read(path: Path) -> tuple[np.ndarray, float]:
    r = read_raster(path, bands=1, masked_to_nan=True)
    return r.array.astype(np.float32), abs(r.transform.a)


def stereo_row(name: str, root: Path, settings: dict) -> dict:
    """DTM of the chain's stereo DSM of a synthetic city against its exact terrain."""
    aoi = next((root / "results" / "mosaic").iterdir()).name
    dsm, res = _read(root / "results" / "mosaic" / aoi / "dsm.tif")
    truth, _ = _read(root / "results" / "synth" / aoi / "truth" / "dtm.tif")
    cls, _ = _read(root / "results" / "synth" / aoi / "truth" / "classes.tif")
    t = time.perf_counter()
    dtm = extract_dtm(dsm, res, replace(DTMParams(), **settings))
    dt = time.perf_counter() - t
    e = dtm - truth
    ok = np.isfinite(e)
    return {
        "case": name,
        "rmse": float(np.sqrt(np.mean(e[ok] ** 2))),
        "mean_under_buildings": float(np.mean(e[ok & (cls == BUILDING)])),
        "mean_ground": float(np.mean(e[ok & (cls == GROUND)])),
        "seconds": dt,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stereo", nargs="*", default=[], help="NAME=workflow folder of a synthetic chain run")
    ap.add_argument("--real", nargs="*", default=[], help="NAME=DSM.tif")
    ap.add_argument("--cities", type=int, nargs="*", default=[11])
    ap.add_argument("--city-size", type=float, default=200.0)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "terrain_flat_buffer"))
    ap.add_argument("--note", default="", help="where the DSMs come from (written under the command)")
    args = ap.parse_args()
    res: dict[str, list] = {"stereo": [], "reference": [], "real": []}
    for spec in args.stereo:
        name, path = spec.split("=", 1)
        for label, a in SETTINGS.items():
            res["stereo"].append({"method": label, **stereo_row(name, Path(path), a)})
            print(res["stereo"][-1], flush=True)
    with tempfile.TemporaryDirectory() as tmpd:
        for name, dsm, ref, r, max_obj in cases(args.cities, args.city_size, Path(tmpd)):
            for label, a in SETTINGS.items():
                t = time.perf_counter()
                dtm = extract_dtm(dsm, r, DTMParams(max_object_size_m=max_obj, **a))
                row = {"case": name, "method": label, "seconds": time.perf_counter() - t}
                res["reference"].append(row | metrics(dtm, ref, dsm))
                print(res["reference"][-1], flush=True)
    for spec in args.real:
        name, path = spec.split("=", 1)
        for label, a in SETTINGS.items():
            res["real"].append({"method": label, **real_row(name, path, a)})
            print(res["real"][-1], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2))
    cmd = " ".join(a for a in sys.argv[1:] if a != args.note)
    lines = [
        "# Terrain filter: the wider object buffer on flat ground (`terrain.flat_object_buffer_m`)",
        "",
        f"Command: `python bench/terrain_flat_buffer.py {cmd}`",
        "",
        args.note,
        "",
        (
            f"off = one buffer of {DTMParams().object_buffer_m} m everywhere; on = "
            f"{DTMParams().flat_object_buffer_m} m where the terrain's own slope is under "
            f"{DTMParams().flat_max_slope} (the defaults)."
        ),
        "",
        "## The chain's stereo DSM of synthetic cities: DTM error against the exact terrain (m)",
        "",
        "| case | buffer on flat ground | RMSE | mean under buildings | mean on open ground | s |",
        "|---|---|---|---|---|---|",
    ]
    for r in res["stereo"]:
        lines.append(
            f"| {r['case']} | {r['method']} | {r['rmse']:.3f} | {r['mean_under_buildings']:+.3f} | "
            f"{r['mean_ground']:+.3f} | {r['seconds']:.1f} |"
        )
    lines += [
        "",
        "## DSMs with a reference DTM (bench/terrain_compare.py's cases): DTM error (m)",
        "",
        "| case | buffer on flat ground | RMSE | NMAD | bias | p95 abs | RMSE under objects | RMSE ground |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["reference"]:
        lines.append(
            f"| {r['case']} | {r['method']} | {r['rmse']:.3f} | {r['nmad']:.3f} | {r['mean']:+.3f} | "
            f"{r['p95_abs']:.3f} | {r['rmse_objects']:.3f} | {r['rmse_ground']:.3f} |"
        )
    lines += [
        "",
        "## Real DSMs: what the ndsm_threshold segmentation labels building (relief left above the terrain)",
        "",
        "| case | buffer on flat ground | building % of valid | components | nDSM median / p95 in mask (m) |",
        "|---|---|---|---|---|",
    ]
    for r in res["real"]:
        hs = " / ".join(
            "–" if r[k] is None else f"{r[k]:.1f}" for k in ("ndsm_in_mask_median_m", "ndsm_in_mask_p95_m")
        )
        lines.append(
            f"| {r['case']} | {r['method']} | {100 * r['building_fraction_of_valid']:.2f} | {r['components']} | {hs} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
