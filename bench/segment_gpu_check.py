"""GPU path of the segmenter: training and tiled inference on CUDA agree with CPU; speed of both, same machine.

Needs only numpy, scipy and torch (runs on the lent GPU machine, whose image has no rasterio):
  PYTHONPATH=src python bench/segment_gpu_check.py --out bench/results/segment_gpu_check.json
Checks (exit status 1 if one fails):
  - the same seed trains on CUDA with a decreasing loss (fake scenes: bright boxes with height, rough blobs);
  - tiled inference of one set of weights on CUDA equals CPU within 1e-3 (probability);
Measures: training steps/s (batch 8 x 128² px, default U-Net) and tiled inference MP/s (4 MP, 1000 px tiles,
192 px overlap, batch 2 and 8) on CUDA and on this machine's CPU (``--cpu-threads``, all by default), with the
ratios. ``--cpu-threads 2`` gives the demo's 2-core budget on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

from sat2lod.segment.features import make_input
from sat2lod.segment.infer import predict_tiled
from sat2lod.segment.train import Sample, TrainParams, _batch, segmentation_loss, train_model
from sat2lod.segment.unet import UNet


def fake_scene(seed: int, n: int = 256):
    rng = np.random.default_rng(seed)
    ortho = rng.normal(500, 40, (n, n)).astype(np.float32)
    ndsm = rng.normal(0, 0.1, (n, n)).astype(np.float32)
    y = np.zeros((n, n), np.uint8)
    for _ in range(12):
        r, c = rng.integers(0, n - 40, 2)
        h, w = rng.integers(10, 40, 2)
        ortho[r : r + h, c : c + w] = rng.uniform(800, 1000)
        ndsm[r : r + h, c : c + w] = rng.uniform(3, 12)
        y[r : r + h, c : c + w] = 1
    return Sample(make_input(ortho, ndsm), y, f"fake{seed}")


def steps_per_s(device: str, samples: list[Sample], n: int = 20) -> float:
    torch.manual_seed(0)
    model = UNet(3, 16, 3).to(device)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    rng = np.random.default_rng(0)
    batches = [_batch(samples, rng, 8, 128, 0.0) for _ in range(n + 3)]
    for k, (xb, yb) in enumerate(batches):
        if k == 3:
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
        loss = segmentation_loss(model(xb.to(device)), yb.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t)


def infer_mp_s(model: UNet, x: np.ndarray, device: str, batch: int) -> float:
    predict_tiled(model, x[:, :512, :512], 256, 64, batch, device)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    predict_tiled(model, x, 1000, 192, batch, device)
    if device == "cuda":
        torch.cuda.synchronize()
    return x.shape[1] * x.shape[2] / 1e6 / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/results/segment_gpu_check.json")
    ap.add_argument(
        "--cpu-threads",
        type=int,
        default=None,
        help="torch CPU threads for the CPU measurements (2 = the CI / demo budget); default: all",
    )
    args = ap.parse_args()
    if args.cpu_threads:
        torch.set_num_threads(args.cpu_threads)
    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    report: dict = {
        "cuda": cuda,
        "device_name": torch.cuda.get_device_name(0) if cuda else None,
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "checks": {},
    }
    samples = [fake_scene(k) for k in range(3)]
    params = TrainParams(
        steps=60,
        batch_size=8,
        patch_px=128,
        lr=5e-3,
        base_channels=16,
        depth=3,
        seed=3,
        ndsm_dropout=0.0,
        device=dev,
    )
    model, met = train_model(samples, params)
    losses = [h["loss"] for h in met["history"]]
    report["checks"][f"train_on_{dev}_loss_decreases"] = {
        "first": losses[0],
        "last": losses[-1],
        "ok": losses[-1] < 0.7 * losses[0],
    }
    x = samples[0].x
    big = np.tile(x, (1, 8, 8))[:, :2000, :2000].copy()  # 4 MP
    p_cpu = predict_tiled(model, big[:, :1200, :1200], 1000, 192, 2, "cpu")
    if cuda:
        p_gpu = predict_tiled(model.to("cuda"), big[:, :1200, :1200], 1000, 192, 2, "cuda")
        model.cpu()
        diff = float(np.abs(p_gpu - p_cpu).max())
        report["checks"]["tiled_cuda_equals_cpu"] = {"max_abs_diff": diff, "ok": diff < 1e-3}
    speed = {
        "train_steps_per_s_cpu": steps_per_s("cpu", samples),
        "infer_mp_per_s_cpu_batch2": infer_mp_s(model, big, "cpu", 2),
    }
    # the demo's default training: 400 steps of 8 x 128² px
    speed["train_400_steps_cpu_s"] = 400 / speed["train_steps_per_s_cpu"]
    if cuda:
        speed["train_steps_per_s_cuda"] = steps_per_s("cuda", samples)
        gm = model.to("cuda")
        speed["infer_mp_per_s_cuda_batch2"] = infer_mp_s(gm, big, "cuda", 2)
        speed["infer_mp_per_s_cuda_batch8"] = infer_mp_s(gm, big, "cuda", 8)
        speed["train_speedup_cuda_vs_cpu"] = speed["train_steps_per_s_cuda"] / speed["train_steps_per_s_cpu"]
        speed["infer_speedup_cuda_vs_cpu_batch2"] = (
            speed["infer_mp_per_s_cuda_batch2"] / speed["infer_mp_per_s_cpu_batch2"]
        )
    report["speed"] = speed
    ok = all(c["ok"] for c in report["checks"].values())
    report["all_ok"] = ok
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:  # bench scripts write their own result files
        json.dump(report, fh, indent=2)
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
