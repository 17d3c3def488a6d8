"""Train the segmenter where the compute is (2 CPU threads = the demo budget, or CUDA) from exported samples.

Two steps, so that training can run on a machine without the geo stack (the lent GPU host has torch only):
  export (here; needs rasterio, pyproj, geopandas): generate synthetic cities and save their network inputs and labels
      python bench/segment_train_device.py export --seeds 101 102 --val-seeds 103 --heldout 301 \
          --out results/bench_samples
  train (numpy + torch only): train with the rule's defaults, report loss, time, IoU on the held-out city, save the
      checkpoint in the rule's format
      PYTHONPATH=src python bench/segment_train_device.py train --samples results/bench_samples --device cpu \
          --threads 2 --out OUTDIR
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch


def export(args: argparse.Namespace) -> None:
    from sat2lod.segment.train import city_sample
    from sat2lod.synth import generate_city

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for role, seeds, size in (
        ("train", args.seeds, args.city_size),
        ("val", args.val_seeds, args.city_size),
        ("heldout", [args.heldout], args.heldout_size),
    ):
        for s in seeds:
            city = out / f"city_s{s}"
            if not (city / "scene.json").exists():
                generate_city(city, seed=s, size_m=size, n_views=3, gsd_m=0.5)
            smp = city_sample(city)
            np.savez_compressed(out / f"{role}_s{s}.npz", x=smp.x, y=smp.y)
            print(role, s, smp.x.shape, float(np.mean(smp.y == 1)), flush=True)


def train(args: argparse.Namespace) -> None:
    from sat2lod.segment.infer import predict_tiled
    from sat2lod.segment.train import Sample, TrainParams, checkpoint_payload, iou, train_model

    torch.set_num_threads(args.threads)
    d = Path(args.samples)

    def load(role: str) -> list[Sample]:
        return [
            Sample(z["x"], z["y"], p.stem) for p in sorted(d.glob(f"{role}_s*.npz")) for z in [np.load(p)]
        ]

    tr, val, held = load("train"), load("val"), load("heldout")
    params = TrainParams(steps=args.steps, device=args.device, seed=args.seed, ndsm_dropout=args.ndsm_dropout)
    t0 = time.perf_counter()
    model, met = train_model(tr, params, val)
    wall = time.perf_counter() - t0
    res = {}
    for s in held:
        for name, x in (("ortho+ndsm", s.x), ("ortho_only", np.concatenate([s.x[:1], 0 * s.x[1:]]))):
            prob = predict_tiled(model, x, 1000, 192, 2)
            res[f"{s.name}_{name}"] = iou((prob > 0.5).astype(np.uint8), s.y)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "source": "synthetic",
        "seeds": [int(s.name.split("_s")[1]) for s in tr],
        "val_seeds": [int(s.name.split("_s")[1]) for s in val],
        "exported_samples": True,
    }
    torch.save(
        checkpoint_payload(model, params, met, data),
        out / f"segmenter_{args.device}{args.threads}{args.tag}.pt",
    )
    report = {
        "device": args.device,
        "threads": args.threads,
        "steps": args.steps,
        "ndsm_dropout": args.ndsm_dropout,
        "wall_s": wall,
        "train_seconds": met["train_seconds"],
        "loss_first": met["history"][0]["loss"],
        "loss_last": met["history"][-1]["loss"],
        "val_iou_mean": met.get("val_iou_mean"),
        "heldout_iou_at_0.5": res,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    (out / f"segment_train_{args.device}{args.threads}{args.tag}.json").write_text(
        json.dumps(report, indent=2) + "\n"
    )
    print(json.dumps(report, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--seeds", type=int, nargs="+", default=[101, 102])
    e.add_argument("--val-seeds", type=int, nargs="*", default=[103])
    e.add_argument("--heldout", type=int, default=301)
    e.add_argument("--city-size", type=float, default=250.0)
    e.add_argument("--heldout-size", type=float, default=400.0)
    e.add_argument("--out", default="results/bench_samples")
    t = sub.add_parser("train")
    t.add_argument("--samples", default="results/bench_samples")
    t.add_argument("--device", default="cpu")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--steps", type=int, default=400)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--ndsm-dropout", type=float, default=0.15)
    t.add_argument("--tag", default="", help="suffix of the output file names")
    t.add_argument("--out", default="results/bench_train")
    args = ap.parse_args()
    (export if args.cmd == "export" else train)(args)


if __name__ == "__main__":
    sys.exit(main())
