"""True orthophoto: every view resampled onto the DSM grid through its RPC, with occlusion detection.

For each DSM cell (map x, y, DSM height h), the ground point is projected into each view with the view's RPC
(``RPCModel.project``) and the image is sampled bilinearly there. A cell is *occluded* in a view when the line
of sight from the cell towards the satellite passes below the DSM somewhere (ray marching on the DSM grid, in
steps of half a pixel of horizontal travel); its value then comes from the next view in priority order
(smallest incidence first), or it is masked (NaN) when no view sees it. The line-of-sight direction of a view
(horizontal metres per metre of height) is measured from the RPC at the scene centre (localize the projected
centre at two heights); over a few kilometres it varies by less than 1e-3 of itself for a satellite.

Views of different dates have different gains: with ``radiometric_match`` each view is mapped linearly onto
the reference (most nadir) view over the cells both see, before the mosaic.

Pansharpening: when a view carries a multispectral image (``ms_image`` [+ ``ms_rpc``] in the scene sheet) its
bands are orthorectified the same way (bilinear, from the coarser grid) and sharpened with the panchromatic
ortho by generalized IHS (component substitution with the PAN matched to the MS intensity).

The workflow makes the ortho per tile (:mod:`sat2lod.ortho_tiled`): the lines of sight, gains and
pansharpening shift and match are estimated once for the AOI (:class:`OrthoGlobals`) and every tile takes them
(``shared``); :func:`ortho_from_files` on the whole AOI is the reference the tiles are tested equal to.

Only :mod:`sat2lod.io` opens files; the array functions take arrays, transforms and RPC models.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from pyproj import CRS, Transformer
from rasterio.transform import Affine
from scipy import ndimage

import sat2lod
from sat2lod.arrays import fill_nearest
from sat2lod.rpc import RPCModel
from sat2lod.schema import defaults

_ORTHO = defaults("ortho")  # defaults of config section ortho

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrthoParams:
    """Parameters of rule ``ortho``: config section ``ortho``, one field per key (see config/schema.yaml for
    each), defaults from the schema; the rule passes the whole section.

    Attributes:
        occlusion_tol_m: height margin (m) of the visibility test: a surface within it of the line of sight
            counts as seen.
        detect_occlusions: ray-march the DSM to find cells hidden from each view (true ortho); False = plain
            ortho from the most nadir view.
        radiometric_match: map each view's radiometry linearly onto the most nadir view before the mosaic.
        fill_dsm_holes: fill DSM nodata with the nearest height before projecting (else those cells are nodata).
        pansharpen: pansharpen (generalized IHS) when the most nadir view has an ``ms_image`` in the scene sheet.
        gains_window_m: side (m) of the block at the AOI centre on which rule ``ortho_gains`` estimates the
            quantities every tile shares (:class:`OrthoGlobals`).
    """

    occlusion_tol_m: float = _ORTHO["occlusion_tol_m"]
    detect_occlusions: bool = _ORTHO["detect_occlusions"]
    radiometric_match: bool = _ORTHO["radiometric_match"]
    fill_dsm_holes: bool = _ORTHO["fill_dsm_holes"]
    pansharpen: bool = _ORTHO["pansharpen"]
    gains_window_m: float = _ORTHO["gains_window_m"]


@dataclass(frozen=True)
class OrthoGlobals:
    """What every part of one AOI's ortho must share, or the mosaic of per-tile orthos shows seams: estimated
    once (rule ``ortho_gains``, :func:`sat2lod.ortho_tiled.ortho_globals_from_files`) and passed to each tile.

    Attributes:
        los: per view, the line of sight's horizontal displacement (dx, dy) in map metres per metre of height
            (:func:`line_of_sight`); sets the occlusion rays and the views' priority (smallest incidence first).
        zmin, zmax: lowest and highest DSM height of the AOI (m): the occlusion rays stop at ``zmax``.
        gains: per view, (gain, offset) of its radiometric match onto the most nadir view ((1, 0) for that one);
            None = no match.
        ms_shift: (drow, dcol) registration of the MS ortho onto the PAN (cells); None = no pansharpening.
        pan_match: (gain, offset) of the PAN onto the MS intensity (generalized IHS); None with ``ms_shift``.
    """

    los: tuple[tuple[float, float], ...]
    zmin: float
    zmax: float
    gains: tuple[tuple[float, float], ...] | None = None
    ms_shift: tuple[float, float] | None = None
    pan_match: tuple[float, float] | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (floats kept to the bit: JSON numbers round-trip Python floats)."""
        return {k: getattr(self, k) for k in ("los", "zmin", "zmax", "gains", "ms_shift", "pan_match")}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> OrthoGlobals:
        """Inverse of :meth:`to_json`."""

        def pairs(v: Any) -> tuple[tuple[float, float], ...] | None:
            return None if v is None else tuple((float(a), float(b)) for a, b in v)

        def pair(v: Any) -> tuple[float, float] | None:
            return None if v is None else (float(v[0]), float(v[1]))

        los = pairs(d["los"])
        if los is None:
            raise ValueError("shared ortho quantities without lines of sight: rerun rule ortho_gains")
        return cls(
            los,
            float(d["zmin"]),
            float(d["zmax"]),
            pairs(d["gains"]),
            pair(d["ms_shift"]),
            pair(d["pan_match"]),
        )


@dataclass
class OrthoView:
    """A view to orthorectify.

    Attributes:
        image: (rows, cols) or (bands, rows, cols) float32 image in sensor geometry, NaN = nodata: the whole view,
            or the window of it at ``offset`` (see :func:`view_window`).
        rpc: RPC model of the whole view in its array pixel coordinates (centre convention).
        name: identifier for logs and tags.
        offset: (row, col) of ``image[0, 0]`` in the whole view.
        full_shape: (rows, cols) of the whole view when ``image`` is a window of it, else None.
    """

    image: np.ndarray
    rpc: RPCModel
    name: str = "view"
    offset: tuple[int, int] = (0, 0)
    full_shape: tuple[int, int] | None = None


# --------------------------------------------------------------------------------------------- geometry
def cell_centres(transform: Affine, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates (x, y) of the centres of an (H, W) grid, each (H, W) float64."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64) + 0.5
    x = transform.c + cols * transform.a + rows * transform.b
    y = transform.f + cols * transform.d + rows * transform.e
    return x, y


def line_of_sight(
    rpc: RPCModel, to_lonlat: Transformer, to_map: Transformer, x: float, y: float, h: float, dh: float = 50.0
) -> tuple[float, float]:
    """Horizontal displacement (map metres per metre of height, (dx, dy)) of the ray towards the satellite.

    The point (x, y, h) is projected into the view, then localized back at ``h + dh``; the ray climbs towards
    the sensor along ``(dx, dy)`` metres per metre (its norm is the tangent of the incidence angle).
    """
    lon, lat = to_lonlat.transform(x, y)
    r, c = rpc.project(np.array([lon]), np.array([lat]), np.array([h]))
    lon2, lat2 = rpc.localize(r, c, np.array([h + dh]))
    x2, y2 = to_map.transform(float(lon2[0]), float(lat2[0]))
    return (x2 - x) / dh, (y2 - y) / dh


@numba.njit(cache=True)
def _occlusion(dsm: np.ndarray, drow: float, dcol: float, zmax: float, tol: float) -> np.ndarray:
    h, w = dsm.shape
    occ = np.zeros((h, w), np.bool_)
    horiz = max(abs(drow), abs(dcol))
    if horiz < 1e-9:
        return occ
    dt = 0.5 / horiz  # metres of height per half pixel of horizontal travel
    for i in range(h):
        for j in range(w):
            z = dsm[i, j]
            if not np.isfinite(z):
                continue
            k = 1
            t = dt
            while t <= zmax - z:
                # the offset first, then the cell: the same step reaches the same offset from every cell,
                # whatever the grid's origin (a tile's window gives the AOI's result)
                ii = i + int(np.floor(0.5 + drow * t))
                jj = j + int(np.floor(0.5 + dcol * t))
                if ii < 0 or ii >= h or jj < 0 or jj >= w:
                    break
                s = dsm[ii, jj]
                if s > z + t + tol:
                    occ[i, j] = True
                    break
                k += 1
                t = k * dt
    return occ


def occlusion_reference(dsm: np.ndarray, drow: float, dcol: float, zmax: float, tol: float) -> np.ndarray:
    """NumPy reference of the ray-marching occlusion test (for tests).

    Args:
        dsm: (H, W) heights (m), NaN = nodata (never occluded, never occluding).
        drow, dcol: ray direction in pixels per metre of height (towards the sensor).
        zmax: highest DSM value (m); tol: height margin (m) against self-occlusion on sloped surfaces.
    Returns:
        (H, W) bool, True where the cell is hidden from the view.
    """
    h, w = dsm.shape
    occ = np.zeros((h, w), bool)
    horiz = max(abs(drow), abs(dcol))
    if horiz < 1e-9:
        return occ
    dt = 0.5 / horiz
    ii0, jj0 = np.mgrid[0:h, 0:w]
    z = dsm
    alive = np.isfinite(z)
    k = 1
    while alive.any():
        t = k * dt
        alive &= t <= zmax - np.where(np.isfinite(z), z, np.inf)
        ii = ii0 + int(np.floor(0.5 + drow * t))
        jj = jj0 + int(np.floor(0.5 + dcol * t))
        inside = (ii >= 0) & (ii < h) & (jj >= 0) & (jj < w)
        alive &= inside
        s = np.where(alive, dsm[np.clip(ii, 0, h - 1), np.clip(jj, 0, w - 1)], -np.inf)
        hit = alive & (s > z + t + tol)
        occ |= hit
        alive &= ~hit
        k += 1
    return occ


def _sample(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear sampling of (rows, cols) or (B, rows, cols) ``image`` at float pixel centres; NaN outside."""
    img = image if image.ndim == 3 else image[np.newaxis]
    out = np.empty((img.shape[0],) + rows.shape, np.float32)
    for b in range(img.shape[0]):
        out[b] = ndimage.map_coordinates(
            img[b].astype(np.float32), [rows, cols], order=1, mode="constant", cval=np.nan, prefilter=False
        )
    return out if image.ndim == 3 else out[0]


def _sample_view(
    image: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    offset: tuple[int, int] = (0, 0),
    full_shape: tuple[int, int] | None = None,
    name: str = "view",
) -> np.ndarray:
    """:func:`_sample` at positions (``rows``, ``cols``) of the whole view, of which ``image`` is the window at
    ``offset`` (``full_shape``: the whole view's (rows, cols); None: ``image`` is the whole view). The values
    are those of sampling the whole view, to the bit (the integer offset shifts positions exactly), provided
    every position that touches the view touches only the window: checked, since the window comes from a
    sparse projection (:func:`view_window`).

    Raises:
        RuntimeError: a position needs a pixel of the view outside the window (the window margin is too small).
    """
    if full_shape is not None:
        h, w = image.shape[-2:]
        ok = np.ones(rows.shape, bool)
        touches = np.isfinite(rows) & np.isfinite(cols)
        for p, start, size, full in (
            (rows, offset[0], h, full_shape[0]),
            (cols, offset[1], w, full_shape[1]),
        ):
            with np.errstate(invalid="ignore"):
                touches &= (p > -2) & (p < full + 1)
                ok &= ((start == 0) | (p >= start + 1)) & ((start + size == full) | (p <= start + size - 2))
        if (touches & ~ok).any():
            raise RuntimeError(
                f"view {name}: {int((touches & ~ok).sum())} projected cells fall outside its window {offset} + "
                f"{(h, w)}; the window margin (VIEW_WINDOW_MARGIN_PX) is too small for this RPC: report it"
            )
    return _sample(image, rows - offset[0], cols - offset[1])


#: pixels added around a view's window beyond the projected footprint of the DSM grid (:func:`view_window`):
#: covers the bilinear support and the RPC's curvature between the projected lattice points (a few hundredths
#: of a pixel for a satellite over a tile-sized grid)
VIEW_WINDOW_MARGIN_PX = 32


def view_window(
    rpc: RPCModel,
    transform: Affine,
    shape: tuple[int, int],
    crs: Any,
    h_range: tuple[float, float],
    view_shape: tuple[int, int],
    margin_px: int = VIEW_WINDOW_MARGIN_PX,
    lattice: int = 17,
) -> tuple[int, int, int, int] | None:
    """The part of a view that sees a DSM grid: ``(row_off, col_off, rows, cols)``, or None when the footprint
    leaves the view (read it whole then: nothing to save, and the cells come out NaN as before).

    The centres of a ``lattice`` x ``lattice`` set of cells spanning the grid (corners included) are projected
    at the lowest and highest height of ``h_range`` (m, ellipsoidal as the RPC); the window is their bounding
    box plus ``margin_px``, clipped to ``view_shape`` (rows, cols).
    """
    to_lonlat = Transformer.from_crs(CRS.from_user_input(crs), "EPSG:4326", always_xy=True)
    r, c = np.meshgrid(
        np.linspace(0.5, shape[0] - 0.5, lattice), np.linspace(0.5, shape[1] - 0.5, lattice), indexing="ij"
    )
    x = transform.c + c * transform.a + r * transform.b
    y = transform.f + c * transform.d + r * transform.e
    lon, lat = to_lonlat.transform(x.ravel(), y.ravel())
    proj = [rpc.project(lon, lat, np.full(lon.shape, float(h))) for h in h_range]
    rows = np.concatenate([p[0] for p in proj])
    cols = np.concatenate([p[1] for p in proj])
    if not (np.isfinite(rows).all() and np.isfinite(cols).all()):
        return None
    r0 = max(0, int(np.floor(rows.min())) - margin_px)
    r1 = min(view_shape[0], int(np.ceil(rows.max())) + margin_px + 1)
    c0 = max(0, int(np.floor(cols.min())) - margin_px)
    c1 = min(view_shape[1], int(np.ceil(cols.max())) + margin_px + 1)
    if r1 <= r0 or c1 <= c0:
        return None
    return r0, c0, r1 - r0, c1 - c0


def project_grid(
    rpc: RPCModel, dsm: np.ndarray, transform: Affine, to_lonlat: Transformer, block_rows: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Image (row, col) of every DSM cell centre at its DSM height, each (H, W) float64 (NaN where DSM is NaN)."""
    h, w = dsm.shape
    rows = np.full((h, w), np.nan)
    cols = np.full((h, w), np.nan)
    for r0 in range(0, h, block_rows):
        r1 = min(h, r0 + block_rows)
        sub = Affine(
            transform.a,
            transform.b,
            transform.c + r0 * transform.b,
            transform.d,
            transform.e,
            transform.f + r0 * transform.e,
        )
        x, y = cell_centres(sub, (r1 - r0, w))
        lon, lat = to_lonlat.transform(x, y)
        z = dsm[r0:r1]
        ok = np.isfinite(z)
        rr, cc = rpc.project(lon[ok], lat[ok], z[ok].astype(np.float64))
        rows[r0:r1][ok] = rr
        cols[r0:r1][ok] = cc
    return rows, cols


def _linear_match(src: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Gain/offset mapping ``src`` onto ``ref`` over co-valid cells (trimmed least squares)."""
    ok = np.isfinite(src) & np.isfinite(ref)
    if ok.sum() < 100:
        return 1.0, 0.0
    s, r = src[ok].astype(np.float64), ref[ok].astype(np.float64)
    lo, hi = np.percentile(s, [1, 99])
    keep = (s >= lo) & (s <= hi)
    a, b = np.polyfit(s[keep], r[keep], 1)
    return float(a), float(b)


# --------------------------------------------------------------------------------------------- ortho
def true_ortho(
    dsm: np.ndarray,
    transform: Affine,
    crs: Any,
    views: list[OrthoView],
    occlusion_tol_m: float = _ORTHO["occlusion_tol_m"],
    radiometric_match: bool = _ORTHO["radiometric_match"],
    detect_occlusions: bool = _ORTHO["detect_occlusions"],
    shared: OrthoGlobals | None = None,
    core: tuple[slice, slice] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Orthorectify ``views`` on the DSM grid with occlusion handling.

    Args:
        dsm: (H, W) float heights (m, WGS84 ellipsoid as the RPCs), NaN = nodata (output NaN there).
        transform, crs: grid of ``dsm`` (projected CRS, metres).
        views: views to use; the first band of each is the PAN used in the mosaic.
        occlusion_tol_m: height margin of the visibility test (m): surfaces within it of the ray are visible.
        radiometric_match: map each view's radiometry linearly onto the most nadir view first.
        detect_occlusions: False gives the plain (non-true) ortho: every cell from the most nadir view.
        shared: the AOI's lines of sight, height range and gains (a tile of a larger AOI); None = estimated
            here from ``dsm`` (the line of sight at the grid centre and median height, the gains over the grid).
        core: the part of the grid the statistics of ``info`` count (a tile's core); None = all of it.
    Returns:
        ortho (H, W) float32 (NaN nodata), source (H, W) int8 (index into ``views``, -1 = none),
        info dict (per-view incidence, occluded and used fractions and cell counts, gains).
    """
    if not views:
        raise ValueError("true_ortho needs at least one view")
    valid = np.isfinite(dsm)
    if not valid.any():
        raise ValueError("the DSM has no valid cell: nothing to orthorectify")
    if shared is None:
        los = _lines_of_sight(dsm, transform, crs, views)
        zmax = float(np.nanmax(dsm))
    elif len(shared.los) != len(views):
        raise ValueError(f"{len(views)} views but the shared ortho quantities have {len(shared.los)}")
    else:
        los, zmax = list(shared.los), shared.zmax
    tan_inc = [float(np.hypot(dx, dy)) for dx, dy in los]
    samples, occluded = [], []
    to_lonlat = Transformer.from_crs(CRS.from_user_input(crs), "EPSG:4326", always_xy=True)
    dsm64 = dsm.astype(np.float64)
    for v, (dx, dy) in zip(views, los, strict=True):
        rows, cols = project_grid(v.rpc, dsm, transform, to_lonlat)
        pan = v.image if v.image.ndim == 2 else v.image[0]
        samples.append(_sample_view(pan, rows, cols, v.offset, v.full_shape, v.name))
        if detect_occlusions:
            # map metres per metre of height -> grid pixels per metre (rows go down when e < 0)
            occluded.append(_occlusion(dsm64, dy / transform.e, dx / transform.a, zmax, occlusion_tol_m))
        else:
            occluded.append(np.zeros(dsm.shape, bool))
    order = np.argsort(tan_inc, kind="stable")
    gains = None
    if radiometric_match and len(views) > 1:
        gains = shared.gains if shared is not None else _match_gains(samples, occluded, order)
        if gains is None or len(gains) != len(views):
            raise ValueError(
                "radiometric_match needs one (gain, offset) per view in the shared ortho quantities"
            )
        for k in order[1:]:
            a, b = gains[k]
            samples[k] = (a * samples[k] + b).astype(np.float32)
            log.info("view %s: radiometry mapped with gain %.4f, offset %.2f", views[k].name, a, b)
    ortho = np.full(dsm.shape, np.nan, np.float32)
    source = np.full(dsm.shape, -1, np.int8)
    for k in order:
        take = (source < 0) & valid & ~occluded[k] & np.isfinite(samples[k])
        ortho[take] = samples[k][take]
        source[take] = k
    cut = core if core is not None else (slice(None), slice(None))
    counts = ortho_counts(valid[cut], [o[cut] for o in occluded], source[cut])
    info = ortho_info([v.name for v in views], tan_inc, counts, abs(transform.a))
    info["los"] = [list(p) for p in los]
    info["gains"] = None if gains is None else [list(g) for g in gains]
    return ortho, source, info


def _lines_of_sight(
    dsm: np.ndarray, transform: Affine, crs: Any, views: list[OrthoView]
) -> list[tuple[float, float]]:
    """Each view's line of sight (:func:`line_of_sight`) at the grid's centre cell and median DSM height."""
    to_lonlat = Transformer.from_crs(CRS.from_user_input(crs), "EPSG:4326", always_xy=True)
    to_map = Transformer.from_crs("EPSG:4326", CRS.from_user_input(crs), always_xy=True)
    ci, cj = dsm.shape[0] // 2, dsm.shape[1] // 2
    xc = transform.c + (cj + 0.5) * transform.a + (ci + 0.5) * transform.b
    yc = transform.f + (cj + 0.5) * transform.d + (ci + 0.5) * transform.e
    h_mid = float(np.nanmedian(dsm))
    return [line_of_sight(v.rpc, to_lonlat, to_map, float(xc), float(yc), h_mid) for v in views]


def _match_gains(
    samples: list[np.ndarray], occluded: list[np.ndarray], order: np.ndarray
) -> list[tuple[float, float]]:
    """(gain, offset) of each view onto the most nadir one (``order[0]``) over the cells both see."""
    ref = order[0]
    ref_vis = np.where(occluded[ref], np.nan, samples[ref])
    gains = [(1.0, 0.0)] * len(samples)
    for k in order[1:]:
        gains[k] = _linear_match(np.where(occluded[k], np.nan, samples[k]), ref_vis)
    return gains


def ortho_counts(valid: np.ndarray, occluded: list[np.ndarray], source: np.ndarray) -> dict[str, Any]:
    """Cell counts of an ortho (summable over tiles): valid DSM cells, per view the valid cells it cannot see
    and those it gives, and the valid cells no view gives."""
    return {
        "valid_cells": int(valid.sum()),
        "occluded_cells": [int((o & valid).sum()) for o in occluded],
        "used_cells": [int(((source == k) & valid).sum()) for k in range(len(occluded))],
        "masked_cells": int(((source < 0) & valid).sum()),
    }


def ortho_info(names: list[str], tan_inc: list[float], counts: dict[str, Any], res: float) -> dict[str, Any]:
    """The ortho's summary (the ``SAT2LOD_ORTHO_INFO`` tag) from its :func:`ortho_counts`."""
    n = max(counts["valid_cells"], 1)
    return {
        "views": [
            {
                "name": name,
                "tan_incidence": tan_inc[k],
                "incidence_deg": float(np.degrees(np.arctan(tan_inc[k]))),
                "occluded_fraction": counts["occluded_cells"][k] / n,
                "used_fraction": counts["used_cells"][k] / n,
            }
            for k, name in enumerate(names)
        ],
        "masked_fraction": counts["masked_cells"] / n,
        "resolution_m": res,
        "counts": counts,
    }


def orthorectify_bands(
    image: np.ndarray,
    rpc: RPCModel,
    dsm: np.ndarray,
    transform: Affine,
    crs: Any,
    offset: tuple[int, int] = (0, 0),
    full_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Plain orthorectification (no occlusion test) of a (B, rows, cols) image: -> (B, H, W) float32, NaN nodata.
    ``image`` may be a window of the view (``offset``, ``full_shape`` as :class:`OrthoView`)."""
    to_lonlat = Transformer.from_crs(CRS.from_user_input(crs), "EPSG:4326", always_xy=True)
    rows, cols = project_grid(rpc, dsm, transform, to_lonlat)
    img = image if image.ndim == 3 else image[np.newaxis]
    return _sample_view(img, rows, cols, offset, full_shape, "ms")


def estimate_shift(ref: np.ndarray, mov: np.ndarray, max_shift_px: float = 16.0) -> tuple[float, float]:
    """(drow, dcol) to apply to ``mov`` (``ndimage.shift``) so that it best matches ``ref``: phase correlation with
    a parabolic sub-pixel peak. Both (H, W), NaN = nodata (filled with the mean); (0, 0) when the peak is beyond
    ``max_shift_px`` (no reliable registration)."""

    def prep(a: np.ndarray) -> np.ndarray:
        a = np.where(np.isfinite(a), a, np.nanmean(a)).astype(np.float64)
        a = a - a.mean()
        win = np.hanning(a.shape[0])[:, None] * np.hanning(a.shape[1])[None, :]
        return a * win

    fa, fb = np.fft.fft2(prep(ref)), np.fft.fft2(prep(mov))
    cross = fa * np.conj(fb)
    corr = np.real(np.fft.ifft2(cross / np.maximum(np.abs(cross), 1e-12)))
    i, j = np.unravel_index(int(np.argmax(corr)), corr.shape)
    h, w = corr.shape

    def sub(c_m: float, c_0: float, c_p: float) -> float:
        d = c_m - 2 * c_0 + c_p
        return 0.0 if d == 0 else 0.5 * (c_m - c_p) / d

    di = sub(corr[(i - 1) % h, j], corr[i, j], corr[(i + 1) % h, j])
    dj = sub(corr[i, (j - 1) % w], corr[i, j], corr[i, (j + 1) % w])
    dr = (i + h // 2) % h - h // 2 + di
    dc = (j + w // 2) % w - w // 2 + dj
    if max(abs(dr), abs(dc)) > max_shift_px:
        return 0.0, 0.0
    return float(dr), float(dc)


def pansharpen(
    pan: np.ndarray,
    ms: np.ndarray,
    register: bool = True,
    ms_pixel_ratio: int = 4,
    shift: tuple[float, float] | None = None,
    match: tuple[float, float] | None = None,
) -> tuple[np.ndarray, tuple[float, float]]:
    """Generalized IHS pansharpening.

    Args:
        pan: (H, W) panchromatic ortho; ms: (B, H, W) multispectral bands resampled on the same grid (they are
            low-pass: the MS pixel is coarser). NaN = nodata in either.
        register: first shift the MS bands onto the PAN (phase correlation of the MS intensity with the PAN
            low-passed to the MS pixel): PAN and MS RPCs of one product commonly disagree by a pixel or two.
        ms_pixel_ratio: MS pixel / PAN pixel (4 for Pléiades), the low-pass of the PAN used for registration.
        shift, match: the registration shift and the (gain, offset) of the PAN onto the MS intensity, as
            :func:`pansharpen_fit` gives them (a tile takes its AOI's); None = estimated on these arrays.
    Returns:
        (B, H, W) float32 ``ms_b + (pan' - I)``, with I the band mean and pan' the PAN linearly matched to I (the
        low-pass content of each band is kept, the PAN adds the high frequencies); and the (drow, dcol) shift
        applied to the MS.
    """
    if shift is None or match is None:
        shift, match = pansharpen_fit(pan, ms, register, ms_pixel_ratio)
    ms = _shift_bands(ms, shift)
    intensity = ms.mean(axis=0)
    detail = match[0] * pan + match[1] - intensity
    return (ms + detail[np.newaxis]).astype(np.float32), shift


def _shift_bands(ms: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """(B, H, W) bands shifted by (drow, dcol) cells (bilinear, NaN from outside)."""
    if shift == (0.0, 0.0):
        return ms
    return np.stack([ndimage.shift(b, shift, order=1, mode="constant", cval=np.nan) for b in ms])


def pansharpen_fit(
    pan: np.ndarray, ms: np.ndarray, register: bool = True, ms_pixel_ratio: int = 4
) -> tuple[tuple[float, float], tuple[float, float]]:
    """The quantities of :func:`pansharpen` estimated on ``pan`` (H, W) and ``ms`` (B, H, W): the MS
    registration shift (drow, dcol) ((0, 0) without ``register``) and the (gain, offset) of the PAN onto the
    registered MS intensity."""
    shift = (0.0, 0.0)
    if register:
        low = ndimage.uniform_filter(np.where(np.isfinite(pan), pan, np.nanmean(pan)), ms_pixel_ratio)
        shift = estimate_shift(low, ms.mean(axis=0))
    return shift, _linear_match(pan, _shift_bands(ms, shift).mean(axis=0))


# --------------------------------------------------------------------------------------------- workflow entry
def load_dsm(
    path: str | os.PathLike[str], prm: OrthoParams, window: Any = None
) -> tuple[np.ndarray, Affine, Any, str]:
    """The DSM the ortho projects on: (H, W) float32 heights (holes filled with the nearest height when
    ``prm.fill_dsm_holes``; NaN otherwise), its transform and CRS (of ``window``, a ``rasterio.windows.Window``,
    when given) and its vertical datum.

    Raises:
        ValueError: the DSM is not on a projected grid, naming the file.
    """
    from sat2lod.io.raster import read_raster

    src = read_raster(path, bands=1, masked_to_nan=True, window=window)
    if src.crs is None or not src.crs.is_projected:
        raise ValueError(f"{path}: the DSM must be on a projected grid (got CRS {src.crs})")
    datum = src.tags.get("VERTICAL_DATUM", sat2lod.ELLIPSOID_DATUM)
    if datum != sat2lod.ELLIPSOID_DATUM:
        log.warning(
            "%s: VERTICAL_DATUM is %r, RPCs expect ellipsoidal heights: the ortho may be shifted", path, datum
        )
    heights = src.array.astype(np.float32)
    valid = np.isfinite(heights)
    if prm.fill_dsm_holes and not valid.all() and valid.any():
        heights = fill_nearest(heights)
    return heights, src.transform, src.crs, datum


#: the multispectral image of a scene: its pixels (B, rows, cols), RPC and :class:`OrthoView` window fields
MSImage = tuple[np.ndarray, RPCModel, dict[str, Any]]


def load_views(
    scenes: str | os.PathLike[str],
    heights: np.ndarray,
    transform: Affine,
    crs: Any,
    prm: OrthoParams,
    windowed: bool = True,
) -> tuple[list[OrthoView], MSImage | None]:
    """The scene sheet's views (PAN band) and the MS image of the first view that has one (when
    ``prm.pansharpen``), each read only over the window that sees the ``heights`` grid (:func:`view_window`;
    whole when not ``windowed``), float32 NaN-empty."""
    from rasterio.windows import Window

    from sat2lod.io.raster import raster_shape, read_raster
    from sat2lod.io.rpc_files import read_rpc
    from sat2lod.io.scene_sheet import read_scene_sheet

    sheet = read_scene_sheet(scenes)
    h_range = (float(np.nanmin(heights)), float(np.nanmax(heights))) if np.isfinite(heights).any() else None

    def read_view(path: str, rpc: RPCModel, bands: int | None) -> tuple[np.ndarray, dict[str, Any]]:
        full = raster_shape(path)[1:]
        win = None
        if windowed and h_range is not None:
            win = view_window(rpc, transform, heights.shape, crs, h_range, full)
        if win is None:
            return read_raster(path, bands=bands, masked_to_nan=True).array.astype(np.float32), {}
        r0, c0, nr, nc = win
        log.info("%s: reading rows %d:%d, cols %d:%d of %d x %d", path, r0, r0 + nr, c0, c0 + nc, *full)
        a = read_raster(path, bands=bands, masked_to_nan=True, window=Window(c0, r0, nc, nr)).array
        return a.astype(np.float32), {"offset": (r0, c0), "full_shape": full}

    views = []
    ms = None
    for i, v in enumerate(sheet["views"]):
        rpc = read_rpc(v["image"], v.get("rpc"))
        img, where = read_view(v["image"], rpc, 1)
        views.append(OrthoView(img, rpc, str(v.get("id", f"view{i}")), **where))
        if v.get("ms_image") and prm.pansharpen and ms is None:
            ms_rpc = read_rpc(v["ms_image"], v.get("ms_rpc"))
            ms_img, ms_where = read_view(v["ms_image"], ms_rpc, None)
            ms = (ms_img, ms_rpc, ms_where)
    return views, ms


def ortho_bands(
    heights: np.ndarray,
    transform: Affine,
    crs: Any,
    views: list[OrthoView],
    ms: MSImage | None,
    prm: OrthoParams,
    shared: OrthoGlobals | None = None,
    core: tuple[slice, slice] | None = None,
) -> tuple[np.ndarray, list[dict[str, str]], dict[str, Any]]:
    """The ortho's bands on the ``heights`` grid: (B, H, W) float32, NaN nodata, band 1 the PAN true ortho,
    bands 2.. the pansharpened MS bands when ``ms`` is given; their band tags (``NAME``); the info dict
    (:func:`true_ortho`'s, plus the MS registration shift and PAN match). ``shared``, ``core``: as
    :func:`true_ortho` (with ``shared`` the pansharpening takes its shift and match too)."""
    pan, _source, info = true_ortho(
        heights,
        transform,
        crs,
        views,
        prm.occlusion_tol_m,
        prm.radiometric_match,
        prm.detect_occlusions,
        shared=shared,
        core=core,
    )
    bands = [pan]
    if ms is not None:
        ms_ortho = orthorectify_bands(ms[0], ms[1], heights, transform, crs, **ms[2])
        if shared is not None and (shared.ms_shift is None or shared.pan_match is None):
            raise ValueError(
                "the shared ortho quantities have no pansharpening shift: rerun rule ortho_gains"
            )
        shift, match = (
            (shared.ms_shift, shared.pan_match) if shared is not None else pansharpen_fit(pan, ms_ortho)
        )
        sharp, _ = pansharpen(pan, ms_ortho, shift=shift, match=match)
        info["ms_registration_shift_px"] = list(shift)
        info["pan_match"] = list(match)
        info["pansharpened_bands"] = int(sharp.shape[0])
        bands += list(sharp)
    return np.stack(bands), ortho_band_tags(len(bands)), info


def ortho_band_tags(count: int) -> list[dict[str, str]]:
    """Band tags of an ortho of ``count`` bands: the PAN, then the pansharpened MS bands."""
    return [{"NAME": "pan"}] + [{"NAME": f"ms{b}_pansharpened"} for b in range(1, count)]


def ortho_tags(info: dict[str, Any], datum: str) -> dict[str, str]:
    """Dataset tags of the ortho product."""
    return {"SAT2LOD_PRODUCT": "ortho", "SAT2LOD_ORTHO_INFO": str(info), "HEIGHTS_USED": datum}


def ortho_from_files(
    dsm: str | os.PathLike[str],
    scenes: str | os.PathLike[str],
    ortho: str | os.PathLike[str],
    windowed: bool = True,
    shared: OrthoGlobals | None = None,
    **params: Any,
) -> dict:
    """The true ortho of the whole AOI at once: DSM mosaic + scene sheet -> true ortho COG. The workflow makes
    it per tile (:mod:`sat2lod.ortho_tiled`); this is the reference the tiles are tested equal to.

    ``params``: fields of :class:`OrthoParams` (config section ``ortho``); an unknown name is an error.
    ``shared``: the AOI-wide quantities (:class:`OrthoGlobals`, as rule ``ortho_gains`` estimates them); None =
    estimated on the whole AOI here.

    Each view (and the MS image) is read only over the window that sees the DSM grid (:func:`view_window`), not
    whole: a scene of 40k x 40k pixels over a small AOI costs the AOI's pixels. The output is the same to the
    bit as reading the views whole (``windowed=False``, kept for the comparison).

    Output: float32 COG on the DSM grid, NaN nodata; band 1 = PAN true ortho, bands 2.. = pansharpened MS bands
    when the most nadir view has an ``ms_image`` (+ optional ``ms_rpc``) in the scene sheet. Tags: per-view
    incidence, occluded and used fractions, ``SAT2LOD_PRODUCT=ortho``.
    """
    from sat2lod.io.raster import write_raster

    prm = OrthoParams(**params)
    t0 = time.perf_counter()
    heights, transform, crs, datum = load_dsm(dsm, prm)
    views, ms = load_views(scenes, heights, transform, crs, prm, windowed)
    bands, band_tags, info = ortho_bands(heights, transform, crs, views, ms, prm, shared)
    write_raster(
        ortho,
        bands,
        transform,
        crs,
        nodata=float("nan"),
        tags=ortho_tags(info, datum),
        band_tags=band_tags,
        cog=True,
    )
    info["seconds"] = time.perf_counter() - t0
    log.info("true ortho %s written: %s", ortho, info)
    return info
