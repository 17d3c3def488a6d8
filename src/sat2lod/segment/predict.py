"""Rule ``segment``: ortho + nDSM (+ checkpoint) -> building probability and mask COGs."""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sat2lod.schema import defaults

if TYPE_CHECKING:
    from sat2lod.segment.completion import CompletionParams
    from sat2lod.segment.plausibility import PlausibilityParams

log = logging.getLogger(__name__)
_SEG = defaults("segmentation")  # defaults of config section segmentation


@dataclass(frozen=True)
class SegmentParams:
    """Parameters of rule ``segment``: config section ``segmentation`` without ``checkpoint`` (an input of the
    rule) and ``train`` (rule train_segmenter's); one field per key, defaults from the schema (see
    config/schema.yaml for each). The rule passes the section whole but for those two.

    Attributes:
        method: ``unet`` or ``ndsm_threshold`` (no network: nDSM height + roof smoothness).
        torch_threads: torch CPU threads (a fixed number, not the job's cores: the probabilities differ in the
            last bits between thread counts); device: ``cpu``, ``cuda`` or ``auto``.
        tile_px, overlap_px, batch_size: tiled inference (see :func:`sat2lod.segment.infer.predict_tiled`).
        threshold: probability threshold of the mask; min_area_m2: smaller components are dropped.
        min_height_m, max_roughness_m: parameters of the ``ndsm_threshold`` method.
        ndvi_bands, max_ndvi: when the ortho carries pansharpened MS bands, the probability is multiplied by a
            gate that is ~0 where the NDVI of MS bands ``ndvi_bands`` (red, NIR; 1-based) exceeds ``max_ndvi``
            (vegetation, :mod:`sat2lod.segment.vegetation`).
        plausibility: section ``segmentation.plausibility``: the geometric filter of the mask's components
            (walls all round, :mod:`sat2lod.segment.plausibility`); ``{"enabled": False}`` turns it off.
        roof_completion: section ``segmentation.roof_completion``: the raised, planar cells next to each kept
            component join it (:mod:`sat2lod.segment.completion`); ``{"enabled": False}`` turns it off.
        guided_filter: section ``segmentation.guided_filter``: the U-Net probability refined along the ortho's
            edges (:mod:`sat2lod.segment.guided`); ``{"radius_m": 0}`` turns it off.
        tile_halo_m: context read around each tile of rule ``segment_tile`` (:mod:`sat2lod.segment.tiled`).
    """

    method: str = _SEG["method"]
    torch_threads: int = _SEG["torch_threads"]
    device: str = _SEG["device"]
    tile_px: int = _SEG["tile_px"]
    overlap_px: int = _SEG["overlap_px"]
    batch_size: int = _SEG["batch_size"]
    threshold: float = _SEG["threshold"]
    min_area_m2: float = _SEG["min_area_m2"]
    min_height_m: float = _SEG["min_height_m"]
    max_roughness_m: float = _SEG["max_roughness_m"]
    ndvi_bands: tuple[int, int] | list[int] = tuple(_SEG["ndvi_bands"])
    max_ndvi: float = _SEG["max_ndvi"]
    plausibility: dict = field(default_factory=lambda: defaults("segmentation", "plausibility"))
    roof_completion: dict = field(default_factory=lambda: defaults("segmentation", "roof_completion"))
    guided_filter: dict = field(default_factory=lambda: defaults("segmentation", "guided_filter"))
    tile_halo_m: float = _SEG["tile_halo_m"]


def segment_from_files(
    ortho: str | os.PathLike[str],
    ndsm: str | os.PathLike[str],
    prob: str | os.PathLike[str],
    mask: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | None = None,
    dsm: str | os.PathLike[str] | None = None,
    **params: Any,
) -> dict:
    """Segment buildings on the ortho grid.

    The U-Net runs at its training GSD (checkpoint ``data.gsd_m``): an ortho grid more than 10 % finer or
    coarser is resampled for the network and the probability back onto the grid, as in ``sat2lod segment``
    (:func:`sat2lod.segment.infer.unet_probability`); the mask's tags then say so (``MODEL_GSD_M``).

    Args:
        ortho: true ortho COG (band 1 = PAN); ndsm: nDSM COG on the same grid (m, NaN nodata).
        prob, mask: outputs: float32 probability (NaN nodata) and uint8 mask (1 building, 0 not, 255 nodata).
        checkpoint: U-Net checkpoint; None = the shipped default model (:mod:`sat2lod.segment.default_model`).
        dsm: DSM COG on the same grid (m, NaN nodata), the surface of the plausibility filter's walls (a hillside
            above a component counts against it); None = the nDSM's.
        **params: fields of :class:`SegmentParams` (config section ``segmentation``); an unknown name is an error.
    Returns:
        Summary (seconds, building fraction, megapixels per second).
    """
    from sat2lod.grid import check_same_grid
    from sat2lod.io.raster import read_raster, write_raster
    from sat2lod.segment.plausibility import PlausibilityParams

    prm = SegmentParams(**params)
    plaus = PlausibilityParams(**prm.plausibility)  # checked before the network runs
    t0 = time.perf_counter()
    o = read_raster(ortho, masked_to_nan=True)
    n = read_raster(ndsm, bands=1, masked_to_nan=True)
    check_same_grid(o, n, ortho, ndsm, fix="both must come from the same DSM mosaic")
    dsm_a = None
    if dsm is not None and plaus.enabled:
        d = read_raster(dsm, bands=1, masked_to_nan=True)
        check_same_grid(o, d, ortho, dsm, fix="the ortho is made on the DSM mosaic's grid")
        dsm_a = d.array.astype(np.float32)
    res = abs(o.transform.a)
    ortho_all = o.array.astype(np.float32)
    ndsm_a = n.array.astype(np.float32)
    p, valid, tags = building_probability(ortho_all, ndsm_a, res, checkpoint, prm)
    infer_s = time.perf_counter() - t0
    m, plaus_summary = building_mask(p, ndsm_a, valid, res, prm, dsm_a)
    prob_tags, mask_tags = product_tags(tags, prm)
    write_raster(
        prob, p.astype(np.float32), o.transform, o.crs, nodata=float("nan"), tags=prob_tags, cog=True
    )
    write_raster(mask, m, o.transform, o.crs, nodata=255, tags=mask_tags, cog=True)
    mp = ndsm_a.size / 1e6
    summary = {
        "seconds": time.perf_counter() - t0,
        "megapixels": mp,
        "mp_per_s": mp / max(infer_s, 1e-9),
        "building_fraction": float(np.mean(m[m != 255] == 1)) if (m != 255).any() else math.nan,
        "plausibility": plaus_summary,
    }
    log.info("segmentation (%s) written to %s, %s: %s", prm.method, prob, mask, summary)
    return summary


def building_probability(
    ortho: np.ndarray,
    ndsm: np.ndarray,
    resolution_m: float,
    checkpoint: str | os.PathLike[str] | None,
    prm: SegmentParams,
    ortho_range: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Building probability of an ortho + nDSM (the whole AOI, or a tile with its halo): the network (or the
    nDSM-threshold fallback), the U-Net's refined along the ortho's edges (:mod:`sat2lod.segment.guided`), then
    the vegetation gate when the ortho carries MS bands.

    Args:
        ortho: (H, W) PAN or (B, H, W) PAN + pansharpened MS ortho, float32, NaN = nodata.
        ndsm: (H, W) height above terrain (m), NaN = nodata, on the same grid; resolution_m: its cell (m).
        checkpoint: U-Net checkpoint; None = the shipped default model.
        prm: the segmentation parameters.
        ortho_range: radiometric (low, high) of the network input; None = the 2-98 % of ``ortho`` (a tile
            passes the whole AOI's, :func:`sat2lod.segment.features.streamed_range`).
    Returns:
        (H, W) float32 probability (NaN where neither ortho nor nDSM is valid), (H, W) bool valid cells, and the
        products' tags (method, model).
    """
    from sat2lod.segment.infer import ndsm_threshold_probability
    from sat2lod.segment.vegetation import gate_probability, ortho_ndvi

    ortho_a = ortho[0] if ortho.ndim == 3 else ortho
    valid = np.isfinite(ortho_a) | np.isfinite(ndsm)
    if prm.method == "unet":
        from sat2lod.io.digest import sha256_file
        from sat2lod.segment.guided import guided_tags, refine_probability
        from sat2lod.segment.infer import load_segmenter, model_gsd_m, unet_probability
        from sat2lod.segment.shipped import DEFAULT_MODEL_VERSION

        # the tag names the model, not where this install keeps it (products must not depend on the install)
        model_id = os.fspath(checkpoint) if checkpoint else f"sat2lod default model v{DEFAULT_MODEL_VERSION}"
        model, payload, path, device = load_segmenter(checkpoint, prm.device, prm.torch_threads)
        model_gsd = model_gsd_m(payload)
        p, resampled = unet_probability(
            model,
            ortho_a,
            ndsm,
            resolution_m,
            model_gsd,
            prm.tile_px,
            prm.overlap_px,
            prm.batch_size,
            device,
            ortho_range,
        )
        p = refine_probability(p, ortho_a, resolution_m, ortho_range, prm.guided_filter)
        p[~valid] = np.nan
        tags = {
            "SAT2LOD_METHOD": "unet",
            "CHECKPOINT": model_id,
            "CHECKPOINT_SHA256": sha256_file(path),
            "CHECKPOINT_VAL_IOU": str(payload.get("metrics", {}).get("val_iou_mean")),
        }
        tags |= guided_tags(prm.guided_filter, resolution_m)
        if resampled:  # only then, so products on the model's grid keep their tags
            tags |= {"MODEL_GSD_M": str(model_gsd), "RESAMPLED_TO_MODEL_GSD": "bilinear"}
            log.info(
                "ortho grid %.3g m, model trained at %.3g m: resampled for the network",
                resolution_m,
                model_gsd,
            )
    elif prm.method == "ndsm_threshold":
        p = ndsm_threshold_probability(ndsm, resolution_m, prm.min_height_m, prm.max_roughness_m)
        tags = {"SAT2LOD_METHOD": "ndsm_threshold", "MIN_HEIGHT_M": str(prm.min_height_m)}
    else:
        raise ValueError(f"segmentation.method must be 'unet' or 'ndsm_threshold', got {prm.method!r}")
    veg = ortho_ndvi(ortho, prm.ndvi_bands)
    if veg is not None:
        p, _ = gate_probability(p, veg, prm.max_ndvi, valid)
        tags = {**tags, "NDVI_BANDS": str(list(prm.ndvi_bands)), "MAX_NDVI": str(prm.max_ndvi)}
    return p, valid, tags


def building_mask(
    prob: np.ndarray,
    ndsm: np.ndarray,
    valid: np.ndarray,
    resolution_m: float,
    prm: SegmentParams,
    dsm: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The mask post-processing, one call for rule ``segment`` on a whole AOI and for each ``segment_tile``
    job on its tile + halo: threshold, opening, components under ``min_area_m2`` dropped
    (:func:`sat2lod.segment.infer.probability_to_mask`), then the plausibility filter of the components
    (walls all round, :func:`sat2lod.segment.plausibility.plausibility_filter`), then the completion of each
    kept component over its roof (:func:`sat2lod.segment.completion.complete_roofs`). Every step is local to a
    component and a ring around it (47 m with the roof completion's defaults: the middle of a wide roof), so a
    tile's halo (48 m by default) wider than the components that cross its edge gives the untiled mask on the
    tile.

    Args:
        prob: (H, W) probability, NaN = nodata; ndsm: (H, W) nDSM (m) on the same grid, for per-component
            filters on heights; valid: (H, W) bool valid cells; resolution_m: cell (m).
        dsm: (H, W) DSM (m) on the same grid, the surface the walls are measured on; None = the nDSM.
    Returns:
        (H, W) uint8 mask (1 building, 0 not, 255 nodata), and the plausibility filter's summary with the
        completion's (``roof_completion``).
    """
    from sat2lod.segment.infer import probability_to_mask

    m = probability_to_mask(prob, prm.threshold, resolution_m, prm.min_area_m2, valid)
    m, summary, summary["roof_completion"] = component_steps(
        m, ndsm, prob, resolution_m, prm.plausibility, prm.roof_completion, dsm
    )
    return m, summary


def component_steps(
    mask: np.ndarray,
    ndsm: np.ndarray | None,
    prob: np.ndarray | None,
    resolution_m: float,
    plausibility: dict | PlausibilityParams | None = None,
    roof_completion: dict | CompletionParams | None = None,
    dsm: np.ndarray | None = None,
) -> tuple[np.ndarray, dict, dict]:
    """The steps on a thresholded mask's components, in their order, for rule ``segment``
    (:func:`building_mask`) and ``sat2lod segment`` (:func:`sat2lod.segment.image.segment_image`): the
    plausibility filter (:func:`sat2lod.segment.plausibility.plausibility_filter`), then the completion of each
    kept component over its roof (:func:`sat2lod.segment.completion.complete_roofs`).

    Args:
        mask: (H, W) uint8 mask (1 building, 0 not, 255 nodata); ndsm, prob, dsm: (H, W) on its grid (nDSM and DSM
            in m, NaN = nodata; None: the steps that need them leave the mask as it is).
        resolution_m: cell (m); plausibility, roof_completion: their config sections (dict, params or None =
            defaults).
    Returns:
        The mask after both steps, the plausibility filter's summary and the completion's.
    """
    from sat2lod.segment.completion import complete_roofs
    from sat2lod.segment.plausibility import plausibility_filter

    m, plaus = plausibility_filter(mask, ndsm, resolution_m, dsm, plausibility)
    m, completion = complete_roofs(m, ndsm, prob, resolution_m, roof_completion)
    return m, plaus, completion


def product_tags(tags: dict[str, str], prm: SegmentParams) -> tuple[dict[str, str], dict[str, str]]:
    """Tags of the probability and of the mask products (those of :func:`building_probability` plus each
    product's own), the same from rule ``segment`` untiled and from its tiles."""
    prob = {**tags, "SAT2LOD_PRODUCT": "building_probability"}
    mask = {
        **tags,
        "SAT2LOD_PRODUCT": "building_mask",
        "THRESHOLD": str(prm.threshold),
        "CLASSES": "0=not building, 1=building, 255=nodata",
        "PLAUSIBILITY": "on" if prm.plausibility.get("enabled", True) else "off",
        "ROOF_COMPLETION": "on" if prm.roof_completion.get("enabled", True) else "off",
    }
    return prob, mask
