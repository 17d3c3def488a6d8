"""Fine-tuning of the U-Net on building footprints the user supplies (``segmentation.labels``).

The approach of the original AI4GEO system: a model trained elsewhere (the shipped default, trained on synthetic
cities only, does not transfer to real scenes, see issue 15) is adapted to the scene with the footprints a user
has for it, typically an OpenStreetMap export. The label raster (:func:`sat2lod.segment.labels.training_labels`)
says "not building" only near mapped buildings and leaves the edges open: in a band around every footprint edge
(misregistration) the training target is the starting model's own mask, which keeps the edges where the image
puts them (with the band simply ignored, the few fine-tuning steps drift the outlines inwards: on the test
scene the fine-tuned model missed 7x more building cells than the starting one, 1717 vs 233). The training loop
and its augmentation are those of :func:`sat2lod.segment.train.train_model`, started from the model's weights.

A block across the end of the AOI's longer axis (``val_fraction`` of it) is held out: the metrics give the IoU
on it before and after fine-tuning, against the same labels (ignored cells left out).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
import torch

from sat2lod.schema import defaults
from sat2lod.segment.train import Sample, TrainParams, iou

log = logging.getLogger(__name__)
_FT = defaults("segmentation", "finetune")  # defaults of config section segmentation.finetune
_SEG = defaults("segmentation")


def split_block(
    shape: tuple[int, int], val_fraction: float
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """(train, validation) regions of a (H, W) grid as (row slice, column slice): the validation block is the
    last ``val_fraction`` of the longer axis (columns when W >= H: the east end; else rows: the south end).
    ``val_fraction`` 0 gives the whole grid to training and an empty validation block."""
    h, w = shape
    full = slice(0, None)
    if w >= h:
        cut = w - int(round(w * val_fraction))
        return (full, slice(0, cut)), (full, slice(cut, w))
    cut = h - int(round(h * val_fraction))
    return (slice(0, cut), full), (slice(cut, h), full)


def block_iou(model: torch.nn.Module, sample: Sample, device: str = "cpu") -> float:
    """IoU of the building class at probability 0.5 on a labelled block (ignored cells left out; NaN when
    neither the labels nor the prediction have a building there)."""
    from sat2lod.segment.infer import predict_tiled

    m = model.multiple
    prob = predict_tiled(model, sample.x, tile_px=64 * m, overlap_px=8 * m, batch_size=2, device=device)
    return iou((prob > 0.5).astype(np.uint8), sample.y)


def finetune_model(
    x: np.ndarray,
    y: np.ndarray,
    init: dict[str, Any],
    steps: int = _FT["steps"],
    batch_size: int = _FT["batch_size"],
    patch_px: int = _FT["patch_px"],
    lr: float = _FT["lr"],
    seed: int = _FT["seed"],
    val_fraction: float = _FT["val_fraction"],
    device: str = "cpu",
) -> tuple[torch.nn.Module, dict[str, Any], TrainParams]:
    """Fine-tune the model of checkpoint dict ``init`` on one labelled scene.

    Args:
        x: (3, H, W) float32 network input of the AOI (:func:`sat2lod.segment.features.make_input`).
        y: (H, W) uint8 labels: 1 building, 0 not, 254 edge band (trained towards the starting model's mask,
            ignored in validation), 255 ignored (:func:`sat2lod.segment.labels.training_labels`).
        init: the starting checkpoint dict (``model``, ``state_dict``, ``train``).
        others: see the schema's ``segmentation.finetune``.
    Returns:
        The fine-tuned model (eval, CPU), metrics (``val_iou_before`` / ``val_iou_after`` on the held-out block,
        ``val_iou_mean`` = after, loss history, label counts), and the training parameters used.
    Raises:
        ValueError: the training part of the AOI has no building label.
    """
    from sat2lod.segment.infer import model_from_checkpoint, predict_tiled
    from sat2lod.segment.labels import EDGE_BAND
    from sat2lod.segment.train import train_model

    start = model_from_checkpoint(init)
    tr, va = split_block(y.shape, val_fraction)
    yt = y[tr].copy()
    xt = np.ascontiguousarray(x[:, tr[0], tr[1]])
    band = yt == EDGE_BAND
    if band.any():
        m = start.multiple
        prob = predict_tiled(start, xt, tile_px=64 * m, overlap_px=8 * m, batch_size=2)
        yt[band] = (prob[band] > 0.5).astype(np.uint8)
    yv = y[va].copy()
    yv[yv == EDGE_BAND] = 255
    train = Sample(xt, yt, "labels")
    val = Sample(np.ascontiguousarray(x[:, va[0], va[1]]), yv, "held-out block")
    if not (y[tr] == 1).any():
        raise ValueError(
            "no footprint falls in the training part of the AOI (all in the held-out block or on ignored "
            "cells): lower segmentation.finetune.val_fraction or give footprints across the AOI"
        )
    arch = init["model"]
    params = TrainParams(
        steps=steps,
        batch_size=batch_size,
        patch_px=patch_px,
        lr=lr,
        base_channels=int(arch["base"]),
        depth=int(arch["depth"]),
        seed=seed,
        ndsm_dropout=float(init.get("train", {}).get("ndsm_dropout", 0.0)),
        device=device,
        # the AOI's nDSM comes from the stereo chain: its fattening is real, not to be simulated again
        ndsm_fatten_px=0,
    )
    has_val = val.y.size > 0 and ((val.y == 0) | (val.y == 1)).any()
    before = block_iou(start, val) if has_val else float("nan")
    model, met = train_model([train], params, init=init["state_dict"])
    after = block_iou(model, val) if has_val else float("nan")
    met.update(
        {
            "val_iou_before": before,
            "val_iou_after": after,
            "val_iou_mean": after,
            "val_fraction": val_fraction,
            "label_cells": {
                part: {
                    "building": int((s.y == 1).sum()),
                    "not_building": int((s.y == 0).sum()),
                    "ignored": int((s.y == 255).sum()),
                }
                for part, s in (("train", train), ("val", val))
            },
            "edge_band_cells": int(band.sum()),
        }
    )
    if has_val and not (val.y == 1).any():
        log.warning("the held-out block has no building label: its IoU measures false positives only")
    log.info("held-out block IoU %.3f before fine-tuning, %.3f after", before, after)
    return model, met, params


def finetune_segmenter(
    ortho: str | os.PathLike[str],
    ndsm: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    model: str | os.PathLike[str],
    metrics: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | None = None,
    steps: int = _FT["steps"],
    batch_size: int = _FT["batch_size"],
    patch_px: int = _FT["patch_px"],
    lr: float = _FT["lr"],
    seed: int = _FT["seed"],
    val_fraction: float = _FT["val_fraction"],
    edge_ignore_m: float = _FT["edge_ignore_m"],
    negative_radius_m: float = _FT["negative_radius_m"],
    device: str = _SEG["device"],
    threads: int = _SEG["torch_threads"],
) -> dict[str, Any]:
    """Rule ``finetune_segmenter``: the AOI's ortho + nDSM and the user's footprints -> fine-tuned checkpoint
    and metrics JSON (held-out IoU before / after).

    Args:
        ortho: true ortho COG (band 1 = PAN); ndsm: nDSM COG on the same grid (m, NaN nodata).
        labels: the user's footprints (``segmentation.labels``; any vector file and CRS).
        model, metrics: outputs (.pt checkpoint of the segmenter format, .json).
        checkpoint: the starting model; None = the shipped default.
        threads: torch CPU threads (fixed: the weights differ in the last bits between thread counts).
        others: see the schema's ``segmentation.finetune``.
    Returns:
        The metrics (with wall times, which the files leave out).
    """
    from sat2lod.grid import check_same_grid
    from sat2lod.io.checkpoint import save_checkpoint
    from sat2lod.io.digest import sha256_file
    from sat2lod.io.jsonio import write_json
    from sat2lod.io.raster import read_raster
    from sat2lod.segment.features import make_input
    from sat2lod.segment.infer import load_segmenter
    from sat2lod.segment.labels import read_footprint_labels, training_labels
    from sat2lod.segment.shipped import DEFAULT_MODEL_VERSION
    from sat2lod.segment.train import TIMING_KEYS, checkpoint_payload

    t0 = time.perf_counter()
    torch.set_num_threads(max(1, int(threads)))
    footprints = read_footprint_labels(labels)
    o = read_raster(ortho, masked_to_nan=True)
    n = read_raster(ndsm, bands=1, masked_to_nan=True)
    check_same_grid(o, n, ortho, ndsm, fix="both must come from the same DSM mosaic")
    ortho_all = o.array.astype(np.float32)
    ortho_a = ortho_all[0] if ortho_all.ndim == 3 else ortho_all
    y = training_labels(
        footprints, o.transform, ortho_a.shape, o.crs, edge_ignore_m, negative_radius_m, os.fspath(labels)
    )
    y[~np.isfinite(ortho_a)] = 255
    x = make_input(ortho_a, n.array.astype(np.float32))
    _, payload, start_path, device = load_segmenter(checkpoint, device, threads)
    net, met, params = finetune_model(
        x, y, payload, steps, batch_size, patch_px, lr, seed, val_fraction, device
    )
    # the starting model is named, not where this install keeps it (products must not depend on the install)
    start_id = os.fspath(checkpoint) if checkpoint else f"sat2lod default model v{DEFAULT_MODEL_VERSION}"
    data = {
        "source": "labels",
        "labels": os.fspath(labels),
        "labels_sha256": sha256_file(labels),
        "n_footprints": len(footprints),
        "start_checkpoint": start_id,
        "start_checkpoint_sha256": sha256_file(start_path),
        "edge_ignore_m": edge_ignore_m,
        "negative_radius_m": negative_radius_m,
        "val_fraction": val_fraction,
    }
    met["seconds"] = time.perf_counter() - t0
    saved = {k: v for k, v in met.items() if k not in (*TIMING_KEYS, "seconds")}
    save_checkpoint(model, checkpoint_payload(net, params, saved, data))
    write_json(metrics, {**saved, "data": data})
    log.info(
        "fine-tuned segmenter written to %s: held-out IoU %.3f -> %.3f, %.0f s",
        model,
        met["val_iou_before"],
        met["val_iou_after"],
        met["seconds"],
    )
    return met
