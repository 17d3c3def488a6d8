"""Roof completion: the raised, planar cells next to a building component that the segmenter left out.

The segmenter often labels only part of a roof: the face lit like the street next to a dark shadow, one half of
a gable (the synthetic demo's small detached houses: 6 of its 23 unmatched buildings are 24-47 % covered;
the eastern-France LiDAR houses lose a roof face the same way). The nDSM still stands there at roof height. For
each component of the mask (after the plausibility filter: rejected components do not grow), this adds the
cells that

- lie within ``distance_m`` of the component,
- stand at least ``height_fraction`` x the component's median nDSM above the terrain (and ``min_roof_height_m``):
  its roof, not the fattened foot of its walls or the low garden beside it,
- are locally planar: the RMS residual of a least-squares plane over the 5 x 5 cells around them is at most
  ``max_plane_residual_m`` (roof faces are planes, tree crowns beside a house are not: on the IGN LiDAR of
  Montpellier, growing without it labelled 14 % of the vegetation building instead of 8.6 %); the last two
  cells of a completed roof before its walls, whose window reaches down the wall, join with it,
- keep a building probability of at least ``min_probability`` (a cell the network or the NDVI gate ruled out
  entirely stays out),

and are connected to the component through such cells.

Before that, the middle of a wide roof (``blind_depth_m``). The network, trained on patches of houses, gives
the middle of a roof wider than about 15 m little or no probability once the walls are out of its sight: the
synthetic demo's 60 x 35 m commercial roof came out as a ring around a hole, city 12's 50 x 65 m one as an L
along two of its walls (mask IoU 0.76). The cells at least ``blind_depth_m`` inside the roof-height region the
component stands on, where the plane fitted over a square of twice that side leaves at most
``max_plane_residual_m`` (one roof face, not a clump of blurred tree crowns), and from them the roof-height cells
out to the walls, join the component whatever their probability; the completion above then starts from the
enlarged component. After it, the holes of the component that stand at roof height (``hole_roof_share`` of their
cells) are filled: a courtyard reaches down to the ground and stays open.

Then the rim across its walls (``rim_cells`` rings, 4-connected): the cells just outside the completed component
whose nDSM stands at least ``rim_height_fraction`` of the component's median (and ``min_roof_height_m``), the roof
and upper-wall cells the mask's outline left out; not in a gap of up to :data:`RIM_GAP` cells between two parts
of the mask (a row of houses stays split). Everything is local to a component and ``distance_m`` + 2 cells +
``rim_cells`` (+ :data:`BLIND_REACH_M` with ``blind_depth_m``) around it, so a tile with a halo wider than that
gives the untiled result (the segment tiles' default halo, 48 m, is).

Measured: bench/results/segment_real.md (IGN LiDAR), bench/results/demo_run.md (synthetic demo).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sat2lod.schema import defaults

log = logging.getLogger(__name__)
_RC = defaults("segmentation", "roof_completion")
#: side (cells) of the window of the plane fit that measures roughness
PLANE_WINDOW = 5
#: a rim cell with the component on two opposite sides within this many cells lies in a gap (between two
#: houses of a row, a notch of the outline), not across a wall: it is not added
RIM_GAP = 2
#: farthest (m) the middle of a wide roof (``blind_depth_m``) is looked for beyond a component's bounding box:
#: with distance_m, the plane window and the rim, within the segment tiles' default halo (48 m)
BLIND_REACH_M = 40.0


def _between(mask: np.ndarray, reach: int) -> np.ndarray:
    """(H, W) bool: the cells outside ``mask`` with ``mask`` within ``reach`` cells both to their left and to their
    right, or both above and below them (cells beyond the grid do not count)."""
    m = np.asarray(mask, bool)
    H, W = m.shape

    def seen(dr: int, dc: int) -> np.ndarray:
        # out[r, c]: some mask cell at (r + d dr, c + d dc), d = 1 .. reach
        pad = np.pad(m, reach)
        out = np.zeros_like(m)
        for d in range(1, reach + 1):
            out |= pad[reach + d * dr : reach + d * dr + H, reach + d * dc : reach + d * dc + W]
        return out

    return ~m & ((seen(-1, 0) & seen(1, 0)) | (seen(0, -1) & seen(0, 1)))


def _blind_middle(
    comp: np.ndarray,
    z: np.ndarray,
    at_roof: np.ndarray,
    planar: np.ndarray,
    depth_m: float,
    max_residual_m: float,
    resolution_m: float,
) -> np.ndarray:
    """(H, W) bool: the middle of the wide roof ``comp`` stands on, out to its walls.

    The roof is the region of ``at_roof`` cells (nDSM ``z`` at the component's roof height) connected to
    ``comp`` through ``planar`` ones. Its middle: the cells at least ``depth_m`` inside it (beyond the crop
    counts as outside) around which the plane fitted to the (2 ``depth_m`` + 1 cell)-wide square leaves an RMS
    residual of at most ``max_residual_m``: one roof face, not a clump of tree crowns merged by the nDSM's blur.
    Then back out to the walls: the roof-height cells within ``depth_m`` of the middle (the region's opening by
    a disk). The component's own cells are not returned."""
    inside = ndimage.distance_transform_edt(np.pad(at_roof, 1))[1:-1, 1:-1] * resolution_m >= depth_m
    cl, _ = ndimage.label((at_roof & planar) | comp)
    core = inside & planar & np.isin(cl, np.unique(cl[comp]))
    if not core.any():
        return core
    window = 2 * int(np.ceil(depth_m / resolution_m)) + 1
    with np.errstate(invalid="ignore"):
        core &= plane_roughness(np.where(at_roof, z, np.nan), window) <= max_residual_m
    if not core.any():
        return core
    return (ndimage.distance_transform_edt(~core) * resolution_m <= depth_m) & at_roof & ~comp


def _roof_holes(comp: np.ndarray, at_roof: np.ndarray, valid: np.ndarray, share: float) -> np.ndarray:
    """(H, W) bool: the holes of ``comp`` (the regions it encloses, 4-connected) of which at least ``share`` of
    the cells are ``at_roof``; only their ``valid`` cells (mask nodata is never added)."""
    holes = ndimage.binary_fill_holes(comp) & ~comp
    if not holes.any():
        return holes
    hl, nh = ndimage.label(holes)
    idx = np.arange(1, nh + 1)
    keep = ndimage.sum(at_roof, hl, index=idx) >= share * ndimage.sum(holes, hl, index=idx)
    return np.concatenate([[False], keep])[hl] & valid


@dataclass(frozen=True)
class CompletionParams:
    """Config section ``segmentation.roof_completion`` (see config/schema.yaml for each key)."""

    enabled: bool = _RC["enabled"]
    distance_m: float = _RC["distance_m"]
    height_fraction: float = _RC["height_fraction"]
    min_roof_height_m: float = _RC["min_roof_height_m"]
    max_plane_residual_m: float = _RC["max_plane_residual_m"]
    min_probability: float = _RC["min_probability"]
    rim_cells: int = _RC["rim_cells"]
    rim_height_fraction: float = _RC["rim_height_fraction"]
    blind_depth_m: float | None = _RC["blind_depth_m"]
    hole_roof_share: float | None = _RC["hole_roof_share"]


def plane_roughness(z: np.ndarray, window: int = PLANE_WINDOW) -> np.ndarray:
    """RMS residual (m) of the least-squares plane fitted to the ``window`` x ``window`` cells around each cell.

    Args:
        z: (H, W) heights (m), NaN = nodata.
        window: odd window side (cells).
    Returns:
        (H, W) float64 residual; NaN where the window holds a NaN (or reaches past the grid's edge).
    """
    r = window // 2
    a = np.asarray(z, np.float64)
    bad = ~np.isfinite(a)
    a = np.where(bad, 0.0, a)
    k = np.arange(-r, r + 1, dtype=np.float64)
    kx = np.broadcast_to(k[None, :], (window, window)) / window**2
    n = window**2
    # the window's coordinates are centred, so the plane's slopes decouple: residual variance =
    # var(z) - cov(z, x)^2 / var(x) - cov(z, y)^2 / var(y), with var(x) = var(y) = mean(k^2)
    sxx = float(np.mean(k**2))
    m1 = ndimage.uniform_filter(a, window, mode="constant")
    m2 = ndimage.uniform_filter(a * a, window, mode="constant")
    if window <= PLANE_WINDOW:
        cx = ndimage.correlate(a, kx, mode="constant")
        cy = ndimage.correlate(a, kx.T, mode="constant")
    else:  # the same sums, separable: a wide window's 2-D kernel costs window^2 products per cell
        u = np.full(window, 1.0 / window)
        cx = ndimage.correlate1d(
            ndimage.correlate1d(a, k / window, 1, mode="constant"), u, 0, mode="constant"
        )
        cy = ndimage.correlate1d(
            ndimage.correlate1d(a, k / window, 0, mode="constant"), u, 1, mode="constant"
        )
    var = m2 - m1 * m1 - (cx * cx + cy * cy) / sxx
    out = np.sqrt(np.maximum(var, 0.0) * n / max(n - 3, 1))
    holed = ndimage.uniform_filter(bad.astype(np.float64), window, mode="constant", cval=1.0) > 1e-9
    out[holed] = np.nan
    return out


def complete_roofs(
    mask: np.ndarray,
    ndsm: np.ndarray | None,
    prob: np.ndarray | None,
    resolution_m: float,
    params: dict | CompletionParams | None = None,
) -> tuple[np.ndarray, dict]:
    """The mask with each building component completed over its roof (see the module's docstring).

    Args:
        mask: (H, W) uint8 building mask (1 building, 0 not, 255 nodata).
        ndsm: (H, W) height above terrain (m), NaN = nodata; None = nothing to complete from (mask unchanged).
        prob: (H, W) building probability on the same grid (NaN = nodata), or None (no probability floor).
        resolution_m: cell size (m).
        params: config section ``segmentation.roof_completion`` (dict or :class:`CompletionParams`).
    Returns:
        The completed mask (a new array; nodata cells stay 255) and a summary: components, cells added.
    """
    prm = params if isinstance(params, CompletionParams) else CompletionParams(**(params or {}))
    out = mask.copy()
    building = mask == 1
    summary = {"components": 0, "cells_added": 0}
    if not prm.enabled or ndsm is None or not building.any():
        return out, summary
    if ndsm.shape != mask.shape or (prob is not None and prob.shape != mask.shape):
        raise ValueError(
            f"roof completion: the mask {mask.shape}, nDSM {ndsm.shape} and probability "
            f"{None if prob is None else prob.shape} differ in shape"
        )
    nd = np.asarray(ndsm, np.float64)
    reachable = (mask != 255) & np.isfinite(nd)
    open_cells = reachable.copy()
    if prob is not None:
        open_cells &= np.nan_to_num(prob, nan=0.0) >= prm.min_probability
    lab, n = ndimage.label(building)
    summary["components"] = int(n)
    reach = int(np.ceil(prm.distance_m / resolution_m))
    pad = reach + PLANE_WINDOW + prm.rim_cells
    if prm.blind_depth_m is not None:
        pad += int(np.ceil(BLIND_REACH_M / resolution_m))
    H, W = mask.shape
    for i, sl in enumerate(ndimage.find_objects(lab), 1):
        r0, r1 = max(0, sl[0].start - pad), min(H, sl[0].stop + pad)
        c0, c1 = max(0, sl[1].start - pad), min(W, sl[1].stop + pad)
        comp = lab[r0:r1, c0:c1] == i
        z = nd[r0:r1, c0:c1]
        zc = z[comp & np.isfinite(z)]
        if zc.size == 0:
            continue
        floor = max(prm.min_roof_height_m, prm.height_fraction * float(np.median(zc)))
        roof = open_cells[r0:r1, c0:c1] & (np.nan_to_num(z, nan=-np.inf) >= floor)
        at_roof = reachable[r0:r1, c0:c1] & (np.nan_to_num(z, nan=-np.inf) >= floor)
        # the roughness on the component's own crop, not once on the whole grid: its filters' sums then start
        # at the same cells in a tile's window as in the whole AOI, so a tile gives the untiled bits
        with np.errstate(invalid="ignore"):
            planar = plane_roughness(z) <= prm.max_plane_residual_m
        start = comp
        if prm.blind_depth_m is not None:
            # the middle of a wide roof, where the network no longer sees the walls
            start = comp | _blind_middle(
                comp, z, at_roof, planar, prm.blind_depth_m, prm.max_plane_residual_m, resolution_m
            )
        near = ndimage.distance_transform_edt(~start) * resolution_m <= prm.distance_m
        high = near & roof
        cl, _ = ndimage.label((high & planar) | start)
        grown = np.isin(cl, np.unique(cl[start])) & ~building[r0:r1, c0:c1]
        # the roof's last cells before its walls: their plane window reaches down the wall
        grown = ndimage.binary_dilation(grown, iterations=PLANE_WINDOW // 2) & high
        full = start | grown
        if prm.hole_roof_share is not None:
            # a hole at roof height is roof the network left out; a courtyard reaches down to the ground
            full |= _roof_holes(full, at_roof, mask[r0:r1, c0:c1] != 255, prm.hole_roof_share)
        if prm.rim_cells:
            # the cells across its walls (roof and upper wall): the outline cells the mask left out
            rim_floor = max(prm.min_roof_height_m, prm.rim_height_fraction * float(np.median(zc)))
            tall = open_cells[r0:r1, c0:c1] & (np.nan_to_num(z, nan=-np.inf) >= rim_floor)
            others = building[r0:r1, c0:c1] & ~comp
            for _ in range(prm.rim_cells):
                # a gap between two houses or a notch of the outline stays open: LOD0 splits rows there
                full |= ndimage.binary_dilation(full) & tall & ~_between(full | others, RIM_GAP)
        out[r0:r1, c0:c1][full & ~building[r0:r1, c0:c1]] = 1
    summary["cells_added"] = int((out == 1).sum() - building.sum())
    log.info("roof completion: %s", summary)
    return out, summary
