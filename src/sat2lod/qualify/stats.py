"""Streamed height-error statistics: block by block, mergeable, memory bounded by the block.

:class:`ErrorAccumulator` takes errors (m) block by block and gives the figures of
:func:`sat2lod.qualify.error_stats` on all of them without holding them:

- exact from running moments: ``n``, ``mean``, ``std`` (count, mean and sum of squared deviations merged with
  Chan et al.'s pairwise update, stable where a naive sum of squares cancels), ``rmse`` (sum of squares),
  ``max_abs`` and the shares ``above_<t>m`` (counts of |e| > t);
- from a histogram of 1 mm bins (``bin_m``): ``median``, ``nmad``, ``le90`` and ``p95``. Each error is replaced by
  its bin's centre (within ``bin_m / 2`` of it) and the same rank interpolation as :func:`numpy.percentile`
  (``linear``) is applied to the centres, so median, LE90 and p95 are within ``bin_m / 2`` of the whole-array
  figures and the NMAD within ``1.4826 * bin_m`` (its median and each deviation both move by at most half a bin).

The histogram is sparse (the occupied bins only, as sorted int64 keys and counts): its size is bounded by the
range of the errors in bins (errors within +/- 100 m: at most 200 000 bins, 3.2 MB), not by the area, and a
few gross errors cost a bin each. Two accumulators merge (:meth:`ErrorAccumulator.merge`), so partial sums of
separate blocks or tiles combine to the figures of their union.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: histogram bin of the robust statistics (m): median, NMAD, LE90, p95 are within this of the exact figures
BIN_M = 0.001
#: keys of :func:`sat2lod.qualify.error_stats` besides ``n`` and the ``above_<t>m`` shares
STAT_KEYS = ("mean", "median", "std", "rmse", "nmad", "le90", "p95", "max_abs")


@dataclass
class ErrorAccumulator:
    """Running statistics of height errors (m), fed block by block with :meth:`add`.

    Attributes:
        thresholds: the shares of |e| above each of these (m) are counted exactly.
        bin_m: histogram bin (m) of the robust statistics.
    """

    thresholds: tuple[float, ...] = (0.5, 1.0, 3.0)
    bin_m: float = BIN_M
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations from the mean
    sum_sq: float = 0.0
    max_abs: float = 0.0
    above: list[int] = field(default_factory=list)
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        self.thresholds = tuple(float(t) for t in self.thresholds)
        if not self.above:
            self.above = [0] * len(self.thresholds)

    def add(self, err: np.ndarray) -> None:
        """Take the errors ``err`` (any shape, m; NaN cells ignored) into the statistics."""
        e = np.asarray(err, float).ravel()
        e = e[np.isfinite(e)]
        if e.size == 0:
            return
        a = np.abs(e)
        # clipped to +/- 2^62 bins (4.6e15 m at 1 mm) so that an absurd value (an undeclared nodata) stays an int64
        keys, counts = _histogram(np.floor(np.clip(e / self.bin_m, -(2.0**62), 2.0**62)).astype(np.int64))
        mean = float(e.mean())
        block = ErrorAccumulator(
            self.thresholds,
            self.bin_m,
            n=int(e.size),
            mean=mean,
            m2=float(np.sum((e - mean) ** 2)),
            sum_sq=float(np.sum(e * e)),
            max_abs=float(a.max()),
            above=[int(np.count_nonzero(a > t)) for t in self.thresholds],
            keys=keys,
            counts=counts,
        )
        self.merge(block)

    def merge(self, other: ErrorAccumulator) -> None:
        """Add the statistics of ``other`` (same thresholds and bin) to these: the result is that of the union."""
        if other.thresholds != self.thresholds or other.bin_m != self.bin_m:
            raise ValueError(
                f"cannot merge error statistics with thresholds {other.thresholds} / bin {other.bin_m} m into "
                f"{self.thresholds} / {self.bin_m} m: make both with the same qualify parameters"
            )
        if other.n == 0:
            return
        n = self.n + other.n
        delta = other.mean - self.mean
        self.m2 += other.m2 + delta * delta * self.n * other.n / n
        self.mean += delta * other.n / n
        self.n = n
        self.sum_sq += other.sum_sq
        self.max_abs = max(self.max_abs, other.max_abs)
        self.above = [x + y for x, y in zip(self.above, other.above, strict=True)]
        # both key arrays are sorted and unique: each lands once in their sorted union
        uniq = np.union1d(self.keys, other.keys)
        counts = np.zeros(uniq.size, np.int64)
        counts[np.searchsorted(uniq, self.keys)] += self.counts
        counts[np.searchsorted(uniq, other.keys)] += other.counts
        self.keys, self.counts = uniq, counts

    def stats(self) -> dict[str, Any]:
        """The figures of :func:`sat2lod.qualify.error_stats` (same keys; None when no error was added)."""
        out: dict[str, Any] = {"n": self.n}
        if self.n == 0:
            return out | dict.fromkeys(STAT_KEYS)
        centres = (self.keys + 0.5) * self.bin_m
        med = _percentile(centres, self.counts, 50.0)
        out.update(
            mean=self.mean,
            median=med,
            std=math.sqrt(self.m2 / self.n),
            rmse=math.sqrt(self.sum_sq / self.n),
            nmad=1.4826 * _percentile(np.abs(centres - med), self.counts, 50.0),
            le90=_percentile(np.abs(centres), self.counts, 90.0),
            p95=_percentile(np.abs(centres), self.counts, 95.0),
            max_abs=self.max_abs,
        )
        for t, k in zip(self.thresholds, self.above, strict=True):
            out[f"above_{t:g}m"] = k / self.n
        return out


def _histogram(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct ``keys`` (N,) int64 and their counts: by counting over the keys' range when it is narrow
    (linear time), by sorting otherwise (a few gross errors far apart)."""
    lo, hi = int(keys.min()), int(keys.max())
    if hi - lo < 4 * keys.size + 4096:
        c = np.bincount(keys - lo)
        nz = np.flatnonzero(c)
        return nz + lo, c[nz].astype(np.int64)
    k, c = np.unique(keys, return_counts=True)
    return k, c.astype(np.int64)


def _percentile(values: np.ndarray, counts: np.ndarray, q: float) -> float:
    """The ``q``-th percentile of ``values`` (K,) each repeated ``counts`` (K,) times, by the rank interpolation
    of :func:`numpy.percentile` (``linear``: rank ``q / 100 * (n - 1)``, between the two neighbouring values)."""
    order = np.argsort(values, kind="stable")
    v, cum = values[order], np.cumsum(counts[order])
    pos = q / 100.0 * (int(cum[-1]) - 1)
    lo = math.floor(pos)
    frac = pos - lo
    v_lo = float(v[np.searchsorted(cum, lo, side="right")])
    if frac == 0.0:
        return v_lo
    v_hi = float(v[np.searchsorted(cum, lo + 1, side="right")])
    return v_lo + frac * (v_hi - v_lo)
