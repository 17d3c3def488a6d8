"""File-level entry points of rules lod0, lod1 and lod2 (read with sat2lod.io, compute, write atomically)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.windows
from rasterio.transform import Affine

from sat2lod.grid import check_same_grid
from sat2lod.io.cityjson import (
    CityBuilding,
    CityWriter,
    city_features,
    city_model,
    grid_translate,
    validate_cityjson,
)
from sat2lod.io.raster import Raster, RasterHeader, read_raster
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


def epsg_of(r: Raster | RasterHeader, path: PathLike) -> int:
    """The EPSG code of a raster's CRS; the error names ``path`` and the fix."""
    epsg = r.crs.to_epsg() if r.crs is not None else None
    if epsg is None:
        raise ValueError(f"{path}: the raster has no EPSG-coded CRS; set config output.epsg and rerun.")
    return int(epsg)


def datum_of(*rasters: Raster | RasterHeader) -> str:
    """The vertical datum of the heights (the first ``VERTICAL_DATUM`` tag among the rasters)."""
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

    The whole AOI at once (rules lod1_tile + lod1 make the same file tile by tile, :mod:`sat2lod.lod.tiled_city`).
    ``lod``: config section ``lod`` (:class:`LodParams`: ``lod1_roof_percentile``, ``ground_percentile``)."""
    prm = LodParams.of(lod)
    gdf = _footprints(footprints)
    t = read_raster(dtm, masked_to_nan=True)
    n = read_raster(ndsm, masked_to_nan=True)
    check_same_grid(t, n, dtm, ndsm)
    epsg = epsg_of(t, dtm)
    blds = lod1_buildings(gdf["id"], gdf.geometry, t.array, n.array, t.transform, prm)
    _log_unmodelled("lod1", len(gdf), len(blds))
    translate = grid_corner(t.transform, t.array.shape)
    return _write_city(blds, epsg, datum_of(t, n), title, city, cityjsonseq, translate=translate)


def grid_corner(transform: Affine, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The CityJSON ``transform.translate`` of an AOI (:func:`sat2lod.io.cityjson.grid_translate`): the
    west-south corner of its raster grid (``transform``, ``shape`` (..., H, W) of the whole AOI)."""
    h, w = shape[-2:]
    xs = (transform.c, transform.c + w * transform.a)
    ys = (transform.f, transform.f + h * transform.e)
    return grid_translate(min(xs), min(ys))


def lod1_buildings(
    ids: Sequence[Any],
    geoms: Sequence[Any],
    dtm: np.ndarray,
    ndsm: np.ndarray,
    transform: Affine,
    prm: LodParams,
) -> list[CityBuilding]:
    """The LoD1.2 blocks of footprints (``ids``, polygons) on (H, W) DTM and nDSM (m, NaN nodata) of one grid;
    a footprint without valid heights is left out (with a log line)."""
    blds = []
    for fid, geom in zip(ids, geoms):
        b = lod1_building(
            f"b{int(fid)}", geom, dtm, ndsm, transform, prm.lod1_roof_percentile, prm.ground_percentile
        )
        if b is not None:
            blds.append(b)
    return blds


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

    The whole AOI at once (rules lod2_noise_tile, lod2_scene, lod2_tile and lod2 make the same file tile by
    tile, :mod:`sat2lod.lod.tiled_city`). Roof model selection (sat2lod.lod.roof.fit_roof) uses the DSM noise
    correlation area estimated once for the scene (median over the roofs of :func:`sat2lod.lod.roof.roof_noise`),
    and the plane segmentation of roofs no primitive fits the scene's DSM noise level (median NMAD, same roofs).
    With ``ortho`` (same grid as the DSM; several bands are averaged) the brightness pattern of the roof faces
    is a second cue for the roof type (``roof_ortho_min_gain``, see :class:`sat2lod.lod.roof.RoofParams`). With
    ``roof_edge_ramp`` the DSM's blur across the walls is calibrated on the scene's roofs
    (:func:`sat2lod.lod.roof.calibrate_edge_ramp`, on their free walls) and every roof fit models it: towards
    the ground beyond a free wall, towards the neighbour's roof level (median of its DSM) beyond a wall shared
    with another footprint (:func:`sat2lod.lod.models.wall_parts`). ``lod``: config section ``lod``
    (:class:`LodParams`; None = the schema's defaults).
    """
    lp = LodParams.of(lod)
    gdf = _footprints(footprints)
    geoms = list(gdf.geometry)
    s = read_raster(dsm, masked_to_nan=True)
    t = read_raster(dtm, masked_to_nan=True)
    check_same_grid(s, t, dsm, dtm)
    epsg = epsg_of(s, dsm)
    prm = lp.roofs()
    img = None if ortho is None else brightness(ortho, s, dsm)
    pts = roof_points(geoms, s.array, s.transform, prm)
    prm = with_scene_noise(prm, roof_noise_table(geoms, pts, s.transform, prm))
    walls: list = [None] * len(gdf)
    if lp.roof_edge_ramp:
        grounds, walls = roof_walls(geoms, pts, t.array, s.transform, lp.ground_percentile)
        prm = with_edge_ramp(prm, ramp_roofs(geoms, pts, grounds, walls, img, s.transform, prm), s.transform)
    blds = lod2_buildings(
        gdf["id"], geoms, walls, s.array, t.array, s.transform, prm, lp.ground_percentile, img
    )
    _log_unmodelled("lod2", len(gdf), len(blds))
    translate = grid_corner(s.transform, s.array.shape)
    return _write_city(blds, epsg, datum_of(s, t), title, city, cityjsonseq, obj, translate)


def roof_points(
    geoms: Sequence[Any], dsm: np.ndarray, transform: Affine, prm: RoofParams
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per footprint, the DSM pixels a roof is fitted to: centres (x, y) and heights z of the pixels inside the
    footprint shrunk by ``prm.edge_buffer_m`` (:func:`sat2lod.lod.models.pixels_in`)."""
    return [pixels_in(geom, dsm, transform, prm.edge_buffer_m) for geom in geoms]


def roof_noise_table(
    geoms: Sequence[Any],
    pts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    transform: Affine,
    prm: RoofParams,
) -> np.ndarray:
    """(K, 2) DSM noise of the roofs that have one (NMAD in m, correlation area in pixels;
    :func:`sat2lod.lod.roof.roof_noise`), NaN rows left out."""
    noise = np.array([roof_noise(g, x, y, z, transform, prm) for g, (x, y, z) in zip(geoms, pts)]).reshape(
        -1, 2
    )
    return noise[np.isfinite(noise).all(axis=1)]


def with_scene_noise(prm: RoofParams, noise: np.ndarray) -> RoofParams:
    """``prm`` with the scene's DSM noise: the medians of ``noise`` (:func:`roof_noise_table` of every roof of
    the scene); unchanged when no roof has one."""
    if not len(noise):
        return prm
    # the DSM noise correlation is a property of the DSM: one scene value (median over roofs), so that a roof
    # no primitive fits (model misfit in its residuals) does not take its own large correlation area
    prm = replace(prm, noise_m=float(np.median(noise[:, 0])), corr_area_px=float(np.median(noise[:, 1])))
    log.info(
        "lod2: DSM noise on roofs %.2f m (NMAD), correlation area %.1f px (medians over %d roofs)",
        prm.noise_m,
        prm.corr_area_px,
        len(noise),
    )
    return prm


def roof_walls(
    geoms: Sequence[Any],
    pts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    dtm: np.ndarray,
    transform: Affine,
    ground_percentile: float,
) -> tuple[list[float], list]:
    """Per footprint its ground height (m) and what lies beyond its walls (:func:`sat2lod.lod.models.wall_parts`:
    the neighbour's roof level, median of its DSM ``pts``, beyond a shared wall or a gap under one pixel)."""
    grounds = [ground_height(geom, dtm, transform, ground_percentile) for geom in geoms]
    levels = [float(np.nanmedian(z)) if np.isfinite(z).any() else float("nan") for _, _, z in pts]
    return grounds, wall_parts(list(geoms), grounds, levels, abs(transform.a))


def ramp_roofs(
    geoms: Sequence[Any],
    pts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    grounds: Sequence[float],
    walls: Sequence[Any],
    img: np.ndarray | None,
    transform: Affine,
    prm: RoofParams,
) -> list[tuple]:
    """The roofs as :func:`sat2lod.lod.roof.calibrate_edge_ramp` takes them (footprint, x, y, z, ground, image
    values or None, walls)."""
    return [
        (
            geom,
            x,
            y,
            z.astype(float),
            g,
            None if img is None else pixels_in(geom, img, transform, prm.edge_buffer_m)[2].astype(float),
            wl,
        )
        for geom, (x, y, z), g, wl in zip(geoms, pts, grounds, walls)
    ]


def with_edge_ramp(prm: RoofParams, roofs: list[tuple], transform: Affine) -> RoofParams:
    """``prm`` with the DSM edge ramp calibrated on ``roofs`` (:func:`ramp_roofs`; more than
    :data:`sat2lod.lod.roof.RAMP_MAX_ROOFS` are sampled, :func:`sat2lod.lod.roof.ramp_sample`)."""
    prm = replace(prm, edge_ramp=calibrate_edge_ramp(roofs, prm, transform))
    log.info(
        "lod2: DSM edge spread (fraction of the wall height, per %.2f m from the outline): %s",
        RAMP_STEP_M,
        [round(v, 3) for v in prm.edge_ramp],
    )
    return prm


def lod2_buildings(
    ids: Sequence[Any],
    geoms: Sequence[Any],
    walls: Sequence[Any],
    dsm: np.ndarray,
    dtm: np.ndarray,
    transform: Affine,
    prm: RoofParams,
    ground_percentile: float,
    img: np.ndarray | None = None,
) -> list[CityBuilding]:
    """The LoD2.2 buildings of footprints (``ids``, polygons, ``walls`` from :func:`roof_walls` or None each) on
    (H, W) DSM and DTM (m, NaN nodata) of one grid, with the scene's roof parameters ``prm``; a footprint
    without valid heights is left out (with a log line)."""
    blds = []
    counts: dict[str, int] = {}
    progress = Progress("lod2 building", len(geoms), log)
    for k, (fid, geom, wl) in enumerate(zip(ids, geoms, walls), start=1):
        res = lod2_building(f"b{int(fid)}", geom, dsm, dtm, transform, prm, ground_percentile, img, wl)
        if res is not None:
            blds.append(res[0])
            counts[res[1].roof_type] = counts.get(res[1].roof_type, 0) + 1
        progress.update(k)
    log.info("lod2 roof types: %s", counts)
    return blds


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


def _write_city(
    blds: list[CityBuilding],
    epsg: int,
    datum: str,
    title: str,
    city: PathLike,
    seq: PathLike | None,
    obj: PathLike | None = None,
    translate: tuple[int, int, int] | None = None,
) -> dict:
    doc = city_model(blds, epsg, datum, title, translate=translate)
    errors = validate_cityjson(doc)
    if errors:  # a writer bug, not bad input: refuse to write an invalid file
        raise RuntimeError(f"{city}: generated CityJSON is invalid: {errors[:5]}")
    with CityWriter(doc, city, seq, obj) as w:
        for feature in city_features(doc):
            w.add(feature)
    log.info("%d buildings -> %s", len(blds), Path(city))
    return doc
