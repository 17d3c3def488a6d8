"""LOD0 footprints: building mask (+ nDSM) -> one regularized polygon per building, shared walls kept shared.

Pipeline (arrays in, polygons out; no file access):

1. clean the mask (opening, small-hole filling) and label its connected components = *blocks*;
2. split each block into buildings where the nDSM jumps by more than ``split_step_m`` (row houses of
   different heights), along straight lines (along one of the block's two dominant directions) where the
   nDSM steps by ``split_line_step_m`` between levels on either side (the same walls, smeared over metres by
   a stereo DSM) and, when an ortho image is given, along straight roof-image edges (touching houses of one
   height with different roofs), merging back regions whose common boundary has none of these;
3. per block: dominant orientation from the block outline, regularize the block outline, regularize each
   wall shared by two buildings as an open chain, extend it across the block and cut the regularized block
   with these walls. Every building is a union of pieces of ONE partition of the block, so neighbours share
   their wall exactly (no gap, no overlap) -- unlike per-polygon regularizers.

Inputs: ``mask`` (H, W) uint8 (1 building, 0 other, 255 nodata), ``ndsm`` (H, W) float32 metres above
ground (NaN nodata), optional ``image`` (H, W) float ortho (any radiometric unit, NaN nodata),
``transform`` the rasterio affine of all of them (projected CRS, metres).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import shapely
from rasterio import features
from rasterio.transform import Affine
from scipy import ndimage
from shapely.geometry import LineString, MultiLineString, Polygon, shape
from shapely.ops import linemerge

from sat2lod.lod.regularize import (
    RegularizeParams,
    dominant_orientation,
    regularize_chain,
    regularize_polygon,
)
from sat2lod.progress import Progress
from sat2lod.schema import defaults

_LOD = defaults("lod")  # defaults of config section lod

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FootprintParams:
    """LOD0 settings (metres, degrees).

    Attributes:
        min_area_m2: buildings (and mask blobs) smaller than this are dropped.
        split_step_m: an nDSM jump larger than this between neighbouring pixels separates two buildings.
        min_height_m: regions whose median nDSM is below this are dropped (not a building); 0 disables.
        wall_gap_m: gaps up to this length in a height-jump line (along the block's directions) are closed.
        split_contrast: a straight line across a block (along one of its dominant directions) where the ortho
            changes by at least this fraction of the block's median brightness, consistently along the line,
            separates two buildings (unless the nDSM falls away on both sides: a ridge); 0 disables.
        split_min_width_m: image-edge and line-step splits leave pieces at least this wide (m).
        split_line_step_m: a straight line across a block (along one of its dominant directions) where the
            nDSM steps by at least this much (m), level on both sides beyond the smear of a stereo DSM and
            consistently along the line, separates two buildings (row houses of different heights whose
            step a stereo nDSM smears over metres, below the pixel-to-pixel ``split_step_m`` test); 0 disables.
        regularize: regularization settings.
    """

    min_area_m2: float = _LOD["min_area_m2"]
    split_step_m: float = _LOD["split_step_m"]
    min_height_m: float = _LOD["min_height_m"]
    wall_gap_m: float = _LOD["wall_gap_m"]
    split_contrast: float = _LOD["split_contrast"]
    split_min_width_m: float = _LOD["split_min_width_m"]
    split_line_step_m: float = _LOD["split_line_step_m"]
    regularize: RegularizeParams = field(default_factory=RegularizeParams)


def label_buildings(
    mask: np.ndarray,
    ndsm: np.ndarray | None,
    resolution: float,
    prm: FootprintParams = FootprintParams(),
    image: np.ndarray | None = None,
    transform: Affine | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Label blocks and buildings.

    Args:
        mask: (H, W) uint8 building mask (1 building).
        ndsm: (H, W) float32 height above ground (m, NaN nodata) or None (blocks are not split).
        resolution: pixel size (m).
        image: (H, W) ortho on the same grid (NaN nodata) or None (no image-edge split).
        transform: affine of the grid (north-up); needed with ``image`` (block orientations), else unused.

    Returns:
        (blocks, buildings): two (H, W) int32 label images (0 = background). Each building lies in one block.
    """
    min_px = max(1, round(prm.min_area_m2 / resolution**2))
    bld, blocks, nb = _clean_mask(mask, min_px)
    if ndsm is None or nb == 0:
        return blocks.astype(np.int32), blocks.astype(np.int32)
    z = np.where(bld, np.nan_to_num(ndsm, nan=0.0), 0.0).astype(np.float32)
    zs = ndimage.median_filter(z, size=3)
    zs = np.where(bld, zs, np.nan)
    edge = _height_jumps(zs, blocks, nb, prm.split_step_m)
    theta = _block_thetas(
        blocks,
        nb,
        transform if transform is not None else Affine.scale(resolution, -resolution),
        prm.regularize.simplify_m,
    )
    edge = _close_walls(edge, blocks, theta, prm.wall_gap_m / resolution)
    toward = np.zeros((2, *bld.shape), np.int8)  # from each cut pixel to the side of its line it lies on
    cut = _line_cuts(blocks, theta, image if prm.split_contrast > 0 else None, zs, resolution, prm, toward)
    step_cut = np.zeros_like(cut)
    if prm.split_line_step_m > 0:
        step_cut = _step_cuts(blocks, theta, zs, resolution, prm, cut, toward)
        cut |= step_cut
    edge |= cut
    seeds, ns = ndimage.label(bld & ~edge)
    if ns:
        sizes = ndimage.sum(np.ones_like(seeds), seeds, index=np.arange(1, ns + 1))
        seeds[np.isin(seeds, 1 + np.flatnonzero(sizes < max(1, min_px // 2)))] = 0
    lab = _grow_seeds(bld, blocks, seeds, cut, step_cut, resolution, prm.split_min_width_m)
    orphan = bld & (lab == 0)
    if orphan.any():  # blocks without any seed keep their block id (offset past the seed ids)
        lab[orphan] = blocks[orphan] + int(seeds.max())
    if cut.any():
        _assign_cut_pixels(lab, bld, blocks, cut, toward)
    lab = _merge_flat_boundaries(
        lab, zs, prm.split_step_m, ndimage.binary_dilation(cut) if cut.any() else None
    )
    lab, _, _ = _relabel(lab)
    return blocks.astype(np.int32), lab.astype(np.int32)


def _clean_mask(mask: np.ndarray, min_px: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The building mask cleaned of segmentation speckle: (bool mask, block labels, number of blocks).

    A 3x3 majority vote removes isolated flips of a segmentation edge both ways; it would also shave convex
    corners, which the opening (erosion + dilation, never adds) keeps. Holes and blocks under ``min_px``
    pixels are filled / dropped.
    """
    bld = mask == 1
    majority = ndimage.uniform_filter(bld.astype(np.float32), size=3) > 0.5
    bld = majority | ndimage.binary_opening(bld, structure=np.ones((3, 3), bool))
    holes = ndimage.binary_fill_holes(bld) & ~bld
    hl, nh = ndimage.label(holes)
    if nh:
        sizes = ndimage.sum(np.ones_like(hl), hl, index=np.arange(1, nh + 1))
        bld |= np.isin(hl, 1 + np.flatnonzero(sizes < min_px))
    blocks, nb = ndimage.label(bld)
    if nb:
        sizes = ndimage.sum(np.ones_like(blocks), blocks, index=np.arange(1, nb + 1))
        small = np.isin(blocks, 1 + np.flatnonzero(sizes < min_px))
        bld &= ~small
        blocks, nb = ndimage.label(bld)
    return bld, blocks, nb


def _height_jumps(zs: np.ndarray, blocks: np.ndarray, nb: int, split_step_m: float) -> np.ndarray:
    """(H, W) bool: the pixels on either side of a neighbour-to-neighbour nDSM jump above their block's
    threshold (:func:`_jump_thresholds`). zs: median-filtered nDSM, NaN off the buildings."""
    thr = _jump_thresholds(zs, blocks, nb, split_step_m)[blocks]
    edge = np.zeros(zs.shape, bool)
    for axis in (0, 1):
        d = np.abs(np.diff(zs, axis=axis))
        t = np.maximum(thr[1:], thr[:-1]) if axis == 0 else np.maximum(thr[:, 1:], thr[:, :-1])
        jump = np.nan_to_num(d, nan=0.0) > t
        if axis == 0:
            edge[1:] |= jump
            edge[:-1] |= jump
        else:
            edge[:, 1:] |= jump
            edge[:, :-1] |= jump
    return edge


def _grow_seeds(
    bld: np.ndarray,
    blocks: np.ndarray,
    seeds: np.ndarray,
    cut: np.ndarray,
    step_cut: np.ndarray,
    resolution: float,
    split_min_width_m: float,
) -> np.ndarray:
    """Building labels: every building pixel goes to its nearest seed of the same block, and on the same side
    of every cut line (image edge or height step): a wide band of height-jump pixels beside a cut must not go
    to the seed across it. 0 where a pixel gets no seed."""
    lab = np.zeros_like(blocks)
    if seeds.max() == 0:
        return lab
    _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    near = seeds[iy, ix]
    lab = np.where(bld & (blocks[iy, ix] == blocks), near, 0)
    if not cut.any():
        return lab
    sides, _ = ndimage.label(bld & ~cut)
    nxt = int(seeds.max()) + int(blocks.max()) + 1  # past the seed ids and the orphans' ids
    for k, sl in enumerate(ndimage.find_objects(sides), start=1):
        if sl is None:
            continue
        sub = sides[sl] == k
        sd = np.where(sub, seeds[sl], 0)
        if not sd.any():
            # no seed on this side (height-jump pixels throughout, the smear of a stereo nDSM): beside a
            # height-step cut and at least split_min_width_m wide, it is a building of its own; otherwise (a
            # sliver between two cuts of one wall, or beside an image-edge cut only: weaker evidence, a ridge
            # line the nDSM places off the brightness edge looks like one) the cut is not taken there and the
            # side goes to its nearest seed
            sl1 = tuple(slice(max(q.start - 1, 0), q.stop + 1) for q in sl)
            wide = 2 * float(ndimage.distance_transform_edt(np.pad(sub, 1)).max()) * resolution
            if wide >= split_min_width_m and (ndimage.binary_dilation(sides[sl1] == k) & step_cut[sl1]).any():
                lab[sl][sub] = nxt
                nxt += 1
            continue
        _, (jy, jx) = ndimage.distance_transform_edt(sd == 0, return_indices=True)
        lab[sl][sub] = sd[jy, jx][sub]
    return lab


def _assign_cut_pixels(
    lab: np.ndarray, bld: np.ndarray, blocks: np.ndarray, cut: np.ndarray, toward: np.ndarray
) -> None:
    """In place: the pixels of a cut line go to the region on the side of the line their centre lies on
    (``toward``), else to the nearest region of their block (their nearest seed may lie in another building
    when the sides are seedless regions of their own)."""
    src = bld & ~cut
    _, (jy, jx) = ndimage.distance_transform_edt(~src, return_indices=True)
    oncut = bld & cut & (blocks[jy, jx] == blocks)
    lab[oncut] = lab[jy[oncut], jx[oncut]]
    cr, cc = np.nonzero(bld & cut)
    nr = np.clip(cr + toward[0][cr, cc], 0, bld.shape[0] - 1)
    nc = np.clip(cc + toward[1][cr, cc], 0, bld.shape[1] - 1)
    ok = src[nr, nc] & (blocks[nr, nc] == blocks[cr, cc])
    lab[cr[ok], cc[ok]] = lab[nr[ok], nc[ok]]


def _jump_thresholds(zs: np.ndarray, blocks: np.ndarray, nb: int, step: float, k: float = 4.0) -> np.ndarray:
    """(nb + 1,) per-block threshold (m) of a neighbour-to-neighbour nDSM jump: ``step``, raised to ``k``
    times the block's noise (NMAD of its pixel-to-pixel height differences, estimated from second
    differences so that sloped roof faces count as noise-free) where the nDSM is noisy. On a
    stereo nDSM single-pixel differences above ``step`` are mostly noise, and closing them into walls would
    cut blocks anywhere; there the walls come from :func:`_line_cuts`, which averages along the line."""
    out = np.full(nb + 1, step, float)
    if nb == 0:
        return out
    diffs, labs = [], []
    # second differences: zero on any plane (sloped roof faces), sqrt(3) times the first-difference noise
    for d, la, lb in (
        (np.diff(zs, n=2, axis=0) / math.sqrt(3), blocks[2:], blocks[:-2]),
        (np.diff(zs, n=2, axis=1) / math.sqrt(3), blocks[:, 2:], blocks[:, :-2]),
    ):
        ok = np.isfinite(d) & (la == lb) & (la > 0)
        diffs.append(d[ok])
        labs.append(la[ok])
    d, lab = np.concatenate(diffs), np.concatenate(labs)
    order = np.argsort(lab, kind="stable")
    d, lab = d[order], lab[order]
    bounds = np.flatnonzero(np.diff(lab)) + 1
    for seg_d, seg_l in zip(np.split(d, bounds), np.split(lab, bounds)):
        if len(seg_d) >= 20:
            nmad = 1.4826 * float(np.median(np.abs(seg_d - np.median(seg_d))))
            out[int(seg_l[0])] = max(step, k * nmad)
    return out


def _block_thetas(blocks: np.ndarray, nb: int, transform: Affine, simplify_m: float) -> np.ndarray:
    """(nb + 1,) dominant orientation (map radians counter-clockwise from east, modulo 90 degrees) of each
    labelled block, from its traced outline (:func:`dominant_orientation`; the pixel-gradient angles of a
    binary staircase are biased towards multiples of 45 degrees)."""
    theta = np.zeros(nb + 1)
    for b, sl in enumerate(ndimage.find_objects(blocks), start=1):
        if sl is None:
            continue
        sub = (blocks[sl] == b).astype(np.uint8)
        t = transform @ Affine.translation(sl[1].start, sl[0].start)
        rings = [
            np.asarray(shape(g).exterior.coords) for g, _ in features.shapes(sub, mask=sub > 0, transform=t)
        ]
        theta[b] = dominant_orientation(rings, simplify_m)
    return theta


def _line_se(angle: float, half: int) -> np.ndarray:
    se = np.zeros((2 * half + 1, 2 * half + 1), bool)
    t = np.linspace(-half, half, 4 * half + 1)
    # image rows grow southwards: a map angle a is (col, row) = (cos a, -sin a)
    se[np.round(half - t * np.sin(angle)).astype(int), np.round(half + t * np.cos(angle)).astype(int)] = True
    return se


def _close_walls(edge: np.ndarray, blocks: np.ndarray, theta: np.ndarray, gap_px: float) -> np.ndarray:
    """Close gaps (< gap_px) in height-jump lines along each block's two dominant directions ``theta`` (map
    radians, see :func:`_block_thetas`), so that a wall whose height difference fades over a short stretch
    still separates the two buildings."""
    if len(theta) <= 1 or gap_px < 1:
        return edge
    half = max(1, round(gap_px / 2))
    out = edge.copy()
    for b, sl in enumerate(ndimage.find_objects(blocks), start=1):
        if sl is None:
            continue
        sl = tuple(slice(max(s.start - half, 0), s.stop + half) for s in sl)
        e = edge[sl]
        if not e.any():
            continue
        inb = blocks[sl] == b
        for a in (theta[b], theta[b] + np.pi / 2):
            closed = ndimage.binary_closing(e, structure=_line_se(float(a), half))
            out[sl] |= closed & inb
    return out


#: a line whose nDSM falls away on both sides by more than this slope (m/m, about 5.7 degrees) is a ridge
RIDGE_SLOPE = 0.1


def _rotated_grid(
    inb: np.ndarray, a: float, pad: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Grid rotated to map direction ``a`` (radians) over a block crop ``inb`` ((h, w) bool): columns u along
    ``a`` (across the candidate lines), rows v across it, ``pad`` pixels beyond the block along u.

    Returns:
        (rows, cols) (N,) of the block pixels, their u column index (N,) float, and the (2, V, U) crop
        coordinates of the grid (for ``ndimage.map_coordinates``).
    """
    rows, cols = np.nonzero(inb)
    r0, c0 = rows.mean(), cols.mean()
    # map direction a in pixel axes: (col, row) = (cos a, -sin a)
    eu = np.array([-math.sin(a), math.cos(a)])  # (row, col)
    ev = np.array([math.cos(a), math.sin(a)])
    pu = (rows - r0) * eu[0] + (cols - c0) * eu[1]
    pv = (rows - r0) * ev[0] + (cols - c0) * ev[1]
    u = np.arange(math.floor(pu.min()) - pad, math.ceil(pu.max()) + pad + 1)
    v = np.arange(math.floor(pv.min()) - 1, math.ceil(pv.max()) + 2)
    vv, uu = np.meshgrid(v, u, indexing="ij")
    coords = np.array([r0 + uu * eu[0] + vv * ev[0], c0 + uu * eu[1] + vv * ev[1]])
    return rows, cols, pu - u[0], coords


def _block_crops(
    blocks: np.ndarray, pad: int, resolution: float, min_width_m: float, erode: int, valid: np.ndarray
) -> Iterator[tuple[int, tuple[slice, ...], np.ndarray, np.ndarray]]:
    """Blocks large enough to split (at least 2 ``min_width_m``^2): yields (block id, crop ``sl`` padded by
    ``pad`` pixels, the block in the crop ``inb``, and ``inner``: the block eroded by ``erode`` pixels where
    ``valid`` ((H, W) bool) holds), for blocks whose ``inner`` is not empty."""
    for b, sl0 in enumerate(ndimage.find_objects(blocks), start=1):
        if sl0 is None:
            continue
        sl = tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(sl0, blocks.shape))
        inb = blocks[sl] == b
        if inb.sum() * resolution**2 < 2 * min_width_m**2:
            continue
        inner = ndimage.binary_erosion(inb, iterations=erode) & valid[sl]
        if inner.any():
            yield b, sl, inb, inner


def _draw_cut(
    out: np.ndarray,
    toward: np.ndarray | None,
    sl: tuple[slice, slice],
    rows: np.ndarray,
    cols: np.ndarray,
    pu: np.ndarray,
    line_u: float,
    a: float,
) -> None:
    """Mark the block pixels (``rows``, ``cols`` in the crop ``sl``; ``pu`` their u column) within half a pixel
    of the line u = ``line_u`` (across map direction ``a``) in ``out``, and in ``toward`` ((2, H, W) int8 or
    None) the (row, col) step from each to the neighbour on the side of the line its centre lies on."""
    on = (pu - line_u >= -0.5) & (pu - line_u < 0.5)
    out[sl][rows[on], cols[on]] = True
    if toward is not None:
        side = np.where(pu[on] >= line_u, 1.0, -1.0)
        for k, e in enumerate((-math.sin(a), math.cos(a))):  # (row, col) of the map direction a
            toward[k][sl][rows[on], cols[on]] = np.rint(side * e).astype(np.int8)


def _strongest_apart(cands: list[tuple], mw: int) -> list[tuple]:
    """Candidate lines (score, column, ...) strongest first (ties in column order), each kept when at least
    ``mw`` columns from every line kept before it."""
    kept: list[tuple] = []
    for cand in sorted(cands, key=lambda t: -t[0]):
        if all(abs(cand[1] - k[1]) >= mw for k in kept):
            kept.append(cand)
    return kept


def _line_candidates(
    rot_in: np.ndarray,
    rot_inner: np.ndarray,
    rot_img: np.ndarray,
    rot_z: np.ndarray,
    ref: float,
    w: int,
    mw: int,
    resolution: float,
    prm: FootprintParams,
) -> list[tuple[float, int]]:
    """(score, column) of each column of a rotated block where the image brightness steps across (see
    :func:`_line_cuts`; score = agreeing median contrast / ``split_contrast``, >= 1).

    Args:
        rot_in, rot_inner: (V, U) bool block and eroded block on the rotated grid; rot_img: (V, U) ortho (NaN
            outside); rot_z: (V, U) nDSM (m, NaN outside); ref: the block's median brightness.
        w: window width (px); mw: ``split_min_width_m`` in px (>= 2 w + 1).
    """
    cands = []
    for c in range(mw, rot_in.shape[1] - mw):
        left, left2 = slice(c - w, c), slice(c - 2 * w, c - w)
        right, right2 = slice(c + 1, c + 1 + w), slice(c + 1 + w, c + 1 + 2 * w)
        ok = (
            rot_inner[:, left2].all(axis=1)
            & rot_inner[:, left].all(axis=1)
            & rot_inner[:, right].all(axis=1)
            & rot_inner[:, right2].all(axis=1)
            & rot_in[:, c - mw]
            & rot_in[:, c + mw]
        )
        depth = rot_in[:, c].sum()
        if ok.sum() * resolution < prm.split_min_width_m or ok.sum() < 0.5 * depth:
            continue
        d = (rot_img[ok, right].mean(axis=1) - rot_img[ok, left].mean(axis=1)) / ref
        score = _agreeing_median(d, prm.split_contrast) / prm.split_contrast
        if score < 1:
            continue
        # both faces falling away from the line: a ridge, whose two faces differ in brightness
        zl, zr = rot_z[ok, left].mean(axis=1), rot_z[ok, right].mean(axis=1)
        rise_l = float(np.nanmedian(zl - rot_z[ok, left2].mean(axis=1))) / (w * resolution)
        rise_r = float(np.nanmedian(zr - rot_z[ok, right2].mean(axis=1))) / (w * resolution)
        if min(rise_l, rise_r) > RIDGE_SLOPE:
            continue
        cands.append((score, c))
    return cands


def _line_cuts(
    blocks: np.ndarray,
    theta: np.ndarray,
    image: np.ndarray | None,
    z: np.ndarray,
    resolution: float,
    prm: FootprintParams,
    toward: np.ndarray | None = None,
) -> np.ndarray:
    """Straight roof-image edges across blocks: (H, W) bool, True on the pixels of each accepted cut line.

    Each block is resampled on a grid rotated to its dominant direction (and again to the perpendicular one),
    with columns u across the candidate lines and rows v along them. At column c, each row compares the mean
    brightness of the window (c, c + w] with that of [c - w, c) (w = 1.5 m; these and the next windows out
    inside the block eroded by 1 m, the points ``split_min_width_m`` away on either side within the block).
    A line is a wall when the median relative difference reaches ``split_contrast`` (times the block's median
    brightness) with at least 70 % of the rows agreeing in sign and half that magnitude, over at least
    ``split_min_width_m`` of rows covering half of the block's depth there, and the line is no ridge (two roof
    faces of one building differ in brightness too: there the nDSM falls away on both sides, each side
    steeper than ``RIDGE_SLOPE`` between the inner and outer windows). Strongest lines first, at least
    ``split_min_width_m`` apart. A cut runs across the whole block.

    Height steps are not tested here: along a line, a stereo nDSM smears them over metres; they come from the
    pixel jumps of :func:`label_buildings`.

    Args:
        blocks: (H, W) int32 block labels; theta: (nb + 1,) block orientations (map radians).
        image: (H, W) ortho (NaN nodata) or None (no cut); z: (H, W) nDSM (m, NaN outside buildings / nodata).
        toward: (2, H, W) int8 filled for the drawn pixels (see :func:`_draw_cut`), or None.
    """
    out = np.zeros(blocks.shape, bool)
    if image is None:
        return out
    img = image.astype(np.float64)
    img_ok = np.isfinite(img)
    img = ndimage.gaussian_filter(np.where(img_ok, img, np.nanmedian(img) if img_ok.any() else 0.0), 1.0)
    z_ok = np.isfinite(z)
    w = max(1, round(1.5 / resolution))
    mw = max(2 * w + 1, round(prm.split_min_width_m / resolution))
    erode = max(1, round(1.0 / resolution))
    pad = mw + 2
    for b, sl, inb, inner in _block_crops(
        blocks, pad, resolution, prm.split_min_width_m, erode, img_ok & z_ok
    ):
        ref = float(np.median(img[sl][inner]))
        if ref <= 0:
            continue
        for a in (float(theta[b]), float(theta[b]) + np.pi / 2):
            rows, cols, pu, coords = _rotated_grid(inb, a, pad)
            rot_in = ndimage.map_coordinates(inb.astype(np.uint8), coords, order=0, cval=0) > 0
            rot_inner = ndimage.map_coordinates(inner.astype(np.uint8), coords, order=0, cval=0) > 0
            rot_img = ndimage.map_coordinates(img[sl], coords, order=1, cval=np.nan)
            rot_z = ndimage.map_coordinates(np.nan_to_num(z[sl], nan=-1e3), coords, order=1, cval=-1e3)
            rot_z = np.where(rot_z > -100, rot_z, np.nan)
            cands = _line_candidates(rot_in, rot_inner, rot_img, rot_z, ref, w, mw, resolution, prm)
            for score, c in _strongest_apart(cands, mw):
                log.debug(
                    "block %d: image wall across direction %.1f deg at column %d (score %.2f)",
                    b,
                    math.degrees(a),
                    c,
                    score,
                )
                # the cut: block pixels whose u falls in column c (the line across the whole block)
                _draw_cut(out, toward, sl, rows, cols, pu, float(c), a)
    return out


#: line-step test windows: level (m along the candidate normal) from STEP_GAP_M to STEP_GAP_M + STEP_WIN_M on
#: either side of the line, beyond the +-2.5 m over which a stereo DSM smears a wall
STEP_GAP_M, STEP_WIN_M = 2.5, 2.0


def _window_level(p: np.ndarray) -> tuple[float, float]:
    """Median and slope (m/px) of one window of a profile (NaN, NaN with fewer than 2 finite values)."""
    xw = np.arange(len(p)) - (len(p) - 1) / 2  # window positions (px) about its centre
    ok = np.isfinite(p)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    return float(np.median(p[ok])), float(np.polyfit(xw[ok], p[ok], 1)[0])


def _window_jump(prof: np.ndarray, g: int, wz: int) -> tuple[float, float]:
    """(step, largest window slope over the gap ``g``) of a profile over [c - g - wz, c + g + wz]."""
    lv, ls = _window_level(prof[:wz])
    rv, rs = _window_level(prof[-wz:])
    return rv - lv, max(abs(ls), abs(rs)) * g


def _wall_column(prof: np.ndarray, c: int, g: int, wz: int) -> float:
    """Where the profile over [c - g - wz, c + g + wz] crosses the level halfway between its two windows,
    nearest to column c (linear interpolation); c when it does not cross."""
    mid = 0.5 * (np.median(prof[:wz]) + np.median(prof[-wz:]))
    dz = prof[wz - 1 : len(prof) - wz + 1] - mid  # columns c - g - 1 to c + g + 1
    xs = np.flatnonzero((np.sign(dz[:-1]) * np.sign(dz[1:]) <= 0) & (dz[:-1] != dz[1:]))
    if not len(xs):
        return float(c)
    k = xs[np.argmin(np.abs(xs - (g + 1)))]
    return c - g - 1 + k + float(dz[k] / (dz[k] - dz[k + 1]))


def _step_candidates(
    rot_in: np.ndarray,
    rot_inner: np.ndarray,
    rot_z: np.ndarray,
    g: int,
    wz: int,
    mw: int,
    resolution: float,
    prm: FootprintParams,
) -> list[tuple[float, int, float]]:
    """(score, column, wall column) of each column of a rotated block where the nDSM steps across (see
    :func:`_step_cuts`; score = step / ``split_line_step_m``, >= 1).

    Args:
        rot_in, rot_inner: (V, U) bool block and eroded block on the rotated grid; rot_z: (V, U) nDSM (m, NaN
            outside the eroded block).
        g, wz: gap and window width (px); mw: ``split_min_width_m`` in px (>= g + wz).
    """
    step = prm.split_line_step_m
    cands = []
    for c in range(mw, rot_in.shape[1] - mw):
        span = slice(c - g - wz, c + g + wz + 1)
        ok = rot_inner[:, span].all(axis=1) & rot_in[:, c - mw] & rot_in[:, c + mw]
        n_ok = int(ok.sum())
        if n_ok < 3 or n_ok * resolution < prm.split_min_width_m or n_ok < 0.5 * rot_in[:, c].sum():
            continue
        zz = rot_z[ok][:, span]
        prof = np.median(zz, axis=0)
        d, tilt = _window_jump(prof, g, wz)
        if not abs(d) >= step or tilt > 0.25 * abs(d):
            continue
        thirds = [_window_jump(np.median(part, axis=0), g, wz)[0] for part in np.array_split(zz, 3)]
        if not all(np.sign(t) == np.sign(d) and abs(t) >= 0.5 * step for t in thirds):
            continue
        cands.append((abs(d) / step, c, _wall_column(prof, c, g, wz)))
    return cands


def _step_cuts(
    blocks: np.ndarray,
    theta: np.ndarray,
    z: np.ndarray,
    resolution: float,
    prm: FootprintParams,
    walls: np.ndarray | None = None,
    toward: np.ndarray | None = None,
) -> np.ndarray:
    """Straight height steps across blocks: (H, W) bool, True on the pixels of each accepted cut line.

    Each block is resampled on a grid rotated to its dominant direction (and again to the perpendicular one),
    columns u across the candidate lines, rows v along them. At column c, over the rows where the block
    (eroded by 1 m) spans both windows, the row-median nDSM profile is read in two windows, from
    ``STEP_GAP_M`` to ``STEP_GAP_M + STEP_WIN_M`` on either side of the line (a stereo DSM smears a wall over
    about +-2.5 m). The line is a wall when the two windows' levels differ by at least ``split_line_step_m``,
    both windows are level (their own slope, over the gap, less than a quarter of the step: a sloped roof
    face or a ridge changes the height steadily, a wall between them), the same step shows in each third of
    the rows, and those rows cover at least ``split_min_width_m`` and half of the block's depth there.
    Strongest steps first, at least ``split_min_width_m`` apart and from the block's ends. The cut runs
    across the whole block where the row-median profile crosses the level halfway between the two windows
    (nearest to the tested line, interpolated; a stereo DSM smears a wall about symmetrically), or along an
    image-edge cut of ``walls`` within ``split_min_width_m`` of it, which places the wall more sharply (that
    line is then returned as a height-step wall too).

    Args:
        blocks: (H, W) int32 block labels; theta: (nb + 1,) block orientations (map radians).
        z: (H, W) nDSM (m, NaN outside buildings / nodata).
        walls: (H, W) bool image-edge cuts (:func:`_line_cuts`) or None.
        toward: (2, H, W) int8 filled for the drawn pixels (see :func:`_draw_cut`), or None.
    """
    out = np.zeros(blocks.shape, bool)
    g = max(1, round(STEP_GAP_M / resolution))
    wz = max(2, round(STEP_WIN_M / resolution))
    mw = max(g + wz, round(prm.split_min_width_m / resolution))
    erode = max(1, round(1.0 / resolution))
    pad = mw + 2
    z_ok = np.isfinite(z)
    for b, sl, inb, inner in _block_crops(blocks, pad, resolution, prm.split_min_width_m, erode, z_ok):
        for a in (float(theta[b]), float(theta[b]) + np.pi / 2):
            rows, cols, pu, coords = _rotated_grid(inb, a, pad)
            rot_in = ndimage.map_coordinates(inb.astype(np.uint8), coords, order=0, cval=0) > 0
            rot_inner = ndimage.map_coordinates(inner.astype(np.uint8), coords, order=0, cval=0) > 0
            rot_z = ndimage.map_coordinates(np.nan_to_num(z[sl], nan=-1e3), coords, order=1, cval=-1e3)
            rot_z = np.where(rot_inner & (rot_z > -100), rot_z, np.nan)
            col = np.round(pu).astype(int)
            on_wall = walls[sl][rows, cols] if walls is not None else np.zeros(len(rows), bool)
            # columns holding an image-edge wall across this direction (a line piles into one column)
            taken = np.bincount(col[on_wall], minlength=coords.shape[2])[: coords.shape[2]] >= 3
            cands = _step_candidates(rot_in, rot_inner, rot_z, g, wz, mw, resolution, prm)
            for score, c, c_wall in _strongest_apart(cands, mw):
                near = np.flatnonzero(taken[max(c - mw, 0) : c + mw + 1]) + max(c - mw, 0)
                log.debug(
                    "block %d: height step across direction %.1f deg at column %.1f (%.2f x the threshold%s)",
                    b,
                    math.degrees(a),
                    c_wall,
                    score,
                    ", on an image-edge cut" if len(near) else "",
                )
                if len(near):  # an image edge places this wall more sharply: that line is the wall
                    on = on_wall & (col == near[np.argmin(np.abs(near - c_wall))])
                    out[sl][rows[on], cols[on]] = True
                else:
                    _draw_cut(out, toward, sl, rows, cols, pu, c_wall, a)
    return out


def _agreeing_median(d: np.ndarray, t: float) -> float:
    """|median(d)| when at least 70 % of ``d`` share its sign with magnitude >= t / 2, else 0."""
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return 0.0
    med = float(np.median(d))
    agree = np.mean((np.sign(d) == np.sign(med)) & (np.abs(d) >= 0.5 * t))
    return abs(med) if agree >= 0.7 else 0.0


def _relabel(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u, inv = np.unique(lab, return_inverse=True)
    inv = inv.reshape(lab.shape)
    if u[0] != 0:
        inv = inv + 1
    return inv.astype(np.int32), u, inv


def _merge_flat_boundaries(
    lab: np.ndarray, z: np.ndarray, step: float, keep: np.ndarray | None = None
) -> np.ndarray:
    """Merge adjacent regions whose median height difference across their common boundary is < step, unless
    most of that boundary lies on ``keep`` (image-edge cuts, (H, W) bool)."""
    pairs: dict[tuple[int, int], list[np.ndarray]] = {}
    kp = keep if keep is not None else np.zeros(lab.shape, bool)
    for a, b, za, zb, ka, kb in (
        (lab[:, :-1], lab[:, 1:], z[:, :-1], z[:, 1:], kp[:, :-1], kp[:, 1:]),
        (lab[:-1], lab[1:], z[:-1], z[1:], kp[:-1], kp[1:]),
    ):
        sel = (a != b) & (a > 0) & (b > 0)
        la, lb = np.minimum(a[sel], b[sel]), np.maximum(a[sel], b[sel])
        # a boundary step on a kept cut counts as a height jump (+inf)
        dz = np.where(ka[sel] | kb[sel], np.inf, np.abs(za[sel] - zb[sel]))
        key = la.astype(np.int64) * (1 << 31) + lb
        order = np.argsort(key, kind="stable")
        key, dz = key[order], dz[order]
        bounds = np.flatnonzero(np.diff(key)) + 1
        for k, d in zip(np.split(key, bounds), np.split(dz, bounds)):
            if len(k):
                pairs.setdefault((int(k[0] >> 31), int(k[0] & ((1 << 31) - 1))), []).append(d)
    parent = np.arange(lab.max() + 1)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for (a, b), ds in pairs.items():
        d = np.concatenate(ds)
        if np.nanmedian(d) < step:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(i) for i in range(len(parent))])
    return roots[lab]


def _polygons_of(labels: np.ndarray, transform: Affine) -> dict[int, Polygon]:
    """Largest polygon of each label (pixel-corner outline, map coordinates)."""
    out: dict[int, Polygon] = {}
    for geom, val in features.shapes(
        labels.astype(np.int32), mask=labels > 0, transform=transform, connectivity=4
    ):
        p = shape(geom)
        v = int(val)
        if v not in out or p.area > out[v].area:
            out[v] = p
    return out


def _shared_chains(a: Polygon, b: Polygon) -> list[np.ndarray]:
    """Common boundary of two touching polygons as a list of (N, 2) chains."""
    inter = a.boundary.intersection(b.boundary)
    lines = [g for g in getattr(inter, "geoms", [inter]) if g.geom_type in ("LineString", "MultiLineString")]
    if not lines:
        return []
    merged = linemerge(MultiLineString([ln for g in lines for ln in getattr(g, "geoms", [g])]))
    return [np.asarray(g.coords) for g in getattr(merged, "geoms", [merged]) if g.length > 0]


def _extend(chain: np.ndarray, by: float) -> np.ndarray:
    c = chain.copy()
    for i0, i1 in ((0, 1), (-1, -2)):
        d = c[i0] - c[i1]
        n = math.hypot(d[0], d[1])
        if n > 0:
            c[i0] = c[i0] + d / n * by
    return c


def regularize_block(
    parts: dict[int, Polygon], theta: float | None, resolution: float, prm: RegularizeParams | None = None
) -> dict[int, Polygon]:
    """Regularize the buildings of one block together so that shared walls stay shared.

    Args:
        parts: building id -> traced polygon; the polygons tile the block (touching, not overlapping).
        theta: dominant orientation (radians), None = estimated from the block outline.
        resolution: pixel size (m) of the traced outlines.

    Returns:
        building id -> regularized polygon. The polygons do not overlap and touch along their shared walls.
    """
    prm = prm or RegularizeParams()
    block = shapely.union_all(list(parts.values()))
    comps = list(shapely.get_parts(block))
    if len(comps) > 1:  # the parts touch only at corners somewhere: each connected group on its own
        groups: dict[int, dict[int, Polygon]] = {}
        for i, p in parts.items():
            k = max(range(len(comps)), key=lambda j: comps[j].intersection(p).area)
            groups.setdefault(k, {})[i] = p
        out_all: dict[int, Polygon] = {}
        for grp in groups.values():
            out_all.update(regularize_block(grp, theta, resolution, prm))
        return out_all
    if theta is None:
        theta = dominant_orientation([np.asarray(block.exterior.coords)], prm.simplify_m)
    step = resolution / 2
    reg_block = regularize_polygon(block, theta, prm, step)
    if len(parts) == 1:
        return {next(iter(parts)): reg_block}
    ids = list(parts)
    cuts = _shared_wall_cuts(parts, ids, theta, resolution, prm)
    if not cuts:
        # touching only at corners: regularize separately
        return {i: regularize_polygon(parts[i], theta, prm, step) for i in ids}
    out = _partition(reg_block, cuts, parts, ids)
    _place_missing(out, parts, ids, theta, prm, step)
    return {i: _drop_collinear(p) for i, p in out.items()}


def _single_chain(chains: list[np.ndarray]) -> list[np.ndarray]:
    """The contact of two buildings as chains of points; a noisy contact broken into pieces (no piece holding
    80 % of the length) becomes one chain through all its points, in order along the wall."""
    lengths = [LineString(ch).length for ch in chains]
    if len(chains) > 1 and max(lengths) < 0.8 * sum(lengths):
        pts = np.vstack(chains)
        centred = pts - pts.mean(axis=0)
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
        pts = pts[np.argsort(centred @ axis)]
        chains = [pts[np.r_[True, np.any(np.diff(pts, axis=0) != 0, axis=1)]]]
    return chains


def _shared_wall_cuts(
    parts: dict[int, Polygon], ids: list[int], theta: float, resolution: float, prm: RegularizeParams
) -> list[LineString]:
    """The shared walls of touching buildings (``ids`` order), each regularized on its own and extended by
    ``2 min_edge_m`` + one pixel at both ends, so that it cuts the regularized block outline."""
    cuts = []
    tree = shapely.STRtree([parts[i] for i in ids])
    for ia, ib in zip(*tree.query([parts[i] for i in ids], predicate="touches")):
        if ia >= ib:
            continue
        for chain in _single_chain(_shared_chains(parts[ids[ia]], parts[ids[ib]])):
            if len(chain) < 2 or LineString(chain).length < prm.min_edge_m:
                continue
            reg = regularize_chain(chain, theta, prm, resolution / 2)
            cuts.append(LineString(_extend(reg, 2.0 * prm.min_edge_m + resolution)))
    return cuts


def _partition(
    reg_block: Polygon, cuts: list[LineString], parts: dict[int, Polygon], ids: list[int]
) -> dict[int, Polygon]:
    """The regularized block cut along the walls: each piece goes to the building that overlaps it most; a
    building keeps its largest connected piece, and the other fragments go to the neighbour with the longest
    common boundary (when the union stays one polygon). Buildings without a piece are left out."""
    noded = shapely.node(shapely.union_all([reg_block.boundary] + cuts))
    pieces = [
        p
        for p in shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
        if reg_block.contains(p.representative_point())
    ]
    owner: dict[int, list[Polygon]] = {i: [] for i in ids}
    for p in pieces:
        ov = [parts[i].intersection(p).area for i in ids]
        owner[ids[int(np.argmax(ov))]].append(p)
    out: dict[int, Polygon] = {}
    leftovers: list[Polygon] = []
    for i in ids:
        if not owner[i]:
            continue
        u = shapely.union_all(owner[i])
        geoms = sorted(shapely.get_parts(u), key=lambda g: -g.area)
        out[i] = geoms[0]
        leftovers += list(geoms[1:])
    for g in leftovers:  # fragments go to the neighbour with the longest common boundary
        best = max(out, key=lambda i: out[i].boundary.intersection(g.boundary).length)
        merged = shapely.union_all([out[best], g])
        if merged.geom_type == "Polygon":
            out[best] = merged
    return out


def _place_missing(
    out: dict[int, Polygon],
    parts: dict[int, Polygon],
    ids: list[int],
    theta: float,
    prm: RegularizeParams,
    step: float,
) -> None:
    """Into ``out``: each building left without a piece of the partition (its walls did not close it off),
    regularized on its own minus the area already taken, so that no building is lost while any of its area
    is free."""
    for i in ids:
        if i not in out:
            taken = shapely.union_all(list(out.values()))
            own = regularize_polygon(parts[i], theta, prm, step).difference(taken)
            geoms = sorted(
                (g for g in shapely.get_parts(own) if g.geom_type == "Polygon"), key=lambda g: -g.area
            )
            if geoms:
                log.info(
                    "building %d: no piece of the joint partition of its block; regularized on its own", i
                )
                out[i] = geoms[0]
            else:
                log.warning(
                    "building %d: covered by its neighbours' regularized polygons, no area of its own left "
                    "(%.1f m2 traced): not in the footprints",
                    i,
                    parts[i].area,
                )


def _drop_collinear(p: Polygon, tol: float = 1e-6) -> Polygon:
    def ring(coords: np.ndarray) -> np.ndarray:
        c = coords[:-1]
        keep = []
        n = len(c)
        for i in range(n):
            a, b, d = c[i - 1], c[i], c[(i + 1) % n]
            cross = (b[0] - a[0]) * (d[1] - a[1]) - (b[1] - a[1]) * (d[0] - a[0])
            if abs(cross) > tol * max(1.0, np.hypot(*(d - a))):
                keep.append(b)
        return np.array(keep) if len(keep) >= 3 else c

    return Polygon(ring(np.asarray(p.exterior.coords)), [ring(np.asarray(h.coords)) for h in p.interiors])


@dataclass
class Footprint:
    """One LOD0 building footprint."""

    id: int
    polygon: Polygon
    block: int
    orientation_deg: float
    traced_area_m2: float
    #: (row, col) of the first pixel of the footprint's block in raster order (the block's label order)
    block_first: tuple[int, int] = (-1, -1)


def extract_footprints(
    mask: np.ndarray,
    ndsm: np.ndarray | None,
    transform: Affine,
    prm: FootprintParams = FootprintParams(),
    image: np.ndarray | None = None,
) -> list[Footprint]:
    """Building mask (+ nDSM) -> regularized footprints.

    Args:
        mask: (H, W) uint8, 1 = building, 0 = not, 255 = nodata.
        ndsm: (H, W) float32 height above ground (m, NaN nodata) on the same grid, or None (no splitting
            of touching buildings, no height filter).
        transform: affine transform of the grid (projected CRS, metres, north-up).
        image: (H, W) ortho on the same grid (NaN nodata) or None: with it, touching buildings are also split
            along straight roof-image edges (needs ``ndsm``).

    Returns:
        Footprints sorted by id (1..N).
    """
    if transform.b != 0 or transform.d != 0:
        raise ValueError("extract_footprints needs a north-up grid (no rotation terms in the transform)")
    res = abs(transform.a)
    blocks, lab = label_buildings(mask, ndsm, res, prm, image, transform)
    if ndsm is not None and prm.min_height_m > 0 and lab.max() > 0:
        med = ndimage.median(np.nan_to_num(ndsm, nan=0.0), lab, index=np.arange(1, lab.max() + 1))
        low = 1 + np.flatnonzero(np.asarray(med) < prm.min_height_m)
        lab[np.isin(lab, low)] = 0
    polys = _polygons_of(lab, transform)
    # block id of each building: the block under its representative point
    block_of: dict[int, int] = {}
    for i, p in polys.items():
        ys, xs = np.nonzero(lab == i)
        block_of[i] = int(blocks[ys[0], xs[0]])
    labels, first = np.unique(blocks.ravel(), return_index=True)
    first_px = {int(b): divmod(int(f), blocks.shape[1]) for b, f in zip(labels, first) if b > 0}
    out: list[Footprint] = []
    by_block: dict[int, dict[int, Polygon]] = {}
    for i, b in block_of.items():
        by_block.setdefault(b, {})[i] = polys[i]
    small = lost = 0
    progress = Progress("lod0 building block", len(by_block), log)
    for k, (b, parts) in enumerate(sorted(by_block.items()), start=1):
        progress.update(k - 1)
        block = shapely.union_all(list(parts.values()))
        rings = [np.asarray(g.exterior.coords) for g in shapely.get_parts(block)]
        theta = dominant_orientation(rings, prm.regularize.simplify_m)
        try:
            reg = regularize_block(parts, theta, res, prm.regularize)
        except Exception as exc:  # noqa: BLE001 - a geometric corner case must not lose a whole block
            log.warning(
                "block %d: joint regularization failed (%s); regularizing its buildings one by one", b, exc
            )
            reg = {i: regularize_polygon(p, theta, prm.regularize, res / 2) for i, p in parts.items()}
        for i, p in reg.items():
            if p.is_empty or p.area < prm.min_area_m2:
                small += 1
                log.debug(
                    "traced building %d (block %d, %.1f m2): %.1f m2 once regularized, under "
                    "lod.min_area_m2 %.1f: dropped",
                    i,
                    b,
                    parts[i].area,
                    p.area,
                    prm.min_area_m2,
                )
                continue
            out.append(Footprint(0, p, b, math.degrees(theta), parts[i].area, first_px[b]))
        lost += len(parts) - len(reg)
    progress.update(len(by_block))
    out.sort(key=lambda f: (-f.polygon.centroid.y, f.polygon.centroid.x))
    for k, f in enumerate(out, start=1):
        f.id = k
    log.info(
        "%d footprints from %d blocks (%d traced buildings under lod.min_area_m2 once regularized, %d "
        "without a regularized polygon)",
        len(out),
        len(by_block),
        small,
        lost,
    )
    if lost:
        log.warning("%d traced buildings got no regularized polygon and are not in the footprints", lost)
    return out
