"""Qualification: accuracy of DSM/DTM, footprints and building models against a reference.

Height errors are ``product - reference`` (m) on the reference grid (the product is resampled bilinearly
onto it when the grids differ). All valid cells are used: no outlier is removed; robust statistics (median,
NMAD, LE90) are reported beside the RMSE so that the reader sees the tails.

Accuracy classes follow the ASPRS Positional Accuracy Standards for Digital Geospatial Data, Edition 2
(2023): a product's vertical accuracy class is named by its RMSE_V in centimetres ("X-cm class": RMSE_V <=
X); non-vegetated vertical accuracy (NVA) is the RMSE_V on non-vegetated cells and decides the class;
vegetated vertical accuracy (VVA) is reported "as found" (no pass/fail since Edition 2). The horizontal
class is named by RMSE_H = sqrt(RMSE_x^2 + RMSE_y^2). Edition 2 requires at least 30 checkpoints; the
check-point (reference) accuracy is combined as sqrt(RMSE_product^2 + RMSE_reference^2) (0 for synthetic
truth). LE90 (90th percentile of |dz|) and CE90 (90th percentile of the radial offset) are stated beside.

LOD1 block heights are compared like for like: a LoD1.2 block stands at a chosen roof reference height (here
the ``roof_percentile`` of the nDSM over the footprint shrunk by ``edge_buffer_m``, both stated in each block's
attributes, as 3DBAG states which of its roof heights a block uses), so its reference is the same rule applied
to the reference nDSM (reference DSM - reference DTM) inside the reference footprint; the LOD1 target is checked
on that error. The errors against the mean roof height and against the reference ``height`` column (the
synthetic truth's ridge: a percentile block is below it by construction on pitched roofs) are reported beside,
each with its definition (:data:`LOD1_REFERENCES`). Without a reference DSM and DTM only the ``height`` column
can be used, and the report says so.

Memory is bounded by a block, not the area: the DSM and DTM comparisons are streamed over ``block_px`` blocks of
the reference grid (:mod:`sat2lod.qualify.streamed`; mean, std, RMSE, counts and shares exact, median, NMAD, LE90
and p95 from a histogram of ``histogram_bin_m`` = 1 mm bins, within that of the exact figures:
:mod:`sat2lod.qualify.stats`), and the LOD1 reference heights read the reference nDSM around each building.
:func:`compare_heights` and :func:`error_stats` are the whole-array versions (tests, benches, figures).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.transform import array_bounds
from rasterio.warp import Resampling, reproject

from sat2lod.grid import same_grid
from sat2lod.io.jsonio import read_json, write_text
from sat2lod.io.raster import Raster, RasterHeader, raster_header
from sat2lod.qualify.stats import BIN_M
from sat2lod.schema import defaults

_QUALIFY = defaults("qualify")  # defaults of config section qualify

log = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class QualifyParams:
    """Parameters of rule ``qualify``: config section ``qualify`` without the ``reference_*`` keys (files, the
    rule's inputs); one field per key, defaults from the schema (see config/schema.yaml). The rule passes the
    section whole but for those.

    Attributes:
        thresholds_m: the share of cells whose absolute height error exceeds each of these (m) is reported.
        slope_bins_deg: edges of the terrain-slope classes (degrees) of the error breakdown by slope.
        block_px: side (cells) of the blocks the raster comparisons are streamed in (memory bounded by the block).
    """

    thresholds_m: tuple[float, ...] | list[float] = tuple(_QUALIFY["thresholds_m"])
    slope_bins_deg: tuple[float, ...] | list[float] = tuple(_QUALIFY["slope_bins_deg"])
    block_px: int = _QUALIFY["block_px"]


#: class ladder (cm) used to name the class: the smallest value >= RMSE (ASPRS allows any X; these are the
#: values of the Edition 2 example tables)
VERTICAL_CLASSES_CM = (1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 33.3, 66.7, 100.0, 333.3, 1000.0)
HORIZONTAL_CLASSES_CM = (
    1.25,
    2.5,
    5.0,
    7.5,
    10.0,
    12.5,
    15.0,
    17.5,
    20.0,
    25.0,
    30.0,
    50.0,
    100.0,
    150.0,
    200.0,
    250.0,
    300.0,
    500.0,
    1000.0,
)
MIN_CHECKPOINTS = 30
CLASS_NAMES = {0: "ground", 1: "building", 2: "vegetation", 3: "road", 4: "water"}
#: issue-6 targets; lod1_height_rmse_m is checked on the like-for-like LOD1 error (see LOD1_REFERENCES)
TARGETS = {
    "ciou_mean": (">=", 0.80),
    "polis_mean_m": ("<=", 1.0),
    "n_ratio": ("<=", 1.2),
    "lod1_height_rmse_m": ("<=", 1.0),
    "roof_type_accuracy": (">=", 0.90),
}


def error_stats(
    err: np.ndarray, thresholds: list[float] | tuple[float, ...] = (0.5, 1.0, 3.0)
) -> dict[str, Any]:
    """Statistics of height errors (m). ``err``: any shape; NaN cells are ignored.

    Returns:
        n, mean, median, std, rmse, nmad (1.4826 * median |e - median|), le90 (90th percentile of |e|),
        p95 (95th percentile of |e|), max_abs, and ``above_<t>m``: share of |e| > t for each threshold.
    """
    e = np.asarray(err, float).ravel()
    e = e[np.isfinite(e)]
    out: dict[str, Any] = {"n": int(e.size)}
    if e.size == 0:
        return out | {k: None for k in ("mean", "median", "std", "rmse", "nmad", "le90", "p95", "max_abs")}
    a = np.abs(e)
    med = float(np.median(e))
    out.update(
        mean=float(e.mean()),
        median=med,
        std=float(e.std()),
        rmse=float(math.sqrt(np.mean(e * e))),
        nmad=float(1.4826 * np.median(np.abs(e - med))),
        le90=float(np.percentile(a, 90)),
        p95=float(np.percentile(a, 95)),
        max_abs=float(a.max()),
    )
    for t in thresholds:
        out[f"above_{t:g}m"] = float(np.mean(a > t))
    return out


def _class_of(rmse_cm: float, ladder: tuple[float, ...]) -> str:
    for x in ladder:
        if rmse_cm <= x + 1e-9:
            return f"{x:g}-cm"
    return f">{ladder[-1]:g}-cm (unclassified)"


def asprs_vertical_class(rmse_m: float | None, n: int, reference_rmse_m: float = 0.0) -> dict[str, Any]:
    """ASPRS Ed. 2 vertical accuracy class from the NVA RMSE_V (m) of ``n`` checkpoints."""
    if rmse_m is None or n == 0:
        return {"class": None, "rmse_v_cm": None, "n_checkpoints": n, "note": "no checkpoint"}
    r = math.sqrt(rmse_m**2 + reference_rmse_m**2) * 100
    return {
        "class": _class_of(r, VERTICAL_CLASSES_CM),
        "rmse_v_cm": round(r, 2),
        "n_checkpoints": n,
        "note": "" if n >= MIN_CHECKPOINTS else f"fewer than {MIN_CHECKPOINTS} checkpoints: not conformant",
    }


def asprs_horizontal_class(
    rmse_x_m: float | None, rmse_y_m: float | None, n: int, reference_rmse_m: float = 0.0
) -> dict[str, Any]:
    """ASPRS Ed. 2 horizontal accuracy class from RMSE_H = sqrt(RMSE_x^2 + RMSE_y^2) (m) of ``n`` checkpoints."""
    if rmse_x_m is None or rmse_y_m is None or n == 0 or not np.isfinite([rmse_x_m, rmse_y_m]).all():
        return {"class": None, "rmse_h_cm": None, "n_checkpoints": n, "note": "no checkpoint"}
    r = math.sqrt(rmse_x_m**2 + rmse_y_m**2 + reference_rmse_m**2) * 100
    return {
        "class": _class_of(r, HORIZONTAL_CLASSES_CM),
        "rmse_h_cm": round(r, 2),
        "n_checkpoints": n,
        "note": "" if n >= MIN_CHECKPOINTS else f"fewer than {MIN_CHECKPOINTS} checkpoints: not conformant",
    }


def on_grid(src: Raster, ref: Raster) -> np.ndarray:
    """``src`` values on ``ref``'s grid (float32, NaN nodata): identical grids pass through, otherwise
    bilinear resampling (rasterio.warp.reproject)."""
    a = src.array.astype(np.float32)
    if src.nodata is not None and not (isinstance(src.nodata, float) and np.isnan(src.nodata)):
        a = np.where(src.array == src.nodata, np.nan, a)
    if same_grid(src, ref):
        return a
    out = np.full(ref.shape, np.nan, np.float32)
    reproject(
        a,
        out,
        src_transform=src.transform,
        src_crs=src.crs,
        dst_transform=ref.transform,
        dst_crs=ref.crs,
        src_nodata=np.nan,
        dst_nodata=np.nan,
        resampling=Resampling.bilinear,
    )
    return out


def slope_deg(z: np.ndarray, res: float) -> np.ndarray:
    """Slope (degrees) of a height grid (m) with cell size ``res`` (m); NaN where undefined."""
    gy, gx = np.gradient(z.astype(float), res)
    return np.degrees(np.arctan(np.hypot(gx, gy)))


def compare_heights(
    pred: np.ndarray,
    ref: np.ndarray,
    classes: np.ndarray | None,
    res: float,
    thresholds: list[float],
    slope_bins: list[float],
    slope_from: np.ndarray | None = None,
) -> dict[str, Any]:
    """Error statistics of ``pred - ref`` on one grid: all cells, by class, by slope of ``slope_from``
    (default: the reference), completeness = share of valid reference cells where the product is valid."""
    err = pred - ref
    ref_ok = np.isfinite(ref)
    if classes is not None:
        ref_ok &= classes != 255
    both = ref_ok & np.isfinite(pred)
    out: dict[str, Any] = {
        "all": error_stats(err[both], thresholds),
        "completeness": float(both.sum() / max(ref_ok.sum(), 1)),
    }
    if classes is not None:
        out["by_class"] = {}
        for code, name in CLASS_NAMES.items():
            m = classes == code
            if (m & ref_ok).any():
                s = error_stats(err[both & m], thresholds)
                s["completeness"] = float((both & m).sum() / max((ref_ok & m).sum(), 1))
                out["by_class"][name] = s
    sl = slope_deg(slope_from if slope_from is not None else ref, res)
    out["by_slope"] = {}
    for lo, hi in itertools.pairwise(slope_bins):
        m = (sl >= lo) & (sl < hi)
        if (m & both).any():
            out["by_slope"][f"{lo:g}-{hi:g}deg"] = error_stats(err[both & m], thresholds)
    return out


def _lod_attrs(attrs: dict[str, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Attributes of the buildings ``b<id>`` by id, from the attributes of a model's objects by object id."""
    return {int(oid[1:]): a for oid, a in attrs.items() if oid.startswith("b") and oid[1:].isdigit()}


#: definitions of the LOD1 reference heights (stated in accuracy.json / accuracy.md)
LOD1_REFERENCES = {
    "height_error": (
        "like for like: the block's own rule applied to the reference, i.e. the roof_percentile "
        "(attribute of each LOD1 block) of the reference nDSM (reference DSM - reference DTM) over the "
        "reference footprint shrunk by the block's edge_buffer_m; this is the error of the product, "
        "and the one the LOD1 target is checked on"
    ),
    "height_error_vs_mean_roof": "the mean of the reference nDSM over the same shrunk reference footprint",
    "height_error_vs_ridge": (
        "the 'height' column of the reference buildings (the synthetic truth's ridge, the "
        "highest roof point): a LoD1.2 block at a percentile sits below it by construction "
        "on pitched roofs"
    ),
}


def lod1_height_scores(
    attrs: dict[int, dict[str, Any]],
    ids: list[Any],
    pairs: list[tuple[int, int, float]],
    ref: Any,
    ref_ndsm: Any = None,
) -> dict[str, Any]:
    """LOD1 block height errors (m, product - reference) of the matched buildings, against three reference
    heights (:data:`LOD1_REFERENCES`).

    Args:
        attrs: LOD1 attributes by building id (``height`` m above ground, ``roof_percentile``, ``edge_buffer_m``).
        ids: product building ids, indexed like the predictions of ``pairs``.
        pairs: matches (i_pred, i_ref, IoU) from :func:`sat2lod.lod.metrics.match`.
        ref: reference buildings (GeoDataFrame, optional ``height`` column in m above ground).
        ref_ndsm: the reference nDSM in the footprints' CRS, read around each reference footprint
            (:class:`sat2lod.qualify.streamed.NdsmWindows`: ``around(bounds) -> (array m NaN nodata, transform)``,
            never the whole grid); without it only the error against ``height`` is computed, and it is then the
            headline error.

    Returns:
        dict with ``n``, ``height_error`` (the target's error), ``height_error_vs_mean_roof``,
        ``height_error_vs_ridge`` (error statistics, see :func:`error_stats`) and ``definitions``.
    """
    from sat2lod.lod.models import LOD1_EDGE_BUFFER_M, block_height, pixels_in

    like, mean_roof, ridge = [], [], []
    for i, j, _ in pairs:
        a = attrs.get(ids[i])
        if a is None:
            continue
        h = float(a["height"])
        if "height" in ref.columns:
            ridge.append(h - float(ref["height"].iloc[j]))
        if ref_ndsm is not None:
            poly = ref.geometry.iloc[j]
            buf = float(a.get("edge_buffer_m", LOD1_EDGE_BUFFER_M))
            ndsm, tr = ref_ndsm.around(poly.bounds)
            like.append(h - block_height(poly, ndsm, tr, float(a.get("roof_percentile", 90.0)), buf))
            v = pixels_in(poly, ndsm, tr, buffer_m=buf)[2]
            v = v[np.isfinite(v)]
            mean_roof.append(h - float(v.mean()) if len(v) else float("nan"))
    th = (0.5, 1.0, 3.0)
    out: dict[str, Any] = {"n": max(len(like), len(ridge))}
    if ref_ndsm is not None:
        out["height_error"] = error_stats(np.array(like), th)
        out["height_error_vs_mean_roof"] = error_stats(np.array(mean_roof), th)
        defs = dict(LOD1_REFERENCES)
    else:
        out["height_error"] = error_stats(np.array(ridge), th)
        defs = {"height_error": "the 'height' column of the reference buildings (no reference nDSM given)"}
    if ridge:
        out["height_error_vs_ridge"] = error_stats(np.array(ridge), th)
    else:
        defs.pop("height_error_vs_ridge", None)
    out["definitions"] = defs
    return out


def building_scores(
    footprints: Any,
    ref: Any,
    lod1: dict[str, dict[str, Any]] | None,
    lod2: dict[str, dict[str, Any]] | None,
    ref_ndsm: Any = None,
) -> dict[str, Any]:
    """Footprint metrics and LOD1/LOD2 height and roof-type scores against reference buildings.

    Args:
        footprints: GeoDataFrame with ``id`` and polygons (rule lod0).
        ref: GeoDataFrame of reference buildings; optional columns ``height`` (m above ground, for LOD1),
            ``ridge_height``, ``eave_height`` (m above ground) and ``roof_type`` (for LOD2).
        lod1, lod2: attributes of the models' objects by object id (``b<id>``, the attributes written by sat2lod.lod;
            :func:`sat2lod.io.cityjson.read_city_attributes`) or None.
        ref_ndsm: the reference nDSM read per footprint (:class:`sat2lod.qualify.streamed.NdsmWindows`), in the
            footprints' CRS; when given, LOD1 heights are compared like for like (:func:`lod1_height_scores`).
    """
    from sat2lod.lod.metrics import footprint_scores, match, shared_wall_scores

    ref = ref.to_crs(footprints.crs) if ref.crs is not None and footprints.crs is not None else ref
    pred = list(footprints.geometry)
    refp = list(ref.geometry)
    fs = footprint_scores(pred, refp)
    out: dict[str, Any] = {"footprints": fs.as_dict(), "shared_walls": shared_wall_scores(pred, refp)}
    out["footprints"]["horizontal_class"] = asprs_horizontal_class(fs.rmse_x_m, fs.rmse_y_m, fs.n_matched)
    pairs = match(pred, refp)
    ids = list(footprints["id"])
    if lod1 is not None and ("height" in ref.columns or ref_ndsm is not None):
        out["lod1"] = lod1_height_scores(_lod_attrs(lod1), ids, pairs, ref, ref_ndsm)
    if lod2 is not None and "roof_type" in ref.columns:
        a2 = _lod_attrs(lod2)
        got = [(a2[ids[i]], ref.iloc[j]) for i, j, _ in pairs if ids[i] in a2]
        types = sorted({str(r["roof_type"]) for _, r in got} | {str(a["roof_type"]) for a, _ in got})
        conf = {t: {u: 0 for u in types} for t in types}
        for a, r in got:
            conf[str(r["roof_type"])][str(a["roof_type"])] += 1
        ok = sum(conf[t][t] for t in types)
        ridge = [a["ridge_height"] - float(r["ridge_height"]) for a, r in got if "ridge_height" in r]
        eave = [a["eave_height"] - float(r["eave_height"]) for a, r in got if "eave_height" in r]
        # accuracy over the matched buildings, and over all reference buildings (an unmatched one -- merged
        # with a neighbour, missed -- has no right model): a chain that drops hard buildings cannot gain
        out["lod2"] = {
            "n": len(got),
            "roof_type_accuracy": ok / len(got) if got else None,
            "n_ref": len(refp),
            "roof_type_recall": ok / len(refp) if len(refp) else None,
            "confusion_truth_to_predicted": conf,
            "ridge_height_error": error_stats(np.array(ridge), (0.5, 1.0, 3.0)),
            "eave_height_error": error_stats(np.array(eave), (0.5, 1.0, 3.0)),
        }
    return out


def _targets(res: dict[str, Any]) -> dict[str, Any]:
    b = res.get("buildings", {})
    vals = {
        "ciou_mean": b.get("footprints", {}).get("ciou_mean"),
        "polis_mean_m": b.get("footprints", {}).get("polis_mean_m"),
        "n_ratio": b.get("footprints", {}).get("n_ratio"),
        "lod1_height_rmse_m": b.get("lod1", {}).get("height_error", {}).get("rmse"),
        "roof_type_accuracy": b.get("lod2", {}).get("roof_type_accuracy"),
    }
    out = {}
    for k, (op, t) in TARGETS.items():
        v = vals[k]
        ok = (
            None
            if v is None or (isinstance(v, float) and math.isnan(v))
            else (v >= t if op == ">=" else v <= t)
        )
        out[k] = {"value": v, "target": f"{op} {t:g}", "met": ok}
    return out


def product_summary(
    dsm: RasterHeader,
    footprints: PathLike | None,
    lod1: dict[str, dict[str, Any]] | None,
    lod2: dict[str, dict[str, Any]] | None,
) -> dict[str, Any]:
    """What the chain made, reference or not: footprint count and area (m², and as a fraction of the extent of
    the DSM, whose header is ``dsm``), building counts of the LOD1 / LOD2 models (``lod1``, ``lod2``: their
    objects' attributes by id). Zero buildings is a valid result and is said so."""
    from sat2lod.io.vector import read_vector

    left, bottom, right, top = array_bounds(*dsm.shape, dsm.transform)
    out: dict[str, Any] = {"scene_area_m2": round(float((right - left) * (top - bottom)), 1)}
    if footprints:
        fp = read_vector(footprints)
        area = float(fp.geometry.area.sum()) if len(fp) else 0.0
        out |= {
            "footprints": len(fp),
            "footprint_area_m2": round(area, 1),
            "footprint_area_fraction": area / out["scene_area_m2"] if out["scene_area_m2"] > 0 else None,
        }
    for key, model in (("lod1_buildings", lod1), ("lod2_buildings", lod2)):
        if model is not None:
            out[key] = len(model)
    if out.get("footprints") == 0:
        out["note"] = "no building found in the scene: the building products are valid and empty"
    return out


def qualify(
    dsm: PathLike,
    dtm: PathLike | None = None,
    footprints: PathLike | None = None,
    lod1: PathLike | None = None,
    lod2: PathLike | None = None,
    *,
    ref_dsm: PathLike | None = None,
    ref_dtm: PathLike | None = None,
    ref_classes: PathLike | None = None,
    ref_buildings: PathLike | None = None,
    out_json: PathLike,
    out_md: PathLike,
    **params: Any,
) -> dict[str, Any]:
    """Qualify the products against whatever reference is given; write ``accuracy.json`` and ``accuracy.md``.

    ``params``: fields of :class:`QualifyParams` (config section ``qualify`` but the references); an unknown
    name is an error.

    Raises:
        ValueError: no reference at all (name the config keys to set).
    """
    from sat2lod.io.cityjson import read_city_attributes
    from sat2lod.io.vector import read_vector
    from sat2lod.qualify.streamed import NdsmWindows, compare_files, valid_fraction

    prm = QualifyParams(**params)
    thresholds_m, slope_bins_deg = list(prm.thresholds_m), list(prm.slope_bins_deg)
    res: dict[str, Any] = {
        "reference": {
            "dsm": str(ref_dsm) if ref_dsm else None,
            "dtm": str(ref_dtm) if ref_dtm else None,
            "classes": str(ref_classes) if ref_classes else None,
            "buildings": str(ref_buildings) if ref_buildings else None,
        },
        "standard": "ASPRS Positional Accuracy Standards, Edition 2 (2023); classes by RMSE",
        "outliers_removed": 0,
        # median, NMAD, LE90, p95 come from a histogram of this bin (streamed): within it of the exact figures
        "histogram_bin_m": BIN_M,
    }
    if not any((ref_dsm, ref_dtm, ref_buildings)):
        log.warning(
            "no reference given: only product summaries are reported (set qualify.reference_dsm, "
            "qualify.reference_dtm or qualify.reference_buildings for real data)"
        )
    d = raster_header(dsm)
    res["vertical_datum"] = d.tags.get("VERTICAL_DATUM", "unknown")
    res["dsm_valid_fraction"] = valid_fraction(dsm, prm.block_px)
    # the models' attributes only (a CityJSONSeq is read feature by feature): not their geometry
    lod1_attrs = read_city_attributes(lod1) if lod1 else None
    lod2_attrs = read_city_attributes(lod2) if lod2 else None
    res["products"] = product_summary(d, footprints, lod1_attrs, lod2_attrs)
    # the class raster serves a comparison whose reference grid has its shape (as the reference DSM's)
    classes_shape = raster_header(ref_classes).shape if ref_dsm and ref_classes else None
    compare = {
        "thresholds": tuple(thresholds_m),
        "slope_bins": tuple(slope_bins_deg),
        "block_px": prm.block_px,
    }
    if ref_dsm:
        same = classes_shape == raster_header(ref_dsm).shape
        res["dsm"] = compare_files(
            dsm, ref_dsm, ref_classes if same else None, nva_codes=(0, 1, 3), vva_code=2, **compare
        )
    if ref_dtm and dtm:
        same = classes_shape == raster_header(ref_dtm).shape
        # DTM NVA on open ground (ground + road): where the terrain is seen, not interpolated under objects
        res["dtm"] = compare_files(
            dtm, ref_dtm, ref_classes if same else None, nva_codes=(0, 3), vva_code=None, **compare
        )
    if footprints and ref_buildings:
        fp = read_vector(footprints)
        rb = read_vector(ref_buildings)
        with contextlib.ExitStack() as stack:
            ref_ndsm = stack.enter_context(NdsmWindows(ref_dsm, ref_dtm)) if ref_dsm and ref_dtm else None
            if (
                ref_ndsm is not None
                and fp.crs is not None
                and ref_ndsm.crs is not None
                and fp.crs != ref_ndsm.crs
            ):
                log.warning(
                    "reference DSM CRS differs from the footprints' CRS: LOD1 heights are compared with the "
                    "reference 'height' column only"
                )
                ref_ndsm = (
                    None  # the reference buildings are compared in the footprints' CRS, the nDSM grid is not
                )
            res["buildings"] = building_scores(
                fp,
                rb,
                lod1_attrs,
                lod2_attrs,
                ref_ndsm,
            )
    res["targets"] = _targets(res)
    write_text(out_json, json.dumps(_clean(res), indent=2))
    write_text(out_md, accuracy_markdown(res))
    log.info("qualification -> %s", out_json)
    return res


def _clean(x: Any) -> Any:
    """JSON-safe copy (NaN -> None, numpy scalars -> Python)."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else round(float(x), 4)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _f(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def accuracy_markdown(res: dict[str, Any]) -> str:
    """Readable accuracy tables (Markdown) of a qualification result."""
    lines = [
        "# Accuracy report",
        "",
        (
            f"Standard: {res['standard']}. Vertical datum: {res.get('vertical_datum')}. "
            f"Outliers removed: {res['outliers_removed']} (all valid cells are used)."
        ),
        "",
    ]
    pr = res.get("products")
    if pr:
        lines += [
            "## Products",
            "",
            (
                f"{pr.get('footprints', '–')} footprints ({_f(pr.get('footprint_area_m2'), 1)} m², "
                f"{_f(100 * pr['footprint_area_fraction'] if pr.get('footprint_area_fraction') is not None else None, 2)} "
                f"% of the scene's {_f(pr.get('scene_area_m2'), 1)} m²); LOD1 {pr.get('lod1_buildings', '–')} and "
                f"LOD2 {pr.get('lod2_buildings', '–')} buildings. {pr.get('note', '')}"
            ),
            "",
        ]
    for key, title in (("dsm", "DSM"), ("dtm", "DTM")):
        if key not in res:
            continue
        r = res[key]
        nva = r.get("nva", {})
        lines += [
            f"## {title} vs reference",
            "",
            (
                f"ASPRS vertical accuracy class (NVA): **{nva.get('class')}** (RMSE_V = {_f(nva.get('rmse_v_cm'), 1)} cm, "
                f"LE90 = {_f(nva.get('le90_m'))} m, {nva.get('n_checkpoints')} checkpoints) {nva.get('note', '')}"
            ),
            "",
        ]
        if "vva" in r:
            lines += [f"VVA (vegetated, as found): RMSE_V = {_f(r['vva']['rmse_v_cm'], 1)} cm", ""]
        ths = [k for k in r["all"] if k.startswith("above_")]
        lines += [
            "| subset | n | mean | median | RMSE | NMAD | LE90 | p95 | "
            + " | ".join(f"> {t[6:]}" for t in ths)
            + " | completeness |",
            "|" + "---|" * (9 + len(ths)),
        ]
        rows = [("all", r["all"] | {"completeness": r["completeness"]})]
        rows += [(f"class {k}", v) for k, v in r.get("by_class", {}).items()]
        rows += [(f"slope {k}", v) for k, v in r.get("by_slope", {}).items()]
        for name, s in rows:
            lines.append(
                f"| {name} | {s['n']} | {_f(s.get('mean'))} | {_f(s.get('median'))} | {_f(s.get('rmse'))} | "
                f"{_f(s.get('nmad'))} | {_f(s.get('le90'))} | {_f(s.get('p95'))} | "
                + " | ".join(_f(s.get(t)) for t in ths)
                + f" | {_f(s.get('completeness'))} |"
            )
        lines.append("")
    b = res.get("buildings")
    if b:
        f = b["footprints"]
        hc = f["horizontal_class"]
        lines += [
            "## Building footprints (LOD0)",
            "",
            (
                "| n pred | n ref | matched | precision | recall | IoU (global) | IoU | C-IoU | PoLiS (m) | N-ratio | "
                "Hausdorff (m) | CE90 (m) |"
            ),
            "|" + "---|" * 12,
            (
                f"| {f['n_pred']} | {f['n_ref']} | {f['n_matched']} | {_f(f['precision'])} | {_f(f['recall'])} | "
                f"{_f(f['iou_global'])} | {_f(f['iou_mean'])} | {_f(f['ciou_mean'])} | {_f(f['polis_mean_m'])} | "
                f"{_f(f['n_ratio'])} | {_f(f['hausdorff_mean_m'])} | {_f(f['ce90_m'])} |"
            ),
            "",
            (
                f"ASPRS horizontal accuracy class: **{hc['class']}** (RMSE_H = {_f(hc['rmse_h_cm'], 1)} cm) "
                f"{hc.get('note', '')}"
            ),
            "",
        ]
        sw = b["shared_walls"]
        lines += [
            (
                f"Shared walls: {sw.get('ref_pairs', '–')} adjacent reference pairs, {sw['pairs']} with both "
                f"buildings matched; of these kept shared: {_f(sw['kept_shared'])}, "
                f"mean gap {_f(sw['gap_m2_mean'])} m², mean overlap {_f(sw['overlap_m2_mean'])} m²."
            ),
            "",
        ]
        if "lod1" in b:
            l1 = b["lod1"]
            lines += [
                "## LOD1",
                "",
                f"Block height error (product - reference) over {l1['n']} matched buildings:",
                "",
                "| reference height | n | mean | RMSE | NMAD | LE90 |",
                "|---|---|---|---|---|---|",
            ]
            for key in ("height_error", "height_error_vs_mean_roof", "height_error_vs_ridge"):
                if key in l1:
                    h = l1[key]
                    lines.append(
                        f"| {key} | {h.get('n')} | {_f(h.get('mean'))} | {_f(h.get('rmse'))} | "
                        f"{_f(h.get('nmad'))} | {_f(h.get('le90'))} |"
                    )
            lines += [""] + [f"- {k}: {v}." for k, v in l1.get("definitions", {}).items()] + [""]
        if "lod2" in b:
            l2 = b["lod2"]
            rh, eh = l2["ridge_height_error"], l2["eave_height_error"]
            lines += [
                "## LOD2",
                "",
                (
                    f"Roof-type accuracy: {_f(l2['roof_type_accuracy'])} over {l2['n']} matched buildings "
                    f"({_f(l2.get('roof_type_recall'))} of all {l2.get('n_ref')} reference buildings modelled with "
                    "their roof type); "
                    f"ridge height error RMSE {_f(rh.get('rmse'))} m (mean {_f(rh.get('mean'))} m); "
                    f"eave height error RMSE {_f(eh.get('rmse'))} m."
                ),
                "",
            ]
            types = list(l2["confusion_truth_to_predicted"])
            lines += ["| truth \\ predicted | " + " | ".join(types) + " |", "|" + "---|" * (len(types) + 1)]
            for t in types:
                lines.append(
                    f"| {t} | "
                    + " | ".join(str(l2["confusion_truth_to_predicted"][t][u]) for u in types)
                    + " |"
                )
            lines.append("")
    lines += ["## Targets", "", "| metric | value | target | met |", "|---|---|---|---|"]
    for k, v in res["targets"].items():
        lines.append(f"| {k} | {_f(v['value'])} | {v['target']} | {v['met']} |")
    return "\n".join(lines) + "\n"


def read_accuracy(path: PathLike) -> dict[str, Any]:
    """Read an ``accuracy.json`` written by :func:`qualify`."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: not found; run rule qualify first.")
    return read_json(p)
