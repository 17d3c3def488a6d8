"""Synthetic city truth rasters for the LOD benches (layout only, no image rendering)."""

from __future__ import annotations

import numpy as np

from sat2lod.grid import grid_for_bounds
from sat2lod.synth.layout import make_layout
from sat2lod.synth.scene import rasterize_layout


def city_truth(
    seed: int = 7,
    size_m: float = 600.0,
    res: float = 0.5,
    n_buildings: int = 100,
    x0: float = 374000.0,
    y0: float = 4828000.0,
) -> dict:
    """Layout + truth rasters: dsm, dtm, ndsm, classes, mask (uint8), transform, buildings (layout list)."""
    rng = np.random.default_rng(seed)
    bounds = (x0, y0, x0 + size_m, y0 + size_m)
    layout = make_layout(rng, bounds, n_buildings, with_water=True)
    tr, shape = grid_for_bounds(bounds, res)
    t = rasterize_layout(layout, tr, shape)
    mask = (t["classes"] == 1).astype(np.uint8)
    return {
        "dsm": t["dsm"],
        "dtm": t["dtm"],
        "ndsm": (t["dsm"] - t["dtm"]).astype(np.float32),
        "classes": t["classes"],
        "mask": mask,
        "transform": tr,
        "buildings": layout.buildings,
        "layout": layout,
    }
