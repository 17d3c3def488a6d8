"""Segmentation metrics: pixel IoU and SpaceNet-style footprint F1 (one-to-one matches at IoU >= 0.5)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def instance_f1(
    pred_mask: np.ndarray, truth_ids: np.ndarray, iou_threshold: float = 0.5, min_pixels: int = 1
) -> dict[str, float]:
    """Footprint detection F1.

    Args:
        pred_mask: (H, W) uint8/bool, 1 = building (255 counts as 0); predicted footprints = its 8-connected
            components of at least ``min_pixels``.
        truth_ids: (H, W) int, 0 = background, k > 0 = truth footprint k (e.g. polygons rasterized with their index).
        iou_threshold: a prediction and a truth footprint match when their IoU reaches it (greedy, best IoU first,
            one-to-one, as the SpaceNet metric; IoU computed on pixels).
    Returns:
        dict with tp, n_pred, n_truth, precision, recall, f1, mean_iou_of_matches.
    """
    lab, n = ndimage.label(pred_mask == 1, structure=np.ones((3, 3), bool))
    if n and min_pixels > 1:
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        small = sizes < min_pixels
        small[0] = False
        lab[small[lab]] = 0
        lab, n = ndimage.label(lab > 0, structure=np.ones((3, 3), bool))
    truth = truth_ids.astype(np.int64)
    t_ids = np.unique(truth[truth > 0])
    n_truth = int(t_ids.size)
    pairs = {}
    both = (lab > 0) & (truth > 0)
    if both.any():
        keys, counts = np.unique(np.stack([lab[both], truth[both]]), axis=1, return_counts=True)
        p_area = np.bincount(lab.ravel())
        t_area = dict(zip(*np.unique(truth[truth > 0], return_counts=True)))
        for (p, t), inter in zip(keys.T, counts):
            union = p_area[p] + t_area[t] - inter
            pairs[(int(p), int(t))] = inter / union
    tp, used_p, used_t, ious = 0, set(), set(), []
    for (p, t), v in sorted(pairs.items(), key=lambda kv: -kv[1]):
        if v < iou_threshold:
            break
        if p in used_p or t in used_t:
            continue
        used_p.add(p), used_t.add(t)
        tp += 1
        ious.append(v)
    precision = tp / n if n else float("nan")
    recall = tp / n_truth if n_truth else float("nan")
    f1 = 2 * tp / (n + n_truth) if (n + n_truth) else float("nan")
    return {
        "tp": tp,
        "n_pred": int(n),
        "n_truth": n_truth,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "mean_iou_of_matches": float(np.mean(ious)) if ious else float("nan"),
    }
