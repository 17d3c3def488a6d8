"""File-level entry points of rules lod0, lod1 and lod2 (read with sat2lod.io, compute, write atomically)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.windows
from rasterio.transform import Affine

from sat2lod.grid import check_same_grid
from sat2lod.io.cityjson import city_model, validate_cityjson, write_cityjson, write_cityjsonseq, write_obj
from sat2lod.io.raster import Raster, read_raster
from sat2lod.io.vector import read_vector, write_vector
from sat2lod.lod.footprints import FootprintParams, extract_footprints
from sat2lod.lod.metrics import n_vertices
from sat2lod.lod.models import ground_height, lod1_building, lod2_building, pixels_in, wall_parts
from sat2lod.lod.regularize import RegularizeParams
from sat2lod.lod.roof import RAMP_STEP_M, RoofParams, calibrate_edge_ramp, roof_noise
from sat2lod.progress import Progress
from sat2lod.schema import defaults

_LOD = defaults("lod")  # defaults of config section lod

log = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class LodParams:
    """The parameters of rules lod0, lod1 and lod2: config section ``lod``, one field per key (see
    config/schema.yaml for each), defaults from the schema. The rules pass the whole section; each stage takes
    its keys from here (:meth:`footprints` for lod0, :meth:`roofs` for lod2)."""

    min_area_m2: float = _LOD["min_area_m2"]
    split_step_m: float = _LOD["split_step_m"]
    wall_gap_m: float = _LOD["wall_gap_m"]
    split_contrast: float = _LOD["split_contrast"]
    split_min_width_m: float = _LOD["split_min_width_m"]
    split_line_step_m: float = _LOD["split_line_step_m"]
    min_height_m: float = _LOD["min_height_m"]
    simplify_m: float = _LOD["simplify_m"]
    angle_tol_deg: float = _LOD["angle_tol_deg"]
    min_edge_m: float = _LOD["min_edge_m"]
    max_vertices: int = _LOD["max_vertices"]
    lod1_roof_percentile: float = _LOD["lod1_roof_percentile"]
    ground_percentile: float = _LOD["ground_percentile"]
    roof_max_rmse_m: float = _LOD["roof_max_rmse_m"]
    roof_min_rise_m: float = _LOD["roof_min_rise_m"]
    roof_min_slope_deg: float = _LOD["roof_min_slope_deg"]
    roof_min_slope_z: float = _LOD["roof_min_slope_z"]
    roof_bic_margin: float = _LOD["roof_bic_margin"]
    roof_ortho_min_gain: float = _LOD["roof_ortho_min_gain"]
    roof_edge_ramp: bool = _LOD["roof_edge_ramp"]
    plane_tol_m: float = _LOD["plane_tol_m"]
    max_planes: int = _LOD["max_planes"]
    edge_buffer_m: float = _LOD["edge_buffer_m"]
    tile_halo_m: float = _LOD["tile_halo_m"]

    @classmethod
    def of(cls, section: LodParams | Mapping[str, Any] | None) -> LodParams:
        """The params of a config section ``lod`` (a mapping of some or all of its keys; None = defaults).

        Raises:
            TypeError: a key that is not in the section (a typo must not fall back to a default silently).
        """
        if section is None:
            return cls()
        if isinstance(section, cls):
            return section
        unknown = set(section) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(
                f"unknown lod parameters {sorted(unknown)}: not keys of config section lod (config/schema.yaml)"
            )
        return cls(**section)

    def footprints(self) -> FootprintParams:
        """The footprint extraction and regularization parameters (rule lod0)."""
        return FootprintParams(
            min_area_m2=self.min_area_m2,
            split_step_m=self.split_step_m,
            min_height_m=self.min_height_m,
            wall_gap_m=self.wall_gap_m,
            split_contrast=self.split_contrast,
            split_min_width_m=self.split_min_width_m,
            split_line_step_m=self.split_line_step_m,
            regularize=RegularizeParams(
                simplify_m=self.simplify_m,
                angle_tol_deg=self.angle_tol_deg,
                min_edge_m=self.min_edge_m,
                max_vertices=self.max_vertices,
            ),
        )

    def roofs(self) -> RoofParams:
        """The roof fitting parameters (rule lod2; the edge ramp is calibrated on the scene when
        ``roof_edge_ramp``)."""
        return RoofParams(
            max_rmse_m=self.roof_max_rmse_m,
            min_rise_m=self.roof_min_rise_m,
            plane_tol_m=self.plane_tol_m,
            max_planes=self.max_planes,
            edge_buffer_m=self.edge_buffer_m,
            min_slope_deg=self.roof_min_slope_deg,
            min_slope_z=self.roof_min_slope_z,
            bic_margin=self.roof_bic_margin,
            ortho_min_gain=self.roof_ortho_min_gain,
        )


def brightness(
    ortho: PathLike, ref: Raster, ref_path: PathLike, window: rasterio.windows.Window | None = None
) -> np.ndarray:
    """(H, W) float32 brightness of the true ortho (mean of its bands, NaN = nodata) on ``ref``'s grid (``ref``
    read over ``window`` of the same grid, when given)."""
    o = read_raster(ortho, masked_to_nan=True, window=window)
    check_same_grid(ref, o, ref_path, ortho)
    img = o.array.astype(np.float32)
    if img.ndim == 3:
        img = np.nanmean(img, axis=0) if img.shape[0] > 1 else img[0]
    return img


def _epsg(r: Raster, path: PathLike) -> int:
    epsg = r.crs.to_epsg() if r.crs is not None else None
    if epsg is None:
        raise ValueError(f"{path}: the raster has no EPSG-coded CRS; set config output.epsg and rerun.")
    return int(epsg)


def _datum(*rasters: Raster) -> str:
    for r in rasters:
        if "VERTICAL_DATUM" in r.tags:
            return r.tags["VERTICAL_DATUM"]
    return "unknown (input rasters carry no VERTICAL_DATUM tag)"


def run_lod0(
    mask: PathLike,
    ndsm: PathLike | None,
    gpkg: PathLike,
    fgb: PathLike | None = None,
    *,
    ortho: PathLike | None = None,
    lod: LodParams | Mapping[str, Any] | None = None,
) -> gpd.GeoDataFrame:
    """Building mask (+ nDSM, + ortho) -> regularized footprints as GeoPackage (+ FlatGeobuf).

    ``ortho`` (same grid as the mask; several bands are averaged) lets touching buildings of one height be
    split along roof-image edges (``split_contrast``, ``split_min_width_m``; see FootprintParams); touching
    buildings of different heights are split where the nDSM jumps (``split_step_m``) or, smeared as a stereo
    nDSM smears it, steps along a straight line (``split_line_step_m``). ``lod``: config section ``lod``
    (:class:`LodParams`; None = the schema's defaults).

    Columns: id, block, area_m2, perimeter_m, n_vertices, orientation_deg, traced_area_m2, ndsm_median_m.
    """
    m = read_raster(mask)
    if m.array.ndim != 2 or m.array.dtype != np.uint8:
        raise ValueError(
            f"{mask}: expected a single-band uint8 building mask (1 building, 0 other, 255 nodata)"
        )
    nd = None
    if ndsm is not None:
        r = read_raster(ndsm, masked_to_nan=True)
        check_same_grid(m, r, mask, ndsm)
        nd = r.array.astype(np.float32)
    img = None if ortho is None else brightness(ortho, m, mask)
    gdf = footprint_table(m.array, nd, m.transform, m.crs, LodParams.of(lod).footprints(), img)
    write_vector(gpkg, gdf, layer="footprints")
    if fgb is not None:
        write_vector(fgb, gdf)
    log.info("lod0: %d footprints -> %s", len(gdf), gpkg)
    return gdf


#: columns of the footprint table (rule lod0's GeoPackage), in order
FOOTPRINT_COLUMNS = [
    "id",
    "block",
    "area_m2",
    "perimeter_m",
    "n_vertices",
    "orientation_deg",
    "traced_area_m2",
    "ndsm_median_m",
    "geometry",
]


def footprint_table(
    mask: np.ndarray,
    nd: np.ndarray | None,
    transform: Affine,
    crs: Any,
    prm: FootprintParams,
    img: np.ndarray | None = None,
    block_first: bool = False,
) -> gpd.GeoDataFrame:
    """:func:`sat2lod.lod.footprints.extract_footprints` as a table (:data:`FOOTPRINT_COLUMNS`); with
    ``block_first`` also ``block_row``, ``block_col``: the first pixel of each footprint's block on this grid."""
    fps = extract_footprints(mask, nd, transform, prm, img)
    rows = []
    for f in fps:
        med = float("nan")
        if nd is not None:
            v = pixels_in(f.polygon, nd, transform)[2]
            v = v[np.isfinite(v)]
            med = float(np.median(v)) if len(v) else float("nan")
        rows.append(
            {
                "id": f.id,
                "block": f.block,
                "area_m2": round(f.polygon.area, 2),
                "perimeter_m": round(f.polygon.length, 2),
                "n_vertices": n_vertices(f.polygon),
                "orientation_deg": round(f.orientation_deg, 2),
                "traced_area_m2": round(f.traced_area_m2, 2),
                "ndsm_median_m": round(med, 2),
                "geometry": f.polygon,
                "block_row": f.block_first[0],
                "block_col": f.block_first[1],
            }
        )
    cols = FOOTPRINT_COLUMNS + (["block_row", "block_col"] if block_first else [])
    return gpd.GeoDataFrame(pd.DataFrame(rows, columns=cols), geometry="geometry", crs=crs)


def _footprints(path: PathLike) -> gpd.GeoDataFrame:
    gdf = read_vector(path)
    if "id" not in gdf.columns:
        raise ValueError(f"{path}: footprints need an 'id' column (made by rule lod0)")
    return gdf


def run_lod1(
    footprints: PathLike,
    dtm: PathLike,
    ndsm: PathLike,
    city: PathLike,
    *,
    lod: LodParams | Mapping[str, Any] | None = None,
    title: str = "sat2lod LoD1.2",
    cityjsonseq: PathLike | None = None,
) -> dict:
    """Footprints + DTM + nDSM -> LoD1.2 CityJSON 2.0 (and CityJSONSeq). Returns the CityJSON dict.

    ``lod``: config section ``lod`` (:class:`LodParams`: ``lod1_roof_percentile``, ``ground_percentile``)."""
    prm = LodParams.of(lod)
    gdf = _footprints(footprints)
    t = read_raster(dtm, masked_to_nan=True)
    n = read_raster(ndsm, masked_to_nan=True)
    check_same_grid(t, n, dtm, ndsm)
    epsg = _epsg(t, dtm)
    blds = []
    for fid, geom in zip(gdf["id"], gdf.geometry):
        b = lod1_building(
            f"b{int(fid)}",
            geom,
            t.array,
            n.array,
            t.transform,
            prm.lod1_roof_percentile,
            prm.ground_percentile,
        )
        if b is not None:
            blds.append(b)
    _log_unmodelled("lod1", len(gdf), len(blds))
    return _write_city(blds, epsg, _datum(t, n), title, city, cityjsonseq)


def run_lod2(
    footprints: PathLike,
    dsm: PathLike,
    dtm: PathLike,
    city: PathLike,
    obj: PathLike | None = None,
    *,
    ortho: PathLike | None = None,
    lod: LodParams | Mapping[str, Any] | None = None,
    title: str = "sat2lod LoD2.2",
    cityjsonseq: PathLike | None = None,
) -> dict:
    """Footprints + DSM + DTM -> LoD2.2 CityJSON 2.0 (+ CityJSONSeq, OBJ). Returns the CityJSON dict.

    Roof model selection (sat2lod.lod.roof.fit_roof) uses the DSM noise correlation area estimated once for
    the scene (median over the roofs of :func:`sat2lod.lod.roof.roof_noise`), and the plane segmentation of
    roofs no primitive fits the scene's DSM noise level (median NMAD, same roofs). With ``ortho`` (same grid as
    the DSM; several bands are averaged) the brightness pattern of the roof faces is a second cue for the roof
    type (``roof_ortho_min_gain``, see :class:`sat2lod.lod.roof.RoofParams`). With ``roof_edge_ramp`` the DSM's
    blur across the walls is calibrated on the scene's roofs (:func:`sat2lod.lod.roof.calibrate_edge_ramp`, on
    their free walls) and every roof fit models it: towards the ground beyond a free wall, towards the neighbour's
    roof level (median of its DSM) beyond a wall shared with another footprint
    (:func:`sat2lod.lod.models.wall_parts`). ``lod``: config section ``lod`` (:class:`LodParams`; None = the
    schema's defaults).
    """
    lp = LodParams.of(lod)
    ground_percentile = lp.ground_percentile
    gdf = _footprints(footprints)
    s = read_raster(dsm, masked_to_nan=True)
    t = read_raster(dtm, masked_to_nan=True)
    check_same_grid(s, t, dsm, dtm)
    epsg = _epsg(s, dsm)
    prm = lp.roofs()
    img = None if ortho is None else brightness(ortho, s, dsm)
    # the DSM noise correlation is a property of the DSM: one scene value (median over roofs), so that a roof
    # no primitive fits (model misfit in its residuals) does not take its own large correlation area
    pts = [pixels_in(geom, s.array, s.transform, prm.edge_buffer_m) for geom in gdf.geometry]
    noise = np.array(
        [roof_noise(geom, x, y, z, s.transform, prm) for geom, (x, y, z) in zip(gdf.geometry, pts)]
    )
    noise = noise[np.isfinite(noise).all(axis=1)] if len(noise) else noise
    if len(noise):
        prm = replace(prm, noise_m=float(np.median(noise[:, 0])), corr_area_px=float(np.median(noise[:, 1])))
        log.info(
            "lod2: DSM noise on roofs %.2f m (NMAD), correlation area %.1f px (medians over %d roofs)",
            prm.noise_m,
            prm.corr_area_px,
            len(noise),
        )
    walls: list = [None] * len(gdf)
    if lp.roof_edge_ramp:
        grounds = [ground_height(geom, t.array, s.transform, ground_percentile) for geom in gdf.geometry]
        # beyond a wall shared with another footprint (or a gap under one DSM pixel) lies that roof, not the
        # ground: the DSM is blurred towards the neighbour's roof level (median of its DSM)
        levels = [float(np.nanmedian(z)) if np.isfinite(z).any() else float("nan") for _, _, z in pts]
        walls = wall_parts(list(gdf.geometry), grounds, levels, abs(s.transform.a))
        roofs = [
            (
                geom,
                x,
                y,
                z.astype(float),
                g,
                None
                if img is None
                else pixels_in(geom, img, s.transform, prm.edge_buffer_m)[2].astype(float),
                wl,
            )
            for geom, (x, y, z), g, wl in zip(gdf.geometry, pts, grounds, walls)
        ]
        prm = replace(prm, edge_ramp=calibrate_edge_ramp(roofs, prm, s.transform))
        log.info(
            "lod2: DSM edge spread (fraction of the wall height, per %.2f m from the outline): %s",
            RAMP_STEP_M,
            [round(v, 3) for v in prm.edge_ramp],
        )
    blds = []
    counts: dict[str, int] = {}
    progress = Progress("lod2 building", len(gdf), log)
    for k, (fid, geom, wl) in enumerate(zip(gdf["id"], gdf.geometry, walls), start=1):
        res = lod2_building(
            f"b{int(fid)}", geom, s.array, t.array, s.transform, prm, ground_percentile, img, wl
        )
        if res is not None:
            blds.append(res[0])
            counts[res[1].roof_type] = counts.get(res[1].roof_type, 0) + 1
        progress.update(k)
    log.info("lod2 roof types: %s", counts)
    _log_unmodelled("lod2", len(gdf), len(blds))
    doc = _write_city(blds, epsg, _datum(s, t), title, city, cityjsonseq)
    if obj is not None:
        write_obj(obj, doc)
    return doc


def _log_unmodelled(rule: str, n_footprints: int, n_models: int) -> None:
    """One summary line: how many footprints got no model (each one's id and reason is logged above)."""
    if n_models < n_footprints:
        log.warning(
            "%s: %d of %d footprints could not be modelled (ids and reasons in the lines above)",
            rule,
            n_footprints - n_models,
            n_footprints,
        )
    log.info("%s: %d of %d footprints modelled", rule, n_models, n_footprints)


def _write_city(blds: list, epsg: int, datum: str, title: str, city: PathLike, seq: PathLike | None) -> dict:
    doc = city_model(blds, epsg, datum, title)
    errors = validate_cityjson(doc)
    if errors:  # a writer bug, not bad input: refuse to write an invalid file
        raise RuntimeError(f"{city}: generated CityJSON is invalid: {errors[:5]}")
    write_cityjson(city, doc)
    if seq is not None:
        write_cityjsonseq(seq, doc)
    log.info("%d buildings -> %s", len(blds), Path(city))
    return doc
