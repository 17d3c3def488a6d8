"""Network inputs: normalized ortho + nDSM (+ nDSM-valid flag), the same at training and inference."""

from __future__ import annotations

from collections.abc import Callable, Iterator

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


def scale_ortho(ortho: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The ortho's radiometric range (``lo``, ``hi``) mapped to (0, 1), clipped to [-0.5, 1.5]: the network's
    image units. (H, W) in, float32 out (NaN stays NaN)."""
    return np.clip((ortho.astype(np.float32) - lo) / (hi - lo), -0.5, 1.5).astype(np.float32, copy=False)


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
    o = scale_ortho(ortho, *(ortho_range or robust_range(ortho)))
    o[~np.isfinite(o)] = 0.0
    if ndsm is None:
        n = np.zeros_like(o)
        valid = np.zeros_like(o)
    else:
        valid = np.isfinite(ndsm).astype(np.float32)
        n = np.clip(np.nan_to_num(ndsm.astype(np.float32), nan=0.0), *NDSM_CLIP_M) / NDSM_SCALE_M
    return np.stack([o, n.astype(np.float32), valid]).astype(np.float32)


#: values of a candidate interval gathered and sorted at once by :func:`streamed_range` (bounds its memory)
_GATHER_MAX = 1 << 20
#: histogram bins of one narrowing pass of :func:`streamed_range`
_BINS = 4096


def streamed_range(
    blocks: Callable[[], Iterator[np.ndarray]], lo_pct: float = 2.0, hi_pct: float = 98.0
) -> tuple[float, float]:
    """:func:`robust_range` of an image given block by block, to the bit, with memory bounded by a block.

    ``np.percentile`` (linear method) needs the order statistics at ranks ``floor(q (n - 1))`` and the next one;
    each is found by narrowing: a pass over the blocks histograms the values of the candidate interval, the
    next keeps the bin that holds the rank, until the interval holds one distinct value or few enough values
    to sort (:data:`_GATHER_MAX`). A few passes over the image; the interpolation is numpy's.

    Args:
        blocks: called once per pass, yields the image's blocks (any shapes, float32, NaN = nodata).
    Returns:
        (low, high) as :func:`robust_range` of the whole image.
    """
    n, vmin, vmax = 0, np.inf, -np.inf
    for b in blocks():
        v = b[np.isfinite(b)]
        if v.size:
            n, vmin, vmax = n + v.size, min(vmin, v.min()), max(vmax, v.max())
    if n == 0:
        return 0.0, 1.0
    q = np.true_divide(np.asarray([lo_pct, hi_pct], float), 100)
    virtual = (n - 1) * q
    prev = np.floor(virtual).astype(np.int64)
    ranks = sorted({int(r) for r in prev} | {int(min(r + 1, n - 1)) for r in prev})
    values = {r: _order_statistic(blocks, r, float(vmin), float(vmax)) for r in ranks}
    dtype = np.result_type(*(b.dtype for b in _first(blocks)))
    a = np.array([values[int(r)] for r in prev], dtype)
    b = np.array([values[int(min(r + 1, n - 1))] for r in prev], dtype)
    gamma = virtual - prev
    # numpy's _lerp (numpy.percentile, method "linear"), in its dtypes
    diff = b - a
    res = a + diff * gamma
    res = np.where(gamma >= 0.5, b - diff * (1 - gamma), res)
    lo, hi = float(res[0]), float(res[1])
    return lo, float(max(hi, lo + 1e-6))


def _first(blocks: Callable[[], Iterator[np.ndarray]]) -> list[np.ndarray]:
    """The first block of an image (its dtype is the image's)."""
    return [next(iter(blocks()))]


def _order_statistic(blocks: Callable[[], Iterator[np.ndarray]], rank: int, lo: float, hi: float) -> float:
    """Value of 0-based ``rank`` among the finite values of the blocks (all in [lo, hi])."""
    below = 0  # finite values < lo
    while True:
        if lo == hi:
            return lo
        hist = np.zeros(_BINS, np.int64)
        n_in, under = 0, 0
        for b in blocks():
            v = b[np.isfinite(b)]
            under += int(np.count_nonzero(v < lo))
            v = v[(v >= lo) & (v <= hi)]
            n_in += v.size
            hist += np.bincount(_bin(v, lo, hi), minlength=_BINS)
        below = under
        if n_in <= _GATHER_MAX:
            vals = np.sort(np.concatenate([b[np.isfinite(b) & (b >= lo) & (b <= hi)] for b in blocks()]))
            return float(vals[rank - below])
        j = int(np.searchsorted(np.cumsum(hist), rank - below, side="right"))
        # the bin's own extreme values: the next interval
        nlo, nhi = np.inf, -np.inf
        for b in blocks():
            v = b[np.isfinite(b)]
            v = v[(v >= lo) & (v <= hi)]
            v = v[_bin(v, lo, hi) == j]
            if v.size:
                nlo, nhi = min(nlo, float(v.min())), max(nhi, float(v.max()))
        lo, hi = nlo, nhi


def _bin(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Histogram bin (0 .. _BINS - 1) of values ``v`` in [lo, hi]."""
    return np.minimum(((v.astype(np.float64) - lo) / (hi - lo) * _BINS).astype(np.int64), _BINS - 1)
