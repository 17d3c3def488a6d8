"""Building probability and mask: tiled U-Net inference, or the nDSM-threshold fallback; post-processing."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from sat2lod.segment.unet import UNet

log = logging.getLogger(__name__)

#: ``format`` key of the segmenter checkpoints (sat2lod.segment.train writes them)
CHECKPOINT_FORMAT = "sat2lod-segmenter-1"
#: training GSD (m) assumed for a checkpoint that does not record one (the synthetic cities' default)
DEFAULT_MODEL_GSD_M = 0.5
#: an input whose GSD differs from the model's by more than this fraction is resampled to the model's GSD
GSD_TOLERANCE = 0.1


def model_from_checkpoint(payload: dict) -> UNet:
    """Rebuild the eval-mode :class:`UNet` of a checkpoint dict."""
    model = UNet(**payload["model"])
    model.load_state_dict(payload["state_dict"])
    return model.eval()


def load_segmenter(
    checkpoint: str | os.PathLike[str] | None, device: str, threads: int
) -> tuple[UNet, dict[str, Any], Path, str]:
    """The eval-mode U-Net of a checkpoint on ``device``, for rule ``segment`` and ``sat2lod segment``.

    Args:
        checkpoint: checkpoint file; None = the shipped default model (:mod:`sat2lod.segment.shipped`).
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when visible).
        threads: torch CPU threads of the inference (``segmentation.torch_threads``), set here for the process
            (torch has no per-model setting): a fixed number, not the machine's cores, because probabilities
            differ in their last bits between thread counts.
    Returns:
        (model, checkpoint dict, checkpoint path, device used).
    """
    from sat2lod.io.checkpoint import load_checkpoint
    from sat2lod.segment.shipped import resolve_checkpoint

    torch.set_num_threads(max(1, int(threads)))
    path = resolve_checkpoint(checkpoint)
    payload = load_checkpoint(path, CHECKPOINT_FORMAT)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model_from_checkpoint(payload).to(device), payload, path, device


def model_gsd_m(payload: dict[str, Any]) -> float:
    """Ground sampling distance (m) a checkpoint was trained at (``data.gsd_m``; 0.5 m when not recorded)."""
    return float(payload.get("data", {}).get("gsd_m") or DEFAULT_MODEL_GSD_M)


def needs_resampling(gsd_m: float | None, model_gsd: float) -> bool:
    """Whether an input of ``gsd_m`` (None = unknown: never) is resampled to the model's ``model_gsd``."""
    return gsd_m is not None and abs(gsd_m / model_gsd - 1.0) > GSD_TOLERANCE


def _zoom_to(a: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    """Resample (H, W) ``a`` onto ``shape`` (same extent), spline ``order``; NaN cells are filled first."""
    from sat2lod.arrays import fill_nearest

    filled = fill_nearest(a) if np.isnan(a).any() else a
    z = (shape[0] / a.shape[0], shape[1] / a.shape[1])
    return ndimage.zoom(np.nan_to_num(filled), z, order=order, mode="nearest", grid_mode=True).astype(
        np.float32
    )


def _zoom_nodata(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear :func:`_zoom_to` of (H, W) ``a``, NaN where more than half the support was NaN."""
    z = _zoom_to(a, shape, 1)
    z[_zoom_to(np.isnan(a).astype(np.float32), shape, 1) > 0.5] = np.nan
    return z


def unet_probability(
    model: UNet,
    pan: np.ndarray,
    ndsm: np.ndarray | None,
    gsd_m: float | None,
    model_gsd: float,
    tile_px: int,
    overlap_px: int,
    batch_size: int,
    device: str,
    ortho_range: tuple[float, float] | None = None,
) -> tuple[np.ndarray, bool]:
    """U-Net building probability on the input grid, computed at the model's training GSD.

    Shared by rule ``segment`` and ``sat2lod segment``. When ``gsd_m`` differs from ``model_gsd`` by more than
    :data:`GSD_TOLERANCE`, the image (and nDSM) are resampled bilinearly to ``model_gsd`` (cells more than half
    nodata stay nodata), the network runs there (:func:`predict_tiled`) and the probability is resampled
    bilinearly back onto the input grid; otherwise the input goes to the network as it is.

    Args:
        model: the network (:func:`load_segmenter`).
        pan: (H, W) panchromatic image (any radiometric unit), NaN = nodata.
        ndsm: (H, W) height above terrain (m) on the same grid, NaN = nodata; None = image only.
        gsd_m: the grid's ground sampling distance (m); None = unknown (no resampling).
        model_gsd: the model's training GSD (m), :func:`model_gsd_m`.
        tile_px, overlap_px, batch_size, device: :func:`predict_tiled`.
        ortho_range: radiometric (low, high) of the image mapped to (0, 1) (a tile of an AOI passes the AOI's);
            None = the 2-98 % percentiles of ``pan`` (:func:`sat2lod.segment.features.make_input`).
    Returns:
        (H, W) float32 probability in [0, 1] (nodata cells are not masked here), and whether it was resampled.
    """
    from sat2lod.segment.features import make_input

    h, w = pan.shape
    resampled = needs_resampling(gsd_m, model_gsd)
    p_in, n_in = pan, ndsm
    if resampled:
        f = gsd_m / model_gsd
        shape = (max(8, round(h * f)), max(8, round(w * f)))
        p_in = _zoom_nodata(pan, shape)
        n_in = None if ndsm is None else _zoom_nodata(ndsm, shape)
    prob = predict_tiled(model, make_input(p_in, n_in, ortho_range), tile_px, overlap_px, batch_size, device)
    if resampled:
        prob = np.clip(_zoom_to(prob, (h, w), 1), 0.0, 1.0)
    return prob.astype(np.float32), resampled


def _ramp(n: int, overlap: int, lead: bool, trail: bool) -> np.ndarray:
    """1-D blending weight of a tile of ``n`` px: 0 over the outer quarter of an interior overlap, linear ramp
    over the middle half, 1 elsewhere; two overlapping tiles' weights sum to 1."""
    w = np.ones(n, np.float32)
    if overlap <= 0:
        return w
    q, half = overlap // 4, overlap - 2 * (overlap // 4)
    ramp = (np.arange(half, dtype=np.float32) + 0.5) / half
    if lead:
        w[:q] = 0.0
        w[q : q + half] = ramp
    if trail:
        if q:
            w[n - q :] = 0.0
        w[n - q - half : n - q] = ramp[::-1]
    return w


def tile_origins(size: int, tile: int, overlap: int) -> list[int]:
    """Tile starts along one axis (multiples of ``tile - overlap``) covering ``size`` px (last tile may overhang)."""
    stride = tile - overlap
    n = 1 if size <= tile else 1 + math.ceil((size - tile) / stride)
    return [k * stride for k in range(n)]


@torch.no_grad()
def predict_full(model: UNet, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Untiled inference (reference for tests, small images): (C, H, W) -> (H, W) float32 probability."""
    m = model.multiple
    _, h, w = x.shape
    hp, wp = math.ceil(h / m) * m, math.ceil(w / m) * m
    xp = np.pad(x, ((0, 0), (0, hp - h), (0, wp - w)), mode="edge")
    model.eval()
    logits = model(torch.from_numpy(xp)[None].to(device))
    return torch.sigmoid(logits)[0, 0, :h, :w].cpu().numpy().astype(np.float32)


@torch.no_grad()
def predict_tiled(
    model: UNet,
    x: np.ndarray,
    tile_px: int = 1000,
    overlap_px: int = 192,
    batch_size: int = 2,
    device: str = "cpu",
) -> np.ndarray:
    """Tiled inference with overlap and linear blending.

    Tiles start on multiples of ``tile_px - overlap_px`` (a multiple of ``2**depth``, so every tile sees the same
    pooling phase as the whole image), the image is edge-padded to cover the last tiles, and predictions are
    blended with weights that ignore the outer quarter of each interior overlap. Where the network's receptive
    half-width is at most ``overlap_px / 4``, the result equals untiled inference.

    Args:
        model: the network (eval mode is set here).
        x: (C, H, W) float32 input from :func:`sat2lod.segment.features.make_input`.
        tile_px, overlap_px: tile side and overlap (px), multiples of ``model.multiple``.
        batch_size: tiles per forward pass.
    Returns:
        (H, W) float32 building probability.
    """
    m = model.multiple
    if tile_px % m or overlap_px % m or not 0 <= overlap_px < tile_px:
        raise ValueError(
            f"segmentation.tile_px ({tile_px}) and overlap_px ({overlap_px}) must be multiples of "
            f"{m} (2**depth of the model) with 0 <= overlap < tile"
        )
    _, h, w = x.shape
    th, tw = min(tile_px, math.ceil(h / m) * m), min(tile_px, math.ceil(w / m) * m)
    rows, cols = tile_origins(h, th, overlap_px), tile_origins(w, tw, overlap_px)
    hp, wp = rows[-1] + th, cols[-1] + tw
    xp = np.pad(x, ((0, 0), (0, hp - h), (0, wp - w)), mode="edge")
    acc = np.zeros((hp, wp), np.float32)
    wsum = np.zeros((hp, wp), np.float32)
    jobs = [(r, c_) for r in rows for c_ in cols]
    model.eval()
    for k in range(0, len(jobs), batch_size):
        batch = jobs[k : k + batch_size]
        t = torch.from_numpy(np.stack([xp[:, r : r + th, c_ : c_ + tw] for r, c_ in batch])).to(device)
        prob = torch.sigmoid(model(t))[:, 0].cpu().numpy()
        for (r, c_), p in zip(batch, prob):
            wy = _ramp(th, overlap_px, r > 0, r < rows[-1])
            wx = _ramp(tw, overlap_px, c_ > 0, c_ < cols[-1])
            wt = wy[:, None] * wx[None, :]
            acc[r : r + th, c_ : c_ + tw] += wt * p
            wsum[r : r + th, c_ : c_ + tw] += wt
    return (acc / np.maximum(wsum, 1e-12))[:h, :w]


def ndsm_threshold_probability(
    ndsm: np.ndarray, resolution_m: float, min_height_m: float = 2.5, max_roughness_m: float = 0.6
) -> np.ndarray:
    """Fallback without a network: building score from the nDSM alone.

    The nDSM is hole-filled (nearest) and median-filtered over ~2.5 m (stereo noise, spikes); then
    score = sigmoid((nDSM - min_height) / 0.5 m) * sigmoid((max_roughness - roughness) / 0.2 m), roughness = median
    over ~2.5 m of |Laplacian| of the filtered nDSM (m): planar roofs are smooth, tree crowns are not.
    Args:
        ndsm: (H, W) metres, NaN = nodata (score NaN there).
    Returns:
        (H, W) float32 in [0, 1].
    """
    from sat2lod.arrays import fill_nearest

    size = max(3, round(2.5 / resolution_m) | 1)
    valid = np.isfinite(ndsm)
    if not valid.any():
        return np.full(ndsm.shape, np.nan, np.float32)
    n = ndimage.median_filter(fill_nearest(ndsm), size=size, mode="nearest")
    rough = ndimage.median_filter(np.abs(ndimage.laplace(n)), size=size)
    with np.errstate(over="ignore"):
        s = 1.0 / (1.0 + np.exp(-(n - min_height_m) / 0.5)) / (1.0 + np.exp(-(max_roughness_m - rough) / 0.2))
    s = s.astype(np.float32)
    s[~valid] = np.nan
    return s


def probability_to_mask(
    prob: np.ndarray,
    threshold: float,
    resolution_m: float,
    min_area_m2: float,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Binary building mask (H, W) uint8: 1 building, 0 not, 255 nodata; components under ``min_area_m2`` dropped."""
    m = np.nan_to_num(prob, nan=0.0) > threshold
    m = ndimage.binary_opening(m, structure=np.ones((3, 3), bool))
    lab, n = ndimage.label(m)
    if n:
        areas = ndimage.sum(np.ones_like(lab), lab, index=np.arange(1, n + 1)) * resolution_m**2
        keep = np.concatenate([[False], areas >= min_area_m2])
        m = keep[lab]
    out = m.astype(np.uint8)
    ok = np.isfinite(prob) if valid is None else valid & np.isfinite(prob)
    out[~ok] = 255
    return out
