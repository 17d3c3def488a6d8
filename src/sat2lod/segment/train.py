"""Training of the building segmenter on labelled scenes (synthetic cities of other seeds by default).

Training inputs are built like the chain's inference inputs: the ortho is the true ortho of the city's views
(:func:`sat2lod.ortho.true_ortho`) and the nDSM is the city's exact nDSM; labels are its building footprints
rasterized (:func:`sat2lod.segment.labels.rasterize_footprints`). Running stereo on every training city would
cost minutes per city, beyond the demo's ~3 minute training budget; the stereo nDSM's defects (blurred edges,
noise, misregistration, holes, foreground fattening) are simulated instead by augmentation of the nDSM channel
(fattening with ``ndsm_fatten_px``, blur, noise, shift, holes, and whole-channel dropout with ``ndsm_dropout`` so
the model also works on an image alone).

Fattening matters most: a stereo nDSM spreads roof heights over the ground beside the walls along the epipolar
direction (the matching window straddles the depth edge), so a model trained on exact nDSM edges follows the
fattened edge and draws footprints too long across it (on the demo, 2 to 4 times more false building cells south
and east of the houses than north and west). Trained with fattened nDSMs, the model takes the outline from the
ortho instead.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from sat2lod.progress import Progress
from sat2lod.schema import defaults
from sat2lod.segment.features import CHANNELS, make_input
from sat2lod.segment.infer import CHECKPOINT_FORMAT, predict_tiled
from sat2lod.segment.unet import UNet

log = logging.getLogger(__name__)


@dataclass
class Sample:
    """A labelled scene: x (3, H, W) float32 network input, y (H, W) uint8 (1 building, 0 not, 255 ignore)."""

    x: np.ndarray
    y: np.ndarray
    name: str = "sample"
    #: patches are drawn with probability proportional to area x weight
    weight: float = 1.0
    #: cell (m) the sample's heights were gridded at (LiDAR renders: the grid's own, or a coarser one upsampled
    #: for a sparse cloud); None when not recorded (synthetic cities: the grid's)
    cell_m: float | None = None
    #: (H, W) uint8 material of each cell, codes of :mod:`sat2lod.synth.scene` (ground 0, building 1, vegetation
    #: 2, road 3, water 4), for :func:`material_gain`; None = unknown (the sample gets no material gain)
    materials: np.ndarray | None = None


#: defaults of config section segmentation.train
_TR = defaults("segmentation", "train")


@dataclass
class TrainParams:
    """Training hyper-parameters (config section ``segmentation.train``; defaults from the schema)."""

    steps: int = _TR["steps"]
    batch_size: int = _TR["batch_size"]
    patch_px: int = _TR["patch_px"]
    lr: float = _TR["lr"]
    base_channels: int = _TR["base_channels"]
    depth: int = _TR["depth"]
    seed: int = _TR["seed"]
    ndsm_dropout: float = _TR["ndsm_dropout"]
    device: str = "cpu"
    ndsm_fatten_px: int = _TR["ndsm_fatten_px"]
    scale_aug: float = _TR["scale_aug"]
    photometric_aug: bool = _TR["photometric_aug"]
    patch_normalize: bool = _TR["patch_normalize"]
    material_aug: float = _TR["material_aug"]
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- data
def city_sample(city_dir: str | os.PathLike[str], name: str | None = None) -> Sample:
    """Build a training :class:`Sample` from a synthetic city written by :func:`sat2lod.synth.generate_city`."""
    from sat2lod.io.jsonio import read_json
    from sat2lod.io.raster import read_raster
    from sat2lod.io.rpc_files import read_rpc
    from sat2lod.io.vector import read_vector
    from sat2lod.ortho import OrthoView, true_ortho
    from sat2lod.segment.labels import rasterize_footprints

    city = Path(city_dir)
    meta = read_json(city / "scene.json")
    dsm = read_raster(city / meta["truth"]["dsm"], bands=1, masked_to_nan=True)
    ndsm = read_raster(city / meta["truth"]["ndsm"], bands=1, masked_to_nan=True).array
    views = []
    for i, v in enumerate(meta["views"]):
        img = city / v["file"]
        views.append(OrthoView(read_raster(img, bands=1).array.astype(np.float32), read_rpc(img), f"view{i}"))
    ortho, _, _ = true_ortho(dsm.array.astype(np.float32), dsm.transform, dsm.crs, views)
    y = rasterize_footprints(
        read_vector(city / meta["truth"]["buildings"]), dsm.transform, dsm.shape, dsm.crs
    )
    y[~np.isfinite(ortho)] = 255
    materials = None  # the truth's classes (sat2lod.synth.scene codes) when the city has them
    if "classes" in meta["truth"]:
        materials = read_raster(city / meta["truth"]["classes"], bands=1).array.astype(np.uint8)
    return Sample(make_input(ortho, ndsm), y, name or city.name, materials=materials)


#: metrics that are wall times (not written into the checkpoint or the metrics file)
TIMING_KEYS = ("train_seconds", "data_seconds")

#: share of training patches whose nDSM is fattened (when ``ndsm_fatten_px`` > 0)
FATTEN_SHARE = 0.7


def fatten(n: np.ndarray, length_px: int, angle: float) -> np.ndarray:
    """Stereo foreground fattening of a height grid: raised objects spread by ``length_px`` cells in the
    direction ``angle`` (radians; 0 = +column, pi/2 = +row), each cell taking the highest value up to
    ``length_px`` cells behind it (a one-sided grey dilation along a line).

    n: (H, W) float heights (any unit); returns a new (H, W) array, never lower than ``n``.
    """
    fp = np.zeros((2 * length_px + 1, 2 * length_px + 1), bool)
    for k in np.linspace(0.0, length_px, 4 * length_px + 1):
        fp[length_px + int(np.rint(k * np.sin(angle))), length_px + int(np.rint(k * np.cos(angle)))] = True
    return ndimage.grey_dilation(n, footprint=fp, mode="nearest")


def _augment(
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    ndsm_dropout: float,
    fatten_px: int = 0,
    photometric: bool = False,
    normalize: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Random rotation/flip; gamma, blur, gain/offset, noise of the ortho; with ``photometric`` the wider
    radiometry of :func:`photometric_jitter`, with ``normalize`` the ortho rescaled by the patch's own
    percentiles (:func:`normalize_patch`); nDSM defects of a stereo chain (fattening by 1 to ``fatten_px`` cells
    in a random direction, blur, noise, shift, holes) or dropout. Both options off draw the same random numbers
    as before they existed (the default model's recipe)."""
    k = int(rng.integers(4))
    x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k)
    if rng.random() < 0.5:
        x, y = x[:, :, ::-1], y[:, ::-1]
    x = x.copy()
    y = y.copy()
    # radiometry of another sensor / date: gamma, gain, offset, blur (MTF), noise
    o = np.clip(x[0], 0.0, None) ** rng.uniform(0.7, 1.4)
    if rng.random() < 0.3:
        o = ndimage.gaussian_filter(o, rng.uniform(0.3, 1.2))
    o = o * rng.uniform(0.8, 1.25) + rng.uniform(-0.1, 0.1)
    x[0] = o + rng.normal(0.0, rng.uniform(0.0, 0.03), o.shape).astype(np.float32)
    if photometric:
        x[0] = photometric_jitter(x[0], rng)
    if normalize:
        x[0] = normalize_patch(x[0], y != 255)
    if rng.random() < ndsm_dropout:
        x[1:] = 0.0
        return x, y
    n, holes = stereo_ndsm_defects(x[1], rng, fatten_px)
    x[2][holes] = 0.0
    x[1] = n
    return x, y


def photometric_jitter(o: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Radiometry of other sensors, dates and scenes than the training renders (``segmentation.train.
    photometric_aug``), on top of :func:`_augment`'s gamma / gain / offset / blur / noise: a contrast change
    about the patch mean (x U(0.6, 1.6)), an illumination ramp across the patch (haze, vignetting: up to 0.15
    from side to side, random direction), a wider blur (half the patches, sigma U(0.5, 2) px: the MTF of a
    coarser or resampled image) and more noise (standard deviation U(0, 0.06)). Nothing is inverted (shadows
    stay dark, roofs keep their relation to the ground).

    Args:
        o: (H, W) float32 ortho channel in network units (~[0, 1]), not modified.
        rng: random generator (the draw order is part of the training recipe).
    Returns:
        (H, W) float32 ortho channel.
    """
    m = float(o.mean())
    o = m + (o - m) * rng.uniform(0.6, 1.6)
    h, w = o.shape
    a = rng.uniform(0.0, 2 * np.pi)
    rr, cc = np.mgrid[0:h, 0:w]
    ramp = (np.cos(a) * (cc / max(w - 1, 1) - 0.5) + np.sin(a) * (rr / max(h - 1, 1) - 0.5)).astype(
        np.float32
    )
    o = o + rng.uniform(0.0, 0.15) * ramp
    if rng.random() < 0.5:
        o = ndimage.gaussian_filter(o, rng.uniform(0.5, 2.0))
    o = o + rng.normal(0.0, rng.uniform(0.0, 0.06), o.shape)
    return o.astype(np.float32)


def normalize_patch(o: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """The ortho channel rescaled by its own 2-98 % percentiles (over ``valid`` cells) and clipped to
    [-0.5, 1.5], as :func:`sat2lod.segment.features.make_input` scales an image at inference (each tile of a
    user's image by its own range): training patches then see the value range inference gives
    (``segmentation.train.patch_normalize``). (H, W) float32 in and out."""
    from sat2lod.segment.features import robust_range, scale_ortho

    v = o[valid] if valid is not None and valid.any() else o
    return scale_ortho(o, *robust_range(v))


def rescale_patch(
    x: np.ndarray, y: np.ndarray, r: int, c: int, side: int, patch: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``side`` x ``side`` window at (``r``, ``c``) of a sample, resampled to ``patch`` x ``patch``: another
    ground sampling distance (``side / patch`` times the sample's). Input bilinear, labels nearest (a label
    cell takes the label under its centre, so image and labels stay aligned); cells outside the sample are 0
    in the input, 255 (ignored) in the labels.

    Args:
        x: (C, H, W) float32 sample input; y: (H, W) uint8 labels.
    Returns:
        (C, patch, patch) float32 and (patch, patch) uint8.
    """
    t = (np.arange(patch) + 0.5) * (side / patch) - 0.5  # patch cell centres in window cells
    rr, cc = np.meshgrid(r + t, c + t, indexing="ij")
    xo = np.stack([ndimage.map_coordinates(ch, [rr, cc], order=1, mode="constant", cval=0.0) for ch in x])
    return xo.astype(np.float32), nearest_window(y, r, c, side, patch, 255)


def nearest_window(a: np.ndarray, r: int, c: int, side: int, patch: int, fill: int) -> np.ndarray:
    """The ``side`` x ``side`` window at (``r``, ``c``) of a (H, W) uint8 label grid on ``patch`` x ``patch``
    cells, each taking the label under its centre (:func:`rescale_patch`'s labels); ``fill`` outside the grid."""
    h, w = a.shape
    t = (np.arange(patch) + 0.5) * (side / patch) - 0.5
    rr, cc = np.meshgrid(r + t, c + t, indexing="ij")
    ri, ci = np.floor(rr + 0.5).astype(np.int64), np.floor(cc + 0.5).astype(np.int64)
    inside = (ri >= 0) & (ri < h) & (ci >= 0) & (ci < w)
    out = np.full((patch, patch), fill, np.uint8)
    out[inside] = a[ri[inside], ci[inside]]
    return out


#: log-uniform gain ranges (low, high) of :func:`material_gain` per material code of :mod:`sat2lod.synth.scene`
#: (ground 0, building 1, each building its own draw, vegetation 2, road 3, water 4): roofs from much darker to
#: much brighter than their surroundings, paved surfaces up to as bright as concrete
MATERIAL_GAINS = {0: (0.5, 2.0), 1: (0.4, 2.5), 2: (0.67, 2.0), 3: (0.67, 3.5), 4: (0.5, 3.0)}
#: Gaussian smoothing (cells) of the gain field, so a material edge is as soft as the image's
MATERIAL_GAIN_SIGMA = 0.7


def material_gain(o: np.ndarray, materials: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Domain randomization of the ortho's radiometry (``segmentation.train.material_aug``): each material of
    the patch, and each building (connected component of building cells) apart, is multiplied by its own gain,
    log-uniform in :data:`MATERIAL_GAINS`. Texture and shading within a material, and the shadows, are kept;
    what changes is which material is brighter than which. The synthetic renders give every roof a brighter
    albedo than the roads and most of the ground, and a model trained on them takes bright, flat areas for
    buildings (on real tiles: roads, car parks); with this the brightness order of roof, road and ground is
    drawn anew in each patch.

    Args:
        o: (H, W) float32 ortho channel in network units (0 = the image's dark end), not modified.
        materials: (H, W) uint8 material codes on the same cells (codes outside :data:`MATERIAL_GAINS`: gain 1).
        rng: random generator (the draw order is part of the training recipe).
    Returns:
        (H, W) float32 ortho channel, clipped to the network input's range [-0.5, 1.5].
    """
    gain = np.ones(o.shape, np.float64)
    for code, (lo, hi) in MATERIAL_GAINS.items():
        cells = materials == code
        if code == 1:
            lab, n = ndimage.label(cells)
            g = np.exp(rng.uniform(np.log(lo), np.log(hi), n + 1))
            gain[cells] = g[lab[cells]]
        else:
            gain[cells] = np.exp(rng.uniform(np.log(lo), np.log(hi)))
    gain = ndimage.gaussian_filter(gain, MATERIAL_GAIN_SIGMA, mode="nearest")
    return np.clip(o * gain, -0.5, 1.5).astype(np.float32)


#: share of nDSMs given occlusion holes by :func:`stereo_ndsm_defects`
HOLE_SHARE = 0.3


def stereo_ndsm_defects(
    n: np.ndarray,
    rng: np.random.Generator,
    fatten_px: int = 0,
    fatten_share: float = FATTEN_SHARE,
    hole_share: float = HOLE_SHARE,
) -> tuple[np.ndarray, np.ndarray]:
    """The stereo chain's nDSM error model (training augmentation; also used by bench/segment_real.py to degrade
    a LiDAR nDSM): foreground fattening by 1 to ``fatten_px`` cells in a random direction (with probability
    ``fatten_share``), Gaussian blur of sigma U(0, 1.5) cells (applied above 0.2), noise of standard deviation
    U(0, 0.05) (0.5 m in network units), a shift of up to one cell, and occlusion holes (random blobs, with
    probability ``hole_share``).

    Args:
        n: (H, W) float32 nDSM in network units (m / ``features.NDSM_SCALE_M``), not modified.
        rng: random generator (the draw order is part of the training recipe: keep it).
    Returns:
        The degraded (H, W) float32 nDSM (0 in the holes) and the (H, W) bool hole mask.
    """
    if fatten_px > 0 and rng.random() < fatten_share:
        n = fatten(n, int(rng.integers(1, fatten_px + 1)), rng.uniform(0.0, 2 * np.pi))
    sigma = rng.uniform(0.0, 1.5)
    if sigma > 0.2:
        n = ndimage.gaussian_filter(n, sigma)
    n = n + rng.normal(0.0, rng.uniform(0.0, 0.05), n.shape).astype(np.float32)  # up to 0.5 m (nDSM / 10 m)
    n = np.roll(n, (int(rng.integers(-1, 2)), int(rng.integers(-1, 2))), axis=(0, 1))
    holes = np.zeros(n.shape, bool)
    if rng.random() < hole_share:  # stereo holes: random blobs without height
        holes = ndimage.binary_dilation(rng.random(n.shape) < 0.002, iterations=int(rng.integers(2, 6)))
        n[holes] = 0.0
    return n, holes


def set_group_share(samples: list[Sample], share: float) -> list[Sample]:
    """Scale the weights of ``samples`` so that the group gets ``share`` of the patches (drawn in proportion to
    area x weight), each sample keeping its relative weight; returns the samples."""
    total = sum(s.y.size * s.weight for s in samples)
    for s in samples:
        s.weight = s.weight * share / total
    return samples


def _batch(
    samples: list[Sample],
    rng: np.random.Generator,
    batch_size: int,
    patch: int,
    ndsm_dropout: float,
    fatten_px: int = 0,
    scale_aug: float = 0.0,
    photometric: bool = False,
    normalize: bool = False,
    material_aug: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of augmented patches: (B, C, patch, patch) float32 input, (B, patch, patch) int64 labels.

    ``scale_aug`` > 0: each patch covers ``z`` times the ground of a plain one (``z`` log-uniform in
    [1 / (1 + scale_aug), 1 + scale_aug]), resampled to ``patch`` cells (:func:`rescale_patch`); 0 draws no
    zoom (the default recipe's random numbers). ``material_aug`` > 0: that share of the patches of samples with
    a material map get :func:`material_gain` before the other augmentations; 0 draws nothing. Other options:
    :func:`_augment`.
    """
    areas = np.array([s.y.size * s.weight for s in samples], float)
    xs, ys = [], []
    for _ in range(batch_size):
        s = samples[int(rng.choice(len(samples), p=areas / areas.sum()))]
        h, w = s.y.shape
        side = patch
        if scale_aug > 0:
            side = max(8, int(round(patch * np.exp(rng.uniform(-1.0, 1.0) * np.log1p(scale_aug)))))
        r = int(rng.integers(0, max(1, h - side + 1)))
        c = int(rng.integers(0, max(1, w - side + 1)))
        if side != patch:
            x, y = rescale_patch(s.x, s.y, r, c, side, patch)
        else:
            x = s.x[:, r : r + patch, c : c + patch]
            y = s.y[r : r + patch, c : c + patch]
        if y.shape != (patch, patch):
            pad = ((0, patch - y.shape[0]), (0, patch - y.shape[1]))
            x = np.pad(x, ((0, 0),) + pad)
            y = np.pad(y, pad, constant_values=255)
        if material_aug > 0 and s.materials is not None and rng.random() < material_aug:
            x = x.copy()
            x[0] = material_gain(x[0], nearest_window(s.materials, r, c, side, patch, 0), rng)
        x, y = _augment(x, y, rng, ndsm_dropout, fatten_px, photometric, normalize)
        xs.append(x)
        ys.append(y)
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys).astype(np.int64))


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice on the labelled pixels. logits (B, 1, H, W); target (B, H, W) in {0, 1, 255 = ignore}."""
    valid = (target != 255).float()
    t = (target == 1).float()
    lg = logits[:, 0]
    bce = (F.binary_cross_entropy_with_logits(lg, t, reduction="none") * valid).sum() / valid.sum().clamp(
        min=1
    )
    p = torch.sigmoid(lg) * valid
    dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + (t * valid).sum() + 1)
    return bce + dice


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of the building class; ``truth`` 255 = ignored. NaN when both are empty."""
    ok = truth != 255
    p, t = (pred == 1) & ok, (truth == 1) & ok
    union = (p | t).sum()
    return float((p & t).sum() / union) if union else float("nan")


# --------------------------------------------------------------------------------------------- training
def train_model(
    samples: list[Sample],
    params: TrainParams,
    val: list[Sample] | None = None,
    init: dict[str, torch.Tensor] | None = None,
) -> tuple[UNet, dict]:
    """Train a :class:`UNet` on ``samples``; deterministic for a given ``params.seed`` and thread count.

    ``init``: a state_dict to start from (fine-tuning, :mod:`sat2lod.segment.finetune`) instead of the seeded
    random weights; its architecture must be ``params.base_channels`` and ``params.depth``.

    Returns:
        The trained model (eval mode, on CPU) and metrics: loss history (every 10 steps), seconds, and
        IoU / pixel accuracy on ``val`` at probability 0.5 when given (on the image alone, nDSM channels
        zeroed, when ``params.ndsm_dropout`` is 1: an image-only model).
    """
    if not samples:
        raise ValueError("no training sample")
    m = 2**params.depth
    if params.patch_px % m:
        raise ValueError(
            f"segmentation.train.patch_px ({params.patch_px}) must be a multiple of {m} (2**depth)"
        )
    device = params.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("segmentation.device is 'cuda' but no CUDA device is visible; use 'cpu' or 'auto'")
    rng = np.random.default_rng(params.seed)
    torch.manual_seed(params.seed)
    model = UNet(len(CHANNELS), params.base_channels, params.depth)
    if init is not None:
        model.load_state_dict(init)
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=params.lr, total_steps=max(params.steps, 1), pct_start=0.15
    )
    history = []
    t0 = time.perf_counter()
    model.train()
    running = 0.0
    progress = Progress("training step", params.steps, log)
    for step in range(params.steps):
        xb, yb = _batch(
            samples,
            rng,
            params.batch_size,
            params.patch_px,
            params.ndsm_dropout,
            params.ndsm_fatten_px,
            params.scale_aug,
            params.photometric_aug,
            params.patch_normalize,
            params.material_aug,
        )
        loss = segmentation_loss(model(xb.to(device)), yb.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
        if (step + 1) % 10 == 0 or step == params.steps - 1:
            n = 10 if (step + 1) % 10 == 0 else (step + 1) % 10
            history.append({"step": step + 1, "loss": running / n})
            running = 0.0
            progress.update(step + 1, f"loss {history[-1]['loss']:.4f}")
    model = model.cpu().eval()
    metrics: dict[str, Any] = {
        "train_seconds": time.perf_counter() - t0,
        "history": history,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "device": device,
    }
    if val:
        ious = []
        for s in val:
            x = s.x
            if params.ndsm_dropout >= 1.0:  # an image-only model is validated on the image alone
                x = x.copy()
                x[1:] = 0.0
            prob = predict_tiled(model, x, tile_px=64 * m, overlap_px=8 * m, batch_size=2)
            ious.append(iou((prob > 0.5).astype(np.uint8), s.y))
        metrics["val_iou"] = ious
        metrics["val_iou_mean"] = float(np.nanmean(ious))
    return model, metrics


def checkpoint_payload(model: UNet, params: TrainParams, metrics: dict, data: dict) -> dict:
    """Checkpoint dict: weights, architecture, input channels, training config and data, metrics."""
    return {
        "format": CHECKPOINT_FORMAT,
        "state_dict": model.state_dict(),
        "model": {"in_channels": model.in_channels, "base": model.base, "depth": model.depth},
        "channels": list(CHANNELS),
        "train": {k: v for k, v in asdict(params).items() if k != "extra"},
        "data": data,
        "metrics": metrics,
    }


def train_segmenter(
    model: str | os.PathLike[str],
    metrics: str | os.PathLike[str],
    seeds: list[int],
    val_seeds: list[int],
    city_size_m: float = _TR["city_size_m"],
    n_views: int = _TR["n_views"],
    gsd_m: float = 0.5,
    steps: int = _TR["steps"],
    batch_size: int = _TR["batch_size"],
    patch_px: int = _TR["patch_px"],
    lr: float = _TR["lr"],
    base_channels: int = _TR["base_channels"],
    depth: int = _TR["depth"],
    seed: int = _TR["seed"],
    ndsm_dropout: float = _TR["ndsm_dropout"],
    ndsm_fatten_px: int = _TR["ndsm_fatten_px"],
    scale_aug: float = _TR["scale_aug"],
    photometric_aug: bool = _TR["photometric_aug"],
    patch_normalize: bool = _TR["patch_normalize"],
    material_aug: float = _TR["material_aug"],
    device: str = "cpu",
    threads: int = 1,
    work_dir: str | os.PathLike[str] | None = None,
    extra_samples: list[Sample] | None = None,
    extra_share: float = 0.0,
    extra_data: dict | None = None,
) -> dict:
    """Rule ``train_segmenter``: generate labelled synthetic cities, train, save checkpoint + metrics JSON.

    Args:
        model, metrics: output checkpoint (.pt) and metrics (.json) paths.
        seeds, val_seeds: synthetic city seeds for training / validation (must differ from the AOI's seed).
        city_size_m, n_views, gsd_m: synthetic city parameters.
        work_dir: where to write the cities (None: a temporary directory, deleted afterwards).
        extra_samples: more labelled scenes trained on beside the cities (e.g. LiDAR renders,
            :mod:`sat2lod.segment.lidar_samples`), each drawn in proportion to its area x ``weight`` within
            the group; ``extra_share``: the share of training patches drawn from them (0..1);
            ``extra_data``: what they are, recorded in the checkpoint's ``data``.
        others: see :class:`TrainParams`.
    """
    from sat2lod.io.checkpoint import save_checkpoint
    from sat2lod.io.jsonio import write_json
    from sat2lod.synth import generate_city

    if not seeds:
        raise ValueError(
            "segmentation.train.seeds is empty: give at least one synthetic city seed to train on"
        )
    if set(seeds) & set(val_seeds):
        raise ValueError(f"segmentation.train.val_seeds {val_seeds} overlap the training seeds {seeds}")
    torch.set_num_threads(max(1, int(threads)))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sat2lod_segtrain_") as tmp:
        base = Path(work_dir) if work_dir else Path(tmp)
        samples, val = [], []
        for s in list(seeds) + list(val_seeds):
            city = base / f"city_s{s}"
            if not (city / "scene.json").exists():
                generate_city(city, seed=s, size_m=city_size_m, n_views=n_views, gsd_m=gsd_m)
            (val if s in val_seeds else samples).append(city_sample(city, f"s{s}"))
        data_seconds = time.perf_counter() - t0
        log.info("%d training / %d validation cities ready in %.0f s", len(samples), len(val), data_seconds)
        if extra_samples:
            if not 0.0 < extra_share < 1.0:
                raise ValueError(f"extra_share must be in (0, 1) with extra samples, got {extra_share}")
            set_group_share(samples, 1.0 - extra_share)
            samples = samples + set_group_share(list(extra_samples), extra_share)
        params = TrainParams(
            steps,
            batch_size,
            patch_px,
            lr,
            base_channels,
            depth,
            seed,
            ndsm_dropout,
            device,
            ndsm_fatten_px,
            scale_aug,
            photometric_aug,
            patch_normalize,
            material_aug,
        )
        net, met = train_model(samples, params, val)
    met.update(
        {
            "data_seconds": data_seconds,
            "train_seeds": list(seeds),
            "val_seeds": list(val_seeds),
            "building_fraction": float(np.mean([np.mean(s.y == 1) for s in samples])),
        }
    )
    data = {
        "source": "synthetic",
        "seeds": list(seeds),
        "val_seeds": list(val_seeds),
        "city_size_m": city_size_m,
        "n_views": n_views,
        "gsd_m": gsd_m,
    }
    if extra_samples:
        data["extra"] = {"share": extra_share, **(extra_data or {})}
    # wall times change from run to run: returned and logged, kept out of the products (checkpoint, metrics
    # file) so that the same config trains the same files, bit for bit
    saved = {k: v for k, v in met.items() if k not in TIMING_KEYS}
    save_checkpoint(model, checkpoint_payload(net, params, saved, data))
    write_json(metrics, saved)
    log.info(
        "segmenter saved to %s: val IoU %s, %.0f s training",
        model,
        met.get("val_iou_mean"),
        met["train_seconds"],
    )
    return met
