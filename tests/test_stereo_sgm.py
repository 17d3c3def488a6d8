"""Census + SGM: numba kernels against their NumPy references, and recovery of known disparities."""

from __future__ import annotations

import logging

import numba
import numpy as np
import pytest
from scipy import ndimage

from sat2lod.stereo import sgm


def _textured(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=shape), 1.0).astype(np.float32) * 100 + 500


def _pair_with_disparity(
    h: int = 48, w: int = 64, seed: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right image = texture; left(y, x) = right(y, x + d(y, x)) with d = 3 on the background, 9 on a block."""
    right = _textured((h, w + 20), seed)
    d = np.full((h, w), 3, int)
    d[12:30, 20:44] = 9  # a "building"
    ys, xs = np.mgrid[0:h, 0:w]
    left = right[ys, xs + d]
    return left, right, d


def test_census_matches_reference() -> None:
    img = _textured((30, 40))
    img[5, 7] = np.nan
    for window in [(5, 7), (3, 3), (7, 9)]:
        c, v = sgm.census_transform(img, window)
        cr, vr = sgm.census_transform_reference(img, window)
        np.testing.assert_array_equal(v, vr)
        np.testing.assert_array_equal(c[v], cr[vr])
    assert not v[5, 7] and not v[3, 7]  # NaN centre and NaN inside the window
    with pytest.raises(ValueError, match="at most 63"):
        sgm.census_transform(img, (9, 9))


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
def test_strip_layout_does_not_depend_on_threads(caplog: pytest.LogCaptureFixture) -> None:
    """A budget between the one-thread volume (3 bytes per voxel) and the two-thread one (4) splits the image on
    both thread counts alike: the paths are cut at the same rows, so the disparities are the same bits."""
    left, right, _truth = _pair_with_disparity(160, 96)
    budget = 3.5 * left.size * 15 / 1e6  # 15 disparities: 0..14
    before = numba.get_num_threads()
    maps, logged = {}, {}
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            caplog.clear()
            with caplog.at_level(logging.INFO, logger=sgm.log.name):
                maps[threads] = sgm.sgm_disparity(left, right, 0, 14, max_mem_mb=budget, strip_overlap=4)
            logged[threads] = [r.getMessage() for r in caplog.records if "strips" in r.getMessage()]
    finally:
        numba.set_num_threads(before)
    assert logged[1] == logged[2] != []  # split, the same way
    np.testing.assert_array_equal(maps[1], maps[2])


@pytest.mark.parametrize("paths", [4, 8])
def test_sgm_numba_equals_reference(paths: int) -> None:
    left, right, _ = _pair_with_disparity()
    left[10, 10] = np.nan
    cost = sgm.cost_volume(left, right, -2, 13)
    np.testing.assert_array_equal(cost, sgm.cost_volume_reference(left, right, -2, 13))
    total = sgm.aggregate(cost, 8, 32, paths)
    np.testing.assert_array_equal(total, sgm.aggregate_reference(cost, 8, 32, paths))
    # int16 path vectors (C_max + 2 P2 > 255) give the reference too
    np.testing.assert_array_equal(
        sgm.aggregate(cost, 8, 150, paths), sgm.aggregate_reference(cost, 8, 150, paths)
    )
    d = sgm.select_disparity(total, -2, 1.0, right.shape[1])
    dr = sgm.select_disparity_reference(total, -2, 1.0, right.shape[1])
    np.testing.assert_array_equal(np.isnan(d), np.isnan(dr))
    np.testing.assert_allclose(d[np.isfinite(d)], dr[np.isfinite(dr)], atol=1e-5)


def test_sgm_recovers_known_disparity() -> None:
    left, right, truth = _pair_with_disparity(64, 96)
    disp = sgm.sgm_disparity(left, right, 0, 14)
    ok = np.isfinite(disp)
    assert ok.mean() > 0.8
    err = np.abs(disp[ok] - truth[ok])
    assert np.mean(err > 1.0) < 0.03
    assert np.median(err) < 0.25
    # without SGM smoothing (P1 = P2 = 0) census alone is worse on the same pair: the aggregation is doing work
    raw = sgm.sgm_disparity(left, right, 0, 14, p1=0.0, p2=0.0, median=False, lr_tol=-1)
    bad_raw = np.mean(np.abs(raw[ok] - truth[ok]) > 1.0) if np.isfinite(raw[ok]).all() else 1.0
    assert bad_raw >= np.mean(err > 1.0)


def test_left_right_check_rejects_occlusions() -> None:
    left, right, truth = _pair_with_disparity(64, 96)
    # occlusion: hide the right image content the block would match in the left image
    right_occ = right.copy()
    right_occ[12:30, 29:53] = _textured((18, 24), seed=9)
    d_check = sgm.sgm_disparity(left, right_occ, 0, 14, lr_tol=1.0, median=False)
    d_free = sgm.sgm_disparity(left, right_occ, 0, 14, lr_tol=-1.0, median=False)
    block = np.zeros(truth.shape, bool)
    block[12:30, 20:44] = True
    assert np.isfinite(d_check[block]).mean() < np.isfinite(d_free[block]).mean()


def test_strip_processing_bounds_memory_and_agrees() -> None:
    left, right, _truth = _pair_with_disparity(160, 96)
    full = sgm.sgm_disparity(left, right, 0, 14)
    strips = sgm.sgm_disparity(left, right, 0, 14, max_mem_mb=3 * 96 * 15 * 70 / 1e6, strip_overlap=16)
    both = np.isfinite(full) & np.isfinite(strips)
    assert both.mean() > 0.8
    assert np.mean(np.abs(full[both] - strips[both]) > 0.5) < 0.02


@pytest.mark.parametrize("paths", [4, 8])
@pytest.mark.parametrize(
    ("dmin", "dmax", "p2", "volume"),
    [
        (
            -2,
            13,
            40,
            True,
        ),  # 16 disparities, uint8 path vectors, byte forward sum (4 paths), cost volume kept
        (-2, 13, 150, True),  # int16 path vectors (C_max + 2 P2 > 255)
        (-9, 35, 40, True),  # 45 disparities: the vectorized loops and their remainders
        (-9, 35, 40, False),  # memory bound below the cost volume: each pass computes its rows' costs
    ],
)
def test_fused_driver_equals_reference_chain(paths: int, dmin: int, dmax: int, p2: int, volume: bool) -> None:
    """The driver (forward pass stored, backward pass fused with the winner selection on one thread; both passes
    stored on two) gives exactly the reference chain: cost -> aggregate -> WTA + left-right check."""
    left, right, _ = _pair_with_disparity(40, 56, seed=3)
    left[7, 30] = np.nan
    ref = sgm.select_disparity_reference(
        sgm.aggregate_reference(sgm.cost_volume_reference(left, right, dmin, dmax), 8, p2, paths),
        dmin,
        1.0,
        right.shape[1],
    )
    ref[~sgm.census_transform_reference(left)[1]] = np.nan
    nvox = left.size * (dmax - dmin + 1)
    mem = 1e3 if volume else 2.5 * nvox / 1e6  # > the forward sum (<= 2 bytes/voxel), < it + the costs (3)
    if not volume and paths == 4 and p2 == 40:
        mem = 1.5 * nvox / 1e6  # byte forward sum
    before = numba.get_num_threads()
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            d = sgm.sgm_disparity(
                left, right, dmin, dmax, p1=8, p2=p2, paths=paths, median=False, max_mem_mb=mem
            )
            np.testing.assert_array_equal(np.isnan(d), np.isnan(ref), err_msg=f"{threads} thread(s)")
            np.testing.assert_allclose(d[np.isfinite(d)], ref[np.isfinite(ref)], atol=1e-5)
    finally:
        numba.set_num_threads(before)
    assert np.isfinite(ref).mean() > 0.5  # the comparison is not between two empty maps


def test_median_filter_equals_reference() -> None:
    rng = np.random.default_rng(4)
    d = rng.normal(size=(60, 70)).astype(np.float32)
    d[rng.random(d.shape) < 0.15] = np.nan
    np.testing.assert_array_equal(sgm.median_filter(d), sgm.median_filter_reference(d))


def test_median_filter_keeps_invalid() -> None:
    d = np.full((5, 5), 2.0, np.float32)
    d[2, 2] = 50.0
    d[0, 0] = np.nan
    out = sgm.median_filter(d)
    assert out[2, 2] == 2.0 and np.isnan(out[0, 0])


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="4 or 8"):
        sgm.aggregate(np.zeros((4, 4, 3), np.uint8), 8, 32, 16)
    with pytest.raises(ValueError, match="P2 too large"):
        sgm.aggregate(np.full((4, 4, 3), 40, np.uint8), 8, 9000, 8)


@pytest.mark.parametrize("paths", [4, 8])
def test_two_thread_aggregation_equals_one_thread(paths: int) -> None:
    left, right, _ = _pair_with_disparity()
    cost = sgm.cost_volume(left, right, -2, 13)
    np.testing.assert_array_equal(
        sgm.aggregate(cost, 8, 96, paths, threads=2), sgm.aggregate(cost, 8, 96, paths, threads=1)
    )
