"""Digital terrain model (DTM) and normalized DSM (nDSM) from a DSM alone.

Method (own implementation, chosen against CNES Bulldozer by measurement: ``bench/terrain_compare.py``):

1. **Fill and despeckle.** DSM nodata cells are filled with the nearest valid height; a 3 x 3 median removes
   isolated stereo pits and spikes.
2. **Multi-scale object detection** (progressive morphological filter, Zhang et al. 2003 / SMRF, Pingel et al.
   2013). The DSM is opened (erosion then dilation, square window) with windows growing from 3 px to the
   largest object size ``max_object_size_m``: exponentially (3, 5, 9, 17 px...) then linearly in steps of
   ``window_step_m``. A cell whose height drops by more than ``min_object_height_m + max_slope * Δw`` between two
   consecutive openings (Δw = growth of the window in metres) belongs to an above-ground object. The slope term
   keeps convex terrain (hills) as ground; objects wider than the largest window are kept as terrain.
3. **Harmonic interpolation** of the ground cells (objects grown by ``object_buffer_m`` first, so that the
   ramps at the foot of walls in an interpolated or stereo DSM do not anchor the terrain) (Laplace equation, multi-scale SOR): the terrain under objects
   joins the surrounding ground smoothly without overshoot.
4. **Refinement.** Cells within ``ground_tolerance_m`` (+ a slope-proportional term) of that first surface are
   ground; interpolate again; optionally smooth with a Gaussian of ``smooth_sigma_px`` (stereo noise).

DTM heights are in metres in the DSM's vertical datum (kept in the ``VERTICAL_DATUM`` tag); nDSM values are
metres above the DTM (tag ``VERTICAL_DATUM`` = :data:`sat2lod.HEIGHT_ABOVE_DTM`); nodata is NaN.
The numba kernel is private; :func:`harmonic_fill_reference` is the exact sparse solve the tests compare it with.
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
from sat2lod.io.raster import read_raster, write_raster

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
        ground_tolerance_m: refinement: cells within this height of the first surface are ground (m).
        slope_tolerance_scale: refinement: extra tolerance per unit slope of the first surface, per pixel.
        refine: run the refinement pass.
        despeckle: apply the 3 x 3 median first (stereo pits / spikes).
        smooth_sigma_px: Gaussian smoothing of the final DTM (pixels); 0 = none.
    """

    max_object_size_m: float = 64.0
    max_slope: float = 0.15
    min_object_height_m: float = 0.5
    window_step_m: float = 4.0
    object_buffer_m: float = 1.5
    ground_tolerance_m: float = 0.5
    slope_tolerance_scale: float = 1.0
    refine: bool = True
    despeckle: bool = True
    smooth_sigma_px: float = 1.0


# --------------------------------------------------------------------------------------------- helpers
def fill_nearest(z: np.ndarray) -> np.ndarray:
    """Fill NaN cells of ``z`` (H, W) with the value of the nearest valid cell; returns a new float32 array.

    Raises:
        ValueError: no valid cell at all.
    """
    invalid = ~np.isfinite(z)
    if not invalid.any():
        return z.astype(np.float32, copy=True)
    if invalid.all():
        raise ValueError("the DSM has no valid cell (all nodata): nothing to extract a terrain from")
    idx = ndimage.distance_transform_edt(invalid, return_distances=False, return_indices=True)
    return z[tuple(idx)].astype(np.float32)


def _upsample_to(z: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a pooled level back to ``shape`` (cell centres aligned, edges clamped)."""
    h, w = shape
    rows = (np.arange(h) + 0.5) * z.shape[0] / h - 0.5
    cols = (np.arange(w) + 0.5) * z.shape[1] / w - 0.5
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return ndimage.map_coordinates(z, [rr, cc], order=1, mode="nearest").astype(np.float32)


# --------------------------------------------------------------------------------------------- kernels
@numba.njit(cache=True)
def _harmonic_fill(z: np.ndarray, known: np.ndarray, n_iter: int, omega: float) -> np.ndarray:
    h, w = z.shape
    out = z.copy()
    for _ in range(n_iter):
        for i in range(h):
            for j in range(w):
                if known[i, j]:
                    continue
                s = 0.0
                n = 0
                if i > 0:
                    s += out[i - 1, j]
                    n += 1
                if i < h - 1:
                    s += out[i + 1, j]
                    n += 1
                if j > 0:
                    s += out[i, j - 1]
                    n += 1
                if j < w - 1:
                    s += out[i, j + 1]
                    n += 1
                out[i, j] += omega * (s / n - out[i, j])
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


def _harmonic_fill_multiscale(z: np.ndarray, known: np.ndarray, n_iter: int = 30) -> np.ndarray:
    """Harmonic fill of the unknown cells, coarse to fine (each level initialises the next, SOR smooths)."""
    if known.all() or not known.any():
        return z.astype(np.float32)
    h, w = z.shape
    if min(h, w) > 32:
        # Coarse level: mean of known cells per 2 x 2 block.
        ph, pw = h % 2, w % 2
        zz = np.pad(np.where(known, z, 0.0), ((0, ph), (0, pw)))
        kk = np.pad(known.astype(np.float32), ((0, ph), (0, pw)))
        s = zz.reshape(zz.shape[0] // 2, 2, zz.shape[1] // 2, 2).sum(axis=(1, 3))
        n = kk.reshape(kk.shape[0] // 2, 2, kk.shape[1] // 2, 2).sum(axis=(1, 3))
        coarse_known = n > 0
        coarse = np.where(coarse_known, s / np.maximum(n, 1), 0.0).astype(np.float32)
        coarse = _harmonic_fill_multiscale(coarse, coarse_known, n_iter)
        init = _upsample_to(coarse, (h, w))
    else:
        init = np.full((h, w), float(np.mean(z[known])), np.float32)
        n_iter = max(n_iter, 4 * (h + w))
    start = np.where(known, z, init).astype(np.float64)
    return _harmonic_fill(start, known, n_iter, 1.6).astype(np.float32)


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


def progressive_object_mask(z: np.ndarray, resolution_m: float, params: DTMParams) -> np.ndarray:
    """Boolean (H, W) mask of above-ground object cells of a filled DSM ``z`` (m) by progressive opening.

    See the module docstring, step 2. ``z`` must have no NaN (use :func:`fill_nearest`).
    """
    objects = np.zeros(z.shape, bool)
    last = z
    prev_w = 1
    for w in opening_windows(params.max_object_size_m, resolution_m, params.window_step_m):
        opened = ndimage.grey_opening(last, size=(w, w), mode="nearest")
        thr = params.min_object_height_m + params.max_slope * (w - prev_w) * resolution_m
        objects |= (last - opened) > thr
        last, prev_w = opened, w
    return objects


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
    z = fill_nearest(dsm)
    if p.despeckle:
        z = ndimage.median_filter(z, size=3, mode="nearest")
    objects = progressive_object_mask(z, resolution_m, p)
    buffer_px = round(p.object_buffer_m / resolution_m)
    if buffer_px:
        objects = ndimage.binary_dilation(objects, iterations=buffer_px)
    ground = valid & ~objects
    if ground.sum() < 10:
        raise ValueError(
            "no ground cell found in the DSM: increase terrain.max_slope or "
            "terrain.max_object_size_m, or check the DSM (all cells flagged as objects)"
        )
    dtm = _harmonic_fill_multiscale(np.where(ground, z, 0.0), ground)
    if p.refine:
        # Second pass: ground = close to the first surface, with a tolerance growing with the local slope.
        slope = np.hypot(*np.gradient(dtm, resolution_m))
        ground2 = valid & (
            np.abs(z - dtm) <= p.ground_tolerance_m + p.slope_tolerance_scale * slope * resolution_m
        )
        if buffer_px:
            ground2 &= ~ndimage.binary_dilation(~ground2, iterations=buffer_px)
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
def dtm_from_dsm_file(
    dsm: str | os.PathLike[str], dtm: str | os.PathLike[str], ndsm: str | os.PathLike[str], **params: Any
) -> dict[str, float]:
    """Read a DSM GeoTIFF, write its DTM and nDSM as COGs (float32, NaN nodata).

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
    src = read_raster(dsm, bands=1, masked_to_nan=True)
    if src.crs is None or not src.crs.is_projected:
        raise ValueError(
            f"{dsm}: the DSM must be on a projected grid in metres (got CRS {src.crs}); "
            "rerun the mosaic step with output.epsg set to a projected CRS"
        )
    res_x, res_y = abs(src.transform.a), abs(src.transform.e)
    if not math.isclose(res_x, res_y, rel_tol=1e-3):
        raise ValueError(f"{dsm}: pixels must be square (got {res_x} x {res_y} m); resample the DSM first")
    arr = src.array.astype(np.float32)
    datum = src.tags.get("VERTICAL_DATUM")
    if not datum:
        datum = sat2lod.ELLIPSOID_DATUM
        log.warning("%s has no VERTICAL_DATUM tag; assuming %s", dsm, datum)
    dtm_arr = extract_dtm(arr, res_x, DTMParams(**params))
    ndsm_arr = normalized_dsm(arr, dtm_arr)
    tags = {
        "VERTICAL_DATUM": datum,
        "SAT2LOD_PRODUCT": "dtm",
        "SAT2LOD_METHOD": "progressive_morphology+harmonic",
    }
    write_raster(dtm, dtm_arr, src.transform, src.crs, nodata=float("nan"), tags=tags, cog=True)
    write_raster(
        ndsm,
        ndsm_arr,
        src.transform,
        src.crs,
        nodata=float("nan"),
        tags={
            **tags,
            "VERTICAL_DATUM": sat2lod.HEIGHT_ABOVE_DTM,
            "DTM_VERTICAL_DATUM": datum,
            "SAT2LOD_PRODUCT": "ndsm",
            "HEIGHT_REFERENCE": "DTM",
        },
        cog=True,
    )
    summary = {
        "seconds": time.perf_counter() - t0,
        "dsm_valid_fraction": float(np.isfinite(arr).mean()),
        "dtm_valid_fraction": float(np.isfinite(dtm_arr).mean()),
        "ndsm_mean_m": float(np.nanmean(ndsm_arr)) if np.isfinite(ndsm_arr).any() else float("nan"),
    }
    log.info("DTM %s and nDSM %s written (%s)", dtm, ndsm, summary)
    return summary
