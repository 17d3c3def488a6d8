"""Building mask of one image (``sat2lod segment``): any image, with or without an nDSM, georeferenced or not.

The chain's rule ``segment`` works on the true ortho and nDSM of a DSM mosaic
(:func:`sat2lod.segment.predict.segment_from_files`); this is the same network and post-processing for a single
image given by a user: a GeoTIFF, or a plain PNG / JPEG / TIFF without georeferencing.

- Radiometry: the network reads one panchromatic band. A multi-band image (RGB, RGBA) becomes panchromatic as
  the mean of its colour bands (an alpha band, and any band past the third, is dropped); a single band is taken
  as is. The input is scaled by its own 2-98 % percentiles (:func:`sat2lod.segment.features.make_input`).
- Height: with an nDSM (metres above terrain, same grid as the image) the network gets it; without one it runs
  image-only (nDSM channel absent, as in training's ``ndsm_dropout``). ``ndsm_threshold`` needs the nDSM.
- Scale: the network was trained at the ground sampling distance recorded in its checkpoint (``data.gsd_m``;
  0.5 m when absent). When the image's GSD is known (its geotransform, or ``gsd_m`` for an image without
  georeferencing) and differs from it by more than 10 %, the image (and nDSM) are resampled bilinearly to the
  training GSD, and the probability back onto the image grid. Without a known GSD the image is taken as it is.
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
from scipy import ndimage

from sat2lod.schema import defaults

log = logging.getLogger(__name__)

_SEG = defaults("segmentation")  # defaults of config section segmentation

#: training GSD assumed for a checkpoint that does not record one (the synthetic cities' default)
DEFAULT_MODEL_GSD_M = 0.5
METHODS = ("unet", "ndsm_threshold")


@dataclass
class ImageRaster:
    """A single-band image for segmentation.

    Attributes:
        pan: (H, W) float32 panchromatic radiometry (band mean of a colour image), NaN = nodata.
        transform, crs: georeferencing (``crs`` None and an identity transform for a plain PNG / JPEG).
        georeferenced: whether the file had a geotransform or CRS.
        bands_used: how many bands were averaged.
    """

    pan: np.ndarray
    transform: Affine
    crs: object | None
    georeferenced: bool
    bands_used: int


def read_image(path: str | os.PathLike[str]) -> ImageRaster:
    """Read an image file (GeoTIFF, TIFF, PNG, JPEG: anything GDAL reads) as one panchromatic band.

    Bands: 1 -> as is; 2 -> the first (grey + alpha); 3 or more -> the mean of the first three (RGB; a fourth
    band, alpha or NIR, is dropped). Nodata cells (declared nodata, or alpha 0) become NaN.
    """
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    from sat2lod.io.raster import band_interpretations, read_raster

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        r = read_raster(path)
        interp = band_interpretations(path)
    a = r.array if r.array.ndim == 3 else r.array[np.newaxis]
    alpha = [i for i, c in enumerate(interp) if c == "alpha"]
    colour = [i for i in range(a.shape[0]) if i not in alpha][:3]
    if not colour:
        raise ValueError(f"{path}: no colour band (only alpha); give a panchromatic or RGB image")
    if len(colour) == 2:  # grey + an undeclared alpha
        colour = colour[:1]
    bands = a[colour].astype(np.float32)
    invalid = np.zeros(bands.shape[1:], bool)
    if r.nodata is not None:
        invalid |= np.isnan(bands).any(0) if np.isnan(r.nodata) else (bands == r.nodata).all(0)
    for i in alpha:
        invalid |= a[i] == 0
    pan = bands.mean(0)
    pan[invalid] = np.nan
    georef = r.crs is not None or not r.transform.is_identity
    return ImageRaster(pan, r.transform, r.crs, georef, len(colour))


def _zoom_to(a: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    """Resample (H, W) ``a`` onto ``shape`` (same extent), spline ``order``; NaN cells are filled first."""
    from sat2lod.arrays import fill_nearest

    filled = fill_nearest(a) if np.isnan(a).any() else a
    z = (shape[0] / a.shape[0], shape[1] / a.shape[1])
    return ndimage.zoom(np.nan_to_num(filled), z, order=order, mode="nearest", grid_mode=True).astype(
        np.float32
    )


def segment_image(
    pan: np.ndarray,
    ndsm: np.ndarray | None = None,
    gsd_m: float | None = None,
    method: str = "unet",
    checkpoint: str | os.PathLike[str] | None = None,
    threshold: float = 0.5,
    min_area_m2: float = 10.0,
    min_height_m: float = 2.5,
    max_roughness_m: float = 0.6,
    tile_px: int = _SEG["tile_px"],
    overlap_px: int = _SEG["overlap_px"],
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Building probability and mask of one image.

    Args:
        pan: (H, W) panchromatic image (any radiometric unit), NaN = nodata.
        ndsm: (H, W) height above terrain (m) on the same grid, NaN = nodata; None = image only.
        gsd_m: the image's ground sampling distance (m); None = unknown (no resampling; areas counted at the
            model's GSD).
        method: ``unet`` or ``ndsm_threshold`` (needs ``ndsm``).
        checkpoint: model file; None = the shipped default (:func:`sat2lod.segment.shipped.default_checkpoint`).
        threshold, min_area_m2: mask threshold and smallest kept component (m²), as in rule ``segment``.
        min_height_m, max_roughness_m: ``ndsm_threshold`` parameters.
        tile_px, overlap_px, device: tiled inference (:func:`sat2lod.segment.infer.predict_tiled`).
    Returns:
        (H, W) float32 probability (NaN = nodata), (H, W) uint8 mask (1 building, 0 not, 255 nodata), and a
        summary dict (method, checkpoint, GSDs, seconds, building fraction).
    """
    from sat2lod.segment.infer import ndsm_threshold_probability, probability_to_mask

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if ndsm is not None and ndsm.shape != pan.shape:
        raise ValueError(f"the nDSM ({ndsm.shape}) and the image ({pan.shape}) must have the same grid")
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
        prob, res, model_info = _unet_probability(pan, ndsm, gsd_m, checkpoint, tile_px, overlap_px, device)
        info |= model_info
        valid = np.isfinite(pan)
        prob[~valid] = np.nan
    mask = probability_to_mask(prob, threshold, res, min_area_m2, valid)
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
    device: str,
) -> tuple[np.ndarray, float, dict]:
    """U-Net probability on the image grid, computed at the model's training GSD; returns (prob, GSD used for
    areas, info)."""
    from sat2lod.segment.features import make_input
    from sat2lod.segment.infer import load_segmenter, predict_tiled

    model, payload, ckpt, device = load_segmenter(checkpoint, device)
    model_gsd = float(payload.get("data", {}).get("gsd_m") or DEFAULT_MODEL_GSD_M)
    h, w = pan.shape
    p_in, n_in = pan, ndsm
    resampled = gsd_m is not None and abs(gsd_m / model_gsd - 1.0) > 0.1
    if resampled:
        f = gsd_m / model_gsd
        shape = (max(8, round(h * f)), max(8, round(w * f)))
        p_in = _zoom_to(pan, shape, 1)
        p_in[_zoom_to(np.isnan(pan).astype(np.float32), shape, 1) > 0.5] = np.nan
        if ndsm is not None:
            n_in = _zoom_to(ndsm, shape, 1)
            n_in[_zoom_to(np.isnan(ndsm).astype(np.float32), shape, 1) > 0.5] = np.nan
    m = model.multiple
    tile = max(m, tile_px // m * m)
    overlap = min(overlap_px // m * m, tile - m)
    prob = predict_tiled(model, make_input(p_in, n_in), tile, overlap, 2, device)
    if resampled:
        prob = np.clip(_zoom_to(prob, (h, w), 1), 0.0, 1.0)
    info = {
        "checkpoint": os.fspath(ckpt),
        "model_gsd_m": model_gsd,
        "resampled_to_model_gsd": bool(resampled),
    }
    return prob.astype(np.float32), (gsd_m or model_gsd), info


def segment_image_file(
    image: str | os.PathLike[str],
    out: str | os.PathLike[str],
    ndsm: str | os.PathLike[str] | None = None,
    gsd_m: float | None = None,
    **kwargs,
) -> dict:
    """``sat2lod segment``: read ``image`` (and ``ndsm``), segment (:func:`segment_image`), write the mask.

    Args:
        image: GeoTIFF / TIFF / PNG / JPEG; ndsm: nDSM raster (m) on the image's grid, or None (image only).
        out: output mask, ``.tif``/``.tiff`` (GeoTIFF, input georeferencing kept, nodata 255) or ``.png``.
        gsd_m: GSD of an image without georeferencing (m); ignored when the image has a geotransform.
        kwargs: :func:`segment_image` options (method, checkpoint, threshold, ...).
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
    img = read_image(image)
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
    _, mask, info = segment_image(img.pan, n, gsd_m=gsd_m, **kwargs)
    tags = {
        "SAT2LOD_PRODUCT": "building_mask",
        "SAT2LOD_METHOD": info["method"],
        "SOURCE_IMAGE": os.fspath(image),
        "CLASSES": "0=not building, 1=building, 255=nodata",
    }
    if "checkpoint" in info:
        tags["CHECKPOINT"] = info["checkpoint"]
    if suffix == ".png":
        write_png(out, mask)
    else:
        import warnings

        from rasterio.errors import NotGeoreferencedWarning

        with warnings.catch_warnings():  # a plain image's identity transform is kept as it is
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            write_raster(out, mask, img.transform, img.crs, nodata=255, tags=tags)
    info |= {"out": os.fspath(out), "bands_averaged": img.bands_used, "georeferenced": img.georeferenced}
    log.info("building mask of %s written to %s: %s", image, out, info)
    return info
