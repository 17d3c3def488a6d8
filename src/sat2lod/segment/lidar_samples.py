"""Training samples with real geometry and real labels: classified airborne LiDAR rendered as the chain's inputs.

A LiDAR cloud (IGN LiDAR HD: ASPRS classes, building = 6) becomes a :class:`sat2lod.segment.train.Sample` on a
0.5 m grid, as the segmenter sees a scene from above:

- **surface**: the highest return of each cell. Clouds too sparse for the output grid (decimated tiles, below
  ~6 returns per 4 cells) are gridded at a coarser cell (:func:`surface_cell_m`: about 1.5 returns per cell,
  a multiple of the output resolution) and upsampled bilinearly, which blurs edges as a stereo DSM does;
  empty cells take the nearest cell's value.
- **nDSM** = surface - terrain; terrain = the mean of the ground returns (class 2) per 2 m cell (or the
  surface cell when coarser), interpolated linearly between cells (nearest beyond their hull), bilinear onto
  the grid. Metres above the ground returns (the cloud's own vertical datum cancels out).
- **ortho**: the highest return's colour (mean of R, G, B) when the cloud has colour, else its intensity (a
  LiDAR intensity image: another radiometry than a satellite PAN image, which the training augmentation's
  gamma / gain / blur / noise partly covers).
- **labels**: 1 where the highest return is a building (class 6), 0 elsewhere; ignored (255) where a cell has
  no return (output-grid clouds), where the highest return is in an ambiguous IGN class (64 permanent
  above-ground structure, 65 artefact, 66 virtual point, 67 miscellaneous built structure), and, for
  coarse-gridded clouds, within one coarse cell of a label change (the edge is not known closer).

The training recipe then passes the nDSM through the same stereo defect model as the synthetic cities
(:func:`sat2lod.segment.train.stereo_ndsm_defects`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from scipy.interpolate import griddata

from sat2lod.arrays import fill_nearest_where
from sat2lod.segment.features import make_input

if TYPE_CHECKING:
    from sat2lod.segment.train import Sample

BUILDING = 6
GROUND = 2
#: IGN LiDAR HD classes that are neither clearly building nor clearly not: ignored in the labels
AMBIGUOUS = (64, 65, 66, 67)
#: ASPRS class -> material code of :mod:`sat2lod.synth.scene` (the sample's ``materials``, for
#: :func:`sat2lod.segment.train.material_gain`): building 6 -> 1, vegetation 3/4/5 -> 2, bridge deck 17 -> 3 (paved),
#: water 9 -> 4; every other class (ground, unclassified, IGN extras) -> 0
MATERIALS = {6: 1, 3: 2, 4: 2, 5: 2, 17: 3, 9: 4}
#: cell (m) of the terrain: mean of the ground returns per cell
TERRAIN_CELL_M = 2.0
#: returns per surface cell aimed at when a cloud is too sparse for the output grid
RETURNS_PER_CELL = 1.5


def surface_cell_m(density_per_m2: float, res: float) -> float:
    """Surface cell (m) of a cloud of ``density_per_m2`` returns per m²: the multiple of ``res`` closest to the
    side of a cell holding 1.5 returns, sqrt(1.5 / density), and at least ``res`` (so ``res`` itself down to
    ~2.7 returns per m² at 0.5 m, where a top-return grid has some empty cells: ignored)."""
    k = max(1, round(math.sqrt(RETURNS_PER_CELL / max(density_per_m2, 1e-9)) / res))
    return k * res


def top_return_cells(
    pts: dict[str, np.ndarray], x0: float, y1: float, cell: float, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and index in ``pts`` of the highest return of each non-empty cell of the grid whose top-left
    corner is (x0, y1), of ``cell`` metres and ``shape`` (rows, cols); returns outside it go to the edge cells."""
    h, w = shape
    col = np.clip(((pts["x"] - x0) / cell).astype(np.int64), 0, w - 1)
    row = np.clip(((y1 - pts["y"]) / cell).astype(np.int64), 0, h - 1)
    key = row * w + col
    order = np.lexsort((-pts["z"], key))  # by cell, highest first
    top = order[np.r_[True, key[order][1:] != key[order][:-1]]]
    return row[top], col[top], top


def _terrain(
    pts: dict[str, np.ndarray], x0: float, y1: float, cell: float, shape: tuple[int, int]
) -> np.ndarray:
    """(H, W) float64 terrain height: mean ground return per cell, linear between cells, nearest beyond."""
    h, w = shape
    g = pts["c"] == GROUND
    if not g.any():
        raise ValueError("the cloud has no ground return (class 2): its nDSM cannot be made")
    col = np.clip(((pts["x"][g] - x0) / cell).astype(np.int64), 0, w - 1)
    row = np.clip(((y1 - pts["y"][g]) / cell).astype(np.int64), 0, h - 1)
    s = np.bincount(row * w + col, pts["z"][g], h * w)
    n = np.bincount(row * w + col, minlength=h * w)
    ok = n > 0
    rr, cc = np.divmod(np.flatnonzero(ok), w)
    qr, qc = np.mgrid[0:h, 0:w]
    z = s[ok] / n[ok]
    if ok.sum() >= 3:
        lin = griddata((rr, cc), z, (qr, qc), method="linear")
    else:
        lin = np.full((h, w), np.nan)
    near = griddata((rr, cc), z, (qr, qc), method="nearest")
    return np.where(np.isfinite(lin), lin, near)


def _upsample(a: np.ndarray, k: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling by ``k`` (cell centres kept in place), cropped to ``shape``."""
    if k == 1:
        return a[: shape[0], : shape[1]]
    return ndimage.zoom(a, k, order=1, mode="nearest", grid_mode=True)[: shape[0], : shape[1]]


def lidar_sample(
    files: list[str | os.PathLike[str]] | str | os.PathLike[str],
    name: str | None = None,
    res: float = 0.5,
    weight: float = 1.0,
) -> Sample:
    """Render a classified LiDAR cloud (one or more LAS/LAZ files of one area) as a training sample.

    Args:
        files: LAS / LAZ file(s); any projected CRS in metres (not read: only distances matter).
        name: sample name (default: the first file's stem).
        res: output grid cell (m), the chain's product resolution.
        weight: the sample's patch-drawing weight (see :class:`Sample`).
    Returns:
        Sample with x (3, H, W) network input (:func:`sat2lod.segment.features.make_input`) and y (H, W) uint8
        labels (1 building, 0 not, 255 ignored), H, W = the cloud's extent / ``res``, and the (H, W) materials
        of the highest returns (:data:`MATERIALS`).
    """
    from sat2lod.io.lidar import read_points
    from sat2lod.segment.train import Sample  # torch: only when a sample is made

    files = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    pts = read_points(files)
    x0, y1 = math.floor(pts["x"].min()), math.ceil(pts["y"].max())
    w_m, h_m = pts["x"].max() - x0, y1 - pts["y"].min()
    shape = (max(1, math.ceil(h_m / res)), max(1, math.ceil(w_m / res)))
    cell = surface_cell_m(pts["x"].size / max(w_m * h_m, 1.0), res)
    k = int(round(cell / res))
    cshape = (math.ceil(shape[0] / k), math.ceil(shape[1] / k))
    row, col, top = top_return_cells(pts, x0, y1, cell, cshape)
    empty = np.ones(cshape, bool)
    empty[row, col] = False
    z = np.zeros(cshape)
    z[row, col] = pts["z"][top]
    value = pts["rgb"][top].astype(np.float64).mean(1) if "rgb" in pts else pts["i"][top].astype(np.float64)
    radio = np.zeros(cshape)
    radio[row, col] = value
    cls = np.zeros(cshape, np.uint8)
    cls[row, col] = pts["c"][top]
    z, radio, cls = (fill_nearest_where(a, empty) for a in (z, radio, cls))
    tcell = max(TERRAIN_CELL_M, cell)
    kt = int(round(tcell / res))
    terrain = _terrain(pts, x0, y1, tcell, (math.ceil(shape[0] / kt), math.ceil(shape[1] / kt)))
    ndsm = np.maximum(_upsample(z, k, shape) - _upsample(terrain, kt, shape), 0.0).astype(np.float32)
    ortho = _upsample(radio, k, shape).astype(np.float32)
    y = (cls == BUILDING).astype(np.uint8)
    y[np.isin(cls, AMBIGUOUS)] = 255
    lut = np.zeros(256, np.uint8)
    lut[list(MATERIALS)] = list(MATERIALS.values())
    materials = lut[cls]
    if k == 1:
        y[empty] = 255
    else:
        y = np.repeat(np.repeat(y, k, 0), k, 1)[: shape[0], : shape[1]]
        edge = ndimage.morphological_gradient(np.where(y == 255, 2, y), size=(2 * k + 1, 2 * k + 1)) > 0
        y[edge] = 255
        materials = np.repeat(np.repeat(materials, k, 0), k, 1)[: shape[0], : shape[1]]
    return Sample(make_input(ortho, ndsm), y, name or Path(files[0]).stem, weight, cell, materials)
