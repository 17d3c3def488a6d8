"""Block-wise rendering of large synthetic cities: memory bounded by a block, not by the city.

:func:`sat2lod.synth.generate_city` renders a city of up to :data:`WHOLE_GRID_MAX_M` a side on one fine grid
(the path the demo and the shipped model's training cities were made with, kept bit for bit). A larger city
would need ~30 bytes per fine cell (0.25 m at 0.5 m GSD): 1.2 GB at 600 m, 18 GB at 2.4 km, 70 GB at 4.8 km.
Here instead:

- the truth rasters are computed and written strip by strip (:data:`STRIP_ROWS` rows of the truth grid);
- each view is rendered in image blocks of :data:`BLOCK_PX` pixels: a block is ray cast on the window of the
  fine grid its rays can reach (its ground footprint between the lowest and highest heights, plus the reach
  of cast shadows, of the empty-space skipping and of the wall-normal smoothing), blurred with a margin of
  :data:`BLUR_MARGIN_PX` pixels, given its noise, and written;
- textures come from position-keyed noise (:func:`lattice_noise`: a hash of the lattice cell, interpolated),
  not from a random stream drawn over the whole grid, so that a window's texture is the city's texture there.

The same seed and size write the same files, bit for bit, whatever the number of cores. Peak memory is set
by the block (a few hundred MB), the layout (vectors) and the GDAL writers, not by the city's area.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio.windows
from rasterio.transform import Affine
from scipy import ndimage

from sat2lod.io.raster import write_raster_blocks
from sat2lod.synth._kernels import _render
from sat2lod.synth.camera import PushbroomCamera
from sat2lod.synth.layout import Layout
from sat2lod.synth.scene import (
    albedo_from_noise,
    cell_centres,
    irradiance_map,
    rasterize_layout,
    wall_normals,
)

log = logging.getLogger(__name__)

#: cities up to this side (m) are rendered on one grid by generate_city; larger ones block by block
WHOLE_GRID_MAX_M = 1500.0
#: side (image pixels) of the blocks a view is rendered in
BLOCK_PX = 512
#: rows of the truth grid computed per strip
STRIP_ROWS = 512
#: image pixels rendered beyond a block's edges for the optics blur (sigma 0.6 px, truncated at 4 sigma)
BLUR_MARGIN_PX = 4
#: fine cells beyond a block's ray footprint for the wall-normal smoothing (sigma 4 cells x 4)
SMOOTH_MARGIN_CELLS = 20

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def lattice_values(key: int, ii: np.ndarray, jj: np.ndarray) -> np.ndarray:
    """Uniform values in [-1, 1) keyed by (key, i, j): the same cell gives the same value in any window.

    Args:
        key: stream key (seed and texture layer).
        ii, jj: integer lattice indices (any shape, broadcast together; negative allowed).
    Returns:
        float64 array of the broadcast shape.
    """
    with np.errstate(over="ignore"):
        i = np.asarray(ii, np.int64).astype(np.uint64)
        j = np.asarray(jj, np.int64).astype(np.uint64)
        z = _mix64(np.uint64(key & 0xFFFFFFFFFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(1))
        z = _mix64(z ^ (i * np.uint64(0xD1B54A32D192ED03)))
        z = _mix64(z ^ (j * np.uint64(0xABC98388FB8FAC03)))
    return (z >> np.uint64(11)).astype(np.float64) * (2.0 / 2.0**53) - 1.0


def pixel_normal(key: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Standard normal values keyed by (key, row, col) (Box-Muller on two :func:`lattice_values` streams): the
    sensor noise of a pixel does not depend on the block it is rendered in."""
    u1 = 0.5 * (1.0 - lattice_values(2 * key, rows, cols))  # (0, 1]
    u2 = 0.5 * (1.0 + lattice_values(2 * key + 1, rows, cols))  # [0, 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)


def _catmull_rom(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    t2, t3 = t * t, t * t * t
    return (
        0.5 * (-t3 + 2 * t2 - t),
        0.5 * (3 * t3 - 5 * t2 + 2),
        0.5 * (-3 * t3 + 4 * t2 + t),
        0.5 * (t3 - t2),
    )


def lattice_noise(key: int, xs: np.ndarray, ys: np.ndarray, spacing_m: float) -> np.ndarray:
    """Smooth noise in about [-1, 1] with features of ``spacing_m``: Catmull-Rom interpolation of
    :func:`lattice_values` on a square lattice of ``spacing_m`` anchored at the map origin.

    Args:
        xs: (W,) map x of the cell centres (m); ys: (H,) map y (m).
    Returns:
        (H, W) float32, clipped to [-1.5, 1.5] as :func:`sat2lod.synth.scene.value_noise`.
    """
    u, v = np.asarray(xs, float) / spacing_m, np.asarray(ys, float) / spacing_m
    iu, iv = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    j0, i0 = int(iu.min()) - 1, int(iv.min()) - 1
    jj = np.arange(j0, int(iu.max()) + 3)
    ii = np.arange(i0, int(iv.max()) + 3)
    lat = lattice_values(key, ii[:, None], jj[None, :])  # (len(ii), len(jj))
    wu = _catmull_rom(u - iu)
    along_x = sum(w[None, :] * lat[:, iu - j0 - 1 + k] for k, w in enumerate(wu))  # (len(ii), W)
    wv = _catmull_rom(v - iv)
    out = sum(w[:, None] * along_x[iv - i0 - 1 + k, :] for k, w in enumerate(wv))  # (H, W)
    return np.clip(out, -1.5, 1.5).astype(np.float32)


def _sub_layout(layout: Layout, bounds: tuple[float, float, float, float]) -> Layout:
    """The layout restricted to the buildings and trees that may touch ``bounds`` (same terrain, roads, water)."""
    x0, y0, x1, y1 = bounds
    buildings = []
    for b in layout.buildings:
        bx0, by0, bx1, by1 = b.footprint.bounds
        if bx1 >= x0 and bx0 <= x1 and by1 >= y0 and by0 <= y1:
            buildings.append(b)
    trees = [
        t
        for t in layout.trees
        if t.x + t.radius >= x0 and t.x - t.radius <= x1 and t.y + t.radius >= y0 and t.y - t.radius <= y1
    ]
    return replace(layout, buildings=buildings, trees=trees)


def truth_strips(
    layout: Layout, transform: Affine, shape: tuple[int, int]
) -> Iterator[tuple[rasterio.windows.Window, dict[str, np.ndarray]]]:
    """The truth rasters (:func:`rasterize_layout` fields) strip by strip over the truth grid."""
    h, w = shape
    res = transform.a
    for r0 in range(0, h, STRIP_ROWS):
        rows = min(STRIP_ROWS, h - r0)
        t = transform @ Affine.translation(0, r0)
        y1 = t.f
        sub = _sub_layout(layout, (t.c, y1 - rows * res, t.c + w * res, y1))
        yield rasterio.windows.Window(0, r0, w, rows), rasterize_layout(sub, t, (rows, w))


def _albedo_window(
    key: int, fine: dict[str, np.ndarray], roof_albedo: np.ndarray, transform: Affine, res: float
) -> np.ndarray:
    xs, ys = cell_centres(transform, fine["classes"].shape)
    # the feature sizes of sat2lod.synth.scene.albedo_map, in metres
    noises = [
        lattice_noise(key + k, xs, ys, s)
        for k, s in enumerate((max(res, 0.5), max(2 * res, 3.0), max(4 * res, 20.0)))
    ]
    return albedo_from_noise(fine["classes"], fine["building_id"], roof_albedo, *noises)


def render_view_blocks(
    layout: Layout,
    cam: PushbroomCamera,
    fine_origin: tuple[float, float],
    fine_shape: tuple[int, int],
    res_f: float,
    hmin: float,
    hmax: float,
    sun: tuple[float, float],
    roof_albedo: np.ndarray,
    texture_key: int,
    dn: tuple[float, float],
    noise_key: int,
    skip_radius: int,
) -> Iterator[tuple[rasterio.windows.Window, np.ndarray]]:
    """The uint16 DN image of ``cam`` block by block (windows of the image, row-major).

    Args:
        fine_origin: (x, y) map top-left corner of the city's fine grid; fine_shape: its (rows, cols): a block's
            window is a part of that grid (rays beyond it see nothing, as on the whole grid).
        res_f: fine cell size (m); hmin, hmax: height range of the city (m, ellipsoidal).
        sun: (azimuth, elevation) in radians; roof_albedo: (max building id + 1,) albedo per building id.
        texture_key: key of the position-keyed textures; dn: (gain, offset) of the view;
        noise_key: key of the view's sensor noise (:func:`pixel_normal`: keyed by the pixel, not the block).
    """
    sun_az, sun_el = sun
    sun_x, sun_y = math.cos(sun_el) * math.sin(sun_az), math.cos(sun_el) * math.cos(sun_az)
    gain, offset = dn
    # how far a cast shadow reaches (m), and the ray caster's look-around (empty-space skipping)
    shadow_m = (hmax - hmin + 2.0) / max(math.tan(sun_el), 0.05)
    pad_m = shadow_m + (skip_radius + SMOOTH_MARGIN_CELLS) * res_f + 2.0
    fx0, fy0 = fine_origin
    cam_arr = cam.as_array()
    for p0 in range(0, cam.rows, BLOCK_PX):
        for q0 in range(0, cam.cols, BLOCK_PX):
            p1, q1 = min(p0 + BLOCK_PX, cam.rows), min(q0 + BLOCK_PX, cam.cols)
            pa, qa = max(p0 - BLUR_MARGIN_PX, 0), max(q0 - BLUR_MARGIN_PX, 0)
            pb, qb = min(p1 + BLUR_MARGIN_PX, cam.rows), min(q1 + BLUR_MARGIN_PX, cam.cols)
            pp = np.array([pa - 1.0, pb, pa - 1.0, pb, 0.5 * (pa + pb), 0.5 * (pa + pb), pa - 1.0, pb] * 2)
            qq = np.array([qa - 1.0, qa - 1.0, qb, qb, qa - 1.0, qb, 0.5 * (qa + qb), 0.5 * (qa + qb)] * 2)
            hh = np.array([hmin - 2.0] * 8 + [hmax + 2.0] * 8)
            gx, gy = cam.ground(pp, qq, hh)
            j0 = max(int(math.floor((gx.min() - pad_m - fx0) / res_f)), 0)
            j1 = min(int(math.ceil((gx.max() + pad_m - fx0) / res_f)), fine_shape[1])
            i0 = max(int(math.floor((fy0 - gy.max() - pad_m) / res_f)), 0)
            i1 = min(int(math.ceil((fy0 - gy.min() + pad_m) / res_f)), fine_shape[0])
            rad = np.zeros((pb - pa, qb - qa), np.float32)
            if i1 > i0 and j1 > j0:
                t_w = Affine(res_f, 0.0, fx0 + j0 * res_f, 0.0, -res_f, fy0 - i0 * res_f)
                shape_w = (i1 - i0, j1 - j0)
                wb = (t_w.c, t_w.f - shape_w[0] * res_f, t_w.c + shape_w[1] * res_f, t_w.f)
                fine = rasterize_layout(_sub_layout(layout, wb), t_w, shape_w)
                alb = _albedo_window(texture_key, fine, roof_albedo, t_w, res_f)
                irr = irradiance_map(fine["dsm"], res_f, sun_az, sun_el)
                wnx, wny = wall_normals(fine["dsm"], res_f)
                dsm_max = ndimage.maximum_filter(fine["dsm"], size=2 * skip_radius + 1, mode="nearest")
                rad = _render(
                    fine["dsm"],
                    alb,
                    irr,
                    wnx,
                    wny,
                    t_w.c,
                    t_w.f,
                    res_f,
                    cam_arr,
                    pb - pa,
                    qb - qa,
                    2,
                    hmin - 1.0,
                    hmax + 1.0,
                    sun_x,
                    sun_y,
                    dsm_max,
                    skip_radius,
                    pa,
                    qa,
                )
                del fine, alb, irr, wnx, wny, dsm_max
            rad = ndimage.gaussian_filter(rad, 0.6)[
                p0 - pa : p1 - pa, q0 - qa : q1 - qa
            ]  # optics + detector MTF
            value = offset + gain * rad
            rows, cols = np.arange(p0, p1)[:, None], np.arange(q0, q1)[None, :]
            value = value + pixel_normal(noise_key, rows, cols) * np.sqrt(
                4.0**2 + 0.5 * value
            )  # read + shot noise
            img = np.clip(np.round(value), 0, 4095).astype(np.uint16)
            yield rasterio.windows.Window(q0, p0, q1 - q0, p1 - p0), img


def write_view(
    path: Path,
    blocks: Iterator[tuple[rasterio.windows.Window, np.ndarray]],
    shape: tuple[int, int],
    rpcs: Any,
    tags: dict,
) -> None:
    """Write a view rendered block by block: uint16, RPC tags, no geotransform (as generate_city's views)."""
    write_raster_blocks(
        path,
        blocks,
        (1, *shape),
        np.uint16,
        Affine.identity(),
        None,
        nodata=None,
        tags=tags,
        cog=False,
        rpcs=rpcs,
    )


def write_truth_rasters(
    out: Path, layout: Layout, transform: Affine, shape: tuple[int, int], epsg: int, tags: dict[str, dict]
) -> tuple[float, float]:
    """Write truth/dsm, dtm, ndsm, classes strip by strip; return the DSM's (min, max) height (m)."""
    lo, hi = math.inf, -math.inf

    def field(name: str) -> Iterator[tuple[rasterio.windows.Window, np.ndarray]]:
        nonlocal lo, hi
        for win, t in truth_strips(layout, transform, shape):
            if name == "dsm":
                lo, hi = min(lo, float(t["dsm"].min())), max(hi, float(t["dsm"].max()))
            yield win, (t["dsm"] - t["dtm"]).astype(np.float32) if name == "ndsm" else t[name]

    for name, dtype, nodata in (
        ("dsm", np.float32, float("nan")),
        ("dtm", np.float32, float("nan")),
        ("ndsm", np.float32, float("nan")),
        ("classes", np.uint8, 255),
    ):
        write_raster_blocks(
            out / f"{name}.tif",
            field(name),
            (1, *shape),
            dtype,
            transform,
            epsg,
            nodata=nodata,
            tags=tags[name],
            cog=False,
        )
    log.info("truth rasters written strip by strip (%d x %d cells)", *shape)
    return lo, hi


__all__ = [
    "BLOCK_PX",
    "WHOLE_GRID_MAX_M",
    "lattice_noise",
    "lattice_values",
    "render_view_blocks",
    "truth_strips",
    "write_truth_rasters",
    "write_view",
]
