"""Fine-tuning on user footprints (segmentation.labels) measured on real data: the IGN LiDAR HD eastern-France
village subset with its BD TOPO building footprints as the user's labels (issue 15).

The LiDAR cloud is gridded at 0.5 m like bench/segment_real.py (bench/lidar_grid.py): ortho = mean R, G, B of
the highest return, nDSM = highest return - interpolated ground. Rule ``finetune_segmenter``'s function
(:func:`sat2lod.segment.finetune.finetune_segmenter`) fine-tunes the shipped default model on the BD TOPO
footprints with the schema's defaults of ``segmentation.finetune`` (or ``--steps``), holding out the east (or
south) ``val_fraction`` of the grid. On that held-out block, before and after: building IoU against the LiDAR
class 6 (cells whose highest return is a building point; empty cells ignored) and the share of vegetation cells
(classes 3-5) labelled building, at probability 0.5 on the raw LiDAR nDSM; and the IoU against the footprint
labels that the metrics file reports.

Run:  python bench/finetune_lidar.py [--steps N]
Writes bench/results/finetune_lidar.json and .md; the rasters go to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lidar_grid import DATASETS, EPSG, VEGETATION, rasters, read_points, surface_rasters

from sat2lod.io.raster import write_raster
from sat2lod.schema import defaults
from sat2lod.segment.features import make_input
from sat2lod.segment.finetune import finetune_segmenter, split_block
from sat2lod.segment.infer import load_segmenter, predict_tiled
from sat2lod.segment.labels import rasterize_footprints, read_footprint_labels
from sat2lod.segment.train import iou

OUT = Path(__file__).resolve().parent / "results"


def scores(model, x: np.ndarray, ref: np.ndarray, veg: np.ndarray, block: tuple[slice, slice]) -> dict:
    """IoU vs class 6 and vegetation labelled building on ``block`` of the grid."""
    p = predict_tiled(model, x, 512, 128) > 0.5
    p, r, v = p[block], ref[block], veg[block]
    return {
        "iou_class6": iou(p.astype(np.uint8), r),
        "veg_as_building": float(p[v].mean()) if v.any() else float("nan"),
        "building_fraction": float(p[r != 255].mean()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=defaults("segmentation", "finetune")["steps"])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    files, shp = DATASETS["eastern_france"]
    if not all(f.exists() for f in files) or shp is None or not shp.exists():
        print(f"eastern_france: skipped, files not found ({files}, {shp})")
        return 0
    pts = read_points(files)
    r, s = rasters(pts), surface_rasters(pts)
    ref = (s["top_class"] == 6).astype(np.uint8)
    ref[s["empty"]] = 255
    veg = np.isin(s["top_class"], VEGETATION) & (ref != 255)
    ft = defaults("segmentation", "finetune")
    _, block = split_block(ref.shape, ft["val_fraction"])
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_raster(d / "ortho.tif", s["ortho"], r["transform"], EPSG, nodata=float("nan"))
        write_raster(d / "ndsm.tif", r["ndsm"], r["transform"], EPSG, nodata=float("nan"))
        t0 = time.perf_counter()
        met = finetune_segmenter(
            d / "ortho.tif", d / "ndsm.tif", shp, d / "m.pt", d / "m.json", steps=args.steps, threads=1
        )
        seconds = time.perf_counter() - t0
        x = make_input(s["ortho"], r["ndsm"])
        before = scores(load_segmenter(None, "cpu", 1)[0], x, ref, veg, block)
        after = scores(load_segmenter(d / "m.pt", "cpu", 1)[0], x, ref, veg, block)
    # how far the labels themselves are from the LiDAR's buildings (the most fine-tuning can learn from them)
    labels = rasterize_footprints(read_footprint_labels(shp), r["transform"], ref.shape, EPSG)
    labels_iou = iou(labels[block], ref[block])
    ref_frac = float(ref[block][ref[block] != 255].mean())
    res = {
        "dataset": "ign_lidarhd_bdtopo_buildings (eastern France), labels = BD TOPO footprints",
        "grid": list(ref.shape),
        "held_out_block": [block[0].start, block[0].stop, block[1].start, block[1].stop],
        "finetune": {**ft, "steps": args.steps},
        "seconds_1_thread": round(seconds, 1),
        "val_iou_vs_labels": {"before": met["val_iou_before"], "after": met["val_iou_after"]},
        "held_out_vs_lidar": {"before": before, "after": after},
        "label_cells": met["label_cells"],
        "held_out_labels_vs_class6_iou": labels_iou,
        "held_out_class6_fraction": ref_frac,
    }
    OUT.mkdir(exist_ok=True)
    # NaN (no vegetation class) as null: the file stays strict JSON
    text = json.dumps(res, indent=2).replace("NaN", "null")
    (OUT / "finetune_lidar.json").write_text(text + "\n")
    md = [
        "# Fine-tuning on BD TOPO footprints (IGN LiDAR HD, eastern France)",
        "",
        "`python bench/finetune_lidar.py"
        + (f" --steps {args.steps}" if args.steps != ft["steps"] else "")
        + "`",
        "",
        (
            f"Grid {ref.shape[0]} x {ref.shape[1]} cells at 0.5 m; held-out block: the last "
            f"{ft['val_fraction']:.0%} of the longer axis; {args.steps} steps, {seconds:.0f} s on one thread."
        ),
        "",
        "| held-out block | IoU vs labels | IoU vs class 6 | vegetation as building | scene labelled building |",
        "|---|---|---|---|---|",
    ]
    for k, sc in (("before", before), ("after", after)):
        md.append(
            f"| {k} fine-tuning | {res['val_iou_vs_labels'][k]:.3f} | {sc['iou_class6']:.3f} | "
            f"{sc['veg_as_building']:.1%} | {sc['building_fraction']:.1%} |"
        )
    md += [
        "",
        (
            f"On the held-out block the LiDAR's class 6 covers {ref_frac:.1%} of the cells; the BD TOPO "
            f"footprints themselves have IoU {labels_iou:.3f} with it. No vegetation class in this cloud (its "
            "trees are class 1)."
        ),
    ]
    (OUT / "finetune_lidar.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
