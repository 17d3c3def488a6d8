"""Building mask of one image (``sat2lod segment``): any image, with or without an nDSM, georeferenced or not.

The chain's rule ``segment`` works on the true ortho and nDSM of a DSM mosaic
(:func:`sat2lod.segment.predict.segment_from_files`); this is the same network and post-processing for a single
image given by a user: a GeoTIFF, or a plain PNG / JPEG / TIFF without georeferencing.

- Radiometry: the network reads one panchromatic band. A multi-band image (RGB, RGBA) becomes panchromatic as
  the mean of its colour bands (an alpha band, a NIR band and any band past the third are dropped); a single
  band is taken as is; an ortho written by the chain (band 1 named ``pan``, then its pansharpened MS bands) gives
  its PAN band, as in the rule. The input is scaled by its own 2-98 % percentiles
  (:func:`sat2lod.segment.features.make_input`).
- Vegetation: when the red and near-infrared bands are known (``ndvi_bands``; for the chain's ortho the
  schema's ``segmentation.ndvi_bands``; else the file's colour interpretation ``red`` / ``nir``), the
  probability goes through the rule's NDVI gate (:func:`sat2lod.segment.vegetation.gate_probability`). A plain
  RGB / RGBA image has no gate.
- Height: with an nDSM (metres above terrain, same grid as the image) the network gets it; without one it runs
  image-only (nDSM channels absent), by default with the shipped image-only model
  (``sat2lod/data/segmenter_image_only.pt``, trained with the nDSM hidden in every patch: the chain's default
  model, which hides it in 15 % of its patches, labels next to nothing from an image alone).
  ``ndsm_threshold`` needs the nDSM.
- Scale: the network was trained at the ground sampling distance recorded in its checkpoint (``data.gsd_m``;
  0.5 m when absent). When the image's GSD is known (its geotransform, or ``gsd_m`` for an image without
  georeferencing) and differs from it by more than 10 %, the image (and nDSM) are resampled bilinearly to the
  training GSD, and the probability back onto the image grid (:func:`sat2lod.segment.infer.unet_probability`,
  the rule's path too). Without a known GSD the image is taken as it is.
- Threads: torch runs on ``threads`` CPU threads (``segmentation.torch_threads``, 1), as the rule, so the mask
  does not depend on the machine's cores.
- Output: uint8 mask of the image's size, 1 building, 0 not, 255 where the image (or nDSM, for
  ``ndsm_threshold``) is nodata (a PNG or JPEG has no nodata: only 0 and 1). A GeoTIFF output keeps the input's
  CRS and geotransform; ``.png`` outputs are plain 8-bit PNG.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.transform import Affine

from sat2lod.schema import defaults

log = logging.getLogger(__name__)

_SEG = defaults("segmentation")  # defaults of config section segmentation

METHODS = ("unet", "ndsm_threshold")


@dataclass
class ImageRaster:
    """A single-band image for segmentation, and its NDVI when the image has red and near-infrared bands.

    Attributes:
        pan: (H, W) float32 panchromatic radiometry (band mean of a colour image), NaN = nodata.
        transform, crs: georeferencing (``crs`` None and an identity transform for a plain PNG / JPEG).
        georeferenced: whether the file had a geotransform or CRS.
        bands_used: how many bands were averaged.
        ndvi: (H, W) float32 NDVI (:func:`sat2lod.segment.vegetation.ms_ndvi`), NaN = nodata; None without
            known red and NIR bands.
        ndvi_bands: the red and NIR bands' numbers among the multispectral bands (None without NDVI).
        layout: ``sat2lod_ortho`` (band 1 PAN, bands 2.. pansharpened MS, as the chain's ortho) or ``image``.
    """

    pan: np.ndarray
    transform: Affine
    crs: object | None
    georeferenced: bool
    bands_used: int
    ndvi: np.ndarray | None = None
    ndvi_bands: tuple[int, int] | None = None
    layout: str = "image"


def _is_sat2lod_ortho(band_tags: list[dict[str, str]], interp: list[str]) -> bool:
    """Band 1 is a PAN followed by MS bands: the chain's ortho (band 1 named ``pan``) or a PAN-interpreted band."""
    first = band_tags[0].get("NAME", "") if band_tags else ""
    return len(interp) > 1 and (first.lower() == "pan" or interp[0] == "pan")


def _red_nir(
    path: object, interp: list[str], ndvi_bands: tuple[int, int] | list[int] | None
) -> tuple[int, int] | None:
    """0-based indices of the red and NIR bands of a plain image: ``ndvi_bands`` (1-based) when given, else the
    bands' colour interpretation (``red`` and ``nir``), else None (no NDVI)."""
    if ndvi_bands is None:
        if "red" in interp and "nir" in interp:
            return interp.index("red"), interp.index("nir")
        return None
    red, nir = (int(b) - 1 for b in ndvi_bands)
    for name, i in (("red", red), ("NIR", nir)):
        if not 0 <= i < len(interp):
            raise ValueError(
                f"{path}: --ndvi-bands names band {i + 1} as {name}, but the image has {len(interp)} band(s); "
                "give the 1-based numbers of its red and near-infrared bands"
            )
        if interp[i] == "alpha":
            raise ValueError(
                f"{path}: band {i + 1}, given as {name} by --ndvi-bands, is an alpha (transparency) band; give "
                "the numbers of the red and near-infrared bands (a PNG's 4th band is always alpha: use a TIFF)"
            )
    if red == nir:
        raise ValueError(f"{path}: --ndvi-bands gives band {red + 1} as both red and NIR")
    return red, nir


def _chain_ortho_bands(
    path: object, a: np.ndarray, nodata: float | None, ndvi_bands: tuple[int, int] | list[int] | None
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int] | None]:
    """PAN band, NDVI and the MS band numbers used, of a (B, H, W) ortho written by the chain (band 1 PAN,
    bands 2.. MS); ``ndvi_bands`` number the MS bands (default ``segmentation.ndvi_bands``), as in the rule."""
    from sat2lod.segment.vegetation import ms_ndvi

    a = a.astype(np.float32)
    if nodata is not None and not np.isnan(nodata):
        a[a == nodata] = np.nan
    bands = tuple(int(b) for b in (ndvi_bands or _SEG["ndvi_bands"]))
    if ndvi_bands is not None and max(bands) > a.shape[0] - 1:
        raise ValueError(
            f"{path}: --ndvi-bands {bands[0]} {bands[1]} number the MS bands after the PAN band, but the "
            f"ortho has {a.shape[0] - 1} MS band(s)"
        )
    v = ms_ndvi(a[1:], bands)
    return a[0], v, (bands if v is not None else None)


def read_image(
    path: str | os.PathLike[str], ndvi_bands: tuple[int, int] | list[int] | None = None
) -> ImageRaster:
    """Read an image file (GeoTIFF, TIFF, PNG, JPEG: anything GDAL reads) as one panchromatic band (+ NDVI).

    Layouts:

    - an ortho written by the chain (band 1 named ``pan``, bands 2.. the pansharpened MS bands): band 1 is the
      panchromatic band, as in rule ``segment``; ``ndvi_bands`` number the MS bands (red 1 = file band 2), as
      ``segmentation.ndvi_bands``, default the schema's; no NDVI when the ortho lacks those bands.
    - any other image: bands 1 -> as is; 2 -> the first (grey + alpha); 3 or more -> the mean of the first three
      bands that are neither alpha nor the NIR band (a fourth band, alpha or NIR, is dropped). The NDVI needs
      the red and NIR bands: ``ndvi_bands`` (1-based file band numbers), else the file's colour interpretation
      when it declares ``red`` and ``nir``; otherwise no NDVI (a plain RGB / RGBA image).

    Nodata cells (declared nodata, or alpha 0) become NaN, in the panchromatic band and the NDVI.
    """
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    from sat2lod.io.raster import band_interpretations, read_raster
    from sat2lod.segment.vegetation import ms_ndvi

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        r = read_raster(path)
        interp = band_interpretations(path)
    a = r.array if r.array.ndim == 3 else r.array[np.newaxis]
    georef = r.crs is not None or not r.transform.is_identity
    if _is_sat2lod_ortho(r.band_tags, interp):
        pan, v, used = _chain_ortho_bands(path, a, r.nodata, ndvi_bands)
        return ImageRaster(pan, r.transform, r.crs, georef, 1, v, used, "sat2lod_ortho")
    alpha = [i for i, c in enumerate(interp) if c == "alpha"]
    red_nir = _red_nir(path, interp, ndvi_bands)
    nir = [] if red_nir is None else [red_nir[1]]
    colour = [i for i in range(a.shape[0]) if i not in alpha and i not in nir][:3]
    if not colour:
        raise ValueError(f"{path}: no colour band (only alpha); give a panchromatic or RGB image")
    if len(colour) == 2 and red_nir is None:  # grey + an undeclared alpha
        colour = colour[:1]
    bands = a[colour].astype(np.float32)
    invalid = np.zeros(bands.shape[1:], bool)
    if r.nodata is not None:
        invalid |= np.isnan(bands).any(0) if np.isnan(r.nodata) else (bands == r.nodata).all(0)
    for i in alpha:
        invalid |= a[i] == 0
    pan = bands.mean(0)
    pan[invalid] = np.nan
    v, used = None, None
    if red_nir is not None:
        ms = a[list(red_nir)].astype(np.float32)
        v = ms_ndvi(ms, (1, 2))
        v[invalid] = np.nan
        used = (red_nir[0] + 1, red_nir[1] + 1)
    return ImageRaster(pan, r.transform, r.crs, georef, len(colour), v, used)


def segment_image(
    pan: np.ndarray,
    ndsm: np.ndarray | None = None,
    gsd_m: float | None = None,
    method: str = _SEG["method"],
    checkpoint: str | os.PathLike[str] | None = None,
    threshold: float = _SEG["threshold"],
    min_area_m2: float = _SEG["min_area_m2"],
    min_height_m: float = _SEG["min_height_m"],
    max_roughness_m: float = _SEG["max_roughness_m"],
    ndvi: np.ndarray | None = None,
    max_ndvi: float = _SEG["max_ndvi"],
    tile_px: int = _SEG["tile_px"],
    overlap_px: int = _SEG["overlap_px"],
    batch_size: int = _SEG["batch_size"],
    device: str = _SEG["device"],
    threads: int = _SEG["torch_threads"],
    plausibility: dict | None = None,
    roof_completion: dict | None = None,
    guided_filter: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Building probability and mask of one image.

    Args:
        pan: (H, W) panchromatic image (any radiometric unit), NaN = nodata.
        ndsm: (H, W) height above terrain (m) on the same grid, NaN = nodata; None = image only.
        gsd_m: the image's ground sampling distance (m); None = unknown (no resampling; areas counted at the
            model's GSD).
        method: ``unet`` or ``ndsm_threshold`` (needs ``ndsm``).
        checkpoint: model file; None = the shipped default (:func:`sat2lod.segment.shipped.default_checkpoint`):
            with an nDSM the chain's default model, without one the image-only model (trained with the nDSM
            hidden in every patch; the default model hides it in 15 % and labels next to nothing without it).
        threshold, min_area_m2: mask threshold and smallest kept component (m²), as in rule ``segment``.
        min_height_m, max_roughness_m: ``ndsm_threshold`` parameters.
        ndvi, max_ndvi: (H, W) NDVI on the image grid (:func:`read_image`); when given, the probability goes
            through the vegetation gate of rule ``segment`` (:func:`sat2lod.segment.vegetation.gate_probability`).
        tile_px, overlap_px, batch_size, device: tiled inference (:func:`sat2lod.segment.infer.predict_tiled`;
            tile and overlap are rounded down to multiples of the model's ``2**depth``).
        threads: torch CPU threads (``segmentation.torch_threads``: a fixed count for bit-identical results).
        plausibility: section ``segmentation.plausibility`` (None = its defaults): the geometric filter of the
            mask's components as in rule ``segment`` (:func:`sat2lod.segment.plausibility.plausibility_filter`),
            walls measured on the nDSM; without an nDSM the mask is left as it is.
        roof_completion: section ``segmentation.roof_completion`` (None = its defaults): each kept component
            completed over its roof as in rule ``segment`` (:func:`sat2lod.segment.completion.complete_roofs`);
            without an nDSM nothing is completed.
        guided_filter: section ``segmentation.guided_filter`` (None = its defaults): the U-Net probability refined
            along the image's edges as in rule ``segment`` (:func:`sat2lod.segment.guided.refine_probability`).
    Returns:
        (H, W) float32 probability (NaN = nodata), (H, W) uint8 mask (1 building, 0 not, 255 nodata), and a
        summary dict (method, checkpoint, GSDs, seconds, building fraction, vegetation share).
    """
    from sat2lod.segment.completion import CompletionParams
    from sat2lod.segment.guided import guided_tags, refine_probability
    from sat2lod.segment.infer import DEFAULT_MODEL_GSD_M, ndsm_threshold_probability, probability_to_mask
    from sat2lod.segment.plausibility import PlausibilityParams
    from sat2lod.segment.predict import component_steps
    from sat2lod.segment.vegetation import gate_probability

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    plaus = PlausibilityParams(**(plausibility or {}))
    completion = CompletionParams(**(roof_completion or {}))
    for name, a in (("nDSM", ndsm), ("NDVI", ndvi)):
        if a is not None and a.shape != pan.shape:
            raise ValueError(f"the {name} ({a.shape}) and the image ({pan.shape}) must have the same grid")
    if not np.isfinite(pan).any():
        raise ValueError("the image has no valid pixel (all nodata): nothing to segment")
    t0 = time.perf_counter()
    info: dict = {"method": method, "image_only": ndsm is None, "gsd_m": gsd_m}
    if method == "ndsm_threshold":
        if ndsm is None:
            raise ValueError("method ndsm_threshold needs an nDSM (--ndsm); without one use method unet")
        res = gsd_m or DEFAULT_MODEL_GSD_M
        prob = ndsm_threshold_probability(ndsm.astype(np.float32), res, min_height_m, max_roughness_m)
        valid = np.isfinite(ndsm)
    else:
        prob, res, model_info = _unet_probability(
            pan, ndsm, gsd_m, checkpoint, tile_px, overlap_px, batch_size, device, threads
        )
        info |= model_info
        prob = refine_probability(prob, pan, res, None, guided_filter)
        info |= {k.lower(): v for k, v in guided_tags(guided_filter, res).items()}
        valid = np.isfinite(pan)
        prob[~valid] = np.nan
    if ndvi is not None:
        prob, veg_share = gate_probability(prob, ndvi, max_ndvi, valid)
        info |= {"max_ndvi": max_ndvi, "vegetation_share": veg_share}
    mask = probability_to_mask(prob, threshold, res, min_area_m2, valid)
    if ndsm is not None:
        mask, info["plausibility"], info["roof_completion"] = component_steps(
            mask, ndsm, prob, res, plaus, completion
        )
    ok = mask != 255
    info |= {
        "seconds": round(time.perf_counter() - t0, 3),
        "building_fraction": float(np.mean(mask[ok] == 1)) if ok.any() else float("nan"),
    }
    return prob, mask, info


def _unet_probability(
    pan: np.ndarray,
    ndsm: np.ndarray | None,
    gsd_m: float | None,
    checkpoint: str | os.PathLike[str] | None,
    tile_px: int,
    overlap_px: int,
    batch_size: int,
    device: str,
    threads: int,
) -> tuple[np.ndarray, float, dict]:
    """U-Net probability on the image grid (:func:`sat2lod.segment.infer.unet_probability`, as rule ``segment``);
    returns (prob, GSD used for areas, info)."""
    from sat2lod.segment.infer import load_segmenter, model_gsd_m, unet_probability
    from sat2lod.segment.shipped import resolve_checkpoint

    # no model given: the shipped one for the input, the image-only model when there is no nDSM
    ckpt = resolve_checkpoint(checkpoint, image_only=ndsm is None)
    model, payload, ckpt, device = load_segmenter(ckpt, device, threads)
    model_gsd = model_gsd_m(payload)
    m = model.multiple
    tile = max(m, tile_px // m * m)
    overlap = min(overlap_px // m * m, tile - m)
    prob, resampled = unet_probability(model, pan, ndsm, gsd_m, model_gsd, tile, overlap, batch_size, device)
    info = {
        "checkpoint": os.fspath(ckpt),
        "model_gsd_m": model_gsd,
        "resampled_to_model_gsd": bool(resampled),
        "torch_threads": max(1, int(threads)),
    }
    return prob, (gsd_m or model_gsd), info


def segment_image_file(
    image: str | os.PathLike[str],
    out: str | os.PathLike[str],
    ndsm: str | os.PathLike[str] | None = None,
    gsd_m: float | None = None,
    ndvi_bands: tuple[int, int] | list[int] | None = None,
    **kwargs,
) -> dict:
    """``sat2lod segment``: read ``image`` (and ``ndsm``), segment (:func:`segment_image`), write the mask.

    Args:
        image: GeoTIFF / TIFF / PNG / JPEG; ndsm: nDSM raster (m) on the image's grid, or None (image only).
        out: output mask, ``.tif``/``.tiff`` (GeoTIFF, input georeferencing kept, nodata 255) or ``.png``.
        gsd_m: GSD of an image without georeferencing (m); ignored when the image has a geotransform.
        ndvi_bands: red and NIR band numbers (1-based) for the vegetation gate (:func:`read_image`); None =
            the chain ortho's schema default, or the bands' colour interpretation, or no gate.
        kwargs: :func:`segment_image` options (method, checkpoint, threshold, max_ndvi, threads, ...).
    Returns:
        The summary of :func:`segment_image` with the output path.
    """
    from sat2lod.io.raster import read_raster, write_png, write_raster

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".tif", ".tiff", ".png"):
        raise ValueError(
            f"{out}: the mask is written as GeoTIFF (.tif, .tiff) or PNG (.png); rename the output"
        )
    img = read_image(image, ndvi_bands)
    n = None
    if ndsm is not None:
        nr = read_raster(ndsm, bands=1, masked_to_nan=True)
        if nr.shape != img.pan.shape:
            raise ValueError(
                f"{ndsm}: nDSM of {nr.shape[0]} x {nr.shape[1]} px, but {image} is "
                f"{img.pan.shape[0]} x {img.pan.shape[1]}: give an nDSM on the image's grid"
            )
        n = nr.array.astype(np.float32)
    if img.crs is not None and img.crs.is_projected:  # metres (or the projection's unit) per pixel
        gsd_m = float(abs(img.transform.a))
    _, mask, info = segment_image(img.pan, n, gsd_m=gsd_m, ndvi=img.ndvi, **kwargs)
    tags = {
        "SAT2LOD_PRODUCT": "building_mask",
        "SAT2LOD_METHOD": info["method"],
        "SOURCE_IMAGE": os.fspath(image),
        "CLASSES": "0=not building, 1=building, 255=nodata",
    }
    if "checkpoint" in info:
        tags["CHECKPOINT"] = info["checkpoint"]
    if img.ndvi is not None:
        tags |= {"NDVI_BANDS": str(list(img.ndvi_bands)), "MAX_NDVI": str(info["max_ndvi"])}
    if suffix == ".png":
        write_png(out, mask)
    else:
        import warnings

        from rasterio.errors import NotGeoreferencedWarning

        with warnings.catch_warnings():  # a plain image's identity transform is kept as it is
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            write_raster(out, mask, img.transform, img.crs, nodata=255, tags=tags)
    info |= {
        "out": os.fspath(out),
        "bands_averaged": img.bands_used,
        "georeferenced": img.georeferenced,
        "layout": img.layout,
        "ndvi_bands": None if img.ndvi_bands is None else list(img.ndvi_bands),
    }
    log.info("building mask of %s written to %s: %s", image, out, info)
    return info
