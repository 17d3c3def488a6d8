"""Tiny fake satellite views for the acquisition and tiling tests (uint16 GeoTIFF + RPC tags, no geotransform).

Each view is an affine pushbroom-like camera: a ground point (E, N, h), in metres east/north of (lon0, lat0),
is seen at col = (E - h * p_e) / gsd + c0, row = -(N - h * p_n) / gsd + r0, with
p = tan(incidence) * (sin(azimuth), cos(azimuth)) (azimuth of the satellite seen from the ground). The camera is
sampled on a 3-D grid and fitted with :func:`sat2lod.rpc.fit_rpc`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from rasterio.transform import Affine

from sat2lod.io.raster import write_raster
from sat2lod.rpc import RPCModel, fit_rpc

#: the repository (the eodag provider file of the synthetic source lives in its config/)
REPO = Path(__file__).resolve().parents[1]
# a stereo triplet over Paris as the acquisition tests search for it (shared by test_acquire, test_hostile_inputs)
PROVIDERS = REPO / "config" / "eodag_providers.yaml"
LON0, LAT0 = 2.35, 48.85
TIMES = ["2024-05-01T10:30:00Z", "2024-05-01T10:30:40Z", "2024-05-01T10:31:20Z"]
SELECTION = {
    "max_views": 3,
    "bh_min": 0.05,
    "bh_max": 1.0,
    "bh_target": 0.3,
    "max_gap_s": 600.0,
    "min_aoi_coverage": 0.5,
}

R_EARTH = 6_378_137.0


def affine_camera_rpc(
    lon0: float,
    lat0: float,
    size_px: int,
    gsd: float,
    incidence_deg: float,
    azimuth_deg: float,
    hrange: tuple[float, float] = (0.0, 100.0),
    shift_px: tuple[float, float] = (0.0, 0.0),
) -> RPCModel:
    """RPC of an affine camera whose image centre sees (lon0, lat0) at height 0 (plus ``shift_px`` = (drow, dcol))."""
    t = math.tan(math.radians(incidence_deg))
    pe, pn = t * math.sin(math.radians(azimuth_deg)), t * math.cos(math.radians(azimuth_deg))
    half = 0.75 * size_px * gsd + t * max(abs(h) for h in hrange)
    e, n, h = np.meshgrid(np.linspace(-half, half, 9), np.linspace(-half, half, 9), np.linspace(*hrange, 5))
    e, n, h = e.ravel(), n.ravel(), h.ravel()
    lon = lon0 + np.degrees(e / (R_EARTH * math.cos(math.radians(lat0))))
    lat = lat0 + np.degrees(n / R_EARTH)
    c0 = (size_px - 1) / 2.0 + shift_px[1]
    r0 = (size_px - 1) / 2.0 + shift_px[0]
    col = (e - h * pe) / gsd + c0
    row = -(n - h * pn) / gsd + r0
    return fit_rpc(lon, lat, h, row, col)


def write_fake_view(path: Path, rpc: RPCModel, size_px: int, seed: int = 0, tags: bool = True) -> Path:
    """Write a (size_px, size_px) uint16 noise image with ``rpc`` as RPC tags (no tags when ``tags`` is False)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(100, 4000, (size_px, size_px), dtype=np.uint16)
    return write_raster(path, img, Affine.identity(), None, rpcs=rpc.to_rasterio() if tags else None)


def fake_triplet(
    out_dir: Path,
    lon0: float = 2.35,
    lat0: float = 48.85,
    size_px: int = 200,
    gsd: float = 0.5,
    hrange: tuple[float, float] = (0.0, 100.0),
) -> list[dict]:
    """Three views of one pass (fore, nadir-ish, aft), B/H ~ 0.2-0.4; returns [{file, incidence_deg, azimuth_deg}]."""
    specs = [(12.0, 0.0), (3.0, 180.0), (10.0, 180.0)]
    views = []
    for i, (inc, az) in enumerate(specs):
        rpc = affine_camera_rpc(lon0, lat0, size_px, gsd, inc, az, hrange)
        p = write_fake_view(out_dir / f"view_{i}.tif", rpc, size_px, seed=i)
        views.append({"file": p.name, "incidence_deg": inc, "azimuth_deg": az})
    return views


def write_rpc_txt(path: Path, rpc: RPCModel) -> Path:
    """Write ``rpc`` as an ``_RPC.TXT`` key-value file (``LINE_OFF: ...``, ``LINE_NUM_COEFF_1..20``)."""
    lines = [
        f"{k.upper()}: {getattr(rpc, k)!r}"
        for k in (
            "line_off",
            "samp_off",
            "lat_off",
            "long_off",
            "height_off",
            "line_scale",
            "samp_scale",
            "lat_scale",
            "long_scale",
            "height_scale",
        )
    ]
    for k in ("line_num_coeff", "line_den_coeff", "samp_num_coeff", "samp_den_coeff"):
        lines += [f"{k.upper()}_{i + 1}: {float(c)!r}" for i, c in enumerate(getattr(rpc, k))]
    path.write_text("\n".join(lines) + "\n")
    return path
