"""A tiling checkpoint's output (tiles.geojson) written for tests of the per-tile stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sat2lod.io.jsonio import write_json
from sat2lod.tiling import grid_spec, tile_cores, tiles_feature_collection


def write_tiles(
    d: Path,
    bounds: tuple[float, float, float, float],
    epsg: int,
    tile_m: float,
    drop: tuple[int, ...] = (),
    margin_m: float = 10.0,
    resolution_m: float = 0.5,
) -> tuple[Path, list[str]]:
    """The tile grid of ``bounds`` (tiles of ``tile_m``, those of index ``drop`` not kept) written in ``d`` as the
    tiling rule does; returns the file and the kept tiles' ids."""
    spec = grid_spec(list(bounds), tile_m, margin_m, resolution_m)
    cores = tile_cores(spec)
    keep = np.ones(len(cores), bool)
    keep[list(drop)] = False
    fc = tiles_feature_collection(spec, cores, keep, epsg)
    path = d / f"tiles_{tile_m:.0f}_{len(drop)}.geojson"
    write_json(path, fc)
    return path, [f["properties"]["tile"] for f in fc["features"]]
