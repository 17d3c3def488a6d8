"""Synthetic city generator: the test bed with exact ground truth for every stage of sat2lod.

:func:`generate_city` draws a city (terrain, street blocks in 2-3 orientations, 5 roof types, trees, roads,
water), renders 2 or 3 pushbroom views with occlusions, cast shadows, blur, noise and a different gain per
view, fits an RPC model to each camera, and writes the views as uint16 GeoTIFFs with RPC tags (sensor
geometry, no geotransform) next to the ground truth rasters and building polygons.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
from pyproj import Transformer
from scipy import ndimage

from sat2lod import ELLIPSOID_DATUM, HEIGHT_ABOVE_DTM
from sat2lod.grid import grid_for_bounds
from sat2lod.io.jsonio import write_json
from sat2lod.io.raster import write_raster
from sat2lod.io.vector import write_vector
from sat2lod.rpc import RPCModel, fit_rpc
from sat2lod.schema import defaults
from sat2lod.synth._kernels import _render
from sat2lod.synth.blocked import (
    BLOCK_PX,
    WHOLE_GRID_MAX_M,
    render_view_blocks,
    write_truth_rasters,
    write_view,
)
from sat2lod.synth.camera import PushbroomCamera, make_camera
from sat2lod.synth.layout import Layout, make_layout
from sat2lod.synth.scene import albedo_map, irradiance_map, rasterize_layout, wall_normals

_OUTPUT = defaults("output")  # defaults of config section output
_SOURCE_SYNTHETIC = defaults("source", "synthetic")  # defaults of config section source.synthetic

log = logging.getLogger(__name__)

#: Scene centre (Toulouse, France) and its UTM zone.
CENTER_LONLAT = (1.444, 43.604)
EPSG = 32631

#: empty-space skipping radius of the ray caster (fine-grid cells)
SKIP_RADIUS = 16

CLASS_NAMES = {0: "ground", 1: "building", 2: "vegetation", 3: "road", 4: "water"}


@dataclass
class RpcFitReport:
    max_px: float
    rms_px: float


def default_n_buildings(size_m: float) -> int:
    """100 buildings per 600 m x 600 m, scaled with the area, clipped to [3, 150]."""
    return int(np.clip(round(100 * size_m * size_m / 360_000.0), 3, 150))


def fit_camera_rpc(
    cam: PushbroomCamera, hmin: float, hmax: float, to_lonlat: Transformer, rng: np.random.Generator
) -> tuple[RPCModel, RpcFitReport]:
    """Fit an RPC to ``cam`` on a 3-D grid over the image x [hmin - 20, hmax + 20] m; check on random points."""
    hs = np.linspace(hmin - 20, hmax + 20, 9)
    pp, qq, h = np.meshgrid(
        np.linspace(0, cam.rows - 1, 25), np.linspace(0, cam.cols - 1, 25), hs, indexing="ij"
    )
    x, y = cam.ground(pp, qq, h)
    lon, lat = to_lonlat.transform(x.ravel(), y.ravel())
    rpc = fit_rpc(lon, lat, h.ravel(), pp.ravel(), qq.ravel())
    # independent check: random image points and heights, through the camera then the RPC
    n = 4000
    pc, qc = rng.uniform(0, cam.rows - 1, n), rng.uniform(0, cam.cols - 1, n)
    hc = rng.uniform(hmin - 20, hmax + 20, n)
    xc, yc = cam.ground(pc, qc, hc)
    lonc, latc = to_lonlat.transform(xc, yc)
    rr, cc = rpc.project(lonc, latc, hc)
    err = np.hypot(rr - pc, cc - qc)
    return rpc, RpcFitReport(float(err.max()), float(np.sqrt(np.mean(err**2))))


def view_geometries(n_views: int, rng: np.random.Generator) -> list[dict[str, float]]:
    """Along-track stereo: a pair with B/H ~0.3, or a tri-stereo (fore / near-nadir / aft, B/H 0.2 + 0.2)."""
    track = 180.0 + float(rng.uniform(-12, 12))  # descending pass
    roll = float(rng.uniform(-3, 3))
    if n_views == 2:
        pitches = [math.degrees(math.atan(0.15)), -math.degrees(math.atan(0.15))]
    else:
        pitches = [math.degrees(math.atan(0.2)), 0.5, -math.degrees(math.atan(0.2))]
    return [
        {
            "pitch": p + float(rng.uniform(-0.5, 0.5)),
            "roll": roll + float(rng.uniform(-0.3, 0.3)),
            "track": track,
        }
        for p in pitches
    ]


@dataclass(frozen=True)
class SynthParams:
    """Parameters of rule ``synth_city``: config section ``source.synthetic``, one field per key, and
    ``truth_res_m`` (key ``output.resolution_m``); defaults from the schema (see config/schema.yaml). The rule
    passes the section whole.

    Attributes:
        seed: random seed (the same seed writes the same files, bit for bit).
        size_m: side of the square AOI (m; rounded up to a multiple of ``truth_res_m``).
        n_views: number of views (2 or 3).
        gsd_m: ground sampling distance of the views (m).
        n_buildings: number of buildings; None = :func:`default_n_buildings` of ``size_m``.
        truth_res_m: cell size of the truth rasters (m).
    """

    seed: int = _SOURCE_SYNTHETIC["seed"]
    size_m: float = _SOURCE_SYNTHETIC["size_m"]
    n_views: int = _SOURCE_SYNTHETIC["n_views"]
    gsd_m: float = _SOURCE_SYNTHETIC["gsd_m"]
    n_buildings: int | None = _SOURCE_SYNTHETIC["n_buildings"]
    truth_res_m: float = _OUTPUT["resolution_m"]


def generate_city(out_dir: str | os.PathLike[str], **params: Any) -> dict:
    """Generate a synthetic city and write it to ``out_dir``.

    ``params``: fields of :class:`SynthParams` (config section ``source.synthetic`` and ``truth_res_m``); an
    unknown name is an error.

    Writes:
        view_{i}.tif: uint16 (rows, cols) pushbroom images with RPC tags, no CRS/geotransform.
        truth/dsm.tif, truth/dtm.tif, truth/ndsm.tif: float32 heights (m, WGS84 ellipsoid), NaN nodata,
            EPSG:32631, ``truth_res_m`` grid over the AOI.
        truth/classes.tif: uint8 classes (0 ground, 1 building, 2 vegetation, 3 road, 4 water; 255 nodata).
        truth/buildings.gpkg: footprints with id, height, eave_height, ridge_height, roof_type, ground_height, kind.
        scene.json: metadata (bounds, EPSG, height range, views, RPC fit residuals, sun).
    Returns:
        The scene metadata written to scene.json.
    """
    prm = SynthParams(**params)
    seed, size_m, n_views, gsd_m = prm.seed, prm.size_m, prm.n_views, prm.gsd_m
    n_buildings, truth_res_m = prm.n_buildings, prm.truth_res_m
    t0 = time.perf_counter()
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    n_b = default_n_buildings(size_m) if n_buildings is None else int(n_buildings)
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{EPSG}", always_xy=True)
    to_lonlat = Transformer.from_crs(f"EPSG:{EPSG}", "EPSG:4326", always_xy=True)
    ex, ny = to_utm.transform(*CENTER_LONLAT)
    xmin = math.floor((ex - size_m / 2) / 10) * 10.0
    ymin = math.floor((ny - size_m / 2) / 10) * 10.0
    snap = truth_res_m
    size_m = math.ceil(size_m / snap) * snap
    bounds = (xmin, ymin, xmin + size_m, ymin + size_m)
    layout = make_layout(rng, bounds, n_b, with_water=True)
    log.info(
        "layout: %d buildings, %d trees, water=%s",
        len(layout.buildings),
        len(layout.trees),
        layout.water is not None,
    )
    if size_m > WHOLE_GRID_MAX_M:
        return _generate_blocked(out, prm, rng, layout, bounds, to_lonlat, t0)

    # ---- ground truth on the output grid
    t_tr, shape_tr = grid_for_bounds(bounds, truth_res_m)
    truth = rasterize_layout(layout, t_tr, shape_tr)
    hmin, hmax = float(truth["dsm"].min()), float(truth["dsm"].max())

    # ---- fine grid for rendering (AOI + margin so that every ray of the images lands on it)
    res_f = gsd_m / 2.0
    # covers the rotation of the image footprint (track azimuth 180 +- 12 deg) and the relief displacement
    margin = math.ceil((0.12 * size_m + 30.0) / 10) * 10.0
    fb = (bounds[0] - margin, bounds[1] - margin, bounds[2] + margin, bounds[3] + margin)
    t_f, shape_f = grid_for_bounds(fb, res_f)
    fine = rasterize_layout(layout, t_f, shape_f)
    sun_az, sun_el = math.radians(float(rng.uniform(140, 200))), math.radians(float(rng.uniform(50, 65)))
    alb = albedo_map(rng, layout, fine["classes"], fine["building_id"], res_f)
    irr = irradiance_map(fine["dsm"], res_f, sun_az, sun_el)
    wnx, wny = wall_normals(fine["dsm"], res_f)
    sun_x, sun_y = math.cos(sun_el) * math.sin(sun_az), math.cos(sun_el) * math.cos(sun_az)
    dsm_max = ndimage.maximum_filter(fine["dsm"], size=2 * SKIP_RADIUS + 1, mode="nearest")
    log.info("scene rasterized (%s fine cells) in %.1f s", shape_f, time.perf_counter() - t0)

    # ---- views
    date0 = datetime(2026, 6, 1, 10, 42, 0, tzinfo=UTC) + timedelta(days=int(seed) % 90)
    views = []
    for i, g in enumerate(view_geometries(n_views, rng)):
        drift = (float(rng.uniform(-1e-8, 1e-8)), float(rng.uniform(-2e-12, 2e-12)))
        cam = make_camera(bounds, hmin, hmax, g["pitch"], g["roll"], g["track"], gsd_m, drift=drift)
        rad = _render(
            fine["dsm"],
            alb,
            irr,
            wnx,
            wny,
            t_f.c,
            t_f.f,
            res_f,
            cam.as_array(),
            cam.rows,
            cam.cols,
            2,
            hmin - 1.0,
            hmax + 1.0,
            sun_x,
            sun_y,
            dsm_max,
            SKIP_RADIUS,
        )
        rad = ndimage.gaussian_filter(rad, 0.6)  # optics + detector MTF
        gain = float(rng.uniform(1800, 3000))
        offset = float(rng.uniform(80, 140))
        dn = offset + gain * rad
        dn = dn + rng.normal(0, 1, dn.shape) * np.sqrt(4.0**2 + 0.5 * dn)  # read + shot noise
        img = np.clip(np.round(dn), 0, 4095).astype(np.uint16)
        rpc, rep = fit_camera_rpc(cam, hmin, hmax, to_lonlat, rng)
        if rep.max_px >= 0.05:
            raise RuntimeError(f"RPC fit residual {rep.max_px:.3f} px >= 0.05 px for view {i}")
        when = date0 + timedelta(seconds=i * 20.0)
        name = f"view_{i}.tif"
        write_raster(
            out / name, img, t_tr, None, nodata=None, rpcs=rpc.to_rasterio(), tags=_view_tags(when, cam, gain)
        )
        views.append(_view_record(name, when, g, cam, gain, offset, rep))
        log.info(
            "view %d: %dx%d px, incidence %.1f deg, RPC residual max %.4f px",
            i,
            cam.rows,
            cam.cols,
            cam.incidence_deg(),
            rep.max_px,
        )

    _write_truth(out / "truth", truth, t_tr, layout)
    return _write_meta(out, prm, layout, bounds, to_lonlat, (hmin, hmax), (sun_az, sun_el), views, t0)


def _write_meta(
    out: Path,
    prm: SynthParams,
    layout: Layout,
    bounds: tuple[float, float, float, float],
    to_lonlat: Transformer,
    height_range: tuple[float, float],
    sun: tuple[float, float],
    views: list[dict],
    t0: float,
) -> dict:
    lon0, lat0 = to_lonlat.transform(bounds[0], bounds[1])
    lon1, lat1 = to_lonlat.transform(bounds[2], bounds[3])
    meta = {
        "seed": prm.seed,
        "epsg": EPSG,
        "bounds": list(bounds),
        "lonlat_bounds": [lon0, lat0, lon1, lat1],
        "height_range": list(height_range),
        "vertical_datum": ELLIPSOID_DATUM,
        "gsd_m": prm.gsd_m,
        "truth_res_m": prm.truth_res_m,
        "n_buildings": len(layout.buildings),
        "n_trees": len(layout.trees),
        "orientations_deg": [math.degrees(a) % 180 for a in layout.orientations],
        "sun": {"azimuth_deg": math.degrees(sun[0]), "elevation_deg": math.degrees(sun[1])},
        "views": views,
        "truth": {
            "dsm": "truth/dsm.tif",
            "dtm": "truth/dtm.tif",
            "ndsm": "truth/ndsm.tif",
            "classes": "truth/classes.tif",
            "buildings": "truth/buildings.gpkg",
        },
        "classes": CLASS_NAMES,
    }
    # no wall time in scene.json: the same seed writes the same files, bit for bit
    write_json(out / "scene.json", meta)
    log.info("synthetic city written to %s in %.1f s", out, time.perf_counter() - t0)
    return meta


def _view_tags(when: datetime, cam: PushbroomCamera, gain: float) -> dict[str, str]:
    return {
        "ACQUISITION_DATETIME": when.isoformat(),
        "SENSOR": "synthetic pushbroom (Pleiades-like)",
        "INCIDENCE_DEG": f"{cam.incidence_deg():.3f}",
        "VIEW_AZIMUTH_DEG": f"{cam.view_azimuth_deg():.3f}",
        "GAIN": f"{gain:.1f}",
        "RPC_HEIGHT_DATUM": ELLIPSOID_DATUM,
    }


def _view_record(
    name: str, when: datetime, g: dict, cam: PushbroomCamera, gain: float, offset: float, rep
) -> dict:
    return {
        "file": name,
        "datetime": when.isoformat(),
        "incidence_deg": cam.incidence_deg(),
        "azimuth_deg": cam.view_azimuth_deg(),
        "pitch_deg": g["pitch"],
        "roll_deg": g["roll"],
        "track_azimuth_deg": g["track"],
        "rows": cam.rows,
        "cols": cam.cols,
        "gain": gain,
        "offset": offset,
        "rpc_residual_max_px": rep.max_px,
        "rpc_residual_rms_px": rep.rms_px,
    }


def _generate_blocked(
    out: Path,
    prm: SynthParams,
    rng: np.random.Generator,
    layout: Layout,
    bounds: tuple[float, float, float, float],
    to_lonlat: Transformer,
    t0: float,
) -> dict:
    """generate_city for a city larger than WHOLE_GRID_MAX_M: the same files, made block by block
    (sat2lod.synth.blocked), with position-keyed textures and per-block sensor noise."""
    size_m = bounds[2] - bounds[0]
    t_tr, shape_tr = grid_for_bounds(bounds, prm.truth_res_m)
    hmin, hmax = write_truth_rasters(out / "truth", layout, t_tr, shape_tr, EPSG, _truth_tags())
    _write_buildings(out / "truth", layout)
    res_f = prm.gsd_m / 2.0
    margin = math.ceil((0.12 * size_m + 30.0) / 10) * 10.0
    fb = (bounds[0] - margin, bounds[1] - margin, bounds[2] + margin, bounds[3] + margin)
    t_f, shape_f = grid_for_bounds(fb, res_f)
    sun_az, sun_el = math.radians(float(rng.uniform(140, 200))), math.radians(float(rng.uniform(50, 65)))
    n_id = max((b.id for b in layout.buildings), default=0) + 1
    roof_alb = np.zeros(n_id, np.float32)
    roof_alb[1:] = rng.uniform(0.18, 0.6, n_id - 1)
    texture_key = int(rng.integers(0, 2**62))
    date0 = datetime(2026, 6, 1, 10, 42, 0, tzinfo=UTC) + timedelta(days=int(prm.seed) % 90)
    views = []
    for i, g in enumerate(view_geometries(prm.n_views, rng)):
        drift = (float(rng.uniform(-1e-8, 1e-8)), float(rng.uniform(-2e-12, 2e-12)))
        cam = make_camera(bounds, hmin, hmax, g["pitch"], g["roll"], g["track"], prm.gsd_m, drift=drift)
        gain = float(rng.uniform(1800, 3000))
        offset = float(rng.uniform(80, 140))
        rpc, rep = fit_camera_rpc(cam, hmin, hmax, to_lonlat, rng)
        if rep.max_px >= 0.05:
            raise RuntimeError(f"RPC fit residual {rep.max_px:.3f} px >= 0.05 px for view {i}")
        when = date0 + timedelta(seconds=i * 20.0)
        name = f"view_{i}.tif"
        blocks = render_view_blocks(
            layout,
            cam,
            (t_f.c, t_f.f),
            shape_f,
            res_f,
            hmin,
            hmax,
            (sun_az, sun_el),
            roof_alb,
            texture_key,
            (gain, offset),
            texture_key + 101 + i,
            SKIP_RADIUS,
        )
        write_view(out / name, blocks, (cam.rows, cam.cols), rpc.to_rasterio(), _view_tags(when, cam, gain))
        views.append(_view_record(name, when, g, cam, gain, offset, rep))
        log.info("view %d: %dx%d px rendered in blocks of %d px", i, cam.rows, cam.cols, BLOCK_PX)
    return _write_meta(out, prm, layout, bounds, to_lonlat, (hmin, hmax), (sun_az, sun_el), views, t0)


def _truth_tags() -> dict[str, dict[str, str]]:
    """Tags of the truth rasters (truth/<name>.tif)."""
    tags = {"VERTICAL_DATUM": ELLIPSOID_DATUM, "SOURCE": "sat2lod synthetic city (exact truth)"}
    return {
        "dsm": tags,
        "dtm": tags,
        "ndsm": {**tags, "VERTICAL_DATUM": HEIGHT_ABOVE_DTM, "DTM_VERTICAL_DATUM": ELLIPSOID_DATUM},
        "classes": {"CLASSES": ", ".join(f"{k}={v}" for k, v in CLASS_NAMES.items())},
    }


def _write_truth(out: Path, truth: dict[str, np.ndarray], transform, layout: Layout) -> None:
    tags = _truth_tags()
    write_raster(out / "dsm.tif", truth["dsm"], transform, EPSG, nodata=float("nan"), tags=tags["dsm"])
    write_raster(out / "dtm.tif", truth["dtm"], transform, EPSG, nodata=float("nan"), tags=tags["dtm"])
    write_raster(
        out / "ndsm.tif",
        (truth["dsm"] - truth["dtm"]).astype(np.float32),
        transform,
        EPSG,
        nodata=float("nan"),
        tags=tags["ndsm"],
    )
    write_raster(out / "classes.tif", truth["classes"], transform, EPSG, nodata=255, tags=tags["classes"])
    _write_buildings(out, layout)


def _write_buildings(out: Path, layout: Layout) -> None:
    rows = [
        {
            "id": b.id,
            "height": b.ridge,
            "eave_height": b.eave,
            "ridge_height": b.ridge,
            "roof_type": b.roof_type,
            "ground_height": b.ground,
            "kind": b.kind,
            "geometry": b.footprint,
        }
        for b in layout.buildings
    ]
    gdf = (
        gpd.GeoDataFrame(rows, geometry="geometry", crs=f"EPSG:{EPSG}")
        if rows
        else gpd.GeoDataFrame(
            {
                "id": [],
                "height": [],
                "eave_height": [],
                "ridge_height": [],
                "roof_type": [],
                "ground_height": [],
                "kind": [],
            },
            geometry=[],
            crs=f"EPSG:{EPSG}",
        )
    )
    write_vector(out / "buildings.gpkg", gdf, layer="buildings")
