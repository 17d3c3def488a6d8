"""Building segmentation per tile of the tiling checkpoint's grid, with bounded memory (issue 16).

Rule ``segment_range`` computes the radiometric range of the network input over the whole ortho, streamed
(:func:`sat2lod.segment.features.streamed_range`: the 2-98 % percentiles the untiled segmentation takes, to
the bit). Each ``segment_tile`` job then reads the ortho and nDSM over its tile core plus a halo of
``segmentation.tile_halo_m`` (windowed reads), computes the probability and the mask there with the same
functions as the untiled rule (:func:`sat2lod.segment.predict.building_probability`,
:func:`sat2lod.segment.predict.building_mask`) and writes its core only. Rule ``segment`` pastes the cores into
building_prob.tif and building_mask.tif (:func:`sat2lod.io.raster.paste_tiles`, streamed).

Why a tile equals the segmentation of the whole AOI: the network's output at a cell depends on the input
within its receptive half-width (44 px of 3 x 3 convolutions at depth 3, ~58 px with the pooling and
up-sampling offsets); the halo (96 px at 0.5 m by default) is wider, and the window starts on a multiple of
``2**depth`` cells of the AOI grid (the pooling phase of the whole image). With inference tiles
(``segmentation.tile_px``) at least as large as the window, the probability in the core is the network's on the
whole AOI at once, to the bit. The former single whole-AOI job blended overlapping inference tiles, whose
outer quarter of overlap (48 px at the default 192 px) is inside that receptive field: it differs from the
network on the whole AOI, and from the tiles, by up to ~0.005 in its blend bands (bench/segment_tiled.py). The
mask's steps (threshold, 3 x 3 opening, components under ``min_area_m2``) are local to a component, so the
mask is the whole-AOI one wherever the components crossing the tile edge reach less than the halo beyond it
(tests/test_segment_tiled.py). With the nDSM-threshold fallback, the hole filling of the nDSM reaches as far
as the holes are wide: cells near large nDSM holes at a tile edge can differ.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import rasterio.windows

from sat2lod.segment.predict import SegmentParams, building_mask, building_probability, product_tags

log = logging.getLogger(__name__)

#: cells of the ortho read at once by :func:`ortho_range_file` (rows of this many cells' worth of columns)
RANGE_BLOCK_CELLS = 1 << 20
#: pooling phase of the windows: a multiple of 2**depth of any shipped or trained network (depth <= 4)
WINDOW_ALIGN = 16


def ortho_range_file(ortho: str | os.PathLike[str], out: str | os.PathLike[str]) -> dict[str, Any]:
    """Rule ``segment_range``: the 2-98 % range of the ortho's band 1 (PAN), streamed, to ``out`` (JSON
    ``{"low", "high"}``); equal to the range the untiled segmentation takes from the whole ortho."""
    from sat2lod.io.jsonio import write_json
    from sat2lod.io.raster import raster_header, read_raster
    from sat2lod.segment.features import streamed_range

    rows, cols = raster_header(ortho).shape
    step = max(1, RANGE_BLOCK_CELLS // max(cols, 1))

    def blocks() -> Iterator[np.ndarray]:
        for r in range(0, rows, step):
            win = rasterio.windows.Window(0, r, cols, min(step, rows - r))
            yield read_raster(ortho, bands=1, masked_to_nan=True, window=win).array.astype(np.float32)

    lo, hi = streamed_range(blocks)
    result = {"low": lo, "high": hi}
    write_json(out, result)
    log.info("ortho radiometric range (2-98 %%) of %s: %s", ortho, result)
    return result


def segment_tile_from_files(
    ortho: str | os.PathLike[str],
    ndsm: str | os.PathLike[str],
    tiles: str | os.PathLike[str],
    tile: str,
    ortho_range: str | os.PathLike[str] | None,
    prob: str | os.PathLike[str],
    mask: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | None = None,
    dsm: str | os.PathLike[str] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Rule ``segment_tile``: building probability and mask of one tile's core (see the module docstring).

    Args:
        ortho, ndsm: the AOI's ortho and nDSM COGs (same grid), read over the tile + halo only.
        tiles: the tiling checkpoint's grid (``tiles.geojson``); tile: the tile id.
        ortho_range: JSON of rule ``segment_range`` (the AOI's radiometric range); None with the
            ``ndsm_threshold`` method (no network).
        prob, mask: outputs over the tile core: float32 probability (NaN nodata), uint8 mask (255 nodata), with
            the tags of the untiled products.
        checkpoint: U-Net checkpoint; None = the shipped default model.
        dsm: the AOI's DSM (same grid), the surface the plausibility filter measures walls on; None = the nDSM.
        **params: fields of :class:`SegmentParams` (config section ``segmentation``).
    Returns:
        Summary (windows, seconds, building cells, plausibility filter).
    """
    import time

    from sat2lod.grid import check_same_grid, tile_windows
    from sat2lod.io.jsonio import read_json
    from sat2lod.io.raster import raster_header, read_raster, write_raster
    from sat2lod.io.sensor_image import read_tile

    prm = SegmentParams(**params)
    t0 = time.perf_counter()
    head_o, head_n = raster_header(ortho), raster_header(ndsm)
    check_same_grid(head_o, head_n, ortho, ndsm, fix="both must come from the same DSM mosaic")
    res = abs(head_o.transform.a)
    halo_px = math.ceil(prm.tile_halo_m / res)
    core, (ra, rb, ca, cb) = tile_windows(
        read_tile(tiles, tile)["core"], head_o.transform, head_o.shape, halo_px, WINDOW_ALIGN
    )
    win = rasterio.windows.Window(ca, ra, cb - ca, rb - ra)
    o = read_raster(ortho, masked_to_nan=True, window=win)
    ortho_a = o.array.astype(np.float32)
    ndsm_a = read_raster(ndsm, bands=1, masked_to_nan=True, window=win).array.astype(np.float32)
    rng = None
    if prm.method == "unet":
        if ortho_range is None:
            raise ValueError(
                "segment_tile with the unet method needs the AOI's ortho range (rule segment_range)"
            )
        r = read_json(ortho_range)
        rng = (float(r["low"]), float(r["high"]))
    dsm_a = None
    if dsm is not None and prm.plausibility.get("enabled", True):
        d = read_raster(dsm, bands=1, masked_to_nan=True, window=win)
        check_same_grid(o, d, ortho, dsm, fix="the ortho is made on the DSM mosaic's grid")
        dsm_a = d.array.astype(np.float32)
    p, valid, tags = building_probability(ortho_a, ndsm_a, res, checkpoint, prm, rng)
    m, plaus = building_mask(p, ndsm_a, valid, res, prm, dsm_a)
    # the core, cut out of the window
    cut = (slice(core[0] - ra, core[1] - ra), slice(core[2] - ca, core[3] - ca))
    t_core = rasterio.windows.transform(
        rasterio.windows.Window(core[2], core[0], core[3] - core[2], core[1] - core[0]), head_o.transform
    )
    prob_tags, mask_tags = product_tags(tags, prm)
    write_raster(prob, p[cut].astype(np.float32), t_core, head_o.crs, nodata=float("nan"), tags=prob_tags)
    write_raster(mask, m[cut], t_core, head_o.crs, nodata=255, tags=mask_tags)
    summary = {
        "tile": tile,
        "core_window": core,
        "read_window": (ra, rb, ca, cb),
        "seconds": round(time.perf_counter() - t0, 2),
        "building_cells": int((m[cut] == 1).sum()),
        "plausibility": plaus,
    }
    log.info("segment tile %s: %s", tile, summary)
    return summary


def assemble_segmentation(
    probs: list[str | os.PathLike[str]],
    masks: list[str | os.PathLike[str]],
    ortho: str | os.PathLike[str],
    prob: str | os.PathLike[str],
    mask: str | os.PathLike[str],
) -> None:
    """Rule ``segment``: the tiles' probabilities and masks pasted, streamed, into the AOI's building_prob.tif
    and building_mask.tif on the ortho's grid (cells of no tile: nodata)."""
    from sat2lod.io.raster import paste_tiles, raster_header

    head = raster_header(ortho)
    paste_tiles(probs, prob, head.transform, head.shape, head.crs, np.float32, float("nan"))
    paste_tiles(masks, mask, head.transform, head.shape, head.crs, np.uint8, 255)
