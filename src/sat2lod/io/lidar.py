"""Classified airborne LiDAR (LAS / LAZ, e.g. IGN LiDAR HD) read as arrays of returns.

Needs ``laspy`` with a LAZ backend (``pip install "laspy[lazrs]"``, in the project's ``bench`` extra); only the
default model's training recipe and the benches read LiDAR, the workflow's rules never do.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: ASPRS noise classes (low point, high noise), dropped when reading
NOISE_CLASSES = (7, 18)


class LidarReadError(RuntimeError):
    """A LiDAR file could not be read; the message names the file and what to do."""


def read_points(files: list[str | os.PathLike[str]]) -> dict[str, np.ndarray]:
    """Every return but noise of one or more LAS / LAZ files, concatenated.

    Returns:
        ``x``, ``y``, ``z`` (N,) float64 in the files' CRS (metres), ``c`` (N,) uint8 ASPRS class, ``i`` (N,)
        intensity, and ``rgb`` (N, 3) 16-bit colour when the points' colours differ (absent otherwise: no colour
        dimension, all zero, or one colour for every point, as IGN's pacasam test clouds, whose RGB is a constant
        65280 and whose ortho would be blank).
    Raises:
        LidarReadError: laspy (or its LAZ backend) is missing, or a file is absent or unreadable.
    """
    try:
        import laspy
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise LidarReadError(
            'reading LiDAR needs laspy with a LAZ backend: pip install "laspy[lazrs]" (or the bench extra)'
        ) from exc
    parts = []
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise LidarReadError(f"{path}: LiDAR file not found. Check the path.")
        try:
            las = laspy.read(path)
        except Exception as exc:  # laspy raises several types for corrupt files
            raise LidarReadError(f"{path}: not a readable LAS/LAZ file ({exc}). Replace it.") from exc
        c = np.asarray(las.classification)
        keep = ~np.isin(c, NOISE_CLASSES)
        dims = set(las.point_format.dimension_names)
        rgb = (
            np.column_stack([np.asarray(las[b])[keep] for b in ("red", "green", "blue")])
            if {"red", "green", "blue"} <= dims
            else np.zeros((int(keep.sum()), 3), np.uint16)
        )
        parts.append(
            (
                np.asarray(las.x)[keep],
                np.asarray(las.y)[keep],
                np.asarray(las.z)[keep],
                c[keep],
                np.asarray(las.intensity)[keep],
                rgb,
            )
        )
    pts = {k: np.concatenate([p[i] for p in parts]) for i, k in enumerate(("x", "y", "z", "c", "i", "rgb"))}
    if not pts["rgb"].size or (pts["rgb"] == pts["rgb"][0]).all():
        del pts["rgb"]
    return pts
