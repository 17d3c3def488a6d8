"""Raster comparisons of rule qualify streamed block by block: memory bounded by the block, not the area.

The reference grid is cut into ``block_px`` x ``block_px`` blocks (:func:`sat2lod.io.raster.block_windows`); each block reads the
reference with a 1-cell halo (the slope's central differences need the neighbours: slopes inside a block are then
those of the whole grid, and the grid's own edges keep their one-sided differences), the product resampled onto
the block (:func:`on_grid_window`) and the class codes, and adds its errors to a :class:`HeightComparison`
(exact moments and counts, a 1 mm histogram for the robust figures: :mod:`sat2lod.qualify.stats`). A block
holds ~60 bytes per cell at most (float32 reference, product, errors; float64 slope and gradients; masks): 1024 px
blocks are ~60 MB, whatever the area.

The building scores read the reference nDSM per building (:class:`NdsmWindows`): the window of the footprint
plus a 2-cell margin, so their memory is bounded by the largest building.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import rasterio.windows
from rasterio.transform import Affine
from rasterio.warp import Resampling, reproject, transform_bounds
from rasterio.windows import Window

from sat2lod.grid import same_grid
from sat2lod.io.raster import RasterHeader, WindowReader, block_windows, open_windows
from sat2lod.qualify import CLASS_NAMES, asprs_vertical_class, slope_deg
from sat2lod.qualify.stats import ErrorAccumulator

#: extra source cells read around a block before resampling (bilinear needs 1; 2 covers rounding)
_RESAMPLE_MARGIN_PX = 2


def _grow(win: Window, px: int, shape: tuple[int, int]) -> Window:
    """``win`` grown by ``px`` cells on every side, clipped to a grid of ``shape`` (rows, cols)."""
    r0, c0 = max(int(win.row_off) - px, 0), max(int(win.col_off) - px, 0)
    r1 = min(int(win.row_off + win.height) + px, shape[0])
    c1 = min(int(win.col_off + win.width) + px, shape[1])
    return Window(c0, r0, max(c1 - c0, 0), max(r1 - r0, 0))


def on_grid_window(src: WindowReader, dst: RasterHeader, win: Window) -> np.ndarray:
    """``src`` values (float32, NaN nodata) on the cells of ``win`` of the grid ``dst``: the window itself when
    both lie on one grid (:func:`sat2lod.grid.same_grid`), otherwise the source cells under it (plus a margin)
    resampled bilinearly, as :func:`sat2lod.qualify.on_grid` does for the whole grid."""
    if same_grid(src.header, dst):
        return src.read(win).array
    out = np.full((int(win.height), int(win.width)), np.nan, np.float32)
    dst_tr = rasterio.windows.transform(win, dst.transform)
    bounds = rasterio.windows.bounds(win, dst.transform)
    if src.header.crs != dst.crs and src.header.crs is not None and dst.crs is not None:
        bounds = transform_bounds(dst.crs, src.header.crs, *bounds, densify_pts=21)
    sw = rasterio.windows.from_bounds(*bounds, transform=src.header.transform)
    r0, c0 = math.floor(sw.row_off), math.floor(sw.col_off)
    r1, c1 = math.ceil(sw.row_off + sw.height), math.ceil(sw.col_off + sw.width)
    sw = _grow(Window(c0, r0, c1 - c0, r1 - r0), _RESAMPLE_MARGIN_PX, src.header.shape)
    if sw.width <= 0 or sw.height <= 0:
        return out
    s = src.read(sw)
    reproject(
        s.array,
        out,
        src_transform=s.transform,
        src_crs=src.header.crs,
        dst_transform=dst_tr,
        dst_crs=dst.crs,
        src_nodata=np.nan,
        dst_nodata=np.nan,
        resampling=Resampling.bilinear,
    )
    return out


@dataclass
class _Subset:
    """Errors of one subset (a class, a slope band) and its completeness counts."""

    errors: ErrorAccumulator
    n_ref: int = 0  # valid reference cells
    n_both: int = 0  # ... where the product is valid too

    def merge(self, other: _Subset) -> None:
        self.errors.merge(other.errors)
        self.n_ref += other.n_ref
        self.n_both += other.n_both


@dataclass
class HeightComparison:
    """Partial statistics of ``product - reference`` (m) over the blocks added so far; :meth:`result` gives the
    dict of :func:`sat2lod.qualify.compare_heights` plus the ASPRS NVA (and VVA) entries.

    Attributes:
        thresholds: shares of |e| above these (m) are reported.
        slope_bins: edges (degrees) of the slope bands of the reference.
        with_classes: whether class codes come with the blocks (``by_class``, VVA).
        nva_codes: class codes of the non-vegetated accuracy (every cell without classes).
        vva_code: class code of the vegetated accuracy, or None for no VVA.
    """

    thresholds: tuple[float, ...]
    slope_bins: tuple[float, ...]
    with_classes: bool
    nva_codes: tuple[int, ...]
    vva_code: int | None = None
    all: _Subset = field(init=False)
    by_class: dict[int, _Subset] = field(init=False)
    by_slope: list[_Subset] = field(init=False)
    nva: ErrorAccumulator = field(init=False)
    vva: ErrorAccumulator = field(init=False)

    def __post_init__(self) -> None:
        def acc() -> ErrorAccumulator:
            return ErrorAccumulator(self.thresholds)

        self.all = _Subset(acc())
        self.by_class = {code: _Subset(acc()) for code in CLASS_NAMES}
        self.by_slope = [_Subset(acc()) for _ in itertools.pairwise(self.slope_bins)]
        self.nva, self.vva = acc(), acc()

    def add(self, pred: np.ndarray, ref: np.ndarray, classes: np.ndarray | None, slope: np.ndarray) -> None:
        """One block: product and reference heights (m, NaN nodata), class codes (255 = none) or None, slope of
        the reference (degrees); all (h, w) on the block's cells."""
        err = pred - ref
        ref_ok = np.isfinite(ref)
        if classes is not None:
            ref_ok &= classes != 255
        pred_ok = np.isfinite(pred)
        both = ref_ok & pred_ok
        self._take(self.all, err, ref_ok, both)
        if classes is not None:
            for code, sub in self.by_class.items():
                m = classes == code
                self._take(sub, err, ref_ok & m, both & m)
        for sub, (lo, hi) in zip(self.by_slope, itertools.pairwise(self.slope_bins), strict=True):
            m = (slope >= lo) & (slope < hi)
            self._take(sub, err, ref_ok & m, both & m)
        valid = np.isfinite(ref) & pred_ok
        nonveg = valid if classes is None else valid & np.isin(classes, self.nva_codes)
        self.nva.add(err[nonveg])
        if classes is not None and self.vva_code is not None:
            self.vva.add(err[valid & (classes == self.vva_code)])

    @staticmethod
    def _take(sub: _Subset, err: np.ndarray, ref_ok: np.ndarray, both: np.ndarray) -> None:
        sub.n_ref += int(np.count_nonzero(ref_ok))
        sub.n_both += int(np.count_nonzero(both))
        sub.errors.add(err[both])

    def merge(self, other: HeightComparison) -> None:
        """Add ``other``'s partial statistics (same parameters): the result is that of both areas together."""
        self.all.merge(other.all)
        for code, sub in self.by_class.items():
            sub.merge(other.by_class[code])
        for a, b in zip(self.by_slope, other.by_slope, strict=True):
            a.merge(b)
        self.nva.merge(other.nva)
        self.vva.merge(other.vva)

    def result(self) -> dict[str, Any]:
        """``all``, ``completeness``, ``by_class`` (classes with a valid reference cell), ``by_slope`` (bands with
        an error), ``nva`` (ASPRS class, LE90) and, with a VVA class, ``vva``; as the whole-grid version."""
        out: dict[str, Any] = {
            "all": self.all.errors.stats(),
            "completeness": self.all.n_both / max(self.all.n_ref, 1),
        }
        if self.with_classes:
            out["by_class"] = {}
            for code, name in CLASS_NAMES.items():
                sub = self.by_class[code]
                if sub.n_ref:
                    s = sub.errors.stats()
                    s["completeness"] = sub.n_both / max(sub.n_ref, 1)
                    out["by_class"][name] = s
        out["by_slope"] = {
            f"{lo:g}-{hi:g}deg": sub.errors.stats()
            for sub, (lo, hi) in zip(self.by_slope, itertools.pairwise(self.slope_bins), strict=True)
            if sub.n_both
        }
        nva = self.nva.stats()
        out["nva"] = asprs_vertical_class(nva["rmse"], nva["n"])
        out["nva"]["le90_m"] = nva["le90"]
        if self.with_classes and self.vva_code is not None:
            vva = self.vva.stats()
            out["vva"] = {
                "rmse_v_cm": round(vva["rmse"] * 100, 2) if vva["n"] else None,
                "n": vva["n"],
                "note": "as found (no pass/fail in ASPRS Ed. 2)",
            }
        return out


def compare_files(
    pred: Any,
    ref: Any,
    classes: Any | None,
    *,
    thresholds: tuple[float, ...],
    slope_bins: tuple[float, ...],
    nva_codes: tuple[int, ...],
    vva_code: int | None,
    block_px: int,
) -> dict[str, Any]:
    """:class:`HeightComparison` of the product raster ``pred`` against the reference raster ``ref`` (paths),
    with the class raster ``classes`` (path on the reference grid) or None, streamed over ``block_px`` blocks of
    the reference grid."""
    with contextlib.ExitStack() as stack:
        r = stack.enter_context(open_windows(ref))
        p = stack.enter_context(open_windows(pred))
        c = stack.enter_context(open_windows(classes)) if classes is not None else None
        cmp = HeightComparison(tuple(thresholds), tuple(slope_bins), c is not None, nva_codes, vva_code)
        res = abs(r.header.transform.a)
        for win in block_windows(r.header.shape, block_px):
            halo = _grow(win, 1, r.header.shape)
            core = (
                slice(int(win.row_off - halo.row_off), int(win.row_off - halo.row_off + win.height)),
                slice(int(win.col_off - halo.col_off), int(win.col_off - halo.col_off + win.width)),
            )
            ref_h = r.read(halo).array
            cmp.add(
                on_grid_window(p, r.header, win),
                ref_h[core],
                c.read(win, masked_to_nan=False).array if c is not None else None,
                slope_deg(ref_h, res)[core],
            )
    return cmp.result()


def valid_fraction(path: Any, block_px: int) -> float:
    """Share of valid (finite, not nodata) cells of the raster ``path``, streamed over blocks."""
    with open_windows(path) as r:
        n_ok = sum(
            int(np.count_nonzero(np.isfinite(r.read(w).array)))
            for w in block_windows(r.header.shape, block_px)
        )
        h, w = r.header.shape
    return n_ok / max(h * w, 1)


class NdsmWindows:
    """The reference nDSM (reference DSM - reference DTM resampled onto its grid; m, NaN nodata) read around one
    footprint at a time: :meth:`around`. Use as a context manager (keeps both files open)."""

    def __init__(self, ref_dsm: Any, ref_dtm: Any) -> None:
        self._paths = (ref_dsm, ref_dtm)
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Self:
        self._dsm = self._stack.enter_context(open_windows(self._paths[0]))
        self._dtm = self._stack.enter_context(open_windows(self._paths[1]))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def crs(self) -> Any:
        return self._dsm.header.crs

    def around(self, bounds: tuple[float, float, float, float]) -> tuple[np.ndarray, Affine]:
        """The nDSM over ``bounds`` (xmin, ymin, xmax, ymax; map units of the reference grid) plus 2 cells, clipped
        to the grid: (h, w) float32 array (possibly empty) and its transform."""
        h = self._dsm.header
        fw = rasterio.windows.from_bounds(*bounds, transform=h.transform)
        r0, c0 = math.floor(fw.row_off), math.floor(fw.col_off)
        r1, c1 = math.ceil(fw.row_off + fw.height), math.ceil(fw.col_off + fw.width)
        win = _grow(Window(c0, r0, c1 - c0, r1 - r0), 2, h.shape)
        tr = rasterio.windows.transform(win, h.transform)
        if win.width <= 0 or win.height <= 0:
            return np.zeros((0, 0), np.float32), tr
        return self._dsm.read(win).array - on_grid_window(self._dtm, h, win), tr
