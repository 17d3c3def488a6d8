"""LOD1/LOD2: roof fitting on synthetic roofs of each type, watertight planar solids."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import shapely
from rasterio.transform import from_origin
from shapely import affinity
from shapely.geometry import Polygon, box

from sat2lod.lod.models import lod1_building, lod2_building
from sat2lod.lod.roof import RoofParams, fit_roof
from sat2lod.lod.solid import ROOF, Surface, build_solid, check_solid
from sat2lod.synth.layout import Building

T = from_origin(0.0, 100.0, 0.5, 0.5)
XS, YS = np.meshgrid(np.arange(0.25, 100, 0.5), np.arange(99.75, 0, -0.5))


def _roof_points(rt, hl, hw, ang, eave=6.0, ridge=9.5, noise=0.3, seed=0):
    cx, cy = 50.0, 50.0
    fp = affinity.rotate(box(cx - hl, cy - hw, cx + hl, cy + hw), ang, origin=(cx, cy), use_radians=True)
    b = Building(1, fp, rt, eave, ridge if rt != "flat" else eave, 100.0, (cx, cy, ang, hl, hw), "detached")
    inside = shapely.contains_xy(fp.buffer(-0.6), XS, YS)
    x, y = XS[inside], YS[inside]
    z = 100.0 + b.roof_height(x, y) + np.random.default_rng(seed).normal(0, noise, len(x))
    return fp, b, x, y, z


CASES = [
    ("flat", 6, 4, 0.3),
    ("shed", 6, 4, 0.5),
    ("gable", 7, 4, 0.2),
    ("gable", 4.5, 6.5, 1.1),
    ("hip", 7, 4, 1.0),
    ("pyramid", 6, 6, 0.4),
]


@pytest.mark.parametrize("rt,hl,hw,ang", CASES)
def test_each_roof_type_is_recognised_and_closed(rt, hl, hw, ang):
    fp, b, x, y, z = _roof_points(rt, hl, hw, ang)
    fit = fit_roof(fp, x, y, z, transform=T)
    assert fit.roof_type == rt
    assert abs(fit.ridge - (100 + b.ridge)) < 0.3
    assert abs(fit.eave - (100 + b.eave)) < 0.3
    assert fit.rmse < 0.4  # the noise level
    chk = check_solid(build_solid(fit.faces, fit.planes, 100.0))
    assert chk["closed"] and chk["planar"] and chk["simple"] and chk["volume_m3"] > 0


def test_gable_volume_is_exact():
    faces = [box(0, 0, 10, 2.5), box(0, 2.5, 10, 5)]
    planes = [(5.0, 0.0, 1.0), (10.0, 0.0, -1.0)]  # eave 5 m, ridge 7.5 m along y = 2.5
    s = build_solid(faces, planes, 0.0)
    chk = check_solid(s)
    assert chk["closed"] and chk["volume_m3"] == pytest.approx(10 * 5 * 5 + 10 * 5 * 2.5 / 2)
    assert sum(1 for f in s if f.semantic == ROOF) == 2


def test_step_walls_and_courtyard_stay_closed():
    outer = Polygon([(0, 0), (20, 0), (20, 20), (0, 20)], [[(5, 5), (5, 15), (15, 15), (15, 5)]])
    a, b = outer.intersection(box(0, 0, 10, 20)), outer.intersection(box(10, 0, 20, 20))
    chk = check_solid(build_solid([a, b], [(10.0, 0, 0), (14.0, 0, 0)], 1.0))
    assert chk["closed"] and chk["volume_m3"] == pytest.approx(150 * 9 + 150 * 13)
    # crossing planes along the common edge are split where they cross
    chk = check_solid(
        build_solid([box(0, 0, 5, 5), box(5, 0, 10, 5)], [(10.0, 0, 0.5), (12.5, 0, -0.5)], 0.0)
    )
    assert chk["closed"] and chk["planar"] and chk["simple"]


def test_open_shell_is_detected():
    s = build_solid([box(0, 0, 10, 5)], [(8.0, 0, 0)], 0.0)
    broken = [f for f in s if f.semantic != "GroundSurface"]
    assert not check_solid(broken)["closed"]
    warped = [Surface([[(0, 0, 0), (10000, 0, 0), (10000, 10000, 500), (0, 10000, 0)]], ROOF)]
    assert check_solid(warped)["max_planarity_m"] > 0.1


def test_multiplane_roof_for_an_l_shaped_gable():
    # two gables at right angles on an L: no single primitive fits, planes do
    fp = box(40, 40, 70, 50).union(box(40, 40, 50, 70))
    inside = shapely.contains_xy(fp.buffer(-0.6), XS, YS)
    x, y = XS[inside], YS[inside]
    z1 = 110 + 4 - 0.8 * np.abs(y - 45)  # wing along x, ridge at y = 45
    z2 = 110 + 4 - 0.8 * np.abs(x - 45)  # wing along y, ridge at x = 45
    z = np.where((x > 50) | ((y < 50) & (np.abs(y - 45) < np.abs(x - 45))), z1, z2)
    z = z + np.random.default_rng(1).normal(0, 0.1, len(z))
    fit = fit_roof(fp, x, y, z, transform=T)
    assert fit.roof_type == "multiplane" and fit.rmse < 0.5 and len(fit.faces) >= 4
    chk = check_solid(build_solid(fit.faces, fit.planes, 105.0))
    assert chk["closed"] and chk["planar"] and chk["simple"]


def test_lod1_and_lod2_buildings_from_rasters():
    fp, b, _, _, _ = _roof_points("gable", 7, 4, 0.2)
    dtm = np.full(XS.shape, 100.0, np.float32)
    dsm = dtm.copy()
    inside = shapely.contains_xy(fp, XS, YS)
    dsm[inside] = 100.0 + b.roof_height(XS[inside], YS[inside])
    lod1 = lod1_building("b1", fp, dtm, dsm - dtm, T, roof_percentile=95.0)
    assert lod1 is not None and lod1.lod == "1.2"
    assert abs(lod1.attributes["height"] - b.ridge) < 0.5
    res = lod2_building("b1", fp, dsm, dtm, T)
    assert res is not None
    city_b, fit = res
    assert fit.roof_type == "gable" and city_b.attributes["ridge_height"] == pytest.approx(b.ridge, abs=0.2)
    surfaces = [Surface(r, s) for r, s in city_b.surfaces]
    chk = check_solid(surfaces)
    assert chk["closed"] and chk["planar"] and chk["simple"]
    assert not math.isnan(city_b.attributes["ground_height"])


def _correlated_noise(rms, seed, sigma_px=1.5):
    """Stereo-like DSM noise on the XS/YS grid: white noise smoothed by a Gaussian (sigma_px), scaled to rms."""
    from scipy import ndimage

    n = ndimage.gaussian_filter(np.random.default_rng(seed).normal(0, 1, XS.shape), sigma_px)
    return n * rms / n.std()


def _noisy_roof(rt, hl, hw, ang, seed, rms=0.3, sigma_px=1.5):
    fp, b, x, y, _ = _roof_points(rt, hl, hw, ang, noise=0.0)
    noise = _correlated_noise(rms, seed, sigma_px)
    col, row = (~T) @ (x, y)
    return (
        fp,
        b,
        x,
        y,
        100.0 + b.roof_height(x, y) + noise[np.floor(row).astype(int), np.floor(col).astype(int)],
    )


def test_noise_correlation_area_known_answers():
    from sat2lod.lod.roof import noise_correlation_area

    rr, cc = np.mgrid[0:200, 0:200]
    white = np.random.default_rng(3).normal(0, 1, rr.shape)
    assert noise_correlation_area(rr.ravel(), cc.ravel(), white.ravel())[1] == pytest.approx(1.0, abs=0.3)
    # Gaussian-smoothed white noise (sigma s px) has a Gaussian correlation of sigma s*sqrt(2): area 4 pi s^2
    corr = _correlated_noise(1.0, 3, sigma_px=1.5)
    rho, area = noise_correlation_area(rr.ravel(), cc.ravel(), corr.ravel())
    assert rho == pytest.approx(np.exp(-1 / (4 * 1.5**2)), abs=0.03)
    assert area == pytest.approx(4 * np.pi * 1.5**2, rel=0.3)


@pytest.mark.parametrize("seed", range(10))
def test_flat_roof_with_correlated_noise_stays_flat(seed):
    # correlated 0.7 m noise (correlation area ~28 px, like a stereo DSM) tilts a flat roof coherently by more
    # than 0.7 m and 5 degrees on some seeds (the former fixed thresholds took 7 of these 30 roofs for sloped)
    for hl, hw, ang in ((6.0, 4.0, 0.3), (7.0, 7.0, 0.0), (10.0, 6.0, 1.2)):
        fp, _, x, y, z = _noisy_roof("flat", hl, hw, ang, seed, rms=0.7)
        fit = fit_roof(fp, x, y, z, transform=T)
        assert fit.roof_type == "flat", (hl, hw, ang, fit.scores)
        assert abs(fit.ridge - 106.0) < 0.4 and fit.n_eff < 0.2 * fit.n_points


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "rt,hl,hw,ang",
    [
        ("gable", 6.0, 4.0, 0.3),
        ("gable", 4.5, 6.0, 1.1),
        ("shed", 6.0, 4.0, 0.5),
        ("hip", 7.0, 4.5, 1.0),
        ("pyramid", 6.0, 6.0, 0.4),
    ],
)
def test_pitched_roofs_with_correlated_noise_keep_their_type(rt, hl, hw, ang, seed):
    # 3.5 m rise under correlated 0.5 m noise: the significance test must not flatten it
    fp, b, x, y, z = _noisy_roof(rt, hl, hw, ang, seed, rms=0.5)
    fit = fit_roof(fp, x, y, z, transform=T)
    assert fit.roof_type == rt, fit.scores
    assert abs(fit.ridge - (100 + b.ridge)) < 0.75  # 1.5 x the noise: a few correlated blobs move the fit


def test_a_given_scene_correlation_area_is_used():
    from dataclasses import replace

    from sat2lod.lod.roof import RoofParams

    fp, _, x, y, z = _noisy_roof("flat", 6.0, 4.0, 0.3, 0)
    fit = fit_roof(fp, x, y, z, replace(RoofParams(), corr_area_px=20.0), transform=T)
    assert fit.n_eff == pytest.approx(fit.n_points / 20.0)


SUN = (math.radians(145.0), math.radians(60.0))  # azimuth from north, elevation (the demo city's sun)


def _ortho(b, x, y, seed, sun=SUN, albedo=0.35, texture=0.03):
    """Lambert-shaded roof brightness at (x, y) (one albedo for the whole roof, like the synthetic renderer)
    with spatially correlated roof texture (``texture`` rms)."""
    eps = 0.05
    gx = (b.roof_height(x + eps, y) - b.roof_height(x - eps, y)) / (2 * eps)
    gy = (b.roof_height(x, y + eps) - b.roof_height(x, y - eps)) / (2 * eps)
    az, el = sun
    sx, sy, sz = math.cos(el) * math.sin(az), math.cos(el) * math.cos(az), math.sin(el)
    cosi = np.clip((-gx * sx - gy * sy + sz) / np.sqrt(gx * gx + gy * gy + 1), 0, 1)
    tex = _correlated_noise(texture, seed + 100, sigma_px=1.0)
    col, row = (~T) @ (x, y)
    return albedo * (0.25 + 0.75 * cosi) + tex[np.floor(row).astype(int), np.floor(col).astype(int)]


def _flattened_roof(rt, hl, hw, ang, seed, factor=0.5, rms=0.6):
    """A small roof as a stereo DSM sees it: the pitch flattened to ``factor`` of its rise, correlated noise."""
    fp, b, x, y, _ = _roof_points(rt, hl, hw, ang, noise=0.0)
    noise = _correlated_noise(rms, seed, 2.0)
    col, row = (~T) @ (x, y)
    h = b.roof_height(x, y)
    return (
        fp,
        b,
        x,
        y,
        100.0 + b.eave + factor * (h - b.eave) + noise[np.floor(row).astype(int), np.floor(col).astype(int)],
    )


@pytest.mark.parametrize(
    "rt,hl,hw,ang", [("gable", 5.0, 3.5, 0.0), ("gable", 5.0, 3.5, 1.57), ("hip", 6.0, 4.0, 0.2)]
)
def test_ortho_face_brightness_types_a_flattened_pitched_roof(rt, hl, hw, ang):
    # the DSM alone calls these flattened roofs flat on most seeds; the lit faces give their layout
    dsm_only = typed = 0
    for seed in range(6):
        fp, b, x, y, z = _flattened_roof(rt, hl, hw, ang, seed)
        v = _ortho(b, x, y, seed)
        dsm_only += fit_roof(fp, x, y, z, transform=T).roof_type == rt
        fit = fit_roof(fp, x, y, z, transform=T, image=v)
        typed += fit.roof_type == rt
        if fit.roof_type == rt:
            # heights stay those of the DSM fitted with the face layout fixed: a positive (flattened) rise
            assert fit.ridge > fit.eave and abs(fit.eave - (100 + b.eave)) < 1.0
    assert typed == 6 and dsm_only <= 2, (typed, dsm_only)


def test_gable_with_faces_lit_alike_falls_back_to_the_dsm():
    # sun along the ridge: no brightness contrast, so the result is the DSM-only one (type, heights)
    for seed in range(4):
        fp, b, x, y, z = _flattened_roof("gable", 5.0, 3.5, 0.0, seed)
        v = _ortho(b, x, y, seed, sun=(math.radians(90.0), math.radians(55.0)))
        a, c = fit_roof(fp, x, y, z, transform=T), fit_roof(fp, x, y, z, transform=T, image=v)
        assert (c.roof_type, c.ridge, c.eave) == (a.roof_type, a.ridge, a.eave), (seed, a.scores, c.scores)


@pytest.mark.parametrize("seed", range(6))
def test_flat_roof_with_uniform_brightness_stays_flat(seed):
    for hl, hw, ang in ((6.0, 4.0, 0.3), (7.0, 7.0, 0.0), (10.0, 6.0, 1.2)):
        fp, b, x, y, z = _noisy_roof("flat", hl, hw, ang, seed, rms=0.7)
        fit = fit_roof(fp, x, y, z, transform=T, image=_ortho(b, x, y, seed))
        assert fit.roof_type == "flat", (hl, hw, ang, fit.scores)


def test_ortho_face_bic_known_answers():
    from sat2lod.lod.roof import ortho_face_bic

    # a gable lit from across its ridge: the two-face layout wins clearly, the ridge direction is found
    fp, b, x, y, _ = _roof_points("gable", 6.0, 4.0, 0.0, noise=0.0)
    sc = ortho_face_bic(fp, x, y, _ortho(b, x, y, 0, sun=(math.radians(180.0), math.radians(50.0))), T)
    assert sc["flat"] - sc["gable_s"] > 20 and sc["gable_s"] < sc["gable_t"]
    # the same gable with the sun along its ridge: both faces lit alike, no support for a layout
    sc = ortho_face_bic(fp, x, y, _ortho(b, x, y, 0, sun=(math.radians(90.0), math.radians(50.0))), T)
    assert sc["flat"] - sc["gable_s"] < 6
    # too few finite values: no evidence
    assert ortho_face_bic(fp, x[:5], y[:5], np.ones(5), T) == {}


def test_without_ortho_the_fit_is_unchanged():
    fp, _, x, y, z = _flattened_roof("gable", 5.0, 3.5, 0.0, 1)
    base = fit_roof(fp, x, y, z, transform=T)
    nan = fit_roof(fp, x, y, z, transform=T, image=np.full(len(z), np.nan))
    assert (nan.roof_type, nan.ridge, nan.scores) == (base.roof_type, base.ridge, base.scores)


def _blurred_city(sigma_px, seed=0):
    """16 buildings (flat, gable, hip, shed; 12 x 8 m, rise 3.5 m) on flat ground at 100 m, DSM on the T grid:
    exact heights, or blurred across the walls like a stereo DSM (Gaussian sigma_px) + 0.05 m noise."""
    from scipy import ndimage

    kinds = ["flat", "gable", "hip", "shed"]
    dsm = np.full(XS.shape, 100.0)
    blds = []
    for k, (cx, cy) in enumerate(
        (cx, cy) for cx in (15.0, 38.0, 62.0, 85.0) for cy in (15.0, 38.0, 62.0, 85.0)
    ):
        rt, ang = kinds[k % 4], 0.25 * (k // 4)
        fp = affinity.rotate(box(cx - 6, cy - 4, cx + 6, cy + 4), ang, origin=(cx, cy), use_radians=True)
        b = Building(k, fp, rt, 6.0, 9.5 if rt != "flat" else 6.0, 100.0, (cx, cy, ang, 6.0, 4.0), "detached")
        inside = shapely.contains_xy(fp, XS, YS)
        dsm[inside] = 100.0 + b.roof_height(XS[inside], YS[inside])
        blds.append((fp, b))
    if sigma_px > 0:
        dsm = ndimage.gaussian_filter(dsm, sigma_px) + np.random.default_rng(seed).normal(0, 0.05, dsm.shape)
    roofs = []
    for fp, _ in blds:
        inside = shapely.contains_xy(fp.buffer(-0.6), XS, YS)
        roofs.append((fp, XS[inside], YS[inside], dsm[inside], 100.0, None))
    return blds, roofs


def test_edge_ramp_is_zero_on_an_exact_dsm():
    from sat2lod.lod.roof import calibrate_edge_ramp

    blds, roofs = _blurred_city(0.0)
    ramp = calibrate_edge_ramp(roofs, transform=T)
    assert len(ramp) == 12 and max(ramp) < 0.01, ramp
    for (fp, b), r in zip(blds, roofs):
        assert fit_roof(*r[:4], RoofParams(edge_ramp=ramp), T, ground=100.0).roof_type == b.roof_type


def test_edge_ramp_models_a_dsm_blurred_across_the_walls():
    from sat2lod.lod.roof import RAMP_STEP_M, calibrate_edge_ramp

    blds, roofs = _blurred_city(2.0)
    ramp = calibrate_edge_ramp(roofs, transform=T)
    assert ramp[int(0.6 / RAMP_STEP_M)] > 0.1 and all(a >= b for a, b in itertools.pairwise(ramp)), ramp
    # a random half of the roofs gives about the same ramp (a large city is calibrated on a subsample; the
    # spread between subsamples of 8-12 of these roofs is up to 0.04)
    sub = calibrate_edge_ramp(roofs, transform=T, max_roofs=8, min_roofs=4)
    assert np.abs(np.subtract(sub, ramp)).max() < 0.05, (sub, ramp)
    plain = [fit_roof(*r[:4], RoofParams(), T) for r in roofs]
    assert (
        sum(f.roof_type != b.roof_type for (_, b), f in zip(blds, plain)) >= 4
    )  # blurred flat roofs look hipped
    blurred = [fit_roof(*r[:4], RoofParams(edge_ramp=ramp), T, ground=100.0) for r in roofs]
    for (fp, b), f in zip(blds, blurred):
        assert f.roof_type == b.roof_type, (b.roof_type, f.scores)
    # the modelled blur gives the roof's own heights back: eaves and ridges nearer the truth than without it
    err = lambda fits, attr: np.mean(
        [abs(getattr(f, attr) - 100 - getattr(b, attr)) for (_, b), f in zip(blds, fits)]
    )
    assert err(blurred, "eave") < 0.5 * err(plain, "eave")
    assert err(blurred, "ridge") < err(plain, "ridge")


def _row_city(seed=0):
    """Two rows of touching houses (6-10 m wide, 11 m deep, eaves 6-11 m: flat roofs, then gables rising 3 m
    to a ridge along the row) and four detached flat roofs, on flat ground at 100 m; DSM blurred across every
    wall (Gaussian, 2 px) + 0.05 m noise."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    dsm = np.full(XS.shape, 100.0)
    blds = []
    for y0, rt in ((10.0, "flat"), (40.0, "gable")):
        x = 8.0
        while x < 80:
            w, e = float(rng.uniform(6, 10)), float(rng.uniform(6, 11))
            blds.append(
                (
                    box(x, y0, x + w, y0 + 11),
                    Building(
                        len(blds),
                        box(x, y0, x + w, y0 + 11),
                        rt,
                        e,
                        e + 3.0 if rt == "gable" else e,
                        100.0,
                        (x + w / 2, y0 + 5.5, 0.0, w / 2, 5.5),
                        "row",
                    ),
                )
            )
            x += w
    for cx in (15.0, 38.0, 62.0, 85.0):
        fp = box(cx - 5, 70, cx + 5, 80)
        blds.append(
            (fp, Building(len(blds), fp, "flat", 8.0, 8.0, 100.0, (cx, 75.0, 0.0, 5.0, 5.0), "detached"))
        )
    for fp, b in blds:
        inside = shapely.contains_xy(fp, XS, YS)
        dsm[inside] = 100.0 + b.roof_height(XS[inside], YS[inside])
    dsm = ndimage.gaussian_filter(dsm, 2.0) + rng.normal(0, 0.05, dsm.shape)
    pts = []
    for fp, _ in blds:
        inside = shapely.contains_xy(fp.buffer(-0.6), XS, YS)
        pts.append((XS[inside], YS[inside], dsm[inside]))
    return blds, pts


def test_edge_ramp_blurs_shared_walls_towards_the_neighbour():
    """Beside a shared wall the DSM is blurred towards the neighbour's roof, not the ground: with the walls'
    neighbour levels (wall_parts) the roofs of touching houses of different heights come out right."""
    from sat2lod.lod.models import wall_parts
    from sat2lod.lod.roof import calibrate_edge_ramp

    blds, pts = _row_city()
    polys = [fp for fp, _ in blds]
    assert sum(len(p) > 1 for p in wall_parts(polys, [100.0] * len(polys), [np.nan] * len(polys), 0.5)) == 0
    walls = wall_parts(polys, [100.0] * len(polys), [float(np.median(z)) for _, _, z in pts], 0.5)
    middle = walls[1]  # a row house with a neighbour on both sides: 2 shared walls and its free front/back
    assert len(middle) == 3 and middle[-1][1] == 100.0
    assert sum(g.length for g, _ in middle) == pytest.approx(polys[1].length)
    fits = {}
    for name, wl in (("ground", [None] * len(polys)), ("neighbours", walls)):
        roofs = [(fp, x, y, z, 100.0, None, w) for fp, (x, y, z), w in zip(polys, pts, wl)]
        prm = RoofParams(edge_ramp=calibrate_edge_ramp(roofs, transform=T))
        fits[name] = [
            fit_roof(fp, x, y, z, prm, T, ground=100.0, walls=w) for fp, (x, y, z), w in zip(polys, pts, wl)
        ]
    rmse = {
        k: math.sqrt(np.mean([(f.eave - 100 - b.eave) ** 2 for (_, b), f in zip(blds, v)]))
        for k, v in fits.items()
    }
    assert all(f.roof_type == b.roof_type for (_, b), f in zip(blds, fits["neighbours"]))
    # measured: eave RMSE 0.23 m with the ground beyond every wall, 0.09 m with the neighbours' levels
    assert rmse["neighbours"] < 0.15 and rmse["neighbours"] < 0.5 * rmse["ground"], rmse


def _l_shaped_cross_gable(noise):
    """Two gables at right angles on an L (wings 10 m wide, ridges 4 m above the eaves at 110 m, slopes 0.8),
    DSM points inside the footprint shrunk by 0.6 m with ``noise`` (XS/YS grid) added."""
    fp = box(40, 40, 70, 50).union(box(40, 40, 50, 70))
    inside = shapely.contains_xy(fp.buffer(-0.6), XS, YS)
    x, y = XS[inside], YS[inside]
    z1 = 114 - 0.8 * np.abs(y - 45)  # wing along x, ridge at y = 45
    z2 = 114 - 0.8 * np.abs(x - 45)  # wing along y, ridge at x = 45
    z = np.where((x > 50) | ((y < 50) & (np.abs(y - 45) < np.abs(x - 45))), z1, z2)
    col, row = (~T) @ (x, y)
    return fp, x, y, z + noise[np.floor(row).astype(int), np.floor(col).astype(int)]


@pytest.mark.parametrize("seed", range(4))
def test_multiplane_l_shaped_gable_under_stereo_like_noise(seed):
    # 0.5 m correlated noise (correlation area 4 pi px, the demo's stereo DSM has ~12 px): with a fixed 0.4 m
    # RANSAC band and no normal test, a horizontal plane through the roof (a contour band across all 4 faces)
    # collected more inliers than any face and the roof came out flat on every seed; the band is now twice
    # the noise and an inlier's local normal must agree with the plane's
    fp, x, y, z = _l_shaped_cross_gable(_correlated_noise(0.5, seed, sigma_px=1.0))
    # the scene's noise level and correlation area, as run_lod2 sets them (medians over the scene's roofs)
    fit = fit_roof(fp, x, y, z, RoofParams(corr_area_px=4 * np.pi, noise_m=0.5), transform=T)
    assert fit.roof_type == "multiplane" and len(fit.faces) >= 4 and fit.rmse < 1.0, fit.scores  # 2 x noise
    # the 4 faces are found with their slope (0.8): faces within 0.25 of it cover most of the roof
    pitched = sum(f.area for f, p in zip(fit.faces, fit.planes) if abs(math.hypot(p[1], p[2]) - 0.8) < 0.25)
    assert pitched > 0.75 * fp.area
    chk = check_solid(build_solid(fit.faces, fit.planes, 105.0))
    assert chk["closed"] and chk["planar"] and chk["simple"]


@pytest.mark.parametrize("seed", range(3))
def test_butterfly_roof_is_two_planes(seed):
    # two faces sloping down to a valley (no primitive has one) under 0.3 m stereo-like noise: segmented
    fp = box(43, 45, 57, 55)
    inside = shapely.contains_xy(fp.buffer(-0.6), XS, YS)
    x, y = XS[inside], YS[inside]
    col, row = (~T) @ (x, y)
    z = (
        106
        + 0.7 * np.abs(y - 50)
        + _correlated_noise(0.3, seed, 1.0)[np.floor(row).astype(int), np.floor(col).astype(int)]
    )
    fit = fit_roof(fp, x, y, z, RoofParams(corr_area_px=4 * np.pi, noise_m=0.3), transform=T)
    assert fit.roof_type == "multiplane" and fit.rmse < 0.5, fit.scores
    assert abs(fit.eave - 106.0) < 0.75 and abs(fit.ridge - 109.5) < 0.75  # 2.5 x the noise


def test_local_slopes_of_a_plane_with_holes():
    from sat2lod.lod.roof import _local_slopes, _unit_normals

    rr, cc = np.mgrid[0:40, 0:30]
    keep = np.random.default_rng(0).random(rr.shape) > 0.3  # 30 % holes
    row, col = rr[keep], cc[keep]
    x, y = T * (col + 0.5, row + 0.5)
    gx, gy = _local_slopes(row, col, 3.0 + 0.3 * x - 0.5 * y, rr.shape, T, 3)
    assert np.isfinite(gx).all()
    assert np.allclose(gx, 0.3) and np.allclose(gy, -0.5)
    n = _unit_normals(np.array([0.0, 1.0]), np.array([0.0, 0.0]))  # flat and 45 degrees towards -x
    assert np.allclose(n, [[0, 0, 1], [-(0.5**0.5), 0, 0.5**0.5]]) and n[0] @ n[1] == pytest.approx(0.5**0.5)
    lone_row, lone_col = np.array([0, 20]), np.array([0, 20])  # too few points in the window: no slope
    assert np.isnan(_local_slopes(lone_row, lone_col, np.zeros(2), rr.shape, T, 3)[0]).all()
