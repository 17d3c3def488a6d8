"""Trials of image-only training recipes on held-out data only (issue 15: the image-only model's recipe).

Trains one U-Net with the nDSM hidden in every patch (``ndsm_dropout`` 1) on the shipped recipe's data minus
two LiDAR renders held out for validation, then validates image only on three held-out scenes cut into 160 px
tiles, each tile's ortho scaled by its own 2-98 % percentiles as ``sat2lod segment`` scales a user's tile:

- ``s103``: synthetic city 103 (the recipe's validation seed);
- ``stbarth``: the St Barth render (``lidar-prod/St_Barth_...subset_100m.laz``, 0.5 m, dense buildings);
- ``0382``: the centre 1200 x 1200 cells of ``ign-pdal-tools/test_semis_2021_0382_6565_LA93_IGN69.laz``
  (a decimated 1 km tile gridded at 2.5 m, colour).

Tiles with fewer than 50 building cells are left out. Prints the per-tile mean IoU and the pooled IoU per
scene (threshold 0.5), and the per-tile mean IoU of labelling every cell building (the trivial reference a
recipe has to beat), as one JSON line. No evaluation data of the benches (real_building_tiles, SpaceNet,
Montpellier / eastern-France LiDAR) is read.

Run:  OMP_NUM_THREADS=1 python bench/image_only_trials.py --steps 500 --scale-aug 0.4 --photometric \
          --patch-normalize --seeds 101 102 104 105 106 107 108 109 110 111 --work /tmp/trial_cities
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from sat2lod.segment.default_model import DEFAULT_LIDAR_DIR, LIDAR_SHARE, lidar_training_samples
from sat2lod.segment.infer import predict_tiled
from sat2lod.segment.train import (
    Sample,
    TrainParams,
    city_sample,
    normalize_patch,
    set_group_share,
    train_model,
)

HELD_OUT = (
    "lidar-prod/St_Barth_RGAF09_UTM20N_IGN_1988_SB_subset_100m.laz",
    "ign-pdal-tools/test_semis_2021_0382_6565_LA93_IGN69.laz",
)
TILE = 160


def tile_scores(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float, int, float]:
    """(per-tile mean IoU, pooled IoU, tiles, per-tile mean IoU of labelling every cell building: the trivial
    reference) of ``model`` image only on (3, H, W) ``x`` and (H, W) ``y``."""
    ious, inter, union, everything = [], 0, 0, []
    h, w = y.shape
    for r in range(0, h - TILE + 1, TILE):
        for c in range(0, w - TILE + 1, TILE):
            xt, yt = x[:, r : r + TILE, c : c + TILE].copy(), y[r : r + TILE, c : c + TILE]
            if (yt == 1).sum() < 50:
                continue
            xt[0] = normalize_patch(xt[0])
            xt[1:] = 0.0
            p = predict_tiled(model, xt, tile_px=TILE, overlap_px=0, batch_size=1) > 0.5
            ok, t = yt != 255, yt == 1
            i, u = int((p & t & ok).sum()), int(((p | t) & ok).sum())
            inter, union = inter + i, union + u
            ious.append(i / u if u else np.nan)
            everything.append(float(t[ok].mean()))
    nan = float("nan")
    mean = float(np.nanmean(ious)) if ious else nan
    return mean, inter / max(union, 1), len(ious), float(np.mean(everything)) if everything else nan


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 102], help="synthetic training cities")
    ap.add_argument("--scale-aug", type=float, default=0.0)
    ap.add_argument("--photometric", action="store_true")
    ap.add_argument("--patch-normalize", action="store_true")
    ap.add_argument("--lidar-share", type=float, default=LIDAR_SHARE)
    ap.add_argument("--lidar-dir", default=str(DEFAULT_LIDAR_DIR))
    ap.add_argument("--work", default="/tmp/image_only_trials", help="synthetic cities are generated here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from sat2lod.synth import generate_city

    cities = {}
    for s in [*args.seeds, 103]:
        d = Path(args.work) / f"city_s{s}"
        if not (d / "scene.json").exists():
            generate_city(d, seed=s, size_m=250.0, n_views=3, gsd_m=0.5)
        cities[s] = city_sample(d, f"s{s}")
    lidar = lidar_training_samples(args.lidar_dir)
    train = [copy.copy(s) for s in lidar if s.name not in HELD_OUT]
    set_group_share([s for s in train if s.cell_m == 0.5], 0.5)
    set_group_share([s for s in train if s.cell_m != 0.5], 0.5)
    val = {"s103": (cities[103].x, cities[103].y)}
    for s in lidar:
        if s.name == HELD_OUT[0]:
            val["stbarth"] = (s.x, s.y)
        elif s.name == HELD_OUT[1]:
            val["0382"] = (s.x[:, 400:1600, 400:1600], s.y[400:1600, 400:1600])
    synth: list[Sample] = [copy.copy(cities[s]) for s in args.seeds]
    samples = set_group_share(synth, 1 - args.lidar_share) + set_group_share(train, args.lidar_share)
    params = TrainParams(
        steps=args.steps,
        ndsm_dropout=1.0,
        scale_aug=args.scale_aug,
        photometric_aug=args.photometric,
        patch_normalize=args.patch_normalize,
    )
    t0 = time.perf_counter()
    model, _ = train_model(samples, params)
    res = {"args": vars(args), "train_seconds": round(time.perf_counter() - t0)}
    for name, (x, y) in val.items():
        mean, pooled, n, everything = tile_scores(model, x, y)
        res[name] = {
            "mean_iou": round(mean, 3),
            "pooled_iou": round(pooled, 3),
            "tiles": n,
            "mean_iou_all_building": round(everything, 3),
        }
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
