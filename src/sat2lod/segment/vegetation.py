"""Vegetation evidence for building segmentation: NDVI from the ortho's pansharpened multispectral bands.

Street trees, garden trees and park clumps stand as high as houses in an nDSM and look like dark, textured roofs
in a panchromatic image; chlorophyll tells them apart: the near-infrared is bright and the red dark over
vegetation, so the NDVI (NIR - red) / (NIR + red) is high. The chain's ortho carries the pansharpened MS bands
after the PAN band when the scene has a multispectral image (:func:`sat2lod.ortho.ortho_from_files`).

On digital numbers (not reflectance), NDVI is shifted by the sensor's band gains: on the Pléiades Ventoux XS crop
bare limestone and roads lie at 0.15-0.3 and forest at 0.35-0.6. The default limit 0.3 is set from that physics,
not fitted to a test scene; set ``segmentation.max_ndvi`` for other sensors.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)

#: softness of the NDVI gate (NDVI units): the gate is 0.27 / 0.5 / 0.73 at max_ndvi + / 0 / - this
NDVI_SOFTNESS = 0.03


def ndvi(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """(NIR - red) / (NIR + red) of two (H, W) bands (any radiometric unit > 0); NaN where undefined."""
    r, n = red.astype(np.float64), nir.astype(np.float64)
    s = n + r
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.where(s > 0, (n - r) / s, np.nan)
    return v.astype(np.float32)


def ms_ndvi(ms: np.ndarray, ndvi_bands: tuple[int, int] | list[int]) -> np.ndarray | None:
    """NDVI of a multispectral stack, median-filtered 3 x 3; None when the stack lacks the bands.

    Args:
        ms: (B, H, W) multispectral bands, NaN = nodata.
        ndvi_bands: 1-based numbers of the red and near-infrared bands in ``ms``.
    Returns:
        (H, W) float32 NDVI, NaN where a band is nodata or both are 0.
    """
    red_b, nir_b = (int(b) for b in ndvi_bands)
    if ms.ndim != 3 or ms.shape[0] < max(red_b, nir_b):
        return None
    v = ndvi(ms[red_b - 1], ms[nir_b - 1])
    # pansharpened pixels carry PAN noise: a 3 x 3 median keeps crowns' edges and removes speckle
    filled = np.where(np.isfinite(v), v, -1.0)
    med = ndimage.median_filter(filled, size=3, mode="nearest")
    return np.where(np.isfinite(v), med, np.nan).astype(np.float32)


def ortho_ndvi(ortho: np.ndarray, ndvi_bands: tuple[int, int] | list[int]) -> np.ndarray | None:
    """NDVI of an ortho stack, or None when it has no multispectral bands.

    Args:
        ortho: (B, H, W) ortho bands: band 1 PAN, bands 2.. the pansharpened MS bands (or (H, W): PAN only).
        ndvi_bands: 1-based numbers of the red and near-infrared bands in the multispectral image
            (Pléiades XS in its delivered order B2 B1 B0 B3: red 1, NIR 4).
    """
    if ortho.ndim != 3:
        return None
    return ms_ndvi(ortho[1:], ndvi_bands)


def vegetation_gate(ndvi_map: np.ndarray, max_ndvi: float) -> np.ndarray:
    """Factor in [0, 1] applied to the building probability: ~1 below ``max_ndvi``, ~0 above; 1 where NaN."""
    with np.errstate(over="ignore", invalid="ignore"):
        g = 1.0 / (1.0 + np.exp((ndvi_map.astype(np.float64) - max_ndvi) / NDVI_SOFTNESS))
    g[~np.isfinite(ndvi_map)] = 1.0
    return g.astype(np.float32)


def gate_probability(
    prob: np.ndarray, ndvi_map: np.ndarray, max_ndvi: float, valid: np.ndarray
) -> tuple[np.ndarray, float]:
    """Building probability through the vegetation gate, for rule ``segment`` and ``sat2lod segment``.

    Args:
        prob: (H, W) float32 building probability, NaN = nodata; ndvi_map: (H, W) NDVI on the same grid.
        max_ndvi: NDVI where the gate is 0.5 (:func:`vegetation_gate`); valid: (H, W) bool, the cells counted.
    Returns:
        (H, W) float32 ``prob * gate`` and the share of the valid cells taken for vegetation (gate < 0.5).
    """
    gate = vegetation_gate(ndvi_map, max_ndvi)
    share = float(np.mean(gate[valid] < 0.5)) if valid.any() else 0.0
    log.info("NDVI gate (max %.2f): %.1f %% of the valid cells are vegetation", max_ndvi, 100.0 * share)
    return (prob * gate).astype(np.float32), share
