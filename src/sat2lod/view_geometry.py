"""Viewing geometry from RPC models: image footprints, viewing directions, base-to-height ratios, UTM zones.

All functions take RPC models and numbers (no files). Angles in degrees, heights in metres above the WGS84
ellipsoid, ground coordinates in WGS84 lon/lat degrees unless a projected EPSG is named.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import Polygon

from sat2lod.rpc import RPCModel

_EARTH_RADIUS_M = 6_378_137.0


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 / UTM zone containing (lon, lat): 326zz north, 327zz south."""
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise ValueError(f"({lon}, {lat}) is not a WGS84 lon/lat position in degrees")
    zone = math.floor((lon + 180.0) / 6.0) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def image_edge_pixels(width: int, height: int, n_per_edge: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) samples along the outer pixel edges of a (height, width) image, as a closed-ring order.

    Pixel centres are integers, so the outer edges lie at -0.5 and size - 0.5. Returns two (4 * n_per_edge,)
    arrays walking top edge, right edge, bottom edge, left edge.
    """
    t = np.linspace(0.0, 1.0, n_per_edge, endpoint=False)
    r0, r1, c0, c1 = -0.5, height - 0.5, -0.5, width - 0.5
    rows = np.concatenate([np.full_like(t, r0), r0 + t * (r1 - r0), np.full_like(t, r1), r1 - t * (r1 - r0)])
    cols = np.concatenate([c0 + t * (c1 - c0), np.full_like(t, c1), c1 - t * (c1 - c0), np.full_like(t, c0)])
    return rows, cols


def footprint_lonlat(rpc: RPCModel, width: int, height: int, h: float, n_per_edge: int = 8) -> Polygon:
    """Ground footprint (lon/lat polygon) of a (height, width) image localized at ellipsoidal height ``h`` (m)."""
    rows, cols = image_edge_pixels(width, height, n_per_edge)
    lon, lat = rpc.localize(rows, cols, np.full(rows.shape, float(h)))
    poly = Polygon(np.column_stack([lon, lat]))
    if not poly.is_valid:
        poly = shapely.make_valid(poly)
    return poly


def common_footprint(
    views: list[tuple[RPCModel, int, int]],
    height_range: tuple[float, float],
    epsg: int | None = None,
    n_per_edge: int = 8,
    mode: str = "all_heights",
    n_heights: int = 9,
) -> shapely.Geometry:
    """Ground area seen by every view, over a height range.

    Args:
        views: (rpc, width, height) of each view.
        height_range: (hmin, hmax) ellipsoidal metres.
        epsg: projected EPSG to return the polygon in (metres); None keeps lon/lat degrees.
        mode: ``all_heights``: seen by every view whatever the ground height in the range (conservative:
            intersection over hmin and hmax); ``any_height``: seen by every view for at least one of
            ``n_heights`` heights spread over the range (union over heights of the per-height intersections;
            keeps the overlap of crops whose true ground height is unknown within a wide RPC range).
    Returns:
        A shapely (Multi)Polygon, possibly empty.
    """
    if not views:
        raise ValueError("common_footprint: no view given")
    if mode not in ("all_heights", "any_height"):
        raise ValueError(f"mode {mode!r}: expected 'all_heights' or 'any_height'")
    hmin, hmax = sorted(map(float, height_range))
    if hmax == hmin:
        heights = [hmin]
    else:
        heights = [hmin, hmax] if mode == "all_heights" else list(np.linspace(hmin, hmax, max(2, n_heights)))
    to_xy = Transformer.from_crs(4326, epsg, always_xy=True) if epsg is not None else None
    per_height = []
    for h in heights:
        seen: shapely.Geometry | None = None
        for rpc, width, height in views:
            poly = footprint_lonlat(rpc, width, height, h, n_per_edge)
            if to_xy is not None:
                poly = shapely.transform(
                    poly, lambda xy: np.column_stack(to_xy.transform(xy[:, 0], xy[:, 1]))
                )
            seen = poly if seen is None else shapely.intersection(seen, poly)
        per_height.append(seen)
    if mode == "all_heights":
        return shapely.intersection_all(per_height)
    return shapely.union_all(per_height)


def parallax_vector(rpc: RPCModel, row: float, col: float, h: float, dh: float = 100.0) -> np.ndarray:
    """Horizontal ground shift (east, north) per metre of height of the line of sight through pixel (row, col).

    Localizing the same pixel at h and h + dh moves the ground point towards the satellite by dh * tan(incidence).
    Returns the (2,) vector tan(incidence) * (sin(az), cos(az)), az = azimuth of the satellite seen from the
    ground, clockwise from north.
    """
    lon, lat = rpc.localize(np.array([row, row]), np.array([col, col]), np.array([h, h + dh]))
    de = (lon[1] - lon[0]) * math.radians(1.0) * _EARTH_RADIUS_M * math.cos(math.radians(lat[0]))
    dn = (lat[1] - lat[0]) * math.radians(1.0) * _EARTH_RADIUS_M
    return np.array([de, dn]) / dh


def angles_from_parallax(v: np.ndarray) -> tuple[float, float]:
    """(incidence_deg, azimuth_deg) of a parallax vector from :func:`parallax_vector`; azimuth in [0, 360)."""
    inc = math.degrees(math.atan(float(np.hypot(v[0], v[1]))))
    az = math.degrees(math.atan2(float(v[0]), float(v[1]))) % 360.0
    return inc, az


def parallax_from_angles(incidence_deg: float, azimuth_deg: float) -> np.ndarray:
    """Inverse of :func:`angles_from_parallax`: tan(incidence) * (sin(az), cos(az))."""
    t = math.tan(math.radians(incidence_deg))
    a = math.radians(azimuth_deg)
    return np.array([t * math.sin(a), t * math.cos(a)])


def base_to_height(incidence_a: float, azimuth_a: float, incidence_b: float, azimuth_b: float) -> float:
    """Base-to-height ratio of two views from their incidence and azimuth angles (degrees).

    B/H = |tan(i_a) u(az_a) - tan(i_b) u(az_b)|: the ground parallax (m) per metre of height between the two
    lines of sight. Only the difference matters, so any consistent azimuth convention gives the same ratio.
    """
    return float(
        np.hypot(
            *(parallax_from_angles(incidence_a, azimuth_a) - parallax_from_angles(incidence_b, azimuth_b))
        )
    )
