"""Gizeh: is sat2lod's DSM or CNES CARS's biased? Independent evidence on the CNES Pléiades pair (issue 17).

The issue measured "sat2lod - CARS: median |dh| 0.83 m, NMAD 1.23 m, p90 2.3 m" and read it as a bias of one of
them. This bench reproduces the comparison and adds evidence that does not come from either DSM:

1. dh = sat2lod - CARS on the cells both measured (CARS cells with points, ``dsm_n_pts > 0``): *signed* median
   and mean next to median |dh|, the median |dh| that zero-mean noise with the same NMAD gives (0.6745 NMAD),
   a robust plane dh = a + b x + c y (tilt), dh against height (scale), flat vs steep cells.
2. Noise floor: sat2lod against itself, matched over two height search ranges (keypoint narrowing on / off):
   the same images, RPCs and code, only the rectified grid and disparity range differ.
3. Sparse reference independent of both dense matchers: SIFT matches refined by Lucas-Kanade (15x15 window,
   bicubic, to 0.001 px) in the raw images, triangulated with the RPCs by an independent finite-difference
   Gauss-Newton (local metres, pointing correction as sat2lod applies it, and without it); both DSMs are sampled
   at those points (flat, textured cells): median DSM - sparse is each DSM's offset from the RPC intersection.
   With ``--shareloc-python`` (or ``--run-cars``) the same matches are also triangulated by CNES shareloc in the
   CARS venv: RPC reading and pixel conventions checked against CARS's own library.
4. The pair's own geometry: across-epipolar residual of the sparse matches before / after the correction, RPC
   localize -> project round trip, the disparity-to-height ratio (m per px), EGM96 undulation at the scene
   (what a geoid / ellipsoid mix-up would look like).
5. The Great Pyramid (Khufu) in both DSMs: plateau level around it, face slopes of the four faces (robust plane
   fits, 25-95 m from the centre), height of the faces' apex above the plateau and base side from the face
   planes; known: faces ~51.8 deg, base 230.3 m, height 146.6 m (original apex), 138.5 m today.

CARS (1.3.0, default pipeline) is run when ``--run-cars VENV`` is given (``cars`` of that venv, 2 workers,
0.5 m, ``geoid: false``, intermediate data kept), or an existing CARS output folder is read (``--cars-out``).

Run: python bench/gizeh_bias.py --cars-out /tmp/gz/cars/out --shareloc-python /work/cars_venv/bin/python
     -> bench/results/gizeh_bias.json + .md
     python bench/gizeh_bias.py --run-cars /work/cars_venv     (CARS ~3-20 min on a loaded 2-core machine)
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import rasterio
from pyproj import Proj, Transformer
from rasterio.warp import Resampling, reproject
from scipy import ndimage

from sat2lod.io.rpc_files import read_rpc
from sat2lod.io.sensor_image import image_shape
from sat2lod.rpc import RPCModel
from sat2lod.stereo.pipeline import stereo_tile
from sat2lod.stereo.pointing import KeypointMatches, across_track_offset
from sat2lod.stereo.rectify import LocalFrame, rectify_pair

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "cnes_pleiades_gizeh_pair"
GEOID = REPO.parent / "shared" / "data" / "geoid" / "egm96_15.gtx"
EPSG = 32636
HEIGHTS = (40.0, 200.0)  # ellipsoidal search range given to sat2lod (plateau ~75 m, apex ~212 m)
RESOLUTION = 0.5
KHUFU = {"face_slope_deg": 51.84, "base_m": 230.33, "height_original_m": 146.6, "height_today_m": 138.5}


# ------------------------------------------------------------------------------------------------ runs
def overlap_bounds(rpcs: list[RPCModel]) -> list[float]:
    """Ground seen by both crops (corners localised at 100 m), shrunk by 10 m, in EPSG:32636 metres."""
    from shapely.geometry import Polygon

    tr = Transformer.from_crs(4326, EPSG, always_xy=True)
    polys = []
    for img, m in zip(("img1.tif", "img2.tif"), rpcs):
        h, w = image_shape(DATA / img)
        lon, lat = m.localize(np.array([0, 0, h - 1, h - 1.0]), np.array([0, w - 1, w - 1, 0.0]), 100.0)
        polys.append(Polygon(zip(*tr.transform(lon, lat))))
    b = polys[0].intersection(polys[1]).buffer(-10.0).bounds
    return [float(np.floor(b[0])), float(np.floor(b[1])), float(np.ceil(b[2])), float(np.ceil(b[3]))]


def run_sat2lod(
    work: Path, bounds: list[float], tag: str, heights: tuple[float, float] = HEIGHTS, **params
) -> tuple[Path, dict, float]:
    views = [
        {"id": f"v{i}", "image": str(DATA / f"img{i}.tif"), "rpc": str(DATA / f"img{i}.geom")} for i in (1, 2)
    ]
    sheet = {"aoi": "gizeh", "epsg": EPSG, "height_range": list(heights), "views": views, "pairs": [[0, 1]]}
    grid = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{EPSG}"}},
        "features": [
            {
                "type": "Feature",
                "geometry": None,
                "properties": {"tile": "t0000_0000", "row": 0, "col": 0, "core": bounds, "bounds": bounds},
            }
        ],
    }
    (work / f"scenes_{tag}.json").write_text(json.dumps(sheet))
    (work / "tiles.geojson").write_text(json.dumps(grid))
    dsm = work / f"sat2lod_{tag}.tif"
    t = time.perf_counter()
    info = stereo_tile(
        work / f"scenes_{tag}.json",
        work / "tiles.geojson",
        "t0000_0000",
        dsm,
        work / f"q_{tag}.tif",
        RESOLUTION,
        **params,
    )
    return dsm, info["pairs"][0], time.perf_counter() - t


def run_cars(venv: Path, work: Path) -> Path:
    out = work / "cars"
    sensors = {
        f"view{i}": {"image": str(DATA / f"img{i + 1}.tif"), "geomodel": str(DATA / f"img{i + 1}.geom")}
        for i in (0, 1)
    }
    conf = {
        "input": {"sensors": sensors, "pairing": [["view0", "view1"]]},
        "orchestrator": {"mode": "multiprocessing", "nb_workers": 2},
        "surface_modeling": {"advanced": {"all": {"save_intermediate_data": True}}},
        "output": {"directory": str(out), "resolution": RESOLUTION, "geoid": False, "epsg": EPSG},
    }
    path = work / "cars.json"
    path.write_text(json.dumps(conf, indent=1))
    with open(work / "cars.log", "w") as log:
        subprocess.run(
            [str(venv / "bin" / "cars"), str(path)], check=True, stdout=log, stderr=subprocess.STDOUT
        )
    return out


SHARELOC = r"""
import sys, numpy as np
from shareloc.geomodels.geomodel import GeoModel
from shareloc.geofunctions.triangulation import sensor_triangulation
d, m, (a0, b0), (a1, b1) = sys.argv[1], np.load(sys.argv[2]), map(float, sys.argv[3].split(",")), map(float, sys.argv[4].split(","))
g1, g2 = GeoModel(d + "/img1.geom", "RPC"), GeoModel(d + "/img2.geom", "RPC")
# array pixel centre (r, c) of a crop with origin (row0, col0) -> shareloc full-scene coordinate (top-left convention)
mt = np.stack([m["c1"] + b0 + 0.5, m["r1"] + a0 + 0.5, m["c2"] + b1 + 0.5, m["r2"] + a1 + 0.5], 1)
np.save(sys.argv[5], sensor_triangulation(mt, g1, g2)[1])
"""


def shareloc_heights(python: Path, work: Path, c1, r1, c2, r2) -> np.ndarray:
    """Heights of the matches triangulated by CNES shareloc (CARS's geometry library, line-of-sight
    intersection) in the CARS venv: an RPC / pixel-convention check independent of sat2lod's code."""
    from sat2lod.io.rpc_files import crop_origin

    np.savez(work / "matches.npz", c1=c1, r1=r1, c2=c2, r2=r2)
    o1, o2 = (",".join(str(v) for v in crop_origin(DATA / f"img{i}.tif")) for i in (1, 2))
    script = work / "shareloc_tri.py"
    script.write_text(SHARELOC)
    out = work / "shareloc.npy"
    subprocess.run(
        [str(python), str(script), str(DATA), str(work / "matches.npz"), o1, o2, str(out)],
        check=True,
        capture_output=True,
    )
    return np.load(out)[:, 2]


# ------------------------------------------------------------------------------------------------ rasters
def on_grid(path: Path, ref: Path, nodata: float | None = None) -> np.ndarray:
    """Band 1 of ``path`` on the grid of ``ref`` (nearest: the 0.5 m grids here share their cell corners)."""
    with rasterio.open(ref) as r, rasterio.open(path) as s:
        out = np.full((r.height, r.width), np.nan, np.float64)
        src = s.read(1).astype(np.float64)
        nd = s.nodata if nodata is None else nodata
        if nd is not None and np.isfinite(nd):
            src[src == nd] = np.nan
        crs = s.crs if s.crs is not None else r.crs
        reproject(
            src,
            out,
            src_transform=s.transform,
            src_crs=crs,
            dst_transform=r.transform,
            dst_crs=r.crs,
            resampling=Resampling.nearest,
            src_nodata=np.nan,
            dst_nodata=np.nan,
        )
        return out


def diff_stats(d: np.ndarray) -> dict:
    d = d[np.isfinite(d)]
    med = float(np.median(d))
    nmad = float(1.4826 * np.median(np.abs(d - med)))
    return {
        "cells": int(d.size),
        "median_dh": round(med, 3),
        "mean_dh": round(float(d.mean()), 3),
        "trimmed_mean_dh": round(float(d[np.abs(d - med) <= 3 * nmad].mean()), 3),
        "median_abs_dh": round(float(np.median(np.abs(d))), 3),
        "nmad": round(nmad, 3),
        "p90_abs_dh": round(float(np.percentile(np.abs(d), 90)), 3),
        "median_abs_dh_of_zero_mean_noise_with_this_nmad": round(0.6745 * nmad, 3),
    }


def robust_plane(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, iters: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """z = a + b x + c y by least squares, cells beyond 3 NMAD of the fit dropped ``iters`` times -> (a,b,c), kept."""
    keep = np.isfinite(z)
    for _ in range(iters):
        a = np.stack([np.ones(keep.sum()), x[keep], y[keep]], 1)
        coef, *_ = np.linalg.lstsq(a, z[keep], rcond=None)
        r = z - (coef[0] + coef[1] * x + coef[2] * y)
        nmad = 1.4826 * np.nanmedian(np.abs(r[keep]))
        keep = np.isfinite(z) & (np.abs(r) < 3 * max(nmad, 1e-6))
    return coef, keep


def slope_deg(dsm: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(dsm, RESOLUTION)
    return np.degrees(np.arctan(np.hypot(gx, gy)))


# ------------------------------------------------------------------------------------------------ sparse
def sparse_matches(img1: np.ndarray, img2: np.ndarray, r: int = 7) -> dict[str, np.ndarray]:
    """SIFT (ratio 0.7) + Lucas-Kanade translation refinement of a (2r+1)^2 window (bicubic splines, to 0.001 px).

    The image-1 point is the integer pixel nearest the SIFT keypoint (no interpolation of the template); only
    converged matches within 1.5 px of SIFT's are kept. Pixel centres at integer coordinates (array indices).
    """

    def u8(a: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(a, [0.5, 99.5])
        return np.clip((a - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)

    sift = cv2.SIFT_create(nfeatures=8000)
    k1, d1 = sift.detectAndCompute(u8(img1), None)
    k2, d2 = sift.detectAndCompute(u8(img2), None)
    good = [
        p[0]
        for p in cv2.BFMatcher().knnMatch(d1, d2, k=2)
        if len(p) == 2 and p[0].distance < 0.7 * p[1].distance
    ]
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(float)
    b = img2.astype(np.float64)
    spl = ndimage.spline_filter(b, order=3)
    gy, gx = np.gradient(b)
    out = []
    for g in good:
        x1, y1 = k1[g.queryIdx].pt
        x2, y2 = k2[g.trainIdx].pt
        c1, r1 = int(round(x1)), int(round(y1))
        if not (r + 2 <= r1 < img1.shape[0] - r - 2 and r + 2 <= c1 < img1.shape[1] - r - 2):
            continue
        t = img1[r1 - r : r1 + r + 1, c1 - r : c1 + r + 1].astype(np.float64)
        t = (t - t.mean()) / (t.std() + 1e-9)
        cx, cy = x2 + (c1 - x1), y2 + (r1 - y1)
        ok = False
        for _ in range(20):
            if not (r + 2 <= cy < b.shape[0] - r - 3 and r + 2 <= cx < b.shape[1] - r - 3):
                break
            co = [cy + yy, cx + xx]
            w = ndimage.map_coordinates(spl, co, order=3, prefilter=False)
            jx = ndimage.map_coordinates(gx, co, order=1)
            jy = ndimage.map_coordinates(gy, co, order=1)
            sd = w.std() + 1e-9
            step, *_ = np.linalg.lstsq(
                np.stack([jx.ravel(), jy.ravel()], 1) / sd, (t - (w - w.mean()) / sd).ravel(), rcond=None
            )
            cx, cy = cx + step[0], cy + step[1]
            if np.hypot(*step) < 1e-3:
                ok = True
                break
        if not ok or abs(cx - x2) > 1.5 or abs(cy - y2) > 1.5:
            continue
        w = ndimage.map_coordinates(spl, [cy + yy, cx + xx], order=3, prefilter=False)
        out.append((c1, r1, cx, cy, float(np.corrcoef(t.ravel(), w.ravel())[0, 1])))
    o = np.array(out)
    return {"sift": len(good), "c1": o[:, 0], "r1": o[:, 1], "c2": o[:, 2], "r2": o[:, 3], "ncc": o[:, 4]}


def triangulate_fd(rpc1: RPCModel, rpc2: RPCModel, c1, r1, c2, r2, h0: float = 80.0, iters: int = 8):
    """Independent of sat2lod's triangulation: Gauss-Newton on the 4 image equations with finite-difference
    Jacobians (numpy, all points at once) in local metres. Returns lon, lat, h, residuals (N, 4) px."""
    lon, lat = rpc1.localize(r1, c1, np.full(c1.shape, h0))
    frame = LocalFrame.at(float(np.mean(lon)), float(np.mean(lat)), h0)
    q = frame.to_local(lon, lat, np.full(c1.shape, h0))
    obs = np.stack([c1, r1, c2, r2], 1)

    def f(q: np.ndarray) -> np.ndarray:
        lo, la, h = frame.to_geo(q)
        a_r, a_c = rpc1.project(lo, la, h)
        b_r, b_c = rpc2.project(lo, la, h)
        return np.stack([a_c, a_r, b_c, b_r], 1) - obs

    for _ in range(iters):
        e = f(q)
        jac = np.empty((q.shape[0], 4, 3))
        for k, step in enumerate((0.01, 0.01, 0.01)):
            dq = np.zeros(3)
            dq[k] = step
            jac[:, :, k] = (f(q + dq) - f(q - dq)) / (2 * step)
        jtj = np.einsum("nik,nil->nkl", jac, jac)
        jte = np.einsum("nik,ni->nk", jac, e)
        q = q - np.linalg.solve(jtj, jte[..., None])[..., 0]
    lo, la, h = frame.to_geo(q)
    return lo, la, h, f(q)


def across_epipolar(pr, c1, r1, c2, r2) -> np.ndarray:
    """Row mismatch (px) of matches in the pair's rectification (y2' - y1')."""
    _, ya = pr.image_to_rect(1, c1, r1)
    _, yb = pr.image_to_rect(2, c2, r2)
    return yb - ya


def bilinear(dsm: np.ndarray, transform, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    inv = ~transform
    col, row = inv * (x, y)
    return ndimage.map_coordinates(dsm, [row - 0.5, col - 0.5], order=1, cval=np.nan, prefilter=False)


# ------------------------------------------------------------------------------------------------ pyramid
def pyramid(dsm: np.ndarray, transform, gamma_deg: float) -> dict:
    """Khufu in ``dsm``: centre (centroid of cells > plateau + 60 m), plateau level (ring 125-160 m from the
    centre), robust face planes (25-95 m from the centre, split by the diagonals in the frame turned by the
    grid convergence ``gamma_deg``), each face's slope, its height at the centre above the plateau and its
    distance from the centre where it meets the plateau (half the base side)."""
    rows, cols = np.indices(dsm.shape)
    x = transform.c + (cols + 0.5) * transform.a
    y = transform.f + (rows + 0.5) * transform.e
    med = ndimage.median_filter(np.nan_to_num(dsm, nan=-1e4), 5)
    ground = float(np.nanmedian(dsm))
    high = (med > ground + 60) & np.isfinite(dsm)
    lab, n = ndimage.label(high)
    biggest = 1 + int(np.argmax(ndimage.sum(high, lab, range(1, n + 1))))
    xc, yc = float(x[lab == biggest].mean()), float(y[lab == biggest].mean())
    g = np.radians(gamma_deg)  # grid north -> true north: the faces are turned by -gamma on the UTM grid
    u = np.cos(g) * (x - xc) + np.sin(g) * (y - yc)
    v = -np.sin(g) * (x - xc) + np.cos(g) * (y - yc)
    cheb = np.maximum(np.abs(u), np.abs(v))
    ring = (cheb > 125) & (cheb < 160) & np.isfinite(dsm)
    plateau = float(np.nanmedian(dsm[ring]))
    out: dict = {"centre_xy": [round(xc, 1), round(yc, 1)], "plateau_m": round(plateau, 2), "faces": {}}
    zone = (cheb > 25) & (cheb < 95) & np.isfinite(dsm)
    faces = {"north": v > np.abs(u), "south": -v > np.abs(u), "east": u > np.abs(v), "west": -u > np.abs(v)}
    for name, sel in faces.items():
        m = zone & sel
        coef, keep = robust_plane(u[m], v[m], dsm[m])
        grad = float(np.hypot(coef[1], coef[2]))
        h_centre = float(coef[0]) - plateau
        out["faces"][name] = {
            "cells": int(keep.sum()),
            "slope_deg": round(float(np.degrees(np.arctan(grad))), 2),
            "apex_above_plateau_m": round(h_centre, 2),
            "half_base_m": round(h_centre / grad, 2),
        }
    f = out["faces"]
    out["mean_slope_deg"] = round(float(np.mean([v["slope_deg"] for v in f.values()])), 2)
    out["apex_above_plateau_m"] = round(float(np.mean([v["apex_above_plateau_m"] for v in f.values()])), 2)
    out["base_ns_m"] = round(f["north"]["half_base_m"] + f["south"]["half_base_m"], 2)
    out["base_ew_m"] = round(f["east"]["half_base_m"] + f["west"]["half_base_m"], 2)
    top = (cheb < 6) & np.isfinite(dsm)
    out["top_platform_above_plateau_m"] = (
        round(float(np.percentile(dsm[top], 90)) - plateau, 2) if top.any() else None
    )
    return out


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--cars-out", type=Path, help="existing CARS output folder (dsm/dsm.tif, intermediate_data)"
    )
    ap.add_argument("--run-cars", type=Path, metavar="VENV", help="run CARS with this venv's cars command")
    ap.add_argument(
        "--shareloc-python",
        type=Path,
        help="python with shareloc (default: the --run-cars venv's) to triangulate the sparse matches with it",
    )
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gizeh_bias")
    args = ap.parse_args()
    if args.cars_out is None and args.run_cars is None:
        ap.error("give --cars-out DIR (a CARS 1.3 output folder of this pair) or --run-cars VENV")
    tmp = tempfile.TemporaryDirectory()
    work = args.work or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {"pair": str(DATA.relative_to(REPO.parent)), "epsg": EPSG, "resolution_m": RESOLUTION}

    rpc1 = read_rpc(DATA / "img1.tif", DATA / "img1.geom")
    rpc2 = read_rpc(DATA / "img2.tif", DATA / "img2.geom")
    bounds = overlap_bounds([rpc1, rpc2])
    res["bounds"] = bounds

    # --- the two pipelines
    cars_out = args.cars_out or run_cars(args.run_cars, work)
    cars_dsm = cars_out / "dsm" / "dsm.tif"
    ours, info, wall = run_sat2lod(work, bounds, "default")
    # the same pair, code and parameters over another search range: other disparity offset, other sub-pixel
    # phase of the rectified right image -> the pair's own noise floor
    ours_wide, info_wide, _ = run_sat2lod(
        work, bounds, "other_range", heights=(60.0, 200.0), keypoint_range=False
    )
    res["sat2lod"] = {
        k: info.get(k)
        for k in (
            "pointing_dy_px",
            "pointing_mad_px",
            "height_range",
            "range_cut_share",
            "px_per_m",
            "valid_disparity",
        )
    }
    res["sat2lod"]["seconds"] = round(wall, 1)
    with rasterio.open(ours) as ds:
        a = ds.read(1).astype(np.float64)
        transform = ds.transform
        vdatum = ds.tags().get("VERTICAL_DATUM")
    a_wide = on_grid(ours_wide, ours)
    c = on_grid(cars_dsm, ours)
    with rasterio.open(cars_dsm) as ds:
        res["cars"] = {"crs_vertical": "ellipsoidal" if "ellipsoidal" in ds.crs.to_wkt() else ds.crs.to_wkt()}
    npts = cars_out / "intermediate_data/surface_modeling/res1/dump_dir/rasterization/dsm_n_pts.tif"
    if npts.exists():  # CARS cells without any point (filled) are left out
        n = on_grid(npts, ours, nodata=-1.0)
        c[~(n > 0)] = np.nan
        res["cars"]["cells_with_points_share_of_valid"] = round(float(np.mean(n[np.isfinite(c)] > 0)), 4)
    res["sat2lod"]["vertical_datum"] = vdatum
    meta = cars_out / "metadata.yaml"
    if meta.exists():
        import yaml

        m = yaml.safe_load(meta.read_text())["surface_modeling"]["1"]["applications"]
        res["cars"].update(
            disp_to_alt_ratio_m_per_px=m["grid_generation"]["view0_view1"]["disp_to_alt_ratio"],
            epipolar_error_before_correction_mean_px=m["match_filtering"]["view0_view1"][
                "before_correction_epi_error_mean"
            ],
            triangulation_alt_reference=m["triangulation"]["view0_view1"]["alt_reference"],
        )

    # --- 1. the difference map
    dh = a - c
    both = np.isfinite(dh)
    rows, cols = np.indices(a.shape)
    x = transform.c + (cols + 0.5) * transform.a
    y = transform.f + (rows + 0.5) * transform.e
    # terrain slope over ~2 m (the raw 0.5 m gradient is noise: 0.3 m between neighbours is 31 deg)
    smooth = ndimage.uniform_filter(np.nan_to_num(c, nan=float(np.nanmedian(c))), 5)
    slope = np.where(np.isfinite(c), slope_deg(smooth), np.nan)
    flat = both & (slope < 5.0)
    res["dh_sat2lod_minus_cars"] = {
        "all": diff_stats(dh[both]),
        "flat_slope_lt_5deg": diff_stats(dh[flat]),
        "steep_slope_gt_20deg": diff_stats(dh[both & (slope > 20)]),
    }
    xm, ym = x - x[both].mean(), y - y[both].mean()
    coef, keep = robust_plane(xm[both], ym[both], dh[both])
    span = np.hypot(np.ptp(x[both]), np.ptp(y[both]))
    res["dh_plane_fit"] = {
        "a_m": round(float(coef[0]), 3),
        "b_m_per_km": round(1000 * float(coef[1]), 3),
        "c_m_per_km": round(1000 * float(coef[2]), 3),
        "tilt_over_scene_diagonal_m": round(float(np.hypot(coef[1], coef[2]) * span), 3),
        "cells_kept": int(keep.sum()),
    }
    hb = np.clip(c[both], 60, 220)
    sc = np.polyfit(hb - 75.0, dh[both], 1)
    bins = [60, 70, 80, 90, 110, 150, 230]
    res["dh_vs_height"] = {
        "slope_m_per_100m": round(100 * float(sc[0]), 3),
        "median_by_cars_height": {
            f"{lo}-{hi}": round(float(np.median(dh[both][(c[both] >= lo) & (c[both] < hi)])), 3)
            for lo, hi in itertools.pairwise(bins)
            if ((c[both] >= lo) & (c[both] < hi)).sum() > 100
        },
    }
    # --- 2. noise floor: sat2lod against itself over two search ranges
    res["noise_floor_sat2lod_minus_sat2lod_other_range"] = diff_stats((a - a_wide)[np.isfinite(a - a_wide)])
    res["sat2lod_other_range_minus_cars"] = diff_stats((a_wide - c)[np.isfinite(a_wide - c)])

    # --- 3. sparse reference
    with rasterio.open(DATA / "img1.tif") as d1, rasterio.open(DATA / "img2.tif") as d2:
        im1, im2 = d1.read(1), d2.read(1)
    sp = sparse_matches(im1, im2)
    sel = sp["ncc"] > 0.9
    c1, r1, c2, r2 = (sp[k][sel] for k in ("c1", "r1", "c2", "r2"))
    pr = rectify_pair(
        rpc1,
        rpc2,
        tuple(bounds),
        EPSG,
        (60.0, 110.0),
        image_shape(DATA / "img1.tif"),
        image_shape(DATA / "img2.tif"),
    )
    ay = across_epipolar(pr, c1, r1, c2, r2)
    dy, mad = across_track_offset(KeypointMatches(c1, r1, np.zeros_like(c1), ay, np.ones_like(c1)))
    u2 = pr.rect2[1, :2]
    t = dy * u2 / float(u2 @ u2)  # as sat2lod.stereo.pipeline applies it to image 2
    rpc2c = rpc2.crop(-t[1], -t[0])
    tr = Transformer.from_crs(4326, EPSG, always_xy=True)
    sparse: dict = {
        "sift_matches": sp["sift"],
        "refined_ncc_gt_0.9": int(sel.sum()),
        "across_epipolar_px": {"median": round(float(np.median(ay)), 3), "nmad": round(float(mad), 3)},
    }
    pr_c = rectify_pair(
        rpc1,
        rpc2c,
        tuple(bounds),
        EPSG,
        (60.0, 110.0),
        image_shape(DATA / "img1.tif"),
        image_shape(DATA / "img2.tif"),
    )
    sparse["across_epipolar_after_correction_px"] = round(
        float(np.median(across_epipolar(pr_c, c1, r1, c2, r2))), 3
    )
    for name, model in (("corrected", rpc2c), ("raw_rpcs", rpc2)):
        lon, lat, h, e = triangulate_fd(rpc1, model, c1, r1, c2, r2)
        xs, ys = tr.transform(lon, lat)
        za, zc = bilinear(a, transform, xs, ys), bilinear(c, transform, xs, ys)
        # flat textured cells: both DSMs within 1 m over 3x3 cells around the point (no edges, no slopes)
        rough_a = bilinear(
            ndimage.maximum_filter(np.nan_to_num(a, nan=1e4), 3)
            - ndimage.minimum_filter(np.nan_to_num(a, nan=-1e4), 3),
            transform,
            xs,
            ys,
        )
        rough_c = bilinear(
            ndimage.maximum_filter(np.nan_to_num(c, nan=1e4), 3)
            - ndimage.minimum_filter(np.nan_to_num(c, nan=-1e4), 3),
            transform,
            xs,
            ys,
        )
        ok = np.isfinite(za) & np.isfinite(zc) & (rough_a < 1.0) & (rough_c < 1.0)
        resid = np.sqrt((e**2).sum(1) / 2)
        fin = np.isfinite(za) & np.isfinite(zc)
        pyr = fin & (h > 100.0)  # points on the pyramid (faces: no flatness filter)
        sparse[name] = {
            "pyramid_points_gt_100m": int(pyr.sum()),
            "pyramid_sat2lod_minus_sparse": diff_stats(za[pyr] - h[pyr]) if pyr.sum() > 10 else None,
            "pyramid_cars_minus_sparse": diff_stats(zc[pyr] - h[pyr]) if pyr.sum() > 10 else None,
            "points_on_flat_cells": int(ok.sum()),
            "median_residual_px": round(float(np.median(resid)), 3),
            "sparse_height_median_m": round(float(np.median(h)), 2),
            "sat2lod_minus_sparse": diff_stats(za[ok] - h[ok]),
            "cars_minus_sparse": diff_stats(zc[ok] - h[ok]),
        }
    py = args.shareloc_python or (args.run_cars / "bin" / "python" if args.run_cars else None)
    if py is not None:
        _, _, h_raw, _ = triangulate_fd(rpc1, rpc2, c1, r1, c2, r2)
        d_sl = h_raw - shareloc_heights(py, work, c1, r1, c2, r2)
        sparse["raw_rpcs_minus_shareloc_m"] = {
            "median": round(float(np.median(d_sl)), 4),
            "nmad": round(float(1.4826 * np.median(np.abs(d_sl - np.median(d_sl)))), 4),
            "max_abs": round(float(np.abs(d_sl).max()), 4),
        }
    res["sparse_reference"] = sparse

    # --- 4. the pair's geometry and the datum
    lon0, lat0 = rpc1.localize(np.array([400.0]), np.array([400.0]), np.array([80.0]))
    rr, cc = rpc1.project(lon0, lat0, np.array([80.0]))
    with rasterio.open(GEOID) as g:
        n_geoid = float(next(g.sample([(float(lon0[0]), float(lat0[0]))]))[0])
    res["geometry"] = {
        "rpc_round_trip_px": float(np.hypot(rr[0] - 400.0, cc[0] - 400.0)),
        "sat2lod_m_per_disparity_px": round(1.0 / abs(float(pr.alpha)), 3),
        "egm96_undulation_m": round(n_geoid, 2),
        "median_height_sat2lod_m": round(float(np.nanmedian(a)), 2),
        "median_height_cars_m": round(float(np.nanmedian(c)), 2),
    }

    # --- pixel locking: fractional disparity of the cells below 100 m in each run (the phase of the two sat2lod
    # runs differs by alpha * 10 m = 0.65 px: a peak at 0 in both is the matcher, not the terrain)
    def locked_share(frac: np.ndarray) -> dict:
        hist, _ = np.histogram(frac, bins=10, range=(-0.5, 0.5))
        return {
            "share_within_0.25px_of_integer": round(float(np.mean(np.abs(frac) < 0.25)), 3),
            "histogram_10_bins": [round(float(v), 3) for v in hist / hist.sum()],
        }

    lock = {}
    for name, arr, inf in (("sat2lod", a, info), ("sat2lod_other_range", a_wide, info_wide)):
        lo_r, hi_r = inf["height_range"]
        h_ref = 0.5 * (lo_r + hi_r)
        hv = arr[np.isfinite(arr) & (arr < 100.0)]
        lock[name] = locked_share(np.mod(inf["px_per_m"] * (hv - h_ref) + 0.5, 1.0) - 0.5)
    epi = (
        cars_out / "intermediate_data/surface_modeling/res1/dump_dir/dense_matching/view0_view1/epi_disp.tif"
    )
    if epi.exists():
        with rasterio.open(epi) as ds:
            dd = ds.read(1).astype(np.float64)
        dd = dd[np.isfinite(dd) & (dd != 0)]
        lock["cars_epipolar_disparity"] = locked_share(np.mod(dd + 0.5, 1.0) - 0.5)
    res["pixel_locking"] = lock

    # --- 5. the Great Pyramid
    gamma = float(Proj(f"EPSG:{EPSG}").get_factors(float(lon0[0]), float(lat0[0])).meridian_convergence)
    res["pyramid"] = {
        "known": KHUFU,
        "grid_convergence_deg": round(gamma, 3),
        "sat2lod": pyramid(a, transform, gamma),
        "sat2lod_other_range": pyramid(a_wide, transform, gamma),
        "cars": pyramid(c, transform, gamma),
    }

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    args.out.with_suffix(".md").write_text(render(res))
    print(json.dumps(res, indent=1, default=float))


def render(r: dict) -> str:
    d = r["dh_sat2lod_minus_cars"]
    lines = [
        "# Gizeh: sat2lod vs CARS, which DSM is biased? (issue 17)",
        "",
        (
            f"Command: `python bench/gizeh_bias.py --cars-out <CARS 1.3.0 output> --shareloc-python /work/cars_venv/bin/python` (or `--run-cars /work/cars_venv`). "
            f"Pair {r['pair']}, EPSG:{r['epsg']}, {r['resolution_m']} m; heights ellipsoidal in both "
            f"(sat2lod VERTICAL_DATUM {r['sat2lod']['vertical_datum']}, CARS {r['cars']['crs_vertical']})."
        ),
        "",
        "## sat2lod - CARS on the cells both measured",
        "",
        "| cells | n | median dh | mean dh | trimmed mean | median abs dh | 0.6745 NMAD | NMAD | p90 abs dh |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in list(d.items()) + [
        (
            "noise floor: sat2lod - sat2lod over another search range",
            r["noise_floor_sat2lod_minus_sat2lod_other_range"],
        )
    ]:
        lines.append(
            f"| {name} | {s['cells']} | {s['median_dh']} | {s['mean_dh']} | {s['trimmed_mean_dh']} | {s['median_abs_dh']} "
            f"| {s['median_abs_dh_of_zero_mean_noise_with_this_nmad']} | {s['nmad']} | {s['p90_abs_dh']} |"
        )
    p = r["dh_plane_fit"]
    lines += [
        "",
        (
            f"Plane dh = a + b x + c y: a {p['a_m']} m, b {p['b_m_per_km']} m/km, c {p['c_m_per_km']} m/km "
            f"({p['tilt_over_scene_diagonal_m']} m over the scene diagonal). dh against height: "
            f"{r['dh_vs_height']['slope_m_per_100m']} m per 100 m; median dh by CARS height: "
            f"{r['dh_vs_height']['median_by_cars_height']}."
        ),
        "",
        "## Sparse reference (SIFT + Lucas-Kanade matches, independent RPC triangulation), flat cells",
        "",
        "| triangulation | points | residual px | sat2lod - sparse median / NMAD | CARS - sparse median / NMAD |",
        "|---|---|---|---|---|",
    ]
    sp = r["sparse_reference"]
    for name in ("corrected", "raw_rpcs"):
        s = sp[name]
        lines.append(
            f"| {name} | {s['points_on_flat_cells']} | {s['median_residual_px']} | {s['sat2lod_minus_sparse']['median_dh']} / "
            f"{s['sat2lod_minus_sparse']['nmad']} | {s['cars_minus_sparse']['median_dh']} / {s['cars_minus_sparse']['nmad']} |"
        )
    for name in ("corrected", "raw_rpcs"):
        s = sp[name]
        if s.get("pyramid_sat2lod_minus_sparse"):
            lines.append(
                f"| {name}, pyramid points > 100 m (no flatness filter) | {s['pyramid_points_gt_100m']} | | "
                f"{s['pyramid_sat2lod_minus_sparse']['median_dh']} / {s['pyramid_sat2lod_minus_sparse']['nmad']} | "
                f"{s['pyramid_cars_minus_sparse']['median_dh']} / {s['pyramid_cars_minus_sparse']['nmad']} |"
            )
    g = r["geometry"]
    if "raw_rpcs_minus_shareloc_m" in sp:
        q = sp["raw_rpcs_minus_shareloc_m"]
        lines += [
            "",
            (
                f"The same matches triangulated by CNES shareloc (CARS's geometry library, line-of-sight intersection, "
                f"its own RPC reader and pixel convention): heights differ by median {q['median']} m (NMAD {q['nmad']}, "
                f"max {q['max_abs']} m) from the raw-RPC triangulation here: same models, same conventions."
            ),
        ]
    lines += [
        "",
        (
            f"Across-epipolar residual of the sparse matches: {sp['across_epipolar_px']['median']} px (NMAD "
            f"{sp['across_epipolar_px']['nmad']}) before, {sp['across_epipolar_after_correction_px']} px after sat2lod's "
            f"correction; sat2lod measured {r['sat2lod']['pointing_dy_px']:.3f} px, CARS "
            f"{r['cars'].get('epipolar_error_before_correction_mean_px')} px. One disparity pixel = "
            f"{g['sat2lod_m_per_disparity_px']} m of height (CARS: {r['cars'].get('disp_to_alt_ratio_m_per_px')}). "
            f"EGM96 undulation here {g['egm96_undulation_m']} m; median heights sat2lod {g['median_height_sat2lod_m']}, "
            f"CARS {g['median_height_cars_m']} m. RPC round trip {g['rpc_round_trip_px']:.1e} px."
        ),
        "",
        "## The Great Pyramid (Khufu)",
        "",
        f"Known: {r['pyramid']['known']}.",
        "",
        "| DSM | plateau m | mean face slope deg | faces N/S/E/W deg | faces' apex above plateau m | base N-S / E-W m | top above plateau m |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("sat2lod", "sat2lod_other_range", "cars"):
        q = r["pyramid"][name]
        f = q["faces"]
        lines.append(
            f"| {name} | {q['plateau_m']} | {q['mean_slope_deg']} | "
            + "/".join(str(f[k]["slope_deg"]) for k in ("north", "south", "east", "west"))
            + f" | {q['apex_above_plateau_m']} | {q['base_ns_m']} / {q['base_ew_m']} | {q['top_platform_above_plateau_m']} |"
        )
    lk = r.get("pixel_locking", {})
    lines += [
        "",
        "## Pixel locking (share of sub-pixel disparities within 0.25 px of an integer; 0.5 = none)",
        "",
    ]
    lines += [
        f"- {k}: {v['share_within_0.25px_of_integer']} (10 bins from -0.5 to 0.5 px: {v['histogram_10_bins']})"
        for k, v in lk.items()
    ]
    a, nf = d["all"], r["noise_floor_sat2lod_minus_sat2lod_other_range"]
    fl = sp["corrected"]
    worst = max(abs(fl["sat2lod_minus_sparse"]["median_dh"]), abs(fl["cars_minus_sparse"]["median_dh"]))
    mpp = g["sat2lod_m_per_disparity_px"]
    spread = (
        f"- The issue's figure is the spread, not an offset: median |dh| {a['median_abs_dh']} m is what zero-mean "
        f"noise with NMAD {a['nmad']} m gives ({a['median_abs_dh_of_zero_mean_noise_with_this_nmad']} m); the "
        f"signed median is {a['median_dh']} m, the mean {a['mean_dh']} m. sat2lod against itself over another "
        f"search range differs by median |dh| {nf['median_abs_dh']} m (NMAD {nf['nmad']}, median "
        f"{nf['median_dh']}): one disparity pixel is {mpp} m here (B/H ~0.08), so 0.1-0.2 px of matching noise "
        "is a metre."
    )
    sparse_line = (
        f"- Against the independent sparse intersection on flat cells: sat2lod "
        f"{fl['sat2lod_minus_sparse']['median_dh']} m, CARS {fl['cars_minus_sparse']['median_dh']} m (medians, "
        f"{fl['points_on_flat_cells']} points): both within {worst:.2f} m ({worst / mpp:.3f} px)."
    )
    datum = (
        f"- Same datum: the EGM96 undulation here is {g['egm96_undulation_m']} m, 20x the disagreement; both "
        "pipelines measure the same across-epipolar pointing error (about -0.5 px) and correct it."
    )
    py = r["pyramid"]
    pyr = (
        f"- Khufu: face slopes sat2lod {py['sat2lod']['mean_slope_deg']} deg, CARS {py['cars']['mean_slope_deg']} deg "
        f"(casing {py['known']['face_slope_deg']}); top above the plateau sat2lod "
        f"{py['sat2lod']['top_platform_above_plateau_m']} / {py['sat2lod_other_range']['top_platform_above_plateau_m']} m "
        f"(two search ranges), CARS {py['cars']['top_platform_above_plateau_m']} m (today {py['known']['height_today_m']}); "
        f"sparse points on the pyramid: sat2lod {sp['corrected']['pyramid_sat2lod_minus_sparse']['median_dh']} m, "
        f"CARS {sp['corrected']['pyramid_cars_minus_sparse']['median_dh']} m. sat2lod's stereo.keypoint_range used to "
        f"cut the pyramid at ~108 m here; range_cut_share {r['sat2lod'].get('range_cut_share')} now triggers a "
        "re-matching up to the top of the search range."
    )
    lk = r.get("pixel_locking", {})
    shares = ", ".join(f"{k} {v['share_within_0.25px_of_integer']}" for k, v in lk.items())
    locking = (
        "- What is left is local and phase dependent: the sub-pixel disparities of both pipelines lock to integers "
        f"(share within 0.25 px: {shares}; "
        "0.5 without locking). The integer grid sits at other heights in each pipeline's epipolar geometry (and in "
        "sat2lod with another search range), so flat areas pick up coherent offsets of a few tenths of a metre "
        f"(plateau ring: sat2lod {py['sat2lod']['plateau_m']} / {py['sat2lod_other_range']['plateau_m']} m, CARS "
        f"{py['cars']['plateau_m']} m) that change sign with the height band; not a bias of either pipeline."
    )
    lines += ["", "## Reading", "", spread, sparse_line, datum, pyr, locking]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
