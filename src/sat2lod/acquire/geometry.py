"""Moved to :mod:`sat2lod.view_geometry` (shared by acquisition and tiling); re-exported here for the
acquisition modules."""

from sat2lod.view_geometry import (
    angles_from_parallax,
    base_to_height,
    common_footprint,
    footprint_lonlat,
    image_edge_pixels,
    parallax_from_angles,
    parallax_vector,
    utm_epsg,
)

__all__ = [
    "angles_from_parallax",
    "base_to_height",
    "common_footprint",
    "footprint_lonlat",
    "image_edge_pixels",
    "parallax_from_angles",
    "parallax_vector",
    "utm_epsg",
]
