"""Array helpers shared by several stages (terrain, ortho, segmentation): pure NumPy/SciPy, no I/O."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def fill_nearest(z: np.ndarray) -> np.ndarray:
    """Fill NaN cells of ``z`` (H, W) with the value of the nearest valid cell; returns a new float32 array.

    Raises:
        ValueError: no valid cell at all.
    """
    invalid = ~np.isfinite(z)
    if not invalid.any():
        return z.astype(np.float32, copy=True)
    if invalid.all():
        raise ValueError("the grid has no valid cell (all nodata): nothing to fill the holes from")
    return fill_nearest_where(z, invalid).astype(np.float32)


def fill_nearest_where(a: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """A copy of ``a`` (H, W, any dtype) whose ``empty`` cells ((H, W) bool) take the value of the nearest
    non-empty cell (Euclidean distance on the grid); at least one cell must be non-empty."""
    idx = ndimage.distance_transform_edt(empty, return_distances=False, return_indices=True)
    return a[tuple(idx)]
