"""Building segmentation: accuracy on a held-out synthetic city and on the real SpaceNet tile; inference throughput.

Steps:
 1. Train (``sat2lod.segment.train.train_segmenter``, the rule's function, with the config defaults unless overridden)
    or reuse ``--checkpoint``.
 2. Held-out synthetic city (seed ``--heldout-seed``, never a training seed): inputs built like the training ones
    (true ortho of its views on its truth DSM + truth nDSM) and, with ``--chain-ortho/--chain-ndsm``, the chain's own
    products. Pixel IoU of the building mask vs the rasterized truth footprints, footprint F1 at IoU >= 0.5, for the
    U-Net and for the ``ndsm_threshold`` fallback (peer).
 3. SpaceNet 4 Atlanta tile (../shared/data/spacenet4_atlanta_tile): real WorldView-2 PAN, no nDSM: the U-Net runs
    on the image alone (nDSM channel empty, as the ``ndsm_dropout`` augmentation trained it to). IoU and F1.
 4. Throughput (MP/s) of tiled inference (1000 px tiles, 192 px overlap, batch 2) on 2 threads, vs the untiled
    pass on the same input (peer) and the ndsm_threshold method.

Usage:
  python bench/segment_eval.py [--checkpoint results/models/segmenter.pt] [--steps 400] [--heldout-seed 301]
Writes bench/results/segment_eval.json and .md.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def evaluate(
    prob: np.ndarray,
    truth_ids: np.ndarray,
    valid: np.ndarray,
    res: float,
    threshold: float = 0.5,
    min_area_m2: float = 10.0,
) -> dict:
    from sat2lod.segment.infer import probability_to_mask
    from sat2lod.segment.metrics import instance_f1
    from sat2lod.segment.train import iou

    mask = probability_to_mask(prob, threshold, res, min_area_m2, valid)
    truth = (truth_ids > 0).astype(np.uint8)
    truth[~valid] = 255
    f1 = instance_f1(np.where(valid, mask, 0), np.where(valid, truth_ids, 0), 0.5, int(min_area_m2 / res**2))
    return {
        "iou": iou(mask, truth),
        **{f"footprint_{k}": v for k, v in f1.items()},
        "predicted_fraction": float((mask == 1)[valid].mean()),
        "truth_fraction": float((truth == 1)[valid].mean()),
    }


def truth_ids(gdf, transform, shape, crs) -> np.ndarray:
    from rasterio import features

    gdf = gdf.to_crs(crs)
    shapes = [(g, i + 1) for i, g in enumerate(gdf.geometry) if g is not None and not g.is_empty]
    return features.rasterize(shapes, out_shape=shape, transform=transform, fill=0, dtype="int32")


def main() -> None:
    from sat2lod.io.checkpoint import load_checkpoint
    from sat2lod.io.jsonio import read_json
    from sat2lod.io.raster import read_raster
    from sat2lod.io.vector import read_vector
    from sat2lod.segment.features import make_input
    from sat2lod.segment.infer import (
        CHECKPOINT_FORMAT,
        model_from_checkpoint,
        ndsm_threshold_probability,
        predict_full,
        predict_tiled,
    )
    from sat2lod.segment.train import city_sample, train_segmenter

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="reuse this checkpoint (else train one)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 102])
    ap.add_argument("--val-seeds", type=int, nargs="*", default=[103])
    ap.add_argument("--city-size", type=float, default=250.0)
    ap.add_argument("--heldout-seed", type=int, default=301)
    ap.add_argument("--heldout-size", type=float, default=400.0)
    ap.add_argument(
        "--heldout-dir", default=None, help="reuse this generated held-out city (else generate it)"
    )
    ap.add_argument("--chain-ortho", default=None)
    ap.add_argument("--chain-ndsm", default=None)
    ap.add_argument("--chain-truth", default=None, help="truth/buildings.gpkg of the chain's AOI")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-throughput", action="store_true", help="skip the 4 MP timing (accuracy only)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "segment_eval"))
    ap.add_argument("--save-checkpoint", default=str(REPO / "results" / "models" / "segmenter_bench.pt"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    report: dict = {"args": vars(args)}
    tmp = Path(tempfile.mkdtemp(prefix="segbench_"))

    # 1. model
    if args.checkpoint:
        ckpt = Path(args.checkpoint)
    else:
        ckpt = Path(args.save_checkpoint)
        met = train_segmenter(
            ckpt,
            tmp / "metrics.json",
            seeds=args.seeds,
            val_seeds=args.val_seeds,
            city_size_m=args.city_size,
            steps=args.steps,
            threads=args.threads,
            work_dir=tmp / "cities",
        )
        report["training"] = {
            k: met[k] for k in ("train_seconds", "data_seconds", "val_iou_mean", "n_parameters")
        }
        report["training"]["loss_first_last"] = [met["history"][0]["loss"], met["history"][-1]["loss"]]
    payload = load_checkpoint(ckpt, CHECKPOINT_FORMAT)
    model = model_from_checkpoint(payload)
    report["checkpoint"] = {
        "path": str(ckpt),
        "train": payload["train"],
        "data": payload["data"],
        "val_iou_mean": payload["metrics"].get("val_iou_mean"),
    }
    train_seeds = set(payload["data"].get("seeds", [])) | set(payload["data"].get("val_seeds", []))
    if args.heldout_seed in train_seeds:
        sys.exit(f"--heldout-seed {args.heldout_seed} was used in training ({sorted(train_seeds)})")

    # 2. held-out synthetic city
    from sat2lod.synth import generate_city

    city = Path(args.heldout_dir) if args.heldout_dir else tmp / f"heldout_s{args.heldout_seed}"
    if not (city / "scene.json").exists():
        generate_city(city, seed=args.heldout_seed, size_m=args.heldout_size, n_views=3, gsd_m=0.5)
    meta = read_json(city / "scene.json")
    if meta.get("seed") not in (None, args.heldout_seed):
        sys.exit(f"{city} is the city of seed {meta.get('seed')}, not --heldout-seed {args.heldout_seed}")
    sample = city_sample(city)
    dsm = read_raster(city / meta["truth"]["dsm"], bands=1, masked_to_nan=True)
    ids = truth_ids(read_vector(city / meta["truth"]["buildings"]), dsm.transform, dsm.shape, dsm.crs)
    valid = sample.y != 255
    ndsm = read_raster(city / meta["truth"]["ndsm"], bands=1, masked_to_nan=True).array
    res = abs(dsm.transform.a)
    prob = predict_tiled(model, sample.x, 1000, 192, 2)
    report["heldout_truth_inputs"] = {
        "unet": evaluate(prob, ids, valid, res),
        "ndsm_threshold": evaluate(ndsm_threshold_probability(ndsm, res), ids, valid, res),
    }
    # image-only on the held-out city (nDSM withheld): what the image channel alone gives
    ortho_only = sample.x.copy()
    ortho_only[1:] = 0.0
    report["heldout_truth_inputs"]["unet_image_only"] = evaluate(
        predict_tiled(model, ortho_only, 1000, 192, 2), ids, valid, res
    )
    if args.chain_ortho and args.chain_ndsm and args.chain_truth:
        o = read_raster(args.chain_ortho, bands=1, masked_to_nan=True)
        n = read_raster(args.chain_ndsm, bands=1, masked_to_nan=True).array
        cid = truth_ids(read_vector(args.chain_truth), o.transform, o.shape, o.crs)
        cvalid = np.isfinite(o.array) & np.isfinite(n)
        report["chain_inputs"] = {
            "unet": evaluate(
                predict_tiled(model, make_input(o.array, n), 1000, 192, 2), cid, cvalid, abs(o.transform.a)
            ),
            "ndsm_threshold": evaluate(
                ndsm_threshold_probability(n, abs(o.transform.a)), cid, cvalid, abs(o.transform.a)
            ),
            "files": [args.chain_ortho, args.chain_ndsm, args.chain_truth],
        }

    # 3. SpaceNet (image only)
    sn = SHARED / "spacenet4_atlanta_tile"
    if sn.is_dir():
        img = read_raster(sn / "sample_geotiff.tif", bands=1, masked_to_nan=True)
        labels = read_vector(sn / "geotiff_labels.geojson")
        sid = truth_ids(labels, img.transform, img.shape, img.crs)
        svalid = np.isfinite(img.array)
        sprob = predict_tiled(model, make_input(img.array.astype(np.float32), None), 1000, 192, 2)
        report["spacenet_image_only"] = evaluate(sprob, sid, svalid, abs(img.transform.a))
        report["spacenet_image_only"]["prob_p50_p99"] = [
            float(np.percentile(sprob, 50)),
            float(np.percentile(sprob, 99)),
        ]
    else:
        report["spacenet_image_only"] = f"skipped: {sn} not found"

    # 4. throughput on 2000 x 2000 px (4 MP)
    if not args.no_throughput:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(3, 2000, 2000)).astype(np.float32)
        predict_tiled(model, x[:, :256, :256], 256, 64, 1)  # warm-up
        t = time.perf_counter()
        predict_tiled(model, x, 1000, 192, 2)
        t_tiled = time.perf_counter() - t
        t = time.perf_counter()
        predict_full(model, x)
        t_full = time.perf_counter() - t
        nd = rng.normal(3, 3, (2000, 2000)).astype(np.float32)
        t = time.perf_counter()
        ndsm_threshold_probability(nd, 0.5)
        t_thr = time.perf_counter() - t
        report[f"throughput_4MP_threads{args.threads}"] = {
            "unet_tiled_mp_per_s": 4.0 / t_tiled,
            "unet_untiled_mp_per_s": 4.0 / t_full,
            "tiled_over_untiled_time": t_tiled / t_full,
            "ndsm_threshold_mp_per_s": 4.0 / t_thr,
        }
    report["env"] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    lines = [
        "# Building segmentation evaluation",
        "",
        "`python bench/segment_eval.py "
        + " ".join(a for a in sys.argv[1:])
        + f"` ({report['env']['date_utc']}, {report['env']['platform']}, "
        f"torch {torch.__version__}, {args.threads} threads)",
        "",
    ]
    if "training" in report:
        tr = report["training"]
        lines += [
            (
                f"Training: {tr['train_seconds']:.0f} s optimisation + {tr['data_seconds']:.0f} s data "
                f"(cities {args.seeds}, {args.city_size:g} m), {tr['n_parameters']} parameters, loss "
                f"{tr['loss_first_last'][0]:.3f} -> {tr['loss_first_last'][1]:.3f}, validation IoU (seeds "
                f"{args.val_seeds}) {tr['val_iou_mean']:.3f}."
            ),
            "",
        ]
    lines += [
        "| scene | inputs | method | pixel IoU | footprint F1 (IoU>=0.5) | precision | recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, label in (
        ("heldout_truth_inputs", f"held-out city s{args.heldout_seed} ({args.heldout_size:g} m)"),
        ("chain_inputs", "chain products"),
    ):
        for meth, r in report.get(key, {}).items():
            if isinstance(r, dict) and "iou" in r:
                inputs = (
                    "ortho only"
                    if meth == "unet_image_only"
                    else ("ortho + nDSM" if meth == "unet" else "nDSM")
                )
                lines.append(
                    f"| {label} | {inputs} | {meth} | {r['iou']:.3f} | {r['footprint_f1']:.3f} | "
                    f"{r['footprint_precision']:.3f} | {r['footprint_recall']:.3f} |"
                )
    s = report["spacenet_image_only"]
    if isinstance(s, dict):
        lines.append(
            f"| SpaceNet 4 Atlanta tile (real WV-2 PAN) | image only | unet | {s['iou']:.3f} | "
            f"{s['footprint_f1']:.3f} | {s['footprint_precision']:.3f} | {s['footprint_recall']:.3f} |"
        )
    th = report.get(f"throughput_4MP_threads{args.threads}")
    if th:
        lines += [
            "",
            (
                f"Throughput on a 4 MP input, {args.threads} threads: U-Net tiled {th['unet_tiled_mp_per_s']:.3f} MP/s, "
                f"untiled {th['unet_untiled_mp_per_s']:.3f} MP/s (tiled/untiled time {th['tiled_over_untiled_time']:.2f}), "
                f"ndsm_threshold {th['ndsm_threshold_mp_per_s']:.1f} MP/s."
            ),
        ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
