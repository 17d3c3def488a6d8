"""Digital terrain model (DTM) and normalized DSM (nDSM) from a DSM alone.

Method (own implementation, chosen against CNES Bulldozer by measurement: ``bench/terrain_compare.py``):

1. **Fill, despeckle, pits.** DSM nodata cells are filled with the nearest valid height; a 3 x 3 median removes
   isolated stereo pits and spikes; clusters of pits (low stereo outliers, up to ``max_pit_size_m`` wide and
   deeper than ``pit_depth_m`` below the grey closing of the DSM) are treated as nodata, never as ground: on
   real Pléiades DSMs of wooded relief they are by the hundred and an opening anchors the terrain on them.
2. **Multi-scale object detection** (progressive morphological filter, Zhang et al. 2003 / SMRF, Pingel et al.
   2013). The DSM is opened (erosion then dilation, square window) with windows growing from 3 px to the
   largest object size ``max_object_size_m``: exponentially (3, 5, 9, 17 px...) then linearly in steps of
   ``window_step_m``. A cell whose height drops by more than ``min_object_height_m + max_slope * Δw`` between two
   consecutive openings (Δw = growth of the window in metres) belongs to an above-ground object. The slope term
   keeps convex terrain (hills) as ground; objects wider than the largest window are kept as terrain.
   **Slope-adaptive** (``adaptive_slope``): the opening cuts the crest of a ridge or the edge of a bench by
   about half its flanks' slope times the window growth, so the slope allowed at each cell is the larger of
   ``max_slope`` and ``adaptive_slope`` times the terrain's own slope around it (gradient of the DSM opened by
   a quarter of ``max_object_size_m``, median over a ``max_object_size_m`` square: buildings and trees are
   gone from that surface, the flanks of relief are not). Steep natural slopes stay terrain; a building
   still stands out by its full height when the window outgrows it, against an allowance of slope x growth.
3. **Harmonic interpolation** of the ground cells (objects grown by ``object_buffer_m`` first, so that the
   ramps at the foot of walls in an interpolated or stereo DSM do not anchor the terrain; by
   ``flat_object_buffer_m`` where the terrain's own slope is under ``flat_max_slope``: a stereo DSM stands above
   the ground 2-4 m beside a wall, and on flat ground a wider hole costs the interpolation little, where on
   steep relief it would cut crests and benches): the discrete Laplace
   equation on the unknown cells (4-neighbour mean, ground cells fixed, Neumann at the raster edge), solved to
   convergence by conjugate gradients preconditioned with an aggregation multigrid V-cycle
   (:func:`_harmonic_fill_multiscale`; within 1.3e-4 m of the exact sparse solve on the Reunion DSM, the
   float32 rounding of its heights, 10-16 iterations): the terrain under objects joins the surrounding ground
   smoothly without overshoot.
4. **Refinement.** Cells within ``ground_tolerance_m`` (+ a slope-proportional term) of that first surface are
   ground; interpolate again; optionally smooth with a Gaussian of ``smooth_sigma_px`` (stereo noise).

Per tile (rules ``dtm_tile`` + ``dtm``, issue 16): :func:`dtm_tile_from_files` runs the same
:func:`extract_dtm` on a tile of the tiling checkpoint's grid plus a halo of ``tile_halo_m`` (at least
``max_object_size_m``) and writes the tile's core; :func:`assemble_terrain` pastes the cores, streamed. Memory
follows the tile + halo, not the AOI; :func:`dtm_from_dsm_file` is the untiled reference. The fill being
converged, the per-tile DTM equals the untiled one to one float32 step of the heights with the default 128 m
halo (0.24 mm on the Reunion DSM, 0.015 mm on the demo city: ``bench/results/terrain_tiled.md``).

DTM heights are in metres in the DSM's vertical datum (kept in the ``VERTICAL_DATUM`` tag); nDSM values are
metres above the DTM (tag ``VERTICAL_DATUM`` = :data:`sat2lod.HEIGHT_ABOVE_DTM`); nodata is NaN.
The numba kernels are private; :func:`harmonic_fill_reference` is the exact sparse solve the tests compare the
fill with (hostile masks: one big hole, holes on the edge, a single known cell, thin known lines, ragged ground).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from scipy import ndimage

import sat2lod
from sat2lod.arrays import fill_nearest
from sat2lod.io.raster import read_raster, write_raster
from sat2lod.schema import defaults

_TERRAIN = defaults("terrain")  # defaults of config section terrain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DTMParams:
    """Parameters of :func:`extract_dtm` (see ``config/schema.yaml``, section ``terrain``).

    Attributes:
        max_object_size_m: side (m) of the largest above-ground object to remove (building, tree group).
        max_slope: steepest terrain slope (rise over run, e.g. 0.3 = 17 deg) still taken as ground.
        min_object_height_m: height jump (m) between two openings that marks an object, on flat ground.
        window_step_m: window growth (m) once the exponential sequence reaches it.
        object_buffer_m: objects are grown by this (m) before interpolation: the foot of walls and tree edges
            (ramps in an interpolated or stereo DSM) must not anchor the terrain.
        flat_object_buffer_m: ... and by this (m) where the terrain's own slope (:func:`terrain_slope`) is under
            ``flat_max_slope``, in both passes (the stereo DSM's foreground fattening reaches 2-4 m beside walls);
            not more than ``object_buffer_m`` = off.
        flat_max_slope: the terrain slope (rise over run) under which ``flat_object_buffer_m`` applies.
        ground_tolerance_m: refinement: cells within this height of the first surface are ground (m).
        slope_tolerance_scale: refinement: extra tolerance per unit slope of the first surface, per pixel.
        adaptive_slope: slope-adaptive filtering: the slope allowed at a cell is the larger of ``max_slope`` and
            this factor times the terrain's own slope around it (:func:`terrain_slope`), so that the crests and
            bench edges of steep natural relief (cut by the opening in proportion to their flanks' slope) stay
            terrain; 0 = ``max_slope`` everywhere.
        max_pit_size_m: widest DSM pit (low outlier cluster, m) removed before the filter (:func:`low_outliers`);
            0 = none.
        pit_depth_m: a pit is deeper than this (m) below its surroundings.
        refine: run the refinement pass.
        despeckle: apply the 3 x 3 median first (stereo pits / spikes).
        smooth_sigma_px: Gaussian smoothing of the final DTM (pixels); 0 = none.
        tile_halo_m: context (m) each per-tile job reads around its tile (:func:`dtm_tile_from_files`); not
            used by :func:`extract_dtm` itself. At least ``max_object_size_m``.
    """

    max_object_size_m: float = _TERRAIN["max_object_size_m"]
    max_slope: float = _TERRAIN["max_slope"]
    min_object_height_m: float = _TERRAIN["min_object_height_m"]
    window_step_m: float = _TERRAIN["window_step_m"]
    object_buffer_m: float = _TERRAIN["object_buffer_m"]
    flat_object_buffer_m: float = _TERRAIN["flat_object_buffer_m"]
    flat_max_slope: float = _TERRAIN["flat_max_slope"]
    ground_tolerance_m: float = _TERRAIN["ground_tolerance_m"]
    slope_tolerance_scale: float = _TERRAIN["slope_tolerance_scale"]
    adaptive_slope: float = _TERRAIN["adaptive_slope"]
    max_pit_size_m: float = _TERRAIN["max_pit_size_m"]
    pit_depth_m: float = _TERRAIN["pit_depth_m"]
    refine: bool = _TERRAIN["refine"]
    despeckle: bool = _TERRAIN["despeckle"]
    smooth_sigma_px: float = _TERRAIN["smooth_sigma_px"]
    tile_halo_m: float = _TERRAIN["tile_halo_m"]


# --------------------------------------------------------------------------------------------- harmonic fill
#: the harmonic fill stops when the multigrid correction of its last iteration (the preconditioned residual,
#: an estimate of the remaining error) moves no cell by more than this (m). Measured on the Reunion DSM's
#: first fill (0.53 M cells, 30 % unknown): 1e-4 -> 1.0 mm from the exact solve, 1e-5 -> 0.13-0.23 mm, the
#: float32 rounding of its 2.3 km heights being 0.12 mm
FILL_TOL_M = 1e-5
#: iteration cap of the harmonic fill (conjugate gradient steps, one V-cycle each); hit = logged warning
FILL_MAX_ITER = 200


@numba.njit(cache=True)
def _fine_operator(z: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Laplace operator of the unknown cells of ``known`` (H, W) and its right-hand side from ``z`` (H, W).

    Returns (H, W) arrays ``d`` (diagonal: number of neighbours inside the raster, Neumann edge; 0 on known
    cells), ``we`` / ``ws`` (weight of the link to the east / south neighbour when both are unknown), float32
    (small integers, exact: 12 bytes a cell less than float64), and ``b`` (float64, sum of the known
    neighbours' heights, m): unknown cells solve ``d u - sum(w u_nb) = b``.
    """
    h, w = known.shape
    d = np.zeros((h, w), np.float32)
    we = np.zeros((h, w), np.float32)
    ws = np.zeros((h, w), np.float32)
    b = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            if known[i, j]:
                continue
            n = 0.0
            s = 0.0
            for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                a, c = i + di, j + dj
                if 0 <= a < h and 0 <= c < w:
                    n += 1.0
                    if known[a, c]:
                        s += float(z[a, c])
            d[i, j] = n
            b[i, j] = s
            if i + 1 < h and not known[i + 1, j]:
                ws[i, j] = 1.0
            if j + 1 < w and not known[i, j + 1]:
                we[i, j] = 1.0
    return d, we, ws, b


@numba.njit(cache=True)
def _coarsen(d: np.ndarray, we: np.ndarray, ws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Galerkin operator ``P^T A P`` of 2 x 2 aggregates (``P`` piecewise constant): again a 5-point stencil
    (diagonal, east, south weights) on the ((H + 1) // 2, (W + 1) // 2) grid; 0 diagonal = no unknown cell."""
    h, w = d.shape
    dc = np.zeros(((h + 1) // 2, (w + 1) // 2))
    wec = np.zeros_like(dc)
    wsc = np.zeros_like(dc)
    for i in range(h):
        for j in range(w):
            a, c = i // 2, j // 2
            dc[a, c] += d[i, j]
            if j % 2 == 0:
                dc[a, c] -= 2.0 * we[i, j]  # link inside the aggregate
            else:
                wec[a, c] += we[i, j]
            if i % 2 == 0:
                dc[a, c] -= 2.0 * ws[i, j]
            else:
                wsc[a, c] += ws[i, j]
    return dc, wec, wsc


@numba.njit(cache=True)
def _gauss_seidel(
    x: np.ndarray, b: np.ndarray, d: np.ndarray, we: np.ndarray, ws: np.ndarray, colour: int
) -> None:
    """One Gauss-Seidel half sweep, in place, over the cells with ``(i + j) % 2 == colour`` (red-black)."""
    h, w = x.shape
    for i in range(h):
        for j in range((i + colour) % 2, w, 2):
            if d[i, j] == 0.0:
                continue
            s = b[i, j]
            if j + 1 < w:
                s += we[i, j] * x[i, j + 1]
            if j > 0:
                s += we[i, j - 1] * x[i, j - 1]
            if i + 1 < h:
                s += ws[i, j] * x[i + 1, j]
            if i > 0:
                s += ws[i - 1, j] * x[i - 1, j]
            x[i, j] = s / d[i, j]


@numba.njit(cache=True)
def _apply(x: np.ndarray, d: np.ndarray, we: np.ndarray, ws: np.ndarray) -> np.ndarray:
    """``A x`` of the 5-point operator (``d``, ``we``, ``ws``); 0 where ``d`` is 0."""
    h, w = x.shape
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            if d[i, j] == 0.0:
                continue
            s = d[i, j] * x[i, j]
            if j + 1 < w:
                s -= we[i, j] * x[i, j + 1]
            if j > 0:
                s -= we[i, j - 1] * x[i, j - 1]
            if i + 1 < h:
                s -= ws[i, j] * x[i + 1, j]
            if i > 0:
                s -= ws[i - 1, j] * x[i - 1, j]
            out[i, j] = s
    return out


@numba.njit(cache=True)
def _residual(x: np.ndarray, b: np.ndarray, d: np.ndarray, we: np.ndarray, ws: np.ndarray) -> np.ndarray:
    """``b - A x`` of the 5-point operator (``d``, ``we``, ``ws``); 0 where ``d`` is 0."""
    h, w = x.shape
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            if d[i, j] == 0.0:
                continue
            s = b[i, j] - d[i, j] * x[i, j]
            if j + 1 < w:
                s += we[i, j] * x[i, j + 1]
            if j > 0:
                s += we[i, j - 1] * x[i, j - 1]
            if i + 1 < h:
                s += ws[i, j] * x[i + 1, j]
            if i > 0:
                s += ws[i - 1, j] * x[i - 1, j]
            out[i, j] = s
    return out


@numba.njit(cache=True)
def _axpy(y: np.ndarray, a: float, x: np.ndarray) -> None:
    """``y += a x`` in place (no temporary)."""
    for k in range(y.size):
        y.flat[k] += a * x.flat[k]


@numba.njit(cache=True)
def _xpby(x: np.ndarray, beta: float, y: np.ndarray) -> None:
    """``y = x + beta y`` in place (no temporary)."""
    for k in range(y.size):
        y.flat[k] = x.flat[k] + beta * y.flat[k]


@numba.njit(cache=True)
def _restrict(r: np.ndarray) -> np.ndarray:
    """``P^T r``: sum of each 2 x 2 aggregate."""
    h, w = r.shape
    out = np.zeros(((h + 1) // 2, (w + 1) // 2))
    for i in range(h):
        for j in range(w):
            out[i // 2, j // 2] += r[i, j]
    return out


@numba.njit(cache=True)
def _prolong_add(x: np.ndarray, e: np.ndarray, d: np.ndarray, scale: float) -> None:
    """``x += scale * P e`` on the unknown cells (``d`` > 0), in place."""
    h, w = x.shape
    for i in range(h):
        for j in range(w):
            if d[i, j] != 0.0:
                x[i, j] += scale * e[i // 2, j // 2]


@numba.njit(cache=True)
def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Serial dot product (fixed summation order: the same bits on any thread count)."""
    s = 0.0
    for k in range(a.size):
        s += a.flat[k] * b.flat[k]
    return s


#: coarse-grid correction factor of the aggregation V-cycle: a piecewise-constant prolongation under-corrects
#: smooth errors by about half; any factor in (0, 2) keeps the V-cycle positive definite. 1.8 with 2 sweeps:
#: 14 iterations on the Reunion DSM's first fill, against 40 unscaled with 1 sweep (0.36 vs 0.75 CPU-s)
_COARSE_SCALE = 1.8
#: red-black Gauss-Seidel sweeps before and after the coarse-grid correction
_SWEEPS = 2


def _v_cycle(
    levels: list[tuple[np.ndarray, np.ndarray, np.ndarray]], r: np.ndarray, k: int = 0
) -> np.ndarray:
    """Symmetric V-cycle (red-black Gauss-Seidel, then black-red after the correction) approximating
    ``A^{-1} r`` on level ``k`` of ``levels``: a symmetric positive definite preconditioner."""
    d, we, ws = levels[k]
    x = np.zeros_like(r)
    if k == len(levels) - 1:
        np.divide(r, d, out=x, where=d > 0)
        return x
    for _ in range(_SWEEPS):
        _gauss_seidel(x, r, d, we, ws, 0)
        _gauss_seidel(x, r, d, we, ws, 1)
    e = _v_cycle(levels, _restrict(_residual(x, r, d, we, ws)), k + 1)
    _prolong_add(x, e, d, _COARSE_SCALE)
    for _ in range(_SWEEPS):
        _gauss_seidel(x, r, d, we, ws, 1)
        _gauss_seidel(x, r, d, we, ws, 0)
    return x


def _harmonic_fill_multiscale(z: np.ndarray, known: np.ndarray, tol: float = FILL_TOL_M) -> np.ndarray:
    """Harmonic fill of the unknown cells of ``z`` (H, W, m; any value on unknown cells), ``known`` (H, W) bool
    cells kept: the discrete Laplace equation of :func:`harmonic_fill_reference` solved by conjugate gradients
    preconditioned with one symmetric V-cycle of aggregation multigrid (Galerkin 2 x 2 coarse operators down to
    one cell), until the V-cycle's correction (an estimate of the remaining error) moves no cell by ``tol`` (m)
    or more; :data:`FILL_MAX_ITER` iterations at most, logged as a warning when hit. A fixed number of
    relaxation sweeps (the former solver) left large holes 0.7-0.9 m from the solution, and differently in a
    tile window than in the AOI. Cost per iteration linear in the cells; 10-16 iterations on the demo and Reunion DSMs.
    Serial kernels with fixed summation order: the same bits on any thread count. Float64 inside; returns
    float32 (H, W), known cells equal to ``z`` (``z`` itself when all or no cell is known)."""
    if known.all() or not known.any():
        return z.astype(np.float32)
    d, we, ws, b = _fine_operator(z, known)
    levels = [(d, we, ws)]
    while max(levels[-1][0].shape) > 1:
        levels.append(_coarsen(*levels[-1]))
    # start from the mean known height (14 -> 11 iterations on the Reunion DSM's first fill, against 0)
    u = np.where(known, 0.0, float(np.mean(z[known], dtype=np.float64)))
    r = _residual(u, b, d, we, ws)
    del b
    g = _v_cycle(levels, r)
    p = g.copy()
    rg = _dot(r, g)
    it = 0
    while float(np.abs(g).max()) >= tol:
        if it == FILL_MAX_ITER:
            log.warning(
                "harmonic fill: not converged after %d iterations (last correction %.2g m > %.2g m)",
                it,
                float(np.abs(g).max()),
                tol,
            )
            break
        q = _apply(p, d, we, ws)
        alpha = rg / _dot(p, q)
        _axpy(u, alpha, p)
        _axpy(r, -alpha, q)
        del q
        g = _v_cycle(levels, r)
        rg_new = _dot(r, g)
        _xpby(g, rg_new / rg, p)
        rg = rg_new
        it += 1
    log.debug("harmonic fill: %d iterations, %d levels", it, len(levels))
    out = u.astype(np.float32)
    out[known] = z[known]
    return out


def harmonic_fill_reference(z: np.ndarray, known: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Exact harmonic interpolation (sparse direct solve) of the unknown cells of ``z`` (H, W), for tests.

    Unknown cells satisfy the discrete Laplace equation (4-neighbour mean, Neumann at the raster edge);
    known cells keep their value. Returns float64 (H, W).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    h, w = z.shape
    unk = np.flatnonzero(~known.ravel())
    pos = -np.ones(h * w, np.int64)
    pos[unk] = np.arange(unk.size)
    rows, cols, vals = [], [], []
    rhs = np.zeros(unk.size)
    zf = z.ravel().astype(np.float64)
    for k, p in enumerate(unk):
        i, j = divmod(int(p), w)
        nb = [
            (i + di, j + dj)
            for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1))
            if 0 <= i + di < h and 0 <= j + dj < w
        ]
        rows.append(k), cols.append(k), vals.append(float(len(nb)))
        for a, b in nb:
            q = a * w + b
            if pos[q] >= 0:
                rows.append(k), cols.append(int(pos[q])), vals.append(-1.0)
            else:
                rhs[k] += zf[q]
    a = coo_matrix((vals, (rows, cols)), shape=(unk.size, unk.size)).tocsr()
    out = zf.copy()
    out[unk] = spsolve(a, rhs)
    return out.reshape(h, w)


# --------------------------------------------------------------------------------------------- algorithm
def opening_windows(max_object_size_m: float, resolution_m: float, window_step_m: float) -> list[int]:
    """Odd window widths (px) of the progressive opening: 3, 5, 9, 17... then linear steps, up to the max size."""
    w_max = max(3, round(max_object_size_m / resolution_m) | 1)
    step = max(2, round(window_step_m / resolution_m) // 2 * 2)
    wins = [3]
    while wins[-1] < w_max:
        nxt = 2 * wins[-1] - 1
        if nxt - wins[-1] > step:
            nxt = wins[-1] + step
        wins.append(min(nxt, w_max))
    return wins


def terrain_slope(z: np.ndarray, resolution_m: float, params: DTMParams) -> np.ndarray:
    """Slope (rise over run, (H, W) float32) of the terrain's trend around each cell of a filled DSM ``z`` (m).

    The DSM is opened with the largest window (``max_object_size_m``: buildings and tree groups go), averaged
    over ``SLOPE_CELL_M`` cells, and the gradient magnitude of that surface is taken at each coarse cell; the
    slope of a cell is the median of those over a ``max_object_size_m`` square around it. The median over a
    wide square sees the flanks of a ridge or a bench edge (where the opened surface itself is flat on the
    crest) and is not raised by the walls of the few objects wider than the window, which cover a small part
    of the square.
    """
    w = max(3, round(SLOPE_OPENING * params.max_object_size_m / resolution_m) | 1)
    opened = ndimage.grey_opening(z, size=(w, w), mode="nearest")
    k = max(1, round(SLOPE_CELL_M / resolution_m))
    h, w = z.shape
    ph, pw = (-h) % k, (-w) % k
    o = np.pad(opened, ((0, ph), (0, pw)), mode="edge")
    coarse = o.reshape(o.shape[0] // k, k, o.shape[1] // k, k).mean(axis=(1, 3))
    if min(coarse.shape) < 2:
        return np.zeros(z.shape, np.float32)
    slope = np.hypot(*np.gradient(coarse, k * resolution_m))
    size = max(3, round(params.max_object_size_m / (k * resolution_m)) | 1)
    slope = median_filter_square(slope, size)
    return np.repeat(np.repeat(slope, k, axis=0), k, axis=1)[:h, :w].astype(np.float32)


def median_filter_square(a: np.ndarray, size: int) -> np.ndarray:
    """``scipy.ndimage.median_filter(a, size=size, mode="nearest")`` for a 2-D finite ``a`` and an odd ``size``,
    the same values, by running histograms (:func:`_median_ranks`): each value is replaced by its rank in the
    sorted array, the window's middle rank is found in a two-level histogram slid along the rows, then mapped
    back to its value. SciPy selects among the size^2 values of each window anew: 0.35 s for the 33 x 33 median
    of a 278 x 278 slope grid (a 300 m tile's terrain job), ~10x slower. Arrays with NaN go to SciPy.
    """
    a = np.asarray(a)
    if a.ndim != 2 or size % 2 == 0 or a.size == 0 or not np.isfinite(a).all():
        return ndimage.median_filter(a, size=size, mode="nearest")
    order = np.argsort(a, axis=None, kind="stable")
    ranks = np.empty(a.size, np.int64)
    ranks[order] = np.arange(a.size)
    r = size // 2
    padded = np.pad(ranks.reshape(a.shape), r, mode="edge")
    # coarse bins of 2^shift ranks, ~sqrt(n) of them: both histogram scans ~sqrt(n) steps per cell; blocks of
    # rows for the threads, each with its own histograms (4 bytes a rank), at most 64 MB of them in all
    shift = max(4, math.ceil(math.log2(math.sqrt(a.size))))
    blocks = max(1, min(a.shape[0], 4 * numba.get_num_threads(), (64 << 20) // (4 * a.size)))
    return a.ravel()[order][_median_ranks(padded, size, shift, blocks)]


@numba.njit(cache=True, parallel=True)
def _median_ranks(padded: np.ndarray, size: int, shift: int, n_blocks: int) -> np.ndarray:
    """Median rank of each ``size`` x ``size`` window of ``padded`` (int ranks, edge-padded by size // 2;
    coarse histogram bins of 2^``shift`` ranks): an (H, W) int64 array. Rows go in ``n_blocks`` blocks, each
    with its own histograms: every row's result is the same whatever the blocks and threads."""
    h = padded.shape[0] - size + 1
    w = padded.shape[1] - size + 1
    n = padded.max() + 1
    half = (size * size) // 2
    out = np.empty((h, w), np.int64)
    for blk in numba.prange(n_blocks):
        fine = np.zeros(n, np.int32)
        coarse = np.zeros((n >> shift) + 1, np.int32)
        for i in range(blk * h // n_blocks, (blk + 1) * h // n_blocks):
            for a in range(size):
                for b in range(size):
                    v = padded[i + a, b]
                    fine[v] += 1
                    coarse[v >> shift] += 1
            for j in range(w):
                if j > 0:
                    for a in range(size):
                        v = padded[i + a, j - 1]
                        fine[v] -= 1
                        coarse[v >> shift] -= 1
                        v = padded[i + a, j + size - 1]
                        fine[v] += 1
                        coarse[v >> shift] += 1
                acc = 0
                c = 0
                while acc + coarse[c] <= half:
                    acc += coarse[c]
                    c += 1
                f = c << shift
                while acc + fine[f] <= half:
                    acc += fine[f]
                    f += 1
                out[i, j] = f
            for a in range(size):  # empty the histograms for the next row
                for b in range(w - 1, w - 1 + size):
                    v = padded[i + a, b]
                    fine[v] -= 1
                    coarse[v >> shift] -= 1
    return out


#: cell (m) of the coarse surface whose gradient gives the terrain slope (:func:`terrain_slope`)
SLOPE_CELL_M = 2.0
#: window of the opening before the slope, as a fraction of ``max_object_size_m`` (:func:`terrain_slope`)
SLOPE_OPENING = 0.25


def low_outliers(z: np.ndarray, resolution_m: float, params: DTMParams) -> np.ndarray:
    """Boolean (H, W) mask of the pits of a filled DSM ``z`` (m): cells more than ``pit_depth_m`` below the
    grey closing of ``z`` with a ``max_pit_size_m`` square, i.e. holes narrower than that square and deeper
    than that depth. Stereo mismatches (shadows, canopy gaps, repetitive texture) leave such pits, often by the
    hundred and in clusters the 3 x 3 despeckle does not remove; an opening anchors the terrain on them. The
    closing preserves planes, steps and valleys wider than the square, so real ground is not flagged.
    None when ``max_pit_size_m`` is 0."""
    if params.max_pit_size_m <= 0:
        return np.zeros(z.shape, bool)
    w = max(3, round(params.max_pit_size_m / resolution_m) | 1)
    return (ndimage.grey_closing(z, size=(w, w), mode="nearest") - z) > params.pit_depth_m


def progressive_object_mask(
    z: np.ndarray, resolution_m: float, params: DTMParams, trend: np.ndarray | None = None
) -> np.ndarray:
    """Boolean (H, W) mask of above-ground object cells of a filled DSM ``z`` (m) by progressive opening.

    See the module docstring, step 2. ``z`` must have no NaN (use :func:`fill_nearest`). With
    ``params.adaptive_slope`` the slope allowance of each cell is the larger of ``max_slope`` and
    ``adaptive_slope`` times the terrain's own slope there (``trend``: :func:`terrain_slope` of ``z``, computed
    here when None).
    """
    objects = np.zeros(z.shape, bool)
    last = z
    prev_w = 1
    slope: float | np.ndarray = params.max_slope
    if params.adaptive_slope > 0:
        if trend is None:
            trend = terrain_slope(z, resolution_m, params)
        slope = np.maximum(params.max_slope, params.adaptive_slope * trend)
    for w in opening_windows(params.max_object_size_m, resolution_m, params.window_step_m):
        opened = ndimage.grey_opening(last, size=(w, w), mode="nearest")
        thr = params.min_object_height_m + slope * (w - prev_w) * resolution_m
        objects |= (last - opened) > thr
        last, prev_w = opened, w
    return objects


def _grow(objects: np.ndarray, buffer_px: int, flat_px: int, flat: np.ndarray | None) -> np.ndarray:
    """``objects`` grown by ``buffer_px`` cells, and by ``flat_px`` (> ``buffer_px``) on the ``flat`` cells (None:
    nowhere). The wide growth continues the narrow one (dilations compose), not a second one from the start."""
    grown = ndimage.binary_dilation(objects, iterations=buffer_px) if buffer_px else objects.copy()
    if flat is not None:
        grown |= ndimage.binary_dilation(grown, iterations=flat_px - buffer_px) & flat
    return grown


def extract_dtm(dsm: np.ndarray, resolution_m: float, params: DTMParams | None = None) -> np.ndarray:
    """Extract the terrain under a DSM.

    Args:
        dsm: (H, W) float DSM in metres, NaN = nodata.
        resolution_m: pixel size in metres (square pixels).
        params: algorithm parameters (defaults when None).
    Returns:
        (H, W) float32 DTM, same datum and grid as ``dsm``. Holes of the DSM get interpolated terrain; cells
        farther than ``max_object_size_m`` from any valid DSM cell are NaN (no evidence there).
    """
    p = params or DTMParams()
    if dsm.ndim != 2:
        raise ValueError(f"extract_dtm expects a (H, W) DSM, got shape {dsm.shape}")
    valid = np.isfinite(dsm)
    if not valid.any():
        raise ValueError("the DSM has no valid cell (all nodata): nothing to extract a terrain from")
    z = fill_nearest(dsm)
    if p.despeckle:
        z = ndimage.median_filter(z, size=3, mode="nearest")
    pits = low_outliers(z, resolution_m, p) & valid
    if pits.any():
        log.info(
            "terrain: %.2f %% of the valid DSM cells are pits (low outliers), not ground", 100 * pits.mean()
        )
        z = fill_nearest(np.where(pits | ~valid, np.nan, z)) if (valid & ~pits).any() else z
    buffer_px = round(p.object_buffer_m / resolution_m)
    flat_px = round(p.flat_object_buffer_m / resolution_m)
    trend = None
    if p.adaptive_slope > 0 or flat_px > buffer_px:
        trend = terrain_slope(z, resolution_m, p)
    objects = progressive_object_mask(z, resolution_m, p, trend)
    # the flat terrain, where objects are grown by flat_object_buffer_m (None: the same buffer everywhere)
    flat = trend < p.flat_max_slope if flat_px > buffer_px and trend is not None else None
    objects = _grow(objects, buffer_px, flat_px, flat)
    ground = valid & ~pits & ~objects
    if ground.sum() < 10:
        raise ValueError(
            "no ground cell found in the DSM: increase terrain.max_slope or "
            "terrain.max_object_size_m, or check the DSM (all cells flagged as objects)"
        )
    dtm = _harmonic_fill_multiscale(np.where(ground, z, 0.0), ground)
    if p.refine:
        # Second pass: ground = close to the first surface, with a tolerance growing with the local slope.
        slope = np.hypot(*np.gradient(dtm, resolution_m))
        ground2 = (valid & ~pits) & (
            np.abs(z - dtm) <= p.ground_tolerance_m + p.slope_tolerance_scale * slope * resolution_m
        )
        ground2 &= ~_grow(~ground2, buffer_px, flat_px, flat)
        if ground2.sum() >= 10:
            dtm = _harmonic_fill_multiscale(np.where(ground2, z, 0.0), ground2)
    if p.smooth_sigma_px > 0:
        dtm = ndimage.gaussian_filter(dtm, p.smooth_sigma_px, mode="nearest")
    # No evidence far from valid data.
    if not valid.all():
        dist = ndimage.distance_transform_edt(~valid) * resolution_m
        dtm[dist > p.max_object_size_m] = np.nan
    return dtm.astype(np.float32)


def normalized_dsm(dsm: np.ndarray, dtm: np.ndarray) -> np.ndarray:
    """nDSM = DSM - DTM (m), float32 (H, W); NaN where either is NaN. Small negatives (< 0) are kept as is."""
    return (dsm.astype(np.float32) - dtm.astype(np.float32)).astype(np.float32)


# --------------------------------------------------------------------------------------------- workflow entry
def _dsm_grid(dsm: str | os.PathLike[str], head: Any) -> float:
    """Pixel size (m) of a DSM header, checked: projected CRS, square pixels (error naming the file)."""
    if head.crs is None or not head.crs.is_projected:
        raise ValueError(
            f"{dsm}: the DSM must be on a projected grid in metres (got CRS {head.crs}); "
            "rerun the mosaic step with output.epsg set to a projected CRS"
        )
    res_x, res_y = abs(head.transform.a), abs(head.transform.e)
    if not math.isclose(res_x, res_y, rel_tol=1e-3):
        raise ValueError(f"{dsm}: pixels must be square (got {res_x} x {res_y} m); resample the DSM first")
    return float(res_x)


def _product_tags(
    dsm: str | os.PathLike[str], dsm_tags: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Tags of the DTM (the DSM's vertical datum) and of the nDSM (heights above the DTM)."""
    datum = dsm_tags.get("VERTICAL_DATUM")
    if not datum:
        datum = sat2lod.ELLIPSOID_DATUM
        log.warning("%s has no VERTICAL_DATUM tag; assuming %s", dsm, datum)
    tags = {
        "VERTICAL_DATUM": datum,
        "SAT2LOD_PRODUCT": "dtm",
        "SAT2LOD_METHOD": "progressive_morphology+harmonic",
    }
    ndsm_tags = {
        **tags,
        "VERTICAL_DATUM": sat2lod.HEIGHT_ABOVE_DTM,
        "DTM_VERTICAL_DATUM": datum,
        "SAT2LOD_PRODUCT": "ndsm",
        "HEIGHT_REFERENCE": "DTM",
    }
    return tags, ndsm_tags


def dtm_from_dsm_file(
    dsm: str | os.PathLike[str], dtm: str | os.PathLike[str], ndsm: str | os.PathLike[str], **params: Any
) -> dict[str, float]:
    """Read a DSM GeoTIFF whole, write its DTM and nDSM as COGs (float32, NaN nodata): the untiled terrain,
    the reference the per-tile rule (:func:`dtm_tile_from_files`) is tested against.

    The DTM keeps the DSM's ``VERTICAL_DATUM``; the nDSM's is :data:`sat2lod.HEIGHT_ABOVE_DTM` (its
    values are heights above the DTM), with the DTM's datum in ``DTM_VERTICAL_DATUM``.

    Args:
        dsm: input DSM (projected CRS, square pixels, heights in m).
        dtm, ndsm: output paths.
        **params: fields of :class:`DTMParams` (config section ``terrain``); an unknown name is an error.
    Returns:
        Summary numbers (seconds, valid fractions, mean nDSM) also written to the log.
    """
    t0 = time.perf_counter()
    prm = DTMParams(**params)
    src = read_raster(dsm, bands=1, masked_to_nan=True)
    res = _dsm_grid(dsm, src)
    arr = src.array.astype(np.float32)
    tags, ndsm_tags = _product_tags(dsm, src.tags)
    dtm_arr = extract_dtm(arr, res, prm)
    ndsm_arr = normalized_dsm(arr, dtm_arr)
    write_raster(dtm, dtm_arr, src.transform, src.crs, nodata=float("nan"), tags=tags, cog=True)
    write_raster(ndsm, ndsm_arr, src.transform, src.crs, nodata=float("nan"), tags=ndsm_tags, cog=True)
    summary = {
        "seconds": time.perf_counter() - t0,
        "dsm_valid_fraction": float(np.isfinite(arr).mean()),
        "dtm_valid_fraction": float(np.isfinite(dtm_arr).mean()),
        "ndsm_mean_m": float(np.nanmean(ndsm_arr)) if np.isfinite(ndsm_arr).any() else float("nan"),
    }
    log.info("DTM %s and nDSM %s written (%s)", dtm, ndsm, summary)
    return summary


#: the windows of the per-tile jobs start on multiples of this many cells of the AOI grid (and of the
#: :data:`SLOPE_CELL_M` blocks of :func:`terrain_slope`): the slope's coarse cells then pool the same cells in
#: a tile as in the whole AOI (and the harmonic fill's multigrid the same 2 x 2 aggregates on its first 6
#: levels; converged, its solution does not depend on them)
WINDOW_ALIGN = 64


def dtm_tile_from_files(
    dsm: str | os.PathLike[str],
    tiles: str | os.PathLike[str],
    tile: str,
    dtm: str | os.PathLike[str],
    ndsm: str | os.PathLike[str],
    **params: Any,
) -> dict[str, Any]:
    """Rule ``dtm_tile``: the DTM and nDSM of one tile's core, from the DSM over the core plus a halo of
    ``tile_halo_m`` (windowed read): memory follows the tile, not the AOI.

    Why a halo of (at least) ``max_object_size_m`` gives the terrain of the whole AOI in the core: the filter's
    openings, the pits' closing, the slope's median and the buffer reach at most ``max_object_size_m`` / 2
    (objects wider are terrain by definition); the harmonic fill of an object is solved from the ground
    around that object alone (its connected unknown region), so it sees the same ground in the window as in
    the AOI unless the region runs past the halo (touching objects longer than the halo, a wide DSM hole); the
    no-evidence cut (farther than ``max_object_size_m`` from a valid cell) is exact. The fill is solved to
    convergence (:data:`FILL_TOL_M`) in the window as in the AOI, so the core agrees to the solver's tolerance,
    not always to the bit (measured, tiles of 150 m, 128 m halo: max 0.24 mm on the Reunion DSM, relief under
    vegetation, 0.015 mm on the demo city, one float32 step of their heights; with a 64 m halo 8.8 and 5.2 mm
    next to the seams, where filled regions run past the halo: docs/distribution.md,
    bench/results/terrain_tiled.md).

    Args:
        dsm: the AOI's DSM mosaic (COG, projected CRS, square pixels, m).
        tiles: the tiling checkpoint's grid (``tiles.geojson``); tile: the tile id.
        dtm, ndsm: outputs over the tile core (GeoTIFF, float32, NaN nodata), with the untiled products' tags.
        **params: fields of :class:`DTMParams` (config section ``terrain``).
    Returns:
        Summary (windows, seconds, valid fractions).
    Raises:
        ValueError: a halo narrower than ``max_object_size_m``, or no ground in the window (naming the tile).
    """
    import rasterio.windows

    from sat2lod.grid import tile_windows
    from sat2lod.io.raster import raster_header
    from sat2lod.io.sensor_image import read_tile

    t0 = time.perf_counter()
    prm = DTMParams(**params)
    if prm.tile_halo_m < prm.max_object_size_m:
        raise ValueError(
            f"terrain.tile_halo_m ({prm.tile_halo_m} m) is narrower than terrain.max_object_size_m "
            f"({prm.max_object_size_m} m): the tiles would cut the largest objects; raise terrain.tile_halo_m"
        )
    head = raster_header(dsm)
    res = _dsm_grid(dsm, head)
    align = math.lcm(WINDOW_ALIGN, max(1, round(SLOPE_CELL_M / res)))
    core, (ra, rb, ca, cb) = tile_windows(
        read_tile(tiles, tile)["core"], head.transform, head.shape, math.ceil(prm.tile_halo_m / res), align
    )
    src = read_raster(
        dsm, bands=1, masked_to_nan=True, window=rasterio.windows.Window(ca, ra, cb - ca, rb - ra)
    )
    arr = src.array.astype(np.float32)
    tags, ndsm_tags = _product_tags(dsm, src.tags)
    if np.isfinite(arr).any():
        try:
            dtm_arr = extract_dtm(arr, res, prm)
        except ValueError as exc:
            raise ValueError(f"{dsm}, tile {tile}: {exc}; or raise terrain.tile_halo_m") from exc
    else:  # no DSM in the tile nor its halo: no terrain either (as the untiled DTM, far from valid cells)
        dtm_arr = np.full(arr.shape, np.nan, np.float32)
    cut = (slice(core[0] - ra, core[1] - ra), slice(core[2] - ca, core[3] - ca))
    dtm_core = dtm_arr[cut]
    ndsm_core = normalized_dsm(arr[cut], dtm_core)
    t_core = rasterio.windows.transform(
        rasterio.windows.Window(core[2], core[0], core[3] - core[2], core[1] - core[0]), head.transform
    )
    write_raster(dtm, dtm_core, t_core, head.crs, nodata=float("nan"), tags=tags)
    write_raster(ndsm, ndsm_core, t_core, head.crs, nodata=float("nan"), tags=ndsm_tags)
    summary = {
        "tile": tile,
        "core_window": core,
        "read_window": (ra, rb, ca, cb),
        "seconds": round(time.perf_counter() - t0, 2),
        "dsm_valid_fraction": float(np.isfinite(arr[cut]).mean()),
        "dtm_valid_fraction": float(np.isfinite(dtm_core).mean()),
    }
    log.info("terrain tile %s: %s", tile, summary)
    return summary


def assemble_terrain(
    dtms: list[str | os.PathLike[str]],
    ndsms: list[str | os.PathLike[str]],
    dsm: str | os.PathLike[str],
    dtm: str | os.PathLike[str],
    ndsm: str | os.PathLike[str],
) -> None:
    """Rule ``dtm``: the tiles' DTMs and nDSMs pasted, streamed, into the AOI's dtm.tif and ndsm.tif (COG) on
    the DSM's grid (cells of no tile: NaN); memory bounded by the paste's block, not the AOI."""
    from sat2lod.io.raster import paste_tiles, raster_header

    head = raster_header(dsm)
    paste_tiles(dtms, dtm, head.transform, head.shape, head.crs, np.float32, float("nan"))
    paste_tiles(ndsms, ndsm, head.transform, head.shape, head.crs, np.float32, float("nan"))
