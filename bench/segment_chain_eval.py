"""Accuracy of the chain's own products on a synthetic AOI: DTM (rule dtm) and building mask (rule segment).

Run the workflow on a synthetic AOI first (the checkpoint can be reused with segmentation.checkpoint), e.g.
  snakemake -d WORKDIR --configfile small.yaml -c2 results/segment/demo/building_mask.tif
then
  python bench/segment_chain_eval.py --workdir WORKDIR --aoi demo --out bench/results/segment_chain_eval
Compares with the generator's exact truth: DTM RMSE / NMAD / bias (and the stereo DSM's, for context); building mask
pixel IoU and footprint F1 (IoU >= 0.5) of the rule's U-Net mask and of the ndsm_threshold fallback on the same
chain nDSM (peer).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from segment_eval import evaluate, truth_ids


def stats(a: np.ndarray, b: np.ndarray) -> dict:
    e = (a - b)[np.isfinite(a) & np.isfinite(b)]
    return {
        "rmse": float(np.sqrt(np.mean(e**2))),
        "nmad": float(1.4826 * np.median(np.abs(e - np.median(e)))),
        "bias": float(e.mean()),
        "n": int(e.size),
    }


def main() -> None:
    from sat2lod.io.raster import read_raster
    from sat2lod.io.vector import read_vector
    from sat2lod.segment.infer import ndsm_threshold_probability

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--aoi", default="demo")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "segment_chain_eval"))
    args = ap.parse_args()
    w, a = Path(args.workdir), args.aoi

    def rd(p: str):
        return read_raster(w / p, bands=1, masked_to_nan=True)

    dsm, dtm, ndsm = (
        rd(f"results/mosaic/{a}/dsm.tif"),
        rd(f"results/terrain/{a}/dtm.tif"),
        rd(f"results/terrain/{a}/ndsm.tif"),
    )
    t_dsm, t_dtm = rd(f"results/synth/{a}/truth/dsm.tif"), rd(f"results/synth/{a}/truth/dtm.tif")
    mask = read_raster(w / f"results/segment/{a}/building_mask.tif", bands=1)
    res = abs(dsm.transform.a)
    ids = truth_ids(
        read_vector(w / f"results/synth/{a}/truth/buildings.gpkg"), dsm.transform, dsm.shape, dsm.crs
    )
    valid = mask.array != 255
    prob_unet = np.where(mask.array == 1, 1.0, 0.0).astype(np.float32)
    report = {
        "workdir": str(w),
        "aoi": a,
        "shape": list(dsm.shape),
        "tags_segment": mask.tags,
        "dsm_vs_truth": stats(dsm.array, t_dsm.array),
        "dtm_vs_truth": stats(dtm.array, t_dtm.array),
        "segment_rule_mask": evaluate(prob_unet, ids, valid, res, 0.5, 0.0),
        "ndsm_threshold_on_chain_ndsm": evaluate(
            ndsm_threshold_probability(ndsm.array, res), ids, valid, res
        ),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    r1, r2 = report["segment_rule_mask"], report["ndsm_threshold_on_chain_ndsm"]
    lines = [
        "# Chain products vs synthetic truth",
        "",
        (
            f"`python bench/segment_chain_eval.py --workdir {args.workdir} --aoi {a}` ({report['date_utc']}); "
            f"grid {dsm.shape[1]} x {dsm.shape[0]} at {res} m; method tag {mask.tags.get('SAT2LOD_METHOD')}."
        ),
        "",
        "| product | RMSE (m) | NMAD (m) | bias (m) |",
        "|---|---|---|---|",
    ]
    for k in ("dsm_vs_truth", "dtm_vs_truth"):
        s = report[k]
        lines.append(
            f"| {k.split('_')[0].upper()} (chain) | {s['rmse']:.3f} | {s['nmad']:.3f} | {s['bias']:+.3f} |"
        )
    lines += [
        "",
        "| building mask | pixel IoU | footprint F1 | precision | recall |",
        "|---|---|---|---|---|",
        (
            f"| rule segment ({mask.tags.get('SAT2LOD_METHOD')}) | {r1['iou']:.3f} | {r1['footprint_f1']:.3f} | "
            f"{r1['footprint_precision']:.3f} | {r1['footprint_recall']:.3f} |"
        ),
        (
            f"| ndsm_threshold on the chain nDSM | {r2['iou']:.3f} | {r2['footprint_f1']:.3f} | "
            f"{r2['footprint_precision']:.3f} | {r2['footprint_recall']:.3f} |"
        ),
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
