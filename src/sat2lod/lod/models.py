"""LOD1 (LoD1.2 blocks) and LOD2 (LoD2.2 roofs) building models from footprints and height rasters.

Arrays in, CityJSON building records out (:class:`sat2lod.io.cityjson.CityBuilding`); the readers/writers
live in :mod:`sat2lod.lod.pipeline`.

Heights: DSM and DTM absolute in one vertical datum (NaN nodata); nDSM = DSM - DTM (m). Footprints: shapely
polygons in the rasters' projected CRS.
"""

from __future__ import annotations

import logging

import numpy as np
import shapely
from rasterio.transform import Affine, rowcol
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from sat2lod.io.cityjson import CityBuilding
from sat2lod.lod.roof import RoofFit, RoofParams, fit_roof
from sat2lod.lod.solid import build_solid, check_solid
from sat2lod.schema import defaults

_LOD = defaults("lod")  # defaults of config section lod

log = logging.getLogger(__name__)


def pixels_in(
    poly: Polygon,
    array: np.ndarray,
    transform: Affine,
    buffer_m: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres (x, y) and values of the pixels of ``array`` whose centre lies in ``poly`` (shrunk by
    ``buffer_m`` when > 0; the unshrunk polygon is used if the shrunk one holds no pixel centre).

    Returns:
        x, y, v: (N,) arrays (map metres, array values; NaN kept).
    """
    h, w = array.shape
    for b in (buffer_m, 0.0) if buffer_m > 0 else (0.0,):
        p = poly.buffer(-b) if b > 0 else poly
        if p.is_empty:
            continue
        x0, y0, x1, y1 = p.bounds
        r0, c0 = rowcol(transform, x0, y1)
        r1, c1 = rowcol(transform, x1, y0)
        r0, c0 = max(int(r0), 0), max(int(c0), 0)
        r1, c1 = min(int(r1) + 1, h - 1), min(int(c1) + 1, w - 1)
        if r1 < r0 or c1 < c0:
            continue
        rr, cc = np.mgrid[r0 : r1 + 1, c0 : c1 + 1]
        xs, ys = transform @ (cc + 0.5, rr + 0.5)
        inside = shapely.contains_xy(p, xs, ys)
        if inside.any():
            return xs[inside], ys[inside], array[rr[inside], cc[inside]]
    return np.zeros(0), np.zeros(0), np.zeros(0, array.dtype)


def wall_parts(
    polys: list[Polygon],
    grounds: list[float],
    levels: list[float],
    tol_m: float,
) -> list[list[tuple[BaseGeometry, float]]]:
    """What lies beyond each footprint's walls: (N,) lists of (part of the outline, height beyond it).

    The outline (holes included) is cut into the part within ``tol_m`` of each other footprint (a shared wall,
    or a gap too narrow for the DSM to reach the ground), whose height beyond is that neighbour's roof level
    ``levels[j]``, and the rest (free walls), whose height beyond is the building's ground ``grounds[i]``.
    A neighbour with a NaN level counts as ground. Heights absolute (m), geometries lineal (map metres).
    """
    tree = shapely.STRtree(polys)
    out: list[list[tuple[BaseGeometry, float]]] = []
    for i, p in enumerate(polys):
        rest = p.boundary
        parts: list[tuple[BaseGeometry, float]] = []
        for j in sorted(int(k) for k in tree.query(p, predicate="dwithin", distance=tol_m)):
            if j == i or not np.isfinite(levels[j]):
                continue
            zone = polys[j].buffer(tol_m)
            shared = _lineal(rest.intersection(zone))
            if shared.length > 0:
                parts.append((shared, float(levels[j])))
                rest = _lineal(rest.difference(zone))
        if rest.length > 0:
            parts.append((rest, float(grounds[i])))
        out.append(parts)
    return out


def _lineal(g: BaseGeometry) -> BaseGeometry:
    """The lines of ``g`` (a LineString or MultiLineString, possibly empty): the intersection of an outline
    with a neighbour's zone also holds isolated points where the two only touch, and a collection of points
    and lines is not a line for the distance-along-line queries of the roof fit."""
    if g.geom_type in ("LineString", "MultiLineString"):
        return g
    lines = [p for p in shapely.get_parts(g) if p.geom_type in ("LineString", "LinearRing") and p.length > 0]
    lines += [q for p in shapely.get_parts(g) if p.geom_type == "MultiLineString" for q in p.geoms]
    return shapely.MultiLineString(lines) if lines else shapely.MultiLineString()


#: width (m) of the ring around a footprint where its ground is measured (:func:`ground_height`)
GROUND_RING_M = 2.0


def ground_height(poly: Polygon, dtm: np.ndarray, transform: Affine, percentile: float = 50.0) -> float:
    """Ground height of a building: ``percentile`` of the DTM inside the footprint and on a ``GROUND_RING_M``
    ring around it (the DTM under a building is interpolated; its rim is measured). NaN when no valid cell."""
    ring = poly.buffer(GROUND_RING_M).difference(poly)
    vals = np.concatenate([pixels_in(poly, dtm, transform)[2], pixels_in(ring, dtm, transform)[2]])
    vals = vals[np.isfinite(vals)]
    return float(np.percentile(vals, percentile)) if len(vals) else float("nan")


#: inward buffer (m) of the footprint for the LOD1 block height: pixels on the outline mix roof and ground
LOD1_EDGE_BUFFER_M = 0.5


def block_height(
    poly: Polygon,
    ndsm: np.ndarray,
    transform: Affine,
    percentile: float = 90.0,
    buffer_m: float = LOD1_EDGE_BUFFER_M,
) -> float:
    """LoD1.2 block height (m above ground): the ``percentile`` of the nDSM ``ndsm`` (H x W, m, NaN nodata;
    grid ``transform``, the footprint's CRS) over the pixels whose centre lies in ``poly`` shrunk by
    ``buffer_m`` (the whole footprint when the shrunk one holds no pixel centre). NaN when no valid pixel.

    The same rule serves the product (rule lod1) and its reference in :mod:`sat2lod.qualify` (applied to the
    reference nDSM inside the reference footprint), so that the LOD1 height error compares like with like.
    """
    _, _, h = pixels_in(poly, ndsm, transform, buffer_m=buffer_m)
    h = h[np.isfinite(h)]
    return float(np.percentile(h, percentile)) if len(h) else float("nan")


def lod1_building(
    fid: str,
    poly: Polygon,
    dtm: np.ndarray,
    ndsm: np.ndarray,
    transform: Affine,
    roof_percentile: float = _LOD["lod1_roof_percentile"],
    ground_percentile: float = _LOD["ground_percentile"],
) -> CityBuilding | None:
    """LoD1.2 block: the footprint extruded from the ground to ground + :func:`block_height` (the
    ``roof_percentile`` of the nDSM inside the footprint shrunk by ``LOD1_EDGE_BUFFER_M``).

    Returns None (with a log line) when the footprint holds no valid height.
    """
    g = ground_height(poly, dtm, transform, ground_percentile)
    height = block_height(poly, ndsm, transform, roof_percentile)
    if not np.isfinite(g) or not np.isfinite(height):
        log.info("building %s: no valid DTM/nDSM cell, skipped in LOD1", fid)
        return None
    if height <= 0.1:
        log.info("building %s: nDSM percentile %.2f m <= 0.1 m, skipped in LOD1", fid, height)
        return None
    surfaces = build_solid([poly], [(g + height, 0.0, 0.0)], g)
    attrs = {
        "ground_height": round(g, 3),
        "roof_height": round(g + height, 3),
        "height": round(height, 3),
        "roof_percentile": roof_percentile,
        "edge_buffer_m": LOD1_EDGE_BUFFER_M,
        "area_m2": round(poly.area, 2),
    }
    return CityBuilding(fid, [(s.rings, s.semantic) for s in surfaces], "1.2", attrs)


def lod2_building(
    fid: str,
    poly: Polygon,
    dsm: np.ndarray,
    dtm: np.ndarray,
    transform: Affine,
    prm: RoofParams | None = None,
    ground_percentile: float = _LOD["ground_percentile"],
    image: np.ndarray | None = None,
    walls: list[tuple[BaseGeometry, float]] | None = None,
) -> tuple[CityBuilding, RoofFit] | None:
    """LoD2.2 building: fitted roof faces over the footprint, walls, ground; watertight solid.

    ``image``: (H, W) ortho brightness on the DSM grid (NaN nodata) or None; with it the roof type also uses
    the face brightness pattern (:func:`sat2lod.lod.roof.fit_roof`). ``walls``: what lies beyond the
    footprint's walls (:func:`wall_parts`; None = the ground all around), towards which the DSM is blurred.
    """
    prm = prm or RoofParams()
    g = ground_height(poly, dtm, transform, ground_percentile)
    x, y, z = pixels_in(poly, dsm, transform, buffer_m=prm.edge_buffer_m)
    if not np.isfinite(g) or not np.isfinite(z).any():
        log.info("building %s: no valid DSM/DTM cell, skipped in LOD2", fid)
        return None
    v = (
        None
        if image is None
        else pixels_in(poly, image, transform, buffer_m=prm.edge_buffer_m)[2].astype(float)
    )
    fit = fit_roof(poly, x, y, z.astype(float), prm, transform, v, ground=g, walls=walls)
    # a roof plane running below the ground (bad fit, tiny building) is clamped to a flat roof
    ring = np.asarray(poly.exterior.coords)
    low = min(float(np.min(p[0] + p[1] * ring[:, 0] + p[2] * ring[:, 1])) for p in fit.planes)
    if low <= g + 0.5:
        h = max(float(np.nanmedian(z)), g + 1.0)
        fit = RoofFit(
            "flat", [poly], [(h, 0.0, 0.0)], h, h, fit.rmse, fit.n_points, fit.scores, fit.noise_m, fit.n_eff
        )
    try:
        surfaces = build_solid(fit.faces, fit.planes, g)
        chk = check_solid(surfaces)
        problem = (
            f"open shell ({chk['n_bad_edges']} bad edges)"
            if not chk["closed"]
            else f"{chk['n_not_simple']} self-intersecting face(s)"
            if not chk["simple"]
            else f"non-planar face ({chk['max_planarity_m']:.3f} m)"
            if not chk["planar"]
            else ""
        )
    except ValueError as exc:
        problem = str(exc)
    if problem:
        log.warning("building %s: %s roof: %s; using a flat roof instead", fid, fit.roof_type, problem)
        h = float(np.nanmedian(z))
        fit = RoofFit(
            "flat", [poly], [(h, 0.0, 0.0)], h, h, fit.rmse, fit.n_points, fit.scores, fit.noise_m, fit.n_eff
        )
        surfaces = build_solid(fit.faces, fit.planes, g)
    attrs = {
        "roof_type": fit.roof_type,
        "ground_height": round(g, 3),
        "eave_height": round(fit.eave - g, 3),
        "ridge_height": round(fit.ridge - g, 3),
        "roof_rmse": round(fit.rmse, 3) if np.isfinite(fit.rmse) else None,
        "roof_noise_m": round(fit.noise_m, 3) if np.isfinite(fit.noise_m) else None,
        "n_roof_faces": len(fit.faces),
        "area_m2": round(poly.area, 2),
    }
    return CityBuilding(fid, [(s.rings, s.semantic) for s in surfaces], "2.2", attrs), fit
