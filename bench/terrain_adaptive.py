"""Terrain filter on real relief: pit removal (terrain.max_pit_size_m, pit_depth_m) and slope-adaptive
threshold (terrain.adaptive_slope), each off and on, same DSMs.

Real DSMs (the chain's own DSM mosaics of real pairs, e.g. results/mosaic/ventoux/dsm.tif): the building mask of
the ``ndsm_threshold`` segmentation on the resulting nDSM (schema defaults), its area as a fraction of the
valid DSM cells, its component count, and the nDSM inside it (median, p95, max): on a scene without buildings
everything labelled building is natural relief or vegetation left above the terrain.
Synthetic DSMs with an exact DTM (the cases of bench/terrain_compare.py: a hill with boxes, a synthetic city,
the city with stereo-like defects): DTM RMSE / NMAD / bias against the truth.

Usage:
  python bench/terrain_adaptive.py --real NAME=DSM.tif [NAME=DSM.tif ...] [--cities 11] [--city-size 200]
      [--out bench/results/terrain_adaptive]
Writes <out>.json and <out>.md.
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
from scipy import ndimage

from sat2lod.io.raster import read_raster
from sat2lod.segment.infer import ndsm_threshold_probability, probability_to_mask
from sat2lod.terrain import DTMParams, extract_dtm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from terrain_compare import cases, metrics

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {
    "before": {"adaptive_slope": 0.0, "max_pit_size_m": 0.0},
    "slope-adaptive only": {"adaptive_slope": 1.0, "max_pit_size_m": 0.0},
    "pits only": {"adaptive_slope": 0.0},
    "after (default)": {},
}


def real_row(name: str, dsm_path: str, settings: dict) -> dict:
    r = read_raster(dsm_path, bands=1, masked_to_nan=True)
    dsm = r.array.astype(np.float32)
    res = abs(r.transform.a)
    t = time.perf_counter()
    dtm = extract_dtm(dsm, res, replace(DTMParams(), **settings))
    dt = time.perf_counter() - t
    ndsm = dsm - dtm
    valid = np.isfinite(dsm)
    mask = probability_to_mask(ndsm_threshold_probability(ndsm, res, 2.5, 0.6), 0.5, res, 10.0, valid) == 1
    _, n = ndimage.label(mask)
    h = ndsm[mask & np.isfinite(ndsm)]
    return {
        "case": name,
        "shape": list(dsm.shape),
        "valid_fraction": float(valid.mean()),
        "building_fraction_of_valid": float(mask.sum() / max(valid.sum(), 1)),
        "building_area_m2": float(mask.sum() * res * res),
        "components": int(n),
        "ndsm_in_mask_median_m": float(np.median(h)) if h.size else None,
        "ndsm_in_mask_p95_m": float(np.percentile(h, 95)) if h.size else None,
        "ndsm_in_mask_max_m": float(h.max()) if h.size else None,
        "seconds": dt,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", nargs="*", default=[], help="NAME=DSM.tif")
    ap.add_argument("--cities", type=int, nargs="*", default=[11])
    ap.add_argument("--city-size", type=float, default=200.0)
    ap.add_argument("--no-ign", action="store_true", help="skip the IGN LiDAR tile (the slowest case)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "terrain_adaptive"))
    ap.add_argument(
        "--factors", type=float, nargs="*", default=[], help="extra adaptive_slope values to compare (sweep)"
    )
    ap.add_argument("--note", default="", help="where the real DSMs come from (written under the command)")
    args = ap.parse_args()
    for f in args.factors:
        SETTINGS[f"adaptive_slope {f:g}"] = {"adaptive_slope": f}
    real, synth = [], []
    for spec in args.real:
        name, path = spec.split("=", 1)
        for label, a in SETTINGS.items():
            real.append({"method": label, **real_row(name, path, a)})
            print(real[-1], flush=True)
    with tempfile.TemporaryDirectory() as tmpd:
        for name, dsm, ref, res, max_obj in cases(args.cities, args.city_size, Path(tmpd)):
            if args.no_ign and name.startswith("ign"):
                continue
            for label, a in SETTINGS.items():
                t = time.perf_counter()
                dtm = extract_dtm(dsm, res, DTMParams(max_object_size_m=max_obj, **a))
                row = {"case": name, "method": label, "seconds": time.perf_counter() - t}
                synth.append(row | metrics(dtm, ref, dsm))
                print(synth[-1], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"real": real, "synthetic": synth}, indent=2))
    lines = [
        "# Slope-adaptive terrain filter: before / after",
        "",
        f"Command: `python bench/terrain_adaptive.py {' '.join(a for a in sys.argv[1:] if a != args.note)}`",
        "",
        args.note,
        "",
        "## Real DSMs: what the ndsm_threshold segmentation labels building",
        "",
        "| case | method | building % of valid | area m² | components | nDSM median / p95 / max in mask (m) | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in real:
        hs = " / ".join(
            "–" if r[k] is None else f"{r[k]:.1f}"
            for k in ("ndsm_in_mask_median_m", "ndsm_in_mask_p95_m", "ndsm_in_mask_max_m")
        )
        lines.append(
            f"| {r['case']} | {r['method']} | {100 * r['building_fraction_of_valid']:.2f} | "
            f"{r['building_area_m2']:.0f} | {r['components']} | {hs} | {r['seconds']:.1f} |"
        )
    lines += [
        "",
        "## DSMs with a reference DTM (synthetic: exact; IGN LiDAR HD tile): DTM error (m)",
        "",
        "| case | method | RMSE | NMAD | bias | p95 abs | RMSE under objects | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in synth:
        lines.append(
            f"| {r['case']} | {r['method']} | {r['rmse']:.3f} | {r['nmad']:.3f} | {r['mean']:+.3f} | "
            f"{r['p95_abs']:.3f} | {r['rmse_objects']:.3f} | {r['seconds']:.1f} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
