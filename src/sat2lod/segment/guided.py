"""Image-guided refinement of the building probability: the guided filter (He, Sun and Tang 2013).

The network's probability is smooth across building outlines (a 16-channel U-Net, trained to distrust the
stereo nDSM's fattened edges), while the true ortho has the roof edge sharp. The guided filter fits, in every
``(2 r + 1)²`` window, the probability as a linear function of the image, ``p ~ a I + b`` (ridge ``eps`` on
``a``), and averages the windows' fits at each cell: where the window straddles a roof edge the probability
follows the image edge; where the image is flat (its variance well under ``eps``) it is a plain box mean.

Measured on the shipped model and three models of its recipe from other training draws
(bench/results/segment_recipe_seeds.md): radius 1 m (2 cells at 0.5 m) raised every figure, or left it within
0.001. In one-off runs 1.5 m cost one model a large house of the eastern-France LiDAR (IoU 0.58 -> 0.43) and
2.5 m cost eastern France on the shipped model too. docs/segmentation.md has the figures.

Box sums are direct sums over the window (``scipy.ndimage.correlate1d``, not running sums), so a cell's value
depends only on the cells within ``2 r`` of it, never on where the array starts: a tile read with a halo wider
than that gives the whole AOI's bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sat2lod.schema import defaults
from sat2lod.segment.features import robust_range

_GF = defaults("segmentation", "guided_filter")


@dataclass(frozen=True)
class GuidedParams:
    """Config section ``segmentation.guided_filter`` (see config/schema.yaml for each key).

    Attributes:
        radius_m: window half-side (m); rounded to whole cells of the grid; 0 (or under half a cell) = off.
        eps: ridge on the local slope ``a`` (image units: the ortho scaled to [0, 1] by its 2-98 % range).
    """

    radius_m: float = _GF["radius_m"]
    eps: float = _GF["eps"]

    @classmethod
    def of(cls, params: dict | GuidedParams | None) -> GuidedParams:
        """The parameters from a config section (dict, None = the defaults) or as they are."""
        return params if isinstance(params, GuidedParams) else cls(**(params or {}))

    def radius_px(self, resolution_m: float) -> int:
        """Window half-side in cells of a ``resolution_m`` grid (0 = off)."""
        return int(round(self.radius_m / resolution_m)) if self.radius_m > 0 else 0


def box_mean(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over the ``(2 r + 1)²`` window around each cell (float64; edges repeat the border cell).

    Direct window sums along each axis in turn, so the result at a cell does not depend on the array's extent
    beyond ``r`` cells (unlike running-sum filters such as ``ndimage.uniform_filter``).
    """
    w = np.ones(2 * r + 1, np.float64) / (2 * r + 1)
    out = ndimage.correlate1d(np.asarray(a, np.float64), w, axis=0, mode="nearest")
    return ndimage.correlate1d(out, w, axis=1, mode="nearest")


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """Gray-guide guided filter of ``src``.

    Args:
        guide: (H, W) finite guide image (float; here the ortho in [0, 1]).
        src: (H, W) finite image to filter (here the building probability).
        r: window half-side (cells), >= 1; eps: ridge on the local slope (guide units squared).
    Returns:
        (H, W) float64: at each cell the mean over the windows holding it of ``a_k I + b_k``, where ``(a_k, b_k)``
        is the ridge least-squares fit of ``src`` on ``guide`` in window k.
    """
    g = np.asarray(guide, np.float64)
    s = np.asarray(src, np.float64)
    mg, ms = box_mean(g, r), box_mean(s, r)
    cov = box_mean(g * s, r) - mg * ms
    var = box_mean(g * g, r) - mg * mg
    a = cov / (var + eps)
    b = ms - a * mg
    return box_mean(a, r) * g + box_mean(b, r)


def refine_probability(
    prob: np.ndarray,
    ortho: np.ndarray,
    resolution_m: float,
    ortho_range: tuple[float, float] | None,
    params: dict | GuidedParams | None = None,
) -> np.ndarray:
    """The building probability refined along the ortho's edges (see the module's docstring).

    Args:
        prob: (H, W) building probability in [0, 1], NaN = nodata.
        ortho: (H, W) PAN ortho on the same grid (any radiometric unit), NaN = nodata.
        resolution_m: cell size (m).
        ortho_range: the ortho's radiometric (low, high) mapped to [0, 1] (the network input's: a tile passes
            the whole AOI's, so a tile gives the untiled result); None = the 2-98 % percentiles of ``ortho``.
        params: config section ``segmentation.guided_filter``.
    Returns:
        (H, W) float32 probability clipped to [0, 1], NaN where ``prob`` is NaN; ``prob`` itself (float32)
        when the filter is off. Nodata cells enter the windows as probability 0 and image level 0.
    """
    prm = GuidedParams.of(params)
    r = prm.radius_px(resolution_m)
    p = np.asarray(prob, np.float32)
    if r < 1:
        return p
    if ortho.shape != p.shape:
        raise ValueError(
            f"guided filter: the ortho {ortho.shape} and the probability {p.shape} differ in shape"
        )
    lo, hi = ortho_range if ortho_range is not None else robust_range(ortho)
    g = np.clip((np.asarray(ortho, np.float64) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    g[~np.isfinite(g)] = 0.0
    q = guided_filter(g, np.nan_to_num(p, nan=0.0), r, prm.eps)
    out = np.clip(q, 0.0, 1.0).astype(np.float32)
    out[~np.isfinite(p)] = np.nan
    return out


def guided_tags(params: dict | GuidedParams | None, resolution_m: float) -> dict[str, str]:
    """The probability's and mask's tags that say how the filter ran (none when it is off)."""
    prm = GuidedParams.of(params)
    r = prm.radius_px(resolution_m)
    return {"GUIDED_FILTER_RADIUS_PX": str(r), "GUIDED_FILTER_EPS": str(prm.eps)} if r >= 1 else {}
