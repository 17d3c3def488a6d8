"""Network inputs: normalized ortho + nDSM (+ nDSM-valid flag), the same at training and inference."""

from __future__ import annotations

import numpy as np

#: Channels of the network input, in order.
CHANNELS = ("ortho", "ndsm", "ndsm_valid")
NDSM_SCALE_M = 10.0
NDSM_CLIP_M = (-2.0, 40.0)


def robust_range(image: np.ndarray, lo_pct: float = 2.0, hi_pct: float = 98.0) -> tuple[float, float]:
    """(low, high) percentiles of the finite values of ``image``; (0, 1) when there are none."""
    v = image[np.isfinite(image)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(v, [lo_pct, hi_pct])
    return float(lo), float(max(hi, lo + 1e-6))


def make_input(
    ortho: np.ndarray, ndsm: np.ndarray | None, ortho_range: tuple[float, float] | None = None
) -> np.ndarray:
    """Stack the network input.

    Args:
        ortho: (H, W) panchromatic ortho (any radiometric unit), NaN = nodata.
        ndsm: (H, W) height above terrain (m), NaN = nodata; None when there is no height (image-only input).
        ortho_range: radiometric (low, high) mapped to (0, 1); None = 2-98 % percentiles of this image (computed on
            the whole image, so tiles of one image share it).
    Returns:
        (3, H, W) float32: ortho scaled to ~[0, 1] (clipped to [-0.5, 1.5], 0 where NaN), nDSM / 10 m clipped to
        [-0.2, 4] (0 where NaN or absent), and 1/0 where the nDSM is valid / missing.
    """
    lo, hi = ortho_range or robust_range(ortho)
    o = np.clip((ortho.astype(np.float32) - lo) / (hi - lo), -0.5, 1.5)
    o[~np.isfinite(o)] = 0.0
    if ndsm is None:
        n = np.zeros_like(o)
        valid = np.zeros_like(o)
    else:
        valid = np.isfinite(ndsm).astype(np.float32)
        n = np.clip(np.nan_to_num(ndsm.astype(np.float32), nan=0.0), *NDSM_CLIP_M) / NDSM_SCALE_M
    return np.stack([o, n.astype(np.float32), valid]).astype(np.float32)
