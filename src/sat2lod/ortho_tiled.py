"""True ortho per tile of the tiling checkpoint's grid, with bounded memory (issue 16).

Three rules:

- ``ortho_gains`` (:func:`ortho_globals_from_files`): what every tile must share, estimated once, or the mosaic
  shows seams (:class:`sat2lod.ortho.OrthoGlobals`): each view's line of sight (the occlusion rays and the views'
  priority), the AOI's height range, each view's radiometric gain onto the most nadir view, the MS registration
  shift and the PAN match of the pansharpening. The lines of sight, gains, shift and match are those the
  whole-AOI ortho (:func:`sat2lod.ortho.ortho_from_files`) estimates, computed on a block of
  ``ortho.gains_window_m`` at the AOI centre (the whole AOI when smaller: then the same numbers, to the bit).
  The DSM is streamed once in row strips for its height range and the highest height of each
  ``ZMAX_BLOCK_CELLS`` block (the occlusion halo below).
- ``ortho_tile`` (:func:`ortho_tile_from_files`): reads the DSM over the tile core plus a halo, each view and
  the MS image only over the view window that sees it (:func:`sat2lod.ortho.view_window`), computes the true
  ortho there with the shared quantities and writes the core.
- ``ortho`` (:func:`assemble_ortho`): pastes the cores, streamed (:func:`sat2lod.io.raster.paste_tiles`), with
  the tags of the whole-AOI ortho (the per-view fractions summed from the tiles' cell counts).

The halo, per tile and per side, makes the occlusion test of every core cell the whole-AOI one exactly. A view's
ray from a core cell at height z climbs ``t`` metres while moving ``(drow, dcol) * t`` cells; a cell can hide it
only where its surface s > z + t, so the ray meets its occluder within ``|drow| (s - z) + 1`` rows (and as
many columns) of the cell, on the side the ray goes. With ``zmin`` the lowest height of the core and ``M`` the
highest of a block of the DSM, a block can hold an occluder only when it lies within ``|drow| (M - zmin) + 1``
rows and ``|dcol| (M - zmin) + 1`` columns of the core on that side; the halo on that side reaches the farthest
such occluder. Rays that leave the window then find nothing beyond it in the whole AOI either, and the rays stop
at the AOI's highest height in both (``zmax`` is shared). This is ``(zmax - zmin) * tan(incidence)`` where the
tallest surface around the tile needs it, and less on flat ground far from towers. The halo also covers the
pansharpening shift (``ndimage.shift`` reads ``|shift| + 1`` cells away).

The nearest-height filling of DSM holes (``ortho.fill_dsm_holes``) sees only the window: the halo also reaches,
on each side, as far as the core's holes take their heights (:func:`fill_halo`, at most ``FILL_HALO_MAX_PX``);
a core cell in a wider hole at a tile edge can take another height than in the whole AOI. Cells of the DSM grid
outside every kept tile are nodata (the whole-AOI ortho fills them when the DSM there is filled). Elsewhere the
tiles equal the whole-AOI ortho with the same shared quantities up to float rounding (the cell centres of a
window are computed from its own origin: positions differ by ~1e-10 m).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any

import numpy as np
import rasterio.windows

from sat2lod.ortho import (
    OrthoGlobals,
    OrthoParams,
    load_dsm,
    load_views,
    ortho_band_tags,
    ortho_bands,
    ortho_counts,
    ortho_info,
    ortho_tags,
)

log = logging.getLogger(__name__)

#: side (cells) of the DSM blocks whose highest height rule ortho_gains records (the occlusion halo's map)
ZMAX_BLOCK_CELLS = 128
#: widest reach (cells) beyond a tile core of the filling of its DSM holes (:func:`fill_halo`)
FILL_HALO_MAX_PX = 64
#: tag of a tile's ortho with its cell counts (:func:`sat2lod.ortho.ortho_counts`), summed by rule ortho
COUNTS_TAG = "SAT2LOD_ORTHO_TILE_COUNTS"


def block_zmax(
    dsm: str | os.PathLike[str], fill_holes: bool, block: int = ZMAX_BLOCK_CELLS
) -> tuple[np.ndarray, float, float]:
    """The highest DSM height of each ``block`` x ``block`` cell block, streamed in strips of ``block`` rows:
    (ceil(rows / block), ceil(cols / block)) float64, -inf where a block has no height; and the DSM's lowest and
    highest heights (m).

    With ``fill_holes`` a block with nodata takes the highest of its 3 x 3 neighbourhood (its holes are
    filled with the nearest heights, which lie there unless the hole is wider than a block).

    Raises:
        ValueError: the DSM has no valid cell, naming the file.
    """
    from scipy import ndimage

    from sat2lod.io.raster import raster_header, read_raster

    rows, cols = raster_header(dsm).shape
    nb_r, nb_c = -(-rows // block), -(-cols // block)
    zmax = np.full((nb_r, nb_c), -np.inf)
    holes = np.zeros((nb_r, nb_c), bool)
    lo, hi = np.inf, -np.inf
    for i, r in enumerate(range(0, rows, block)):
        win = rasterio.windows.Window(0, r, cols, min(block, rows - r))
        a = read_raster(dsm, bands=1, masked_to_nan=True, window=win).array.astype(np.float64)
        pad = np.full((a.shape[0], nb_c * block), np.nan)
        pad[:, :cols] = a
        pad[:, cols:] = -np.inf  # beyond the grid: no hole, no height
        strip = pad.reshape(a.shape[0], nb_c, block)
        ok = np.isfinite(strip)
        zmax[i] = np.where(ok, strip, -np.inf).max(axis=(0, 2))
        holes[i] = np.isnan(strip).any(axis=(0, 2))
        if ok.any():
            lo, hi = min(lo, float(np.nanmin(a))), max(hi, float(np.nanmax(a)))
    if not np.isfinite(hi):
        raise ValueError(f"{dsm}: the DSM has no valid cell: nothing to orthorectify")
    if fill_holes:
        zmax = np.where(holes, ndimage.maximum_filter(zmax, size=3, mode="nearest"), zmax)
    return zmax, lo, hi


def ortho_globals_from_files(
    dsm: str | os.PathLike[str],
    scenes: str | os.PathLike[str],
    out: str | os.PathLike[str],
    **params: Any,
) -> dict[str, Any]:
    """Rule ``ortho_gains``: the quantities every tile of the AOI's ortho shares (see the module docstring),
    to ``out`` (JSON: ``shared`` = :meth:`OrthoGlobals.to_json`, ``zmax_blocks`` = the block maxima, None where
    a block has no height, and their ``block_cells``). ``params``: fields of :class:`OrthoParams`."""
    from sat2lod.io.jsonio import write_json
    from sat2lod.io.raster import raster_header

    prm = OrthoParams(**params)
    t0 = time.perf_counter()
    zmax_blocks, zmin, zmax = block_zmax(dsm, prm.fill_dsm_holes)
    head = raster_header(dsm)
    side = max(1, round(prm.gains_window_m / abs(head.transform.a)))
    rows, cols = head.shape
    # the block centred on the AOI's centre cell (rows // 2, cols // 2), the whole AOI when smaller
    r0, c0 = max(0, rows // 2 - side // 2), max(0, cols // 2 - side // 2)
    win = rasterio.windows.Window(c0, r0, min(side, cols - c0), min(side, rows - r0))
    heights, transform, crs, _ = load_dsm(dsm, prm, window=win)
    if np.isfinite(heights).mean() < 0.01:
        raise ValueError(
            f"{dsm}: under 1 % of the central {win.height} x {win.width} cell block has a height, too few to estimate "
            "the views' gains; set ortho.gains_window_m larger (the block then covers more of the AOI)"
        )
    views, ms = load_views(scenes, heights, transform, crs, prm)
    _, _, info = ortho_bands(heights, transform, crs, views, ms, prm)
    shift, match = info.get("ms_registration_shift_px"), info.get("pan_match")
    shared = OrthoGlobals(
        los=tuple((float(a), float(b)) for a, b in info["los"]),
        zmin=zmin,
        zmax=zmax,
        gains=None if info["gains"] is None else tuple((float(a), float(b)) for a, b in info["gains"]),
        ms_shift=None if shift is None else (float(shift[0]), float(shift[1])),
        pan_match=None if match is None else (float(match[0]), float(match[1])),
    )
    doc = {
        "shared": shared.to_json(),
        "block": [int(win.row_off), int(win.col_off), int(win.height), int(win.width)],
        "zmax_blocks": {
            "block_cells": ZMAX_BLOCK_CELLS,
            "max": [[float(v) if np.isfinite(v) else None for v in row] for row in zmax_blocks],
        },
    }
    write_json(out, doc)
    log.info(
        "ortho shared quantities (block %s, %.1f s): %s",
        doc["block"],
        time.perf_counter() - t0,
        doc["shared"],
    )
    return doc


def read_ortho_globals(path: str | os.PathLike[str]) -> tuple[OrthoGlobals, np.ndarray, int]:
    """The shared quantities, block maxima ((nb_r, nb_c) float64, -inf = no height) and block side of rule
    ``ortho_gains``'s JSON.

    Raises:
        ValueError: not such a file, naming it.
    """
    from sat2lod.io.jsonio import read_json

    doc = read_json(path)
    try:
        shared = OrthoGlobals.from_json(doc["shared"])
        zb = doc["zmax_blocks"]
        m = np.array([[-np.inf if v is None else v for v in row] for row in zb["max"]], np.float64)
        return shared, m.reshape(len(zb["max"]), -1), int(zb["block_cells"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not the output of rule ortho_gains ({exc}); rerun it") from exc


def occlusion_halo(
    core: tuple[int, int, int, int],
    zmin_core: float,
    steps_px: list[tuple[float, float]],
    zmax_blocks: np.ndarray,
    block: int,
    shape: tuple[int, int],
) -> tuple[int, int, int, int]:
    """Cells (top, bottom, left, right) to read around a tile core so that every occlusion ray of its cells
    meets its occluder inside the window (see the module docstring).

    Args:
        core: (row0, row1, col0, col1) of the core in the DSM grid; zmin_core: its lowest height (m).
        steps_px: per view, (drow, dcol) cells the ray moves per metre it climbs.
        zmax_blocks: highest height of each ``block`` x ``block`` block of the grid (-inf: none); shape: grid's.
    """
    r0, r1, c0, c1 = core
    nb_r, nb_c = zmax_blocks.shape
    br0 = np.arange(nb_r)[:, None] * block
    br1 = np.minimum(br0 + block, shape[0])
    bc0 = np.arange(nb_c)[None, :] * block
    bc1 = np.minimum(bc0 + block, shape[1])
    rise = np.maximum(zmax_blocks - zmin_core, 0.0)  # -inf blocks: 0, reach 1 cell (inside a 1-cell halo)
    halo = [0, 0, 0, 0]
    for drow, dcol in steps_px:
        reach_r = np.abs(drow) * rise + 1.0
        reach_c = np.abs(dcol) * rise + 1.0
        # distance from the core to the block along the ray's direction (inf: the ray never goes there)
        dist_r = _directed_distance(drow, r0, r1, br0, br1)
        dist_c = _directed_distance(dcol, c0, c1, bc0, bc1)
        hit = (dist_r <= reach_r) & (dist_c <= reach_c) & np.isfinite(zmax_blocks)
        if not hit.any():
            continue
        need_r = int(math.ceil(float(reach_r[hit].max())))
        need_c = int(math.ceil(float(reach_c[hit].max())))
        if drow < 0:
            halo[0] = max(halo[0], need_r)
        elif drow > 0:
            halo[1] = max(halo[1], need_r)
        if dcol < 0:
            halo[2] = max(halo[2], need_c)
        elif dcol > 0:
            halo[3] = max(halo[3], need_c)
    return halo[0], halo[1], halo[2], halo[3]


def _halo(
    prm: OrthoParams,
    glob: OrthoGlobals,
    core: tuple[int, int, int, int],
    zmin: float,
    zmax_blocks: np.ndarray,
    block: int,
    transform: Any,
    shape: tuple[int, int],
) -> list[int]:
    """Cells (top, bottom, left, right) to read around a core: the occlusion halo (:func:`occlusion_halo`) and the
    pansharpening shift's reach (``ndimage.shift`` reads ``|shift| + 1`` cells away)."""
    halo = [0, 0, 0, 0]
    if prm.detect_occlusions:
        # map metres per metre of height -> grid cells per metre (rows go down when e < 0), as true_ortho
        steps = [(dy / transform.e, dx / transform.a) for dx, dy in glob.los]
        halo = list(occlusion_halo(core, zmin, steps, zmax_blocks, block, shape))
    if glob.ms_shift is not None and prm.pansharpen:
        margin = int(math.ceil(max(abs(glob.ms_shift[0]), abs(glob.ms_shift[1])))) + 2
        halo = [max(h, margin) for h in halo]
    return halo


def fill_halo(core: np.ndarray, max_px: int = FILL_HALO_MAX_PX) -> tuple[int, int, int, int]:
    """Cells (top, bottom, left, right) to read around a tile core so that the nearest-height filling of its
    holes sees every cell the whole AOI's filling could take: a hole cell whose nearest valid cell of the core is
    ``d`` cells away takes a height within ``d``, so the window must reach ``d`` beyond the cell; at most
    ``max_px`` per side (a wider hole at a tile edge can take another height than in the whole AOI).

    Args:
        core: (H, W) heights of the core, NaN = hole.
    """
    from scipy import ndimage

    holes = ~np.isfinite(core)
    if not holes.any():
        return 0, 0, 0, 0
    if holes.all():
        return max_px, max_px, max_px, max_px
    d = ndimage.distance_transform_edt(holes)
    rows, cols = np.nonzero(holes)
    dd = d[holes]
    h, w = core.shape
    need = [dd - rows, dd - (h - 1 - rows), dd - cols, dd - (w - 1 - cols)]
    top, bottom, left, right = (min(max_px, max(0, math.ceil(float(n.max())))) for n in need)
    return top, bottom, left, right


def _directed_distance(step: float, a0: int, a1: int, b0: np.ndarray, b1: np.ndarray) -> np.ndarray:
    """Cells from the core span [a0, a1) to the block spans [b0, b1) in the direction of ``step``'s sign: 0 where
    they overlap, inf for blocks behind (or beside, when ``step`` is 0)."""
    overlap = (b0 < a1) & (b1 > a0)
    if step > 0:
        d = np.where(b0 >= a1, b0 - (a1 - 1), np.inf)
    elif step < 0:
        d = np.where(b1 <= a0, a0 - (b1 - 1), np.inf)
    else:
        d = np.full(np.broadcast(b0, b1).shape, np.inf)
    return np.where(overlap, 0.0, d).astype(np.float64)


def ortho_tile_from_files(
    dsm: str | os.PathLike[str],
    scenes: str | os.PathLike[str],
    shared: str | os.PathLike[str],
    tiles: str | os.PathLike[str],
    tile: str,
    out: str | os.PathLike[str],
    **params: Any,
) -> dict[str, Any]:
    """Rule ``ortho_tile``: the true ortho of one tile's core (see the module docstring).

    Args:
        dsm: the AOI's DSM mosaic, read over the tile + halo; scenes: the scene sheet.
        shared: JSON of rule ``ortho_gains``; tiles: the tiling checkpoint's grid; tile: the tile id.
        out: the core's ortho (bands and band names of the AOI's ortho, float32, NaN nodata), its cell counts
            in tag ``SAT2LOD_ORTHO_TILE_COUNTS``.
        **params: fields of :class:`OrthoParams` (config section ``ortho``).
    Returns:
        Summary (windows, halo, seconds, counts).
    """
    from sat2lod.grid import tile_windows
    from sat2lod.io.raster import raster_header, read_raster, write_raster
    from sat2lod.io.sensor_image import read_tile

    prm = OrthoParams(**params)
    t0 = time.perf_counter()
    glob, zmax_blocks, block = read_ortho_globals(shared)
    head = raster_header(dsm)
    # the core's cells (the halo is sized below, per side, from the block maxima)
    (r0, r1, c0, c1), _ = tile_windows(read_tile(tiles, tile)["core"], head.transform, head.shape, 0)
    z = read_raster(
        dsm, bands=1, masked_to_nan=True, window=rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)
    ).array
    # the lowest height of the core; a filled hole may take a lower one from beyond the core: then the window is
    # read again with the halo of the filled core's lowest height (once is enough unless the hole is wider than
    # the halo; the AOI's lowest height bounds it all)
    zmin = float(np.nanmin(z)) if np.isfinite(z).any() else glob.zmin
    fill = fill_halo(z) if prm.fill_dsm_holes else (0, 0, 0, 0)
    for attempt in range(3):
        halo = _halo(
            prm,
            glob,
            (r0, r1, c0, c1),
            zmin if attempt < 2 else glob.zmin,
            zmax_blocks,
            block,
            head.transform,
            head.shape,
        )
        halo = [max(h, f) for h, f in zip(halo, fill, strict=True)]
        ra, rb = max(0, r0 - halo[0]), min(head.shape[0], r1 + halo[1])
        ca, cb = max(0, c0 - halo[2]), min(head.shape[1], c1 + halo[3])
        win = rasterio.windows.Window(ca, ra, cb - ca, rb - ra)
        heights, transform, crs, datum = load_dsm(dsm, prm, window=win)
        core_h = heights[r0 - ra : r1 - ra, c0 - ca : c1 - ca]
        if not np.isfinite(core_h).any() or float(np.nanmin(core_h)) >= zmin:
            break
        zmin = float(np.nanmin(core_h))
    cut = (slice(r0 - ra, r1 - ra), slice(c0 - ca, c1 - ca))
    if np.isfinite(heights).any():
        views, ms = load_views(scenes, heights, transform, crs, prm)
        bands, band_tags, info = ortho_bands(heights, transform, crs, views, ms, prm, shared=glob, core=cut)
    else:  # no height in reach (nothing filled from): nodata, as the whole-AOI ortho without holes filled
        count = _band_count(scenes, prm)
        bands, band_tags = np.full((count, *heights.shape), np.nan, np.float32), ortho_band_tags(count)
        info = {
            "counts": ortho_counts(
                np.zeros((0,), bool), [np.zeros((0,), bool)] * len(glob.los), np.zeros((0,))
            )
        }
    t_core = rasterio.windows.transform(rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0), head.transform)
    tags = {**ortho_tags({}, datum), COUNTS_TAG: json.dumps(info["counts"])}
    del tags["SAT2LOD_ORTHO_INFO"]  # the AOI's is made by rule ortho from the tiles' counts
    write_raster(
        out, bands[:, cut[0], cut[1]], t_core, crs, nodata=float("nan"), tags=tags, band_tags=band_tags
    )
    summary = {
        "tile": tile,
        "core_window": [r0, r1, c0, c1],
        "read_window": [ra, rb, ca, cb],
        "halo_px": halo,
        "zmin_core_m": zmin,
        "seconds": round(time.perf_counter() - t0, 2),
        "counts": info["counts"],
    }
    log.info("ortho tile %s: %s", tile, summary)
    return summary


def _band_count(scenes: str | os.PathLike[str], prm: OrthoParams) -> int:
    """Bands of the ortho: the PAN, and the MS bands of the first view with an MS image when pansharpening."""
    from sat2lod.io.raster import raster_shape
    from sat2lod.io.scene_sheet import read_scene_sheet

    for v in read_scene_sheet(scenes)["views"]:
        if v.get("ms_image") and prm.pansharpen:
            return 1 + raster_shape(v["ms_image"])[0]
    return 1


def assemble_ortho(
    tiles: list[str | os.PathLike[str]],
    dsm: str | os.PathLike[str],
    shared: str | os.PathLike[str],
    scenes: str | os.PathLike[str],
    out: str | os.PathLike[str],
) -> dict[str, Any]:
    """Rule ``ortho``: the tiles' cores pasted, streamed, into the AOI's ortho COG on the DSM grid (cells of no
    tile: nodata), with the whole-AOI ortho's bands, band names and tags (its ``SAT2LOD_ORTHO_INFO`` from the
    tiles' summed cell counts and the shared quantities)."""
    from sat2lod.io.raster import paste_tiles, raster_header
    from sat2lod.io.scene_sheet import read_scene_sheet

    glob, _, _ = read_ortho_globals(shared)
    head = raster_header(dsm)
    heads = [raster_header(p) for p in tiles]
    if not heads:
        raise ValueError("no ortho tile to assemble: the tile grid is empty (check the AOI and the views)")
    counts: dict[str, Any] = {}
    for p, h in zip(tiles, heads, strict=True):
        if COUNTS_TAG not in h.tags or h.count != heads[0].count:
            raise ValueError(
                f"{p}: not an ortho_tile output of this run (bands, {COUNTS_TAG}); rerun its job"
            )
        c = json.loads(h.tags[COUNTS_TAG])
        counts = c if not counts else {k: _add(counts[k], c[k]) for k in counts}
    sheet = read_scene_sheet(scenes)
    names = [str(v.get("id", f"view{i}")) for i, v in enumerate(sheet["views"])]
    tan_inc = [float(np.hypot(dx, dy)) for dx, dy in glob.los]
    info = ortho_info(names, tan_inc, counts, abs(head.transform.a))
    info["los"] = [list(p) for p in glob.los]
    info["gains"] = None if glob.gains is None else [list(g) for g in glob.gains]
    if heads[0].count > 1 and glob.ms_shift is not None and glob.pan_match is not None:
        info["ms_registration_shift_px"] = list(glob.ms_shift)
        info["pan_match"] = list(glob.pan_match)
        info["pansharpened_bands"] = heads[0].count - 1
    datum = heads[0].tags.get("HEIGHTS_USED", "")
    paste_tiles(
        tiles,
        out,
        head.transform,
        head.shape,
        head.crs,
        np.float32,
        float("nan"),
        tags=ortho_tags(info, datum),
        band_tags=ortho_band_tags(heads[0].count),
    )
    log.info("ortho %s assembled from %d tiles: %s", out, len(tiles), info)
    return info


def _add(a: Any, b: Any) -> Any:
    """Element-wise sum of two counts (ints or lists of ints)."""
    return [x + y for x, y in zip(a, b, strict=True)] if isinstance(a, list) else a + b
