"""One stereo tile end to end: rectify -> pointing correction -> SGM -> sub-pixel refinement -> triangulate ->
rasterize -> fuse.

Why one job per tile (rule ``stereo_tile``) rather than four rules (rectify, match, triangulate, rasterize):
the intermediates (rectified pairs, disparity maps, point clouds) are 10-50x larger than the DSM tile and used
exactly once; writing them would make the job I/O bound and multiply the file count by the pair count, for no
reuse. Every stage is still a separate, tested package function (:mod:`sat2lod.stereo.rectify`, ``sgm``,
``subpixel``, ``triangulate``, ``rasterize``), and the log reports each stage's time, pointing correction and valid
ratio.

Memory per tile job: the SGM volumes (2-4 bytes x rectified pixels x disparities, capped by ``sgm_volume_mb``
through strips; see :mod:`sat2lod.stereo.sgm`) plus a few float32 images of the rectified size; the tests and
benchmarks measure the peak.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyproj import CRS, Transformer

import sat2lod
from sat2lod.io.raster import write_raster
from sat2lod.io.rpc_files import read_rpc
from sat2lod.io.scene_sheet import read_scene_sheet
from sat2lod.io.sensor_image import image_shape, read_tile, read_window
from sat2lod.memory import release_memory
from sat2lod.progress import Progress
from sat2lod.rpc import RPCModel
from sat2lod.schema import defaults
from sat2lod.stereo.edges import edge_refine, occluded_side
from sat2lod.stereo.pointing import across_track_offset, match_keypoints, range_keypoints
from sat2lod.stereo.rasterize import (
    densify_disparity,
    fill_small_holes,
    fuse_heights,
    grid_for_bounds,
    rasterize_points,
)
from sat2lod.stereo.rectify import PairRectification, image_window, rectify_pair, warp_affine
from sat2lod.stereo.sgm import median_filter, sgm_disparity
from sat2lod.stereo.subpixel import (
    jump_gate,
    refine_disparity,
    refinement_weight,
    relief_gate,
    sgm_precision,
)
from sat2lod.stereo.triangulate import triangulate_rectified

_STEREO = defaults("stereo")  # defaults of config section stereo

log = logging.getLogger(__name__)

#: stereo.subpixel -> the fit of :func:`sat2lod.stereo.subpixel.refine_disparity` ("sgm": no refinement)
SUBPIXEL_FITS = {"zncc": "parabola", "zncc2": "zncc2"}
#: stereo.subpixel -> the fit on the SGM costs of :func:`sat2lod.stereo.sgm.sgm_disparity` (no refinement)
SGM_FITS = {"sgm": "parabola", "sgm_v": "v"}


@dataclass
class StereoParams:
    """Parameters of the stereo chain (config section ``stereo``; see config/schema.yaml for each)."""

    census_window: tuple[int, int] = tuple(_STEREO["census_window"])
    p1: float = _STEREO["p1"]
    p2: float = _STEREO["p2"]
    paths: int = _STEREO["paths"]
    lr_tol: float = _STEREO["lr_tol"]
    median: bool = _STEREO["median"]
    subpixel: str = _STEREO["subpixel"]
    subpixel_window: tuple[int, int] = tuple(_STEREO["subpixel_window"])
    subpixel_noise_px: float = _STEREO["subpixel_noise_px"]
    subpixel_relief_px: float = _STEREO["subpixel_relief_px"]
    subpixel_relief_radius: int = _STEREO["subpixel_relief_radius"]
    subpixel_jump_px: float = _STEREO["subpixel_jump_px"]
    raster_radius: float = _STEREO["raster_radius"]
    raster_sigma: float = _STEREO["raster_sigma"]
    raster_tol_m: float = _STEREO["raster_tol_m"]
    raster_empty_cells: bool = _STEREO["raster_empty_cells"]
    sgm_volume_mb: float = _STEREO["sgm_volume_mb"]
    pointing_correction: bool = _STEREO["pointing_correction"]
    max_pointing_px: int = _STEREO["max_pointing_px"]
    keypoint_range: bool = _STEREO["keypoint_range"]
    range_margin_m: float = _STEREO["range_margin_m"]
    keypoint_fence_m: float = _STEREO["keypoint_fence_m"]
    max_residual_px: float = _STEREO["max_residual_px"]
    fuse_tol_m: float = _STEREO["fuse_tol_m"]
    fill_iterations: int = _STEREO["fill_iterations"]
    densify: int = _STEREO["densify"]
    edge_radius_px: int = _STEREO["edge_radius_px"]
    edge_sigma: float = _STEREO["edge_sigma"]
    edge_jump_px: float = _STEREO["edge_jump_px"]
    height_margin_m: float = _STEREO["height_margin_m"]
    range_probe_m: float = _STEREO["range_probe_m"]

    @classmethod
    def from_kwargs(cls, **kw: Any) -> StereoParams:
        names = set(cls.__dataclass_fields__)
        unknown = set(kw) - names
        if unknown:
            raise TypeError(f"unknown stereo parameters: {sorted(unknown)}")
        for key in ("census_window", "subpixel_window"):
            if key in kw:
                kw[key] = tuple(int(v) for v in kw[key])
        return cls(**kw)


@dataclass
class PairResult:
    """Heights of one pair on the tile grid and what the log / quality layers report."""

    height: np.ndarray
    residual: np.ndarray
    count: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def _rectified_images(
    img1: str, img2: str, shape1: tuple[int, int], shape2: tuple[int, int], pr: PairRectification
) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for path, shape, rect, rshape in (
        (img1, shape1, pr.rect1, pr.shape1),
        (img2, shape2, pr.rect2, pr.shape2),
    ):
        win = image_window(rect, rshape, shape)
        if win is None:
            out.append(np.full(rshape, np.nan, np.float32))
            continue
        r0, c0, nr, nc = win
        data = read_window(path, r0, c0, nr, nc)
        out.append(warp_affine(data, rect, rshape, origin=(r0, c0)))
    return out[0], out[1]


class SearchRangeError(RuntimeError):
    """The disparity search range does not contain the scene and cannot be widened to; names the fix."""


#: share of keypoint heights outside the search range above which the range is taken as missing the scene
OUTSIDE_SHARE = 0.1


def _halve(a: np.ndarray) -> np.ndarray:
    """2x2 block mean of a (H, W) image (NaN where a block has a NaN); odd last row/column dropped."""
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    return a[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def check_search_range(
    img1: str,
    rpc1: RPCModel,
    img2: str,
    rpc2: RPCModel,
    bounds: tuple[float, float, float, float],
    epsg: int,
    hrange: tuple[float, float],
    shapes: tuple[tuple[int, int], tuple[int, int]],
    params: StereoParams,
) -> tuple[tuple[float, float], dict[str, Any]]:
    """Check that the height search range ``hrange`` (m) contains the scene; widen it when it does not.

    Keypoints are matched over ``hrange`` widened by ``params.range_probe_m`` on each side (a rectification of
    its own at half resolution, used for nothing else; over the RPCs' whole height validity range when that
    finds fewer than 8 matches). When more than :data:`OUTSIDE_SHARE` of their heights lie outside
    ``hrange`` (+- ``range_margin_m``), the range is widened to include their 1-99 % heights
    (+- ``height_margin_m``) with a warning: SGM would otherwise only find matches inside the range, and the
    DSM would be clipped to it (half empty, tens of metres off) without any error.

    Returns:
        (the range to use, what was found for the log / pair info).
    Raises:
        SearchRangeError: the keypoints reach the ends of the widened probe (the scene lies further out).
    """
    info: dict[str, Any] = {}
    if params.range_probe_m <= 0:
        return hrange, info
    w = float(params.range_probe_m)
    probes = [(hrange[0] - w, hrange[1] + w)]
    # second try, when the first finds too few keypoints: the heights both RPC models are valid for
    rpc_lo = max(r.height_off - abs(r.height_scale) for r in (rpc1, rpc2))
    rpc_hi = min(r.height_off + abs(r.height_scale) for r in (rpc1, rpc2))
    if rpc_lo < probes[0][0] or rpc_hi > probes[0][1]:
        probes.append((min(rpc_lo, probes[0][0]), max(rpc_hi, probes[0][1])))
    for probe in probes:
        pr = rectify_pair(rpc1, rpc2, bounds, epsg, probe, *shapes)
        left, right = _rectified_images(img1, img2, *shapes, pr)
        # at half resolution: 8x less work than full resolution; +-2 px of disparity is precise enough here
        kp = match_keypoints(
            _halve(left),
            _halve(right),
            int(np.floor(pr.dmin / 2)),
            int(np.ceil(pr.dmax / 2)),
            max_dy=max(2, -(-params.max_pointing_px // 2)),
            half_window=5,
            n_max=60,
        )
        kp.dx = 2.0 * kp.dx  # half-resolution pixel i is full-resolution 2i + 0.5 in both images
        if len(kp) >= 8:
            break
    info["range_check_keypoints"] = len(kp)
    if len(kp) < 8:
        log.warning(
            "search-range check: %d keypoint match(es) over [%.0f, %.0f] m, too few to check the height range",
            len(kp),
            *probe,
        )
        return hrange, info
    hk = pr.height_of_disparity(kp.dx)
    tol = params.range_margin_m
    outside = float(np.mean((hk < hrange[0] - tol) | (hk > hrange[1] + tol)))
    lo, hi = (float(v) for v in np.percentile(hk, [1, 99]))
    info.update(
        range_check_outside=round(outside, 3), range_check_keypoint_heights=(round(lo, 1), round(hi, 1))
    )
    if outside <= OUTSIDE_SHARE:
        return hrange, info
    step = 4.0 / abs(float(pr.alpha))  # 2 half-resolution disparity pixels, in metres
    if lo < probe[0] + step or hi > probe[1] - step:
        raise SearchRangeError(
            f"the height search range [{hrange[0]:.0f}, {hrange[1]:.0f}] m (source.height_range +- "
            f"stereo.height_margin_m) does not contain the scene: {100 * outside:.0f} % of {len(kp)} keypoint "
            f"heights lie outside it, and they reach the end of the range checked around it "
            f"([{probe[0]:.0f}, {probe[1]:.0f}] m, stereo.range_probe_m). Set source.height_range to the "
            "ellipsoidal heights of the terrain and buildings, or to null to use the RPC height range."
        )
    widened = (min(hrange[0], lo - params.height_margin_m), max(hrange[1], hi + params.height_margin_m))
    log.warning(
        "the height search range [%.0f, %.0f] m (source.height_range +- stereo.height_margin_m) misses the scene: "
        "%.0f %% of %d keypoint heights lie outside it (keypoints %.0f .. %.0f m); widened to [%.0f, %.0f] m. "
        "Fix source.height_range (ellipsoidal metres, or null for the RPC range).",
        *hrange,
        100 * outside,
        len(kp),
        lo,
        hi,
        *widened,
    )
    info["range_widened_to"] = (round(widened[0], 1), round(widened[1], 1))
    return widened, info


def process_pair(
    img1: str,
    rpc1: RPCModel,
    img2: str,
    rpc2: RPCModel,
    bounds: tuple[float, float, float, float],
    epsg: int,
    height_range: tuple[float, float],
    transform: Any,
    shape: tuple[int, int],
    params: StereoParams,
) -> PairResult:
    """Heights of a pair on the grid (``transform``, ``shape``) of a tile with ``bounds`` (EPSG ``epsg``).

    ``rpc2`` gets the relative pointing correction estimated here; heights are ellipsoidal (RPC heights).
    The height search range (``height_range`` +- ``height_margin_m``) is checked twice: by
    :func:`check_search_range` before matching, and after triangulation: when more than
    :data:`MAX_OUTSIDE_POINTS` of the points fall outside the range, the pair is matched again once over the
    range widened to their 1-99 % heights (keypoint narrowing off), and the job fails if that does not help.
    When a range cut the scene (more than :data:`MAX_OUTSIDE_NARROWED` of the points beyond it, e.g. a
    keypoint-narrowed range that missed a pyramid's faces), the pair is matched again with each cut end put
    back at the end of the search range (or ``range_probe_m`` beyond it when it was already there); an end is
    cut only where a surface lies at it (:func:`range_end_coherence`): specks there are mismatches, and the
    result is kept. At most 3 matchings.

    Raises:
        SearchRangeError: the search range does not contain the scene (message names source.height_range).
        ValueError: the tile is not seen by the pair (the caller skips the pair).
    """
    shapes = (image_shape(img1), image_shape(img2))
    hrange = (
        float(min(height_range)) - params.height_margin_m,
        float(max(height_range)) + params.height_margin_m,
    )
    hrange, checked = check_search_range(img1, rpc1, img2, rpc2, bounds, epsg, hrange, shapes, params)
    widened_once = False
    # e.g. narrowed -> widened (the range missed the scene) -> one end extended (it cut the scene)
    attempts = 3
    for attempt in range(attempts):
        res = _pair_heights(
            img1,
            rpc1,
            img2,
            rpc2,
            bounds,
            epsg,
            hrange,
            shapes,
            transform,
            shape,
            params,
            narrow=attempt == 0,
        )
        res.info.update(checked)
        share = res.info["outside_range_share"]
        rng = res.info["height_range"]
        last = attempt == attempts - 1
        if share <= MAX_OUTSIDE_NARROWED or (last and share <= MAX_OUTSIDE_POINTS):
            return res
        lo, hi = res.info["all_points_heights"]
        if share > MAX_OUTSIDE_POINTS and not widened_once and not last:
            widened_once = True
            widened = (
                min(hrange[0], lo - params.height_margin_m),
                max(hrange[1], hi + params.height_margin_m),
            )
            log.warning(
                "%.0f %% of the triangulated points fall outside the height search range [%.0f, %.0f] m "
                "(points %.0f .. %.0f m): matching again over [%.0f, %.0f] m. Fix source.height_range "
                "(ellipsoidal metres, or null for the RPC range).",
                100 * share,
                *rng,
                lo,
                hi,
                *widened,
            )
            checked = {**checked, "range_widened_to": (round(widened[0], 1), round(widened[1], 1))}
            hrange = widened
            continue
        if share <= MAX_OUTSIDE_POINTS and not last:
            # a few % of the points pile up at an end of the range: the range cut part of the scene (e.g. the
            # keypoints missed the smooth faces of a pyramid). That end goes back to the end of the search
            # range, or range_probe_m beyond it when it was there already.
            ends = list(rng)
            for k, (side, sign) in enumerate((("below", -1.0), ("above", 1.0))):
                if (
                    res.info[f"{side}_range_share"] > 0.5 * MAX_OUTSIDE_NARROWED
                    and res.info[f"{side}_end_coherent"] >= MIN_COHERENT_CUT
                ):
                    end = hrange[k]
                    if abs(rng[k] - end) < 1.0:
                        end += sign * max(params.range_probe_m, params.height_margin_m)
                    ends[k] = end
            if ends == list(rng):
                # what piles up at the ends is scattered: mismatches (low texture, repetitive patterns) that
                # SGM left at the end of its range, not a surface running past it
                log.info(
                    "%.1f %% of the triangulated points lie beyond the height range [%.0f, %.0f] m, scattered "
                    "(surfaces at its ends: below %.2f %%, above %.2f %% of the disparities): mismatches, "
                    "the range is kept",
                    100 * share,
                    *rng,
                    100 * res.info["below_end_coherent"],
                    100 * res.info["above_end_coherent"],
                )
                return res
            log.warning(
                "the height range [%.0f, %.0f] m cut the scene: %.1f %% of the triangulated points lie beyond "
                "it; matching again over [%.0f, %.0f] m",
                *rng,
                100 * share,
                *ends,
            )
            checked = {**checked, "range_cut_share": round(share, 4)}
            hrange = (float(ends[0]), float(ends[1]))
            continue
        break
    raise SearchRangeError(
        f"{100 * share:.0f} % of the triangulated points fall outside the height search range "
        f"[{rng[0]:.0f}, {rng[1]:.0f}] m even after widening it (points {lo:.0f} .. {hi:.0f} m): "
        "source.height_range does not contain the scene or the RPCs are wrong. Set source.height_range to the "
        "ellipsoidal heights of the terrain and buildings, or to null to use the RPC height range."
    )


#: least 4-connected area (rectified pixels) of disparities at an end of the range for it to count as a
#: surface running past that end (:func:`range_end_coherence`): the faces of Giza's pyramids cut by a narrowed
#: range give areas of 100-2400 px; the mismatches of Ventoux's forest at the end of its range, specks of at
#: most 40 px (3300 of them)
CUT_MIN_COMPONENT_PX = 100
#: least share of the valid disparities in such areas at an end for the range to be extended there
MIN_COHERENT_CUT = 0.0025  # a quarter of MAX_OUTSIDE_NARROWED


def range_end_coherence(disp: np.ndarray, dmin: int, dmax: int) -> tuple[float, float]:
    """How much of a disparity map lies at each end of its search range as a surface, not as specks.

    Args:
        disp: (H, W) disparities (rectified pixels), NaN = invalid; dmin, dmax: the search range.
    Returns:
        (low, high): for the pixels within 1 px of ``dmin`` / ``dmax``, the share of the valid pixels that lie in
        their 4-connected areas of at least :data:`CUT_MIN_COMPONENT_PX` pixels.
    """
    from scipy import ndimage

    fin = np.isfinite(disp)
    n = max(int(fin.sum()), 1)
    out = []
    for at_end in (fin & (disp <= dmin + 1.0), fin & (disp >= dmax - 1.0)):
        lab, k = ndimage.label(at_end)
        if k == 0:
            out.append(0.0)
            continue
        sizes = np.bincount(lab.ravel())[1:]
        out.append(float(sizes[sizes >= CUT_MIN_COMPONENT_PX].sum()) / n)
    return out[0], out[1]


#: share of the triangulated points allowed outside the height search range before it is widened
MAX_OUTSIDE_POINTS = 0.2
#: share of the points allowed beyond the range before the cut end is extended and the pair matched again:
#: Giza's Great Pyramid, missed by the keypoints of stereo.keypoint_range, puts 3.2 % of the points beyond the
#: top of the narrowed range (its top 90 m cut off); narrowed ranges of Réunion 0.0004 %, Ventoux 0.33 %
MAX_OUTSIDE_NARROWED = 0.01


def _pair_heights(
    img1: str,
    rpc1: RPCModel,
    img2: str,
    rpc2: RPCModel,
    bounds: tuple[float, float, float, float],
    epsg: int,
    hrange: tuple[float, float],
    shapes: tuple[tuple[int, int], tuple[int, int]],
    transform: Any,
    shape: tuple[int, int],
    params: StereoParams,
    narrow: bool = True,
) -> PairResult:
    """One matching of the pair over ``hrange`` (m): pointing correction, keypoint narrowing of the range
    (when ``narrow`` and ``params.keypoint_range``), SGM, triangulation, rasterization."""
    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    shape1, shape2 = shapes
    hmin, hmax = hrange
    pr = rectify_pair(rpc1, rpc2, bounds, epsg, (hmin, hmax), shape1, shape2)
    left, right = _rectified_images(img1, img2, shape1, shape2, pr)
    rng = (hmin, hmax)
    keypoint_range = params.keypoint_range and narrow
    if params.pointing_correction or keypoint_range:
        kp = match_keypoints(
            left, right, pr.dmin, pr.dmax, max_dy=params.max_pointing_px, half_window=5, n_max=100
        )
        info["keypoints"] = len(kp)
        if params.pointing_correction:
            dy, mad = across_track_offset(kp)
            u2 = pr.rect2[1, :2]
            t = dy * u2 / float(u2 @ u2)  # image-2 shift (col, row) that moves rectified rows by dy
            rpc2 = rpc2.crop(-t[1], -t[0])
            info.update(pointing_dy_px=dy, pointing_mad_px=mad)
            log.info(
                "pointing correction: %.2f px across the epipolar (MAD %.2f, %d matches)", dy, mad, len(kp)
            )
        if keypoint_range and len(kp) >= 8:
            hk = pr.height_of_disparity(kp.dx)
            sel = range_keypoints(hk, params.keypoint_fence_m)
            info["range_keypoints"] = int(sel.sum())
            if 8 <= sel.sum() < len(kp):
                log.info(
                    "%d of %d keypoints far below the others left out of the height range: %s m",
                    len(kp) - int(sel.sum()),
                    len(kp),
                    np.round(np.sort(hk[~sel]), 1).tolist(),
                )
                hk = hk[sel]
            lo, hi = np.percentile(hk, [1, 99])
            rng = (max(hmin, lo - params.range_margin_m), min(hmax, hi + params.range_margin_m))
            if rng[1] - rng[0] < 2 * params.range_margin_m:
                rng = (hmin, hmax)
            log.info("keypoint height range [%.1f, %.1f] m (scene range [%.1f, %.1f])", *rng, hmin, hmax)
        pr = rectify_pair(rpc1, rpc2, bounds, epsg, rng, shape1, shape2)
        left, right = _rectified_images(img1, img2, shape1, shape2, pr)
    info["height_range"] = rng
    info["px_per_m"] = abs(
        float(pr.alpha)
    )  # disparity pixels per metre of height: the pair's height precision
    info["rectified_shape"] = pr.shape1
    info["disparities"] = pr.dmax - pr.dmin + 1
    info["affine_fit_px"] = pr.fit_residual_px
    t1 = time.perf_counter()
    disp = sgm_disparity(
        left,
        right,
        pr.dmin,
        pr.dmax,
        census_window=params.census_window,
        p1=params.p1,
        p2=params.p2,
        paths=params.paths,
        lr_tol=params.lr_tol,
        median=params.median and params.subpixel in SGM_FITS,
        fit=SGM_FITS.get(params.subpixel, "v"),
        max_mem_mb=params.sgm_volume_mb,
    )
    t2 = time.perf_counter()
    if (
        params.subpixel not in SGM_FITS
    ):  # re-measured on the images (sat2lod.stereo.subpixel), then the median
        # where SGM's own value is precise enough (textured images) it is kept: see stereo.subpixel_noise_px
        weight = refinement_weight(sgm_precision(left, right, params.census_window), params.subpixel_noise_px)
        info["refined_share"] = float(np.mean(weight[np.isfinite(disp)])) if np.isfinite(disp).any() else 0.0
        fit = SUBPIXEL_FITS[params.subpixel]
        # a roof's edge keeps SGM's value: its window would reach down the wall (stereo.subpixel_jump_px)
        weight = weight * jump_gate(disp, params.subpixel_window, params.subpixel_jump_px)
        if params.subpixel_relief_px > 0:
            # the ZNCC value wherever it may be used, then kept only where it agrees with SGM's on average
            zncc = refine_disparity(
                left, right, disp, fit, params.subpixel_window, (weight > 0).astype(float)
            )
            weight = weight * relief_gate(
                disp, zncc, params.subpixel_relief_radius, params.subpixel_relief_px
            )
            disp = (disp + weight * (zncc - disp)).astype(np.float32)
        else:
            disp = refine_disparity(left, right, disp, fit, params.subpixel_window, weight)
        info["refined_share_after_gates"] = (
            float(np.mean(weight[np.isfinite(disp)])) if np.isfinite(disp).any() else 0.0
        )
        if params.median:
            disp = median_filter(disp)
    t2e = time.perf_counter()
    if params.edge_radius_px > 0:  # foreground fattening taken back to the image's edges
        before = disp
        # rectified left x per metre of height: roofs lean that way in the left view (sat2lod.stereo.edges)
        lean = float((pr.rect1[:, :2] @ pr.cam1[:, 2])[0])
        info["lean_px_per_m"] = lean
        disp = edge_refine(
            disp, left, params.edge_radius_px, params.edge_sigma, params.edge_jump_px, occluded_side(lean)
        )
        valid = np.isfinite(before)
        info["edge_refined_share"] = float(np.mean(disp[valid] != before[valid])) if valid.any() else 0.0
    t2b = time.perf_counter()
    ends = range_end_coherence(disp, pr.dmin, pr.dmax)
    # the end of the disparity range that holds the lower heights
    low_first = (
        pr.height_of_disparity(np.array([float(pr.dmin)]))[0]
        <= pr.height_of_disparity(np.array([float(pr.dmax)]))[0]
    )
    info["below_end_coherent"], info["above_end_coherent"] = ends if low_first else ends[::-1]
    xs, ys, d = densify_disparity(disp, params.densify, max_jump=1.0)
    tr = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_epsg(epsg), always_xy=True)
    x, y, h, res = triangulate_rectified(rpc1, rpc2, pr, xs, ys, d, tr.transform)
    good = np.isfinite(h) & (res <= params.max_residual_px)
    below = h < rng[0] - 1.0
    above = h > rng[1] + 1.0
    keep = good & ~below & ~above
    # no good point at all (a featureless tile) says nothing about the range
    n_good = max(int(good.sum()), 1)
    info["outside_range_share"] = float(1.0 - keep.sum() / n_good) if good.any() else 0.0
    info["below_range_share"] = float((good & below).sum() / n_good)
    info["above_range_share"] = float((good & above).sum() / n_good)
    if good.any():
        info["all_points_heights"] = tuple(float(v) for v in np.percentile(h[good], [1, 99]))
    x, y = x[keep], y[keep]
    height, residual, count = rasterize_points(
        x,
        y,
        h[keep],
        res[keep],
        transform,
        shape,
        radius=params.raster_radius,
        sigma=params.raster_sigma,
        tol_m=params.raster_tol_m,
        empty_cells=params.raster_empty_cells,
    )
    t3 = time.perf_counter()
    info.update(
        valid_disparity=float(np.isfinite(disp).mean()),
        points=int(keep.sum()),
        median_residual_px=float(np.median(res[keep])) if keep.any() else float("nan"),
        seconds_rectify=t1 - t0,
        seconds_sgm=t2 - t1,
        seconds_subpixel=t2e - t2,
        seconds_edges=t2b - t2e,
        seconds_triangulate=t3 - t2b,
        input_pixels=int(left.size),
    )
    log.info("pair done: %s", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in info.items()})
    return PairResult(height, residual, count, info)


def _file_key(path: str | os.PathLike[str] | None) -> tuple[str, int, int] | None:
    if path is None:
        return None
    st = os.stat(path)
    return (os.path.abspath(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=32)
def _read_rpc_cached(image: tuple[str, int, int], rpc: tuple[str, int, int] | None) -> RPCModel:
    return read_rpc(image[0], None if rpc is None else rpc[0])


def _read_rpc_once(image: str | os.PathLike[str], rpc: str | os.PathLike[str] | None) -> RPCModel:
    """:func:`read_rpc` (read and validated: ~0.06 s) once per file content in a process: the tiles of one
    stereo job share it. Each call gets its own copy, so a tile cannot change another's model."""
    try:
        key = (_file_key(image), _file_key(rpc))
    except OSError:  # a missing or unreadable file: read_rpc's error names it
        return read_rpc(image, rpc)
    return copy.deepcopy(_read_rpc_cached(*key))


def stereo_tile(
    scenes: str | os.PathLike[str],
    tiles: str | os.PathLike[str],
    tile: str,
    dsm: str | os.PathLike[str],
    quality: str | os.PathLike[str],
    resolution_m: float,
    **stereo: Any,
) -> dict[str, Any]:
    """Compute the DSM of one tile from every pair of the scene sheet.

    Args:
        scenes: scene sheet (``results/acquire/{aoi}/scenes.json``).
        tiles: tile grid (``results/tiles/{aoi}/tiles.geojson``); ``tile`` is the tile id.
        dsm: output (float32, NaN nodata, tile bounds incl. margin, ellipsoidal heights, ``VERTICAL_DATUM``).
        quality: output, 4 float32 bands: intersection residual (px), number of points, number of agreeing
            pairs, filled flag (1 = hole filled by interpolation, 0 = measured; NaN = no data).
        resolution_m: output grid resolution (m).
        stereo: :class:`StereoParams` fields.
    Returns:
        per-pair information (pointing correction, timings, valid ratios).
    """
    params = StereoParams.from_kwargs(**stereo)
    sheet = read_scene_sheet(scenes, require=("epsg", "height_range"), min_views=2)
    props = read_tile(tiles, tile)
    epsg = int(props.get("epsg") or sheet["epsg"])
    bounds = tuple(float(v) for v in props["bounds"])
    transform, shape = grid_for_bounds(bounds, resolution_m)
    views = sheet["views"]
    pairs = sheet.get("pairs") or [[0, 1]]
    rpcs = [_read_rpc_once(v["image"], v.get("rpc")) for v in views]
    heights, residuals, counts, infos = [], [], [], []
    # each pair of a tile takes about as long: after the first, the time left of the tile's job is known
    progress = Progress(f"tile {tile}: stereo pair", len(pairs), log, every_s=0.0)
    for n, (i, j) in enumerate(pairs):
        progress.update(n, f"next ({views[i].get('id', i)}, {views[j].get('id', j)})")
        try:
            res = process_pair(
                views[i]["image"],
                rpcs[i],
                views[j]["image"],
                rpcs[j],
                bounds,
                epsg,
                tuple(sheet["height_range"]),
                transform,
                shape,
                params,
            )
        except ValueError as exc:  # tile not seen by this pair
            log.warning("pair (%d, %d) skipped for tile %s: %s", i, j, tile, exc)
            continue
        heights.append(res.height)
        residuals.append(res.residual)
        counts.append(res.count)
        infos.append({"pair": [i, j], **res.info})
        del res
        release_memory()  # the pair's freed volumes and point clouds, before the next pair allocates its own
    progress.update(len(pairs))
    if heights:
        # inverse-variance weights: a pair's height noise is its disparity noise / (disparity px per metre)
        fused, agree = fuse_heights(np.stack(heights), params.fuse_tol_m, [p["px_per_m"] ** 2 for p in infos])
        with warnings.catch_warnings():  # cells without any point: NaN residual, no warning
            warnings.simplefilter("ignore", RuntimeWarning)
            residual = np.nanmean(np.stack(residuals), axis=0) if len(residuals) > 1 else residuals[0]
        count = np.sum(np.stack(counts), axis=0).astype(np.float32)
    else:
        fused = np.full(shape, np.nan, np.float32)
        agree = np.zeros(shape, np.uint8)
        residual = np.full(shape, np.nan, np.float32)
        count = np.zeros(shape, np.float32)
    filled, fill_mask = fill_small_holes(fused, params.fill_iterations)
    tags = {
        "VERTICAL_DATUM": sat2lod.ELLIPSOID_DATUM,
        "TILE": tile,
        "PRODUCT": "DSM",
        "PAIRS": str([p["pair"] for p in infos]),
    }
    # tile products are intermediate (the mosaic COG is the deliverable): the fastest lossless codec
    write_raster(
        dsm,
        filled.astype(np.float32),
        transform,
        epsg,
        nodata=float("nan"),
        tags=tags,
        compress="zstd",
        level=1,
    )
    flag = np.where(fill_mask == 255, np.nan, fill_mask).astype(np.float32)
    qual = np.stack([residual.astype(np.float32), count, agree.astype(np.float32), flag])
    write_raster(
        quality,
        qual,
        transform,
        epsg,
        nodata=float("nan"),
        compress="zstd",
        level=1,
        tags={"TILE": tile, "VERTICAL_DATUM": sat2lod.ELLIPSOID_DATUM},
        band_tags=[
            {"NAME": "intersection_residual_px"},
            {"NAME": "point_count"},
            {"NAME": "agreeing_pairs"},
            {"NAME": "filled"},
        ],
    )
    log.info(
        "tile %s: %.1f %% valid (%.1f %% after hole filling)",
        tile,
        100 * np.isfinite(fused).mean(),
        100 * np.isfinite(filled).mean(),
    )
    return {"tile": tile, "pairs": infos}
