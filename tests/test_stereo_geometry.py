"""Rectification, pointing correction, triangulation and rasterization on real Pléiades RPCs."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import Transformer
from rasterio.transform import Affine

from conftest import shared_file
from sat2lod.io.rpc_files import read_rpc
from sat2lod.io.sensor_image import image_shape, read_window
from sat2lod.stereo.pointing import across_track_offset, match_keypoints
from sat2lod.stereo.rasterize import fill_small_holes, fuse_heights, grid_for_bounds, rasterize_points
from sat2lod.stereo.rectify import rectification_residual, rectify_pair, tile_lonlat_grid, warp_affine
from sat2lod.stereo.triangulate import triangulate

REUNION_TILE = (359800.0, 7651600.0, 360050.0, 7651850.0)  # EPSG:32740, inside s2p's reference DSM
REUNION_HEIGHTS = (2200.0, 2450.0)


def _reunion():
    d = "s2p_pleiades_pair_reunion"
    img1, img2 = shared_file(d, "img_01.tif"), shared_file(d, "img_02.tif")
    return img1, img2, read_rpc(img1), read_rpc(img2)


def test_affine_rectification_residual_below_a_tenth_of_a_pixel() -> None:
    img1, img2, rpc1, rpc2 = _reunion()
    pr = rectify_pair(rpc1, rpc2, REUNION_TILE, 32740, REUNION_HEIGHTS, image_shape(img1), image_shape(img2))
    lon, lat = tile_lonlat_grid(REUNION_TILE, 32740, n=15)
    rng = np.random.default_rng(0)
    h = rng.uniform(*REUNION_HEIGHTS, lon.size)
    dy, dd = rectification_residual(pr, rpc1, rpc2, lon, lat, h)
    assert np.max(np.abs(dy)) < 0.1  # rows agree with the exact RPCs
    assert np.max(np.abs(dd)) < 0.1  # disparity is the affine function of height
    assert pr.alpha > 0.3  # Pléiades pair: ~0.5 px of disparity per metre
    # the disparity range covers the height range (and not much more)
    assert pr.dmin <= pr.disparity_of_height(REUNION_HEIGHTS[0]) - 1
    assert pr.dmax >= pr.disparity_of_height(REUNION_HEIGHTS[1]) + 1
    assert pr.dmax - pr.dmin < pr.alpha * (REUNION_HEIGHTS[1] - REUNION_HEIGHTS[0]) + 8
    # image 1 is only rotated: rectified pixel size = image pixel size
    assert abs(abs(np.linalg.det(pr.rect1[:, :2])) - 1.0) < 1e-9


def test_warp_is_a_rotation_of_the_image() -> None:
    img1, img2, rpc1, rpc2 = _reunion()
    pr = rectify_pair(rpc1, rpc2, REUNION_TILE, 32740, REUNION_HEIGHTS, image_shape(img1), image_shape(img2))
    full = read_window(img1)
    rect = warp_affine(full, pr.rect1, pr.shape1)
    ys, xs = np.mgrid[10 : pr.shape1[0] - 10 : 37, 10 : pr.shape1[1] - 10 : 41]
    c, r = pr.rect_to_image(1, xs.ravel().astype(float), ys.ravel().astype(float))
    ok = (r > 2) & (c > 2) & (r < full.shape[0] - 3) & (c < full.shape[1] - 3)
    ri, ci = np.round(r[ok]).astype(int), np.round(c[ok]).astype(int)
    exact = np.abs(r[ok] - ri) + np.abs(c[ok] - ci) < 0.05
    # where the rectified pixel falls on an image pixel centre, the value is that pixel's
    vals = rect[ys.ravel()[ok][exact], xs.ravel()[ok][exact]]
    if exact.any():
        np.testing.assert_allclose(vals, full[ri[exact], ci[exact]], rtol=0.02)
    assert np.isfinite(rect).mean() > 0.9


@pytest.mark.parametrize(
    "pair,stems,tile,epsg,heights,expected",
    [
        (
            "cnes_pleiades_ventoux_pair",
            ("left_image", "right_image"),
            (675300.0, 4897130.0, 675450.0, 4897280.0),
            32631,
            (480.0, 600.0),
            -4.9,
        ),
        ("s2p_pleiades_pair_reunion", ("img_01", "img_02"), REUNION_TILE, 32740, REUNION_HEIGHTS, -0.7),
    ],
)
def test_pointing_correction_from_keypoints(pair, stems, tile, epsg, heights, expected) -> None:
    paths = [shared_file(pair, f"{s}.tif") for s in stems]
    geoms = [paths[i].with_suffix(".geom") for i in range(2)]
    rpcs = [read_rpc(p, g if g.exists() else None) for p, g in zip(paths, geoms)]
    pr = rectify_pair(rpcs[0], rpcs[1], tile, epsg, heights, image_shape(paths[0]), image_shape(paths[1]))
    left = warp_affine(read_window(paths[0]), pr.rect1, pr.shape1)
    right = warp_affine(read_window(paths[1]), pr.rect2, pr.shape2)
    m = match_keypoints(left, right, pr.dmin, pr.dmax, max_dy=12)
    dy, mad = across_track_offset(m)
    assert len(m) >= 20
    assert dy == pytest.approx(expected, abs=0.35)  # independent SIFT check in SOURCE.md: -4.9 / -0.7 px
    assert mad < 0.4
    # after correcting rpc2 by that shift, keypoints fall on the same rows
    u2 = pr.rect2[1, :2]
    t = dy * u2 / float(u2 @ u2)
    pr2 = rectify_pair(
        rpcs[0], rpcs[1].crop(-t[1], -t[0]), tile, epsg, heights, image_shape(paths[0]), image_shape(paths[1])
    )
    right2 = warp_affine(read_window(paths[1]), pr2.rect2, pr2.shape2)
    left2 = warp_affine(read_window(paths[0]), pr2.rect1, pr2.shape1)
    dy2, _ = across_track_offset(match_keypoints(left2, right2, pr2.dmin, pr2.dmax, max_dy=12))
    assert abs(dy2) < 0.15


def test_triangulation_recovers_ground_points_and_flags_bad_rays() -> None:
    img1, img2, rpc1, rpc2 = _reunion()
    pr = rectify_pair(rpc1, rpc2, REUNION_TILE, 32740, REUNION_HEIGHTS, image_shape(img1), image_shape(img2))
    lon, lat = tile_lonlat_grid(REUNION_TILE, 32740, n=20)
    h = np.random.default_rng(3).uniform(*REUNION_HEIGHTS, lon.size)
    r1, c1 = rpc1.project(lon, lat, h)
    r2, c2 = rpc2.project(lon, lat, h)
    tlon, tlat, th, res = triangulate(rpc1, rpc2, c1, r1, c2, r2, pr.cam1, pr.cam2, pr.frame)
    assert np.max(np.abs(th - h)) < 1e-3
    assert np.max(np.abs(tlon - lon)) * 1e5 < 1e-3 * 1.5 and np.max(np.abs(tlat - lat)) * 1e5 < 1e-3 * 1.2
    assert np.max(res) < 1e-4
    # a ray pair that misses by 2 px across the epipolar direction has a ~1 px residual (2 px / 2 images)
    u2 = pr.rect2[1, :2] / np.linalg.norm(pr.rect2[1, :2])
    _, _, _, res_bad = triangulate(
        rpc1, rpc2, c1, r1, c2 + 2 * u2[0], r2 + 2 * u2[1], pr.cam1, pr.cam2, pr.frame
    )
    assert np.all((res_bad > 0.8) & (res_bad < 1.2))


def test_grid_alignment_rasterization_fusion_and_holes() -> None:
    t, shape = grid_for_bounds((100.2, 50.1, 110.9, 60.0), 0.5)
    assert (t.c, t.f, t.a, t.e) == (100.0, 60.0, 0.5, -0.5) and shape == (20, 22)
    x = np.array([100.1, 100.4, 100.6, 111.0])
    y = np.array([59.9, 59.8, 59.9, 55.0])
    z = np.array([10.0, 12.0, 20.0, 5.0])
    h, _q, n = rasterize_points(x, y, z, np.ones(4), t, shape)
    assert h[0, 0] == 11.0 and n[0, 0] == 2 and h[0, 1] == 20.0 and np.isnan(h[1, 0])
    assert n.sum() == 3  # the point outside the grid is dropped
    stack = np.array([[[10.0, 10.0]], [[10.4, np.nan]], [[30.0, 11.0]]], np.float32)
    fused, agree = fuse_heights(stack, tol_m=1.0)
    assert fused[0, 0] == pytest.approx(10.2) and agree[0, 0] == 2
    assert fused[0, 1] == pytest.approx(10.5) and agree[0, 1] == 2
    # inverse-variance weights: the outlier pair stays out, the agreeing pairs weigh 1 : 3
    fused_w, agree_w = fuse_heights(stack, tol_m=1.0, weights=[1.0, 3.0, 5.0])
    assert fused_w[0, 0] == pytest.approx(10.3) and agree_w[0, 0] == 2
    assert fused_w[0, 1] == pytest.approx((10.0 + 5 * 11.0) / 6)
    with pytest.raises(ValueError, match="weights"):
        fuse_heights(stack, weights=[1.0, 0.0, 1.0])
    grid = np.full((5, 5), 7.0, np.float32)
    grid[2, 2] = np.nan
    grid[:, 4] = np.nan
    filled, mask = fill_small_holes(grid, iterations=1)
    assert filled[2, 2] == 7.0 and mask[2, 2] == 1 and mask[0, 0] == 0
    assert mask[0, 4] == 255  # a corner cell of the empty column has only 2 valid neighbours


def test_transformer_sanity_for_tile_grid() -> None:
    lon, lat = tile_lonlat_grid(REUNION_TILE, 32740, n=3)
    x, y = Transformer.from_crs(4326, 32740, always_xy=True).transform(lon, lat)
    assert np.allclose([np.min(x), np.max(y)], [REUNION_TILE[0], REUNION_TILE[3]], atol=1e-3)
    assert isinstance(grid_for_bounds(REUNION_TILE, 0.5)[0], Affine)


def test_grid_triangulation_matches_exact_intersection() -> None:
    from sat2lod.stereo.triangulate import triangulate_rectified

    img1, img2, rpc1, rpc2 = _reunion()
    pr = rectify_pair(rpc1, rpc2, REUNION_TILE, 32740, REUNION_HEIGHTS, image_shape(img1), image_shape(img2))
    rng = np.random.default_rng(5)
    n = 5000
    xs = rng.uniform(0, pr.shape1[1] - 1, n)
    ys = rng.uniform(0, pr.shape1[0] - 1, n)
    ds = rng.uniform(pr.dmin, pr.dmax, n)
    tr = Transformer.from_crs(4326, 32740, always_xy=True)
    x, y, h, res = triangulate_rectified(rpc1, rpc2, pr, xs, ys, ds, tr.transform)
    c1, r1 = pr.rect_to_image(1, xs, ys)
    c2, r2 = pr.rect_to_image(2, xs + ds, ys)
    lon, lat, he, rese = triangulate(rpc1, rpc2, c1, r1, c2, r2, pr.cam1, pr.cam2, pr.frame)
    xe, ye = tr.transform(lon, lat)
    assert np.max(np.abs(h - he)) < 0.01
    assert np.max(np.hypot(x - xe, y - ye)) < 0.01
    assert np.max(np.abs(res - rese)) < 0.01
    # heights follow the disparity: d = alpha (h - h_ref) + d_ref within the affine residual
    assert np.max(np.abs(pr.height_of_disparity(ds) - h)) * pr.alpha < 0.2


def test_densify_adds_points_only_inside_smooth_blocks() -> None:
    from sat2lod.stereo.rasterize import densify_disparity

    disp = np.full((4, 6), 5.0, np.float32)
    disp[:, 3:] = 12.0  # a depth edge between columns 2 and 3
    disp[0, 0] = np.nan
    x, y, d = densify_disparity(disp, 2, max_jump=1.0)
    assert np.isfinite(disp).sum() == np.sum((x % 1 == 0) & (y % 1 == 0))  # every valid pixel kept once
    extra = (x % 1 != 0) | (y % 1 != 0)
    # smooth blocks: cols (0-1, 1-2, 3-4, 4-5) x rows 0-2 = 12 blocks, minus the 1 touching the NaN = 11, 3 each
    assert extra.sum() == 11 * 3
    assert np.all((d[extra] == 5.0) | (d[extra] == 12.0))  # nothing interpolated across the edge
    x1, _, _ = densify_disparity(disp, 1)
    assert x1.size == np.isfinite(disp).sum()


def test_ncc_search_numba_equals_reference_both_ways() -> None:
    """The keypoint search's kernel (right windows' statistics from a shared map or per candidate, cross sums
    vectorised over the disparities) gives the NumPy reference's result to the bit: NaN holes, keypoints next
    to the borders, search boxes partly or wholly outside the image."""
    from sat2lod.stereo import pointing

    rng = np.random.default_rng(3)
    base = rng.normal(100.0, 20.0, (90, 140))
    left = base + rng.normal(0, 2.0, base.shape)
    right = np.roll(base, 6, axis=1) + rng.normal(0, 2.0, base.shape)
    right[40:44, 60:75] = np.nan
    left[10:12, 100:104] = np.nan
    ys, xs = pointing.corners(left, cell=12, n_max=40, border=9)
    # keypoints at the border distance corners() keeps (their windows inside the image); search boxes leave it
    ys = np.concatenate([ys, [4, 85]]).astype(np.int64)
    xs = np.concatenate([xs, [4, 135]]).astype(np.int64)
    refs = []
    for dmin, dmax, max_dy in [(-4, 30, 5), (-60, 60, 3), (200, 210, 2)]:
        ref = pointing._ncc_search_reference(left, right, ys, xs, 4, dmin, dmax, max_dy)
        refs.append(ref)
        for use_map in (False, True):
            got = pointing._ncc_kernel(left, right, ys, xs, 4, dmin, dmax, max_dy, use_map)
            np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(pointing._ncc_search(left, right, ys, xs, 4, dmin, dmax, max_dy), ref)
    found = np.isfinite(refs[0][:, 0])  # the true offset (6 px) inside the first search box
    assert found.sum() > 20 and np.median(refs[0][found, 0]) == pytest.approx(6.0, abs=0.3)
    assert not np.isfinite(refs[2][:, 0]).any()  # search boxes beyond the image: no match
