"""LOD1 and LOD2 per tile (rules lod1_tile, lod2_noise_tile, lod2_scene, lod2_tile; merged by rules lod1, lod2):
memory and time bounded by the tile, every building made once, whole.

Ownership: a footprint of rule lod0 belongs to the tile whose grid cell holds its representative point (a point
inside the polygon, :meth:`shapely.Polygon.representative_point`), by the :class:`sat2lod.lod.tiled.Ownership`
of the tiling checkpoint (a cell of a tile that was not kept goes to the nearest kept tile). A tile job reads
the footprints meeting its region (a bounding-box read of the GeoPackage), keeps those it owns, and reads the
rasters over one window: the owned footprints (and, for LOD2, the footprints within a DSM pixel of them, whose
roof level lies beyond a shared wall) plus ``GROUND_RING_M`` (the ring where the ground is measured) plus two
pixels. Each building is computed from the same pixels as on the whole AOI, so the tiled models are the
untiled ones (:func:`sat2lod.lod.pipeline.run_lod1`, :func:`sat2lod.lod.pipeline.run_lod2`), up to the last bit
of a pixel centre computed from a window's transform.

LOD2 has two scene-level parameters, estimated on the whole scene before any roof is fitted: the DSM noise
(median over every roof of :func:`sat2lod.lod.roof.roof_noise`: computed per tile by :func:`lod2_noise_tile`,
the medians taken by :func:`lod2_scene`) and the DSM edge ramp (calibrated by :func:`lod2_scene` on at most
``RAMP_MAX_ROOFS`` roofs drawn as the untiled run draws them, each read in its own small window).

Every tile writes its buildings as a CityJSONSeq on one fixed ``transform`` (1 mm, translate = the AOI grid's
west-south corner, :func:`sat2lod.lod.pipeline.grid_corner`), so that :func:`merge_city` streams them into one
CityJSON (+ CityJSONSeq, + OBJ) with the vertices shared exactly as the untiled writer shares them, in the
order of the footprint ids (rule lod0 writes footprints in id order), holding the vertex index only.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio.windows
import shapely

from sat2lod.grid import check_same_grid
from sat2lod.io.cityjson import (
    SCALE,
    CityWriter,
    city_header,
    city_model,
    header_datum,
    header_epsg,
    iter_seq_features,
    read_seq_header,
    validate_cityjson,
    write_cityjsonseq,
)
from sat2lod.io.jsonio import read_json, write_json
from sat2lod.io.raster import RasterHeader, raster_header, read_raster
from sat2lod.io.vector import read_vector
from sat2lod.lod.models import GROUND_RING_M
from sat2lod.lod.pipeline import (
    LodParams,
    brightness,
    datum_of,
    epsg_of,
    grid_corner,
    lod1_buildings,
    lod2_buildings,
    ramp_roofs,
    roof_noise_table,
    roof_points,
    roof_walls,
    with_edge_ramp,
    with_scene_noise,
)
from sat2lod.lod.roof import RoofParams, ramp_sample
from sat2lod.lod.tiled import Ownership, _window, read_ownership

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

#: pixels added around a window beyond the ground ring (a pixel whose centre lies in a polygon is inside it)
MARGIN_PX = 2


def _read_footprints(path: PathLike, bbox: Sequence[float]) -> gpd.GeoDataFrame:
    """Rule lod0's footprints whose envelope meets ``bbox``, in id order."""
    gdf = read_vector(path, bbox=tuple(float(v) for v in bbox))
    if "id" not in gdf.columns:
        raise ValueError(f"{path}: footprints need an 'id' column (made by rule lod0)")
    return gdf.sort_values("id", kind="stable").reset_index(drop=True)


def _bounds(hdr: RasterHeader) -> tuple[float, float, float, float]:
    t, (h, w) = hdr.transform, hdr.shape
    xs, ys = sorted((t.c, t.c + w * t.a)), sorted((t.f, t.f + h * t.e))
    return xs[0], ys[0], xs[1], ys[1]


def owned_footprints(footprints: PathLike, own: Ownership, tile: str, hdr: RasterHeader) -> gpd.GeoDataFrame:
    """The footprints (rule lod0's GeoPackage) tile ``tile`` owns: those whose representative point lies in
    its cells (``own``; ``hdr``: the AOI's raster grid, which bounds the grid's outer cells)."""
    if tile not in set(own.cells.ravel()):
        raise ValueError(f"no tile {tile!r} in the tiling checkpoint's grid")
    region, aoi = own.region(tile), _bounds(hdr)
    bbox = (max(region[0], aoi[0]), max(region[1], aoi[1]), min(region[2], aoi[2]), min(region[3], aoi[3]))
    gdf = _read_footprints(footprints, bbox)
    pts = gdf.geometry.representative_point()
    mine = np.array([own.owner(p.x, p.y) == tile for p in pts], bool)
    return gdf[mine].reset_index(drop=True)


def _window_of(geoms: Sequence[Any], hdr: RasterHeader) -> rasterio.windows.Window:
    """Window of the AOI grid over ``geoms`` + the ground ring + ``MARGIN_PX`` pixels."""
    x0, y0, x1, y1 = shapely.total_bounds(np.asarray(geoms, object))
    m = GROUND_RING_M + MARGIN_PX * abs(hdr.transform.a)
    return _window((x0 - m, y0 - m, x1 + m, y1 + m), hdr.transform, hdr.shape)


def _with_neighbours(footprints: PathLike, owned: gpd.GeoDataFrame, tol_m: float) -> gpd.GeoDataFrame:
    """The owned footprints and those within ``tol_m`` of one (what lies beyond a shared wall), in id order."""
    x0, y0, x1, y1 = owned.total_bounds
    cand = _read_footprints(footprints, (x0 - 2 * tol_m, y0 - 2 * tol_m, x1 + 2 * tol_m, y1 + 2 * tol_m))
    tree = shapely.STRtree(np.asarray(list(owned.geometry), object))
    near = [len(tree.query(g, predicate="dwithin", distance=tol_m)) > 0 for g in cand.geometry]
    return cand[np.array(near, bool)].reset_index(drop=True)


def _write_tile(
    out: PathLike, blds: list, hdr: RasterHeader, epsg: int, datum: str, rule: str, tile: str, n: int
) -> None:
    doc = city_model(
        blds, epsg, datum, f"{rule} tile {tile}", translate=grid_corner(hdr.transform, hdr.shape)
    )
    write_cityjsonseq(out, doc)
    log.info("%s %s: %d of %d owned footprints modelled -> %s", rule, tile, len(blds), n, out)


def lod1_tile(
    footprints: PathLike,
    dtm: PathLike,
    ndsm: PathLike,
    tiles: PathLike,
    tile: str,
    out: PathLike,
    *,
    lod: LodParams | Mapping[str, Any] | None = None,
) -> int:
    """The LoD1.2 blocks of the footprints tile ``tile`` owns -> ``out`` (CityJSONSeq on the AOI's fixed
    transform). DTM and nDSM (m, one grid) are read over the window of those footprints. Returns the number
    of buildings written."""
    prm = LodParams.of(lod)
    hdr, nhdr = raster_header(dtm), raster_header(ndsm)
    check_same_grid(hdr, nhdr, dtm, ndsm)
    gdf = owned_footprints(footprints, read_ownership(tiles), tile, hdr)
    blds: list = []
    if len(gdf):
        win = _window_of(list(gdf.geometry), hdr)
        t = read_raster(dtm, masked_to_nan=True, window=win)
        n = read_raster(ndsm, masked_to_nan=True, window=win)
        blds = lod1_buildings(gdf["id"], gdf.geometry, t.array, n.array, t.transform, prm)
    _write_tile(out, blds, hdr, epsg_of(hdr, dtm), datum_of(hdr, nhdr), "lod1", tile, len(gdf))
    return len(blds)


def lod2_noise_tile(
    footprints: PathLike,
    dsm: PathLike,
    tiles: PathLike,
    tile: str,
    out: PathLike,
    *,
    lod: LodParams | Mapping[str, Any] | None = None,
) -> np.ndarray:
    """The DSM noise of the roofs tile ``tile`` owns -> ``out`` (JSON ``{"tile", "noise": [[NMAD m,
    correlation area px], ...]}``, roofs without one left out; :func:`sat2lod.lod.pipeline.roof_noise_table`).
    Returns the (K, 2) table."""
    prm = LodParams.of(lod).roofs()
    hdr = raster_header(dsm)
    gdf = owned_footprints(footprints, read_ownership(tiles), tile, hdr)
    noise = np.zeros((0, 2))
    if len(gdf):
        geoms = list(gdf.geometry)
        s = read_raster(dsm, masked_to_nan=True, window=_window_of(geoms, hdr))
        noise = roof_noise_table(geoms, roof_points(geoms, s.array, s.transform, prm), s.transform, prm)
    write_json(out, {"tile": tile, "noise": noise.tolist()})
    log.info("lod2_noise_tile %s: DSM noise of %d of %d owned roofs -> %s", tile, len(noise), len(gdf), out)
    return noise


def lod2_scene(
    noise: Sequence[PathLike],
    footprints: PathLike,
    dsm: PathLike,
    dtm: PathLike,
    out: PathLike,
    *,
    ortho: PathLike | None = None,
    lod: LodParams | Mapping[str, Any] | None = None,
) -> RoofParams:
    """The scene-level roof parameters of rule lod2 -> ``out`` (JSON: ``noise_m``, ``corr_area_px``,
    ``edge_ramp``): the medians of the tiles' roof noise (``noise``: :func:`lod2_noise_tile` files) and, with
    ``lod.roof_edge_ramp``, the edge ramp calibrated on the roofs :func:`sat2lod.lod.roof.ramp_sample` draws
    (each read with its neighbours in its own window). Holds the footprints (vectors), never a whole raster."""
    lp = LodParams.of(lod)
    parts = [np.asarray(read_json(p)["noise"], float).reshape(-1, 2) for p in noise]
    prm = with_scene_noise(lp.roofs(), np.concatenate(parts) if parts else np.zeros((0, 2)))
    if lp.roof_edge_ramp:
        prm = with_edge_ramp(
            prm,
            _ramp_roofs(footprints, dsm, dtm, ortho, prm, lp.ground_percentile),
            raster_header(dsm).transform,
        )
    write_json(
        out,
        {"noise_m": prm.noise_m, "corr_area_px": prm.corr_area_px, "edge_ramp": list(prm.edge_ramp)},
    )
    return prm


def _ramp_roofs(
    footprints: PathLike,
    dsm: PathLike,
    dtm: PathLike,
    ortho: PathLike | None,
    prm: RoofParams,
    ground_percentile: float,
) -> list[tuple]:
    """The roofs the edge ramp is calibrated on (:func:`sat2lod.lod.pipeline.ramp_roofs`), read one by one."""
    hdr = raster_header(dsm)
    check_same_grid(hdr, raster_header(dtm), dsm, dtm)
    tol = abs(hdr.transform.a)
    gdf = read_vector(footprints)
    if "id" not in gdf.columns:
        raise ValueError(f"{footprints}: footprints need an 'id' column (made by rule lod0)")
    geoms = np.asarray(list(gdf.geometry), object)
    tree = shapely.STRtree(geoms)
    roofs: list[tuple] = []
    for i in ramp_sample(len(geoms)):
        near = sorted(int(j) for j in tree.query(geoms[i], predicate="dwithin", distance=tol))
        local = [geoms[j] for j in near]
        win = _window_of(local, hdr)
        s = read_raster(dsm, masked_to_nan=True, window=win)
        t = read_raster(dtm, masked_to_nan=True, window=win)
        img = None if ortho is None else brightness(ortho, s, dsm, window=win)
        pts = roof_points(local, s.array, s.transform, prm)
        grounds, walls = roof_walls(local, pts, t.array, s.transform, ground_percentile)
        k = near.index(int(i))
        roofs += ramp_roofs([local[k]], [pts[k]], [grounds[k]], [walls[k]], img, s.transform, prm)
    return roofs


def lod2_tile(
    footprints: PathLike,
    dsm: PathLike,
    dtm: PathLike,
    tiles: PathLike,
    tile: str,
    scene: PathLike,
    out: PathLike,
    *,
    ortho: PathLike | None = None,
    lod: LodParams | Mapping[str, Any] | None = None,
) -> int:
    """The LoD2.2 buildings of the footprints tile ``tile`` owns -> ``out`` (CityJSONSeq on the AOI's fixed
    transform), fitted with the scene's roof parameters (``scene``: :func:`lod2_scene`'s JSON). DSM, DTM (m,
    one grid) and ortho are read over the window of those footprints and their neighbours. Returns the number
    of buildings written."""
    lp = LodParams.of(lod)
    sc = read_json(scene)
    prm = replace(
        lp.roofs(), noise_m=sc["noise_m"], corr_area_px=sc["corr_area_px"], edge_ramp=tuple(sc["edge_ramp"])
    )
    hdr, thdr = raster_header(dsm), raster_header(dtm)
    check_same_grid(hdr, thdr, dsm, dtm)
    gdf = owned_footprints(footprints, read_ownership(tiles), tile, hdr)
    blds: list = []
    if len(gdf):
        local = _with_neighbours(footprints, gdf, abs(hdr.transform.a)) if lp.roof_edge_ramp else gdf
        geoms = list(local.geometry)
        win = _window_of(geoms, hdr)
        s = read_raster(dsm, masked_to_nan=True, window=win)
        t = read_raster(dtm, masked_to_nan=True, window=win)
        img = None if ortho is None else brightness(ortho, s, dsm, window=win)
        walls: list = [None] * len(gdf)
        if lp.roof_edge_ramp:
            pts = roof_points(geoms, s.array, s.transform, prm)
            _, wl = roof_walls(geoms, pts, t.array, s.transform, lp.ground_percentile)
            at = {int(fid): k for k, fid in enumerate(local["id"])}
            walls = [wl[at[int(fid)]] for fid in gdf["id"]]
        blds = lod2_buildings(
            gdf["id"],
            list(gdf.geometry),
            walls,
            s.array,
            t.array,
            s.transform,
            prm,
            lp.ground_percentile,
            img,
        )
    _write_tile(out, blds, hdr, epsg_of(hdr, dsm), datum_of(hdr, thdr), "lod2", tile, len(gdf))
    return len(blds)


def _fid(oid: str) -> tuple[int, str]:
    """Sort key of a building id ``b<footprint id>``: the footprint id, then the text."""
    m = re.fullmatch(r"b(\d+)", oid)
    return (int(m.group(1)) if m else -1, oid)


def merge_city(
    parts: Sequence[PathLike],
    city: PathLike,
    seq: PathLike | None = None,
    obj: PathLike | None = None,
    *,
    title: str,
) -> int:
    """Per-tile CityJSONSeq (:func:`lod1_tile`, :func:`lod2_tile`) -> one CityJSON ``city`` (+ CityJSONSeq
    ``seq``, + OBJ ``obj``): buildings in footprint-id order, vertices shared, metadata as the untiled rule
    writes it (``title``; CRS, vertical datum, transform from the tiles, which must agree; extent = the union
    of the tiles'). Streams the features (one in memory at a time); each is validated before it is written.
    Returns the number of buildings."""
    if not parts:
        raise ValueError(f"{city}: no tile CityJSONSeq to merge; rerun the tiles step.")
    heads = [read_seq_header(p) for p in parts]
    for p, h in zip(parts[1:], heads[1:]):
        if h.get("transform") != heads[0].get("transform"):
            raise ValueError(f"{p}: its transform differs from {parts[0]}'s; rerun the tiles of this AOI.")
        if header_epsg(h) != header_epsg(heads[0]) or header_datum(h) != header_datum(heads[0]):
            raise ValueError(
                f"{p}: CRS or vertical datum differs from {parts[0]}'s; rerun the tiles of this AOI."
            )
    exts = np.array(
        [h["metadata"]["geographicalExtent"] for h in heads if "geographicalExtent" in h["metadata"]]
    )
    extent = [*exts[:, :3].min(axis=0).tolist(), *exts[:, 3:].max(axis=0).tolist()] if len(exts) else None
    translate = tuple(round(v / SCALE) for v in heads[0]["transform"]["translate"])
    header = city_header(header_epsg(heads[0]), header_datum(heads[0]), title, translate, extent)  # type: ignore[arg-type]
    n = 0
    with CityWriter(header, city, seq, obj) as w:
        for feat in iter_seq_features(list(parts), _fid):
            errors = validate_cityjson(
                {**header, "CityObjects": feat["CityObjects"], "vertices": feat["vertices"]}
            )
            if errors:
                raise ValueError(
                    f"{city}: building {feat['id']} of a tile is not valid CityJSON: {errors[:3]}"
                )
            w.add(feat)
            n += 1
    log.info("%d buildings from %d tiles -> %s", n, len(parts), city)
    return n
