"""Sub-pixel disparity (ZNCC refinement, V fit on the SGM costs) and edge-preserving weighted rasterization:
numba kernels against their NumPy references, and what each is for (less pixel locking, less noise, edges kept)."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.transform import Affine
from scipy import ndimage

from sat2lod.stereo import rasterize, sgm, subpixel
from sat2lod.stereo.subpixel import (
    half_shift,
    image_noise,
    refine_disparity,
    refine_disparity_reference,
    refinement_weight,
    sgm_precision,
)


def _shifted_pair(
    h: int = 48, w: int = 80, noise: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """right = smooth random texture; left(y, x) = right(y, x + d(x)) with d rising from 3 to 6 px across the
    image (every fractional part), sampled by quintic spline; (left, right, d) float32."""
    rng = np.random.default_rng(seed)
    right = ndimage.gaussian_filter(rng.normal(size=(h, w + 24)), 1.0) * 100 + 500
    d = np.repeat(np.linspace(3.0, 6.0, w)[None, :], h, 0)
    ys = np.repeat(np.arange(h)[:, None], w, 1)
    left = ndimage.map_coordinates(right, [ys, np.arange(w)[None, :] + d], order=5)
    left = left + rng.normal(0, noise, left.shape)
    return left.astype(np.float32), right.astype(np.float32), d.astype(np.float32)


@pytest.mark.parametrize("fit", ["parabola", "zncc2"])
@pytest.mark.parametrize("window", [(5, 5), (3, 7), (11, 11)])
def test_refinement_numba_equals_reference(fit: str, window: tuple[int, int]) -> None:
    left, right, d = _shifted_pair()
    rng = np.random.default_rng(1)
    disp = np.round(d) + rng.uniform(-0.45, 0.45, d.shape).astype(np.float32)
    disp[rng.random(d.shape) < 0.1] += 1.0  # off by one: the refinement steps toward the lower cost
    disp[5, 5] = np.nan  # invalid stays invalid
    left[20, 30] = np.nan  # windows holding no data keep the SGM value
    right[10:14, 40:60] = 500.0  # flat windows (zero variance) too
    a = refine_disparity(left, right, disp, fit, window)
    b = refine_disparity_reference(left, right, disp, fit, window)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a[np.isfinite(a)], b[np.isfinite(b)], atol=1e-5)
    # blended with a weight per pixel (0 keeps the SGM value)
    wt = np.clip(rng.uniform(-0.5, 1.5, d.shape), 0, 1)
    aw = refine_disparity(left, right, disp, fit, window, wt)
    np.testing.assert_allclose(aw, refine_disparity_reference(left, right, disp, fit, window, wt), atol=1e-5)
    np.testing.assert_array_equal(aw[wt == 0], disp[wt == 0])
    fin = np.isfinite(a)
    np.testing.assert_allclose(aw[fin], (disp + wt * (a - disp))[fin], atol=1e-5)
    changed = np.isfinite(a) & (a != disp)
    assert 0.5 < changed.mean() < 1.0  # most pixels refined, not all (borders, NaN windows, flat windows)
    assert a[20, 30] == disp[20, 30] and np.isnan(a[5, 5])


def test_two_step_fit_reduces_pixel_locking() -> None:
    """Mean error per fractional part of the true disparity (the pixel-locking curve) is smaller with the
    half-pixel step (Shimizu-Okutomi) than with one parabola, and both are far below a pixel."""
    left, right, d = _shifted_pair(h=64, w=160)
    start = np.round(d).astype(np.float32)
    inner = (slice(6, -6), slice(6, -6))
    frac = (d - np.round(d))[inner]
    bins = np.digitize(frac, np.linspace(-0.5, 0.5, 9))
    locking = {}
    for fit in ("parabola", "zncc2"):
        err = (refine_disparity(left, right, start, fit) - d)[inner]
        assert np.nanmedian(np.abs(err)) < 0.1
        locking[fit] = max(abs(np.nanmean(err[bins == b])) for b in np.unique(bins))
    assert locking["zncc2"] < 0.7 * locking["parabola"]


def test_refinement_bad_arguments() -> None:
    left, right, d = _shifted_pair(16, 24)
    with pytest.raises(ValueError, match="sub-pixel fit"):
        refine_disparity(left, right, d, "cubic")
    with pytest.raises(ValueError, match="odd"):
        refine_disparity(left, right, d, "zncc2", (4, 5))
    with pytest.raises(ValueError, match="shapes differ"):
        refine_disparity(left, right, d[:, :-1])
    with pytest.raises(ValueError, match="SGM sub-pixel fit"):
        sgm.sgm_disparity(left, right, 0, 8, fit="cubic")


def test_half_shift_interpolates_a_smooth_signal() -> None:
    x = np.arange(40, dtype=float)
    img = np.repeat(np.sin(0.3 * x)[None, :], 3, 0)
    h = half_shift(img)
    np.testing.assert_allclose(h[:, 1:-2], np.sin(0.3 * (x[1:-2] + 0.5))[None, :].repeat(3, 0), atol=3e-3)
    assert np.isnan(h[:, [0, -2, -1]]).all()


def test_v_fit_driver_equals_reference() -> None:
    left, right, _ = _shifted_pair(32, 48, seed=2)
    total = sgm.aggregate(sgm.cost_volume(left, right, 0, 9), 8, 64, 8)
    ref = sgm.select_disparity_reference(total, 0, 1.0, right.shape[1], fit="v")
    ref[~sgm.census_transform(left)[1]] = np.nan
    d = sgm.sgm_disparity(left, right, 0, 9, median=False, fit="v")
    np.testing.assert_array_equal(np.isnan(d), np.isnan(ref))
    np.testing.assert_allclose(d[np.isfinite(d)], ref[np.isfinite(ref)], atol=1e-5)
    par = sgm.select_disparity(total, 0, 1.0, right.shape[1])
    assert np.nanmax(np.abs(par - sgm.select_disparity(total, 0, 1.0, right.shape[1], fit="v"))) > 0.01


def _points(
    n_per_cell: int = 4, shape: tuple[int, int] = (30, 30), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Affine]:
    """Random points over a 0.5 m grid: ground at 10 m west of x = 7.5 m, a 6 m high block east of it, N(0, 0.5)
    noise; returns (x, y, z, true z, transform)."""
    rng = np.random.default_rng(seed)
    n = n_per_cell * shape[0] * shape[1]
    x = rng.uniform(0, shape[1] * 0.5, n)
    y = rng.uniform(-shape[0] * 0.5, 0, n)
    true = np.where(x < 7.5, 10.0, 16.0)
    return x, y, true + rng.normal(0, 0.5, n), true, Affine(0.5, 0, 0, 0, -0.5, 0)


def test_splat_numba_equals_reference() -> None:
    x, y, z, _, t = _points(n_per_cell=1)
    z[::17] = np.nan
    q = np.linspace(0.1, 0.9, z.size)
    h0, _, _ = rasterize.rasterize_points(x, y, z, q, t, (30, 30))
    h0[3, 4] = np.nan  # a cell without a point of its own takes nothing, unless empty
    assert np.isnan(h0).sum() > 20  # one point per cell on average: many cells get none
    for radius, sigma, tol in [(1.0, 0.5, 1.0), (1.5, 1.0, 2.0), (0.6, 0.3, 0.0)]:
        for empty in (False, True):
            args = (x, y, z, q, h0, t.c, t.f, t.a, radius, sigma, tol, empty)
            a, b = rasterize._splat(*args), rasterize._splat_reference(*args)
            for u, v in zip(a, b):
                np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-9)
            assert a[1][3, 4] == 0
            if empty:
                assert a[4][np.isnan(h0)].any() and not a[4][np.isfinite(h0)].any()  # gaps only
            else:
                assert a[4].shape == (1, 1)


def test_empty_cells_take_agreeing_neighbours_only() -> None:
    """A sampling gap on flat ground (at least 5 neighbours with points) takes its neighbours' points; a gap
    between the ground's and a 6 m block's points stays empty; with empty_cells off nothing changes."""
    x, y, z, _, t = _points(n_per_cell=1, seed=3)
    z = np.where(x < 7.5, 10.0, 16.0) + np.random.default_rng(3).normal(0, 0.05, x.size)
    args = (x, y, z, np.ones_like(z), t, (30, 30), 1.0, 0.5, 1.0)
    off, _, n_off = rasterize.rasterize_points(*args, empty_cells=False)
    on, _, n_on = rasterize.rasterize_points(*args, empty_cells=True)
    np.testing.assert_array_equal(n_off, n_on)  # counts are the cells' own points either way
    own = n_off > 0
    np.testing.assert_array_equal(off[own], on[own])
    filled = np.isnan(off) & np.isfinite(on)
    cols = (np.arange(30) + 0.5) * 0.5
    step = np.abs(cols - 7.5) < 0.75
    nbrs = ndimage.convolve(own.astype(int), np.ones((3, 3), int), mode="constant") - own
    gaps = np.isnan(off) & (nbrs >= 5)  # sampling gaps with points around them
    assert filled[:, ~step].sum() > 0.9 * gaps[:, ~step].sum() > 20  # on flat ground: nearly all taken
    truth = np.where(cols < 7.5, 10.0, 16.0)[None, :].repeat(30, 0)
    assert np.abs(on - truth)[filled].max() < 0.3  # never a height from across the step
    assert np.isnan(on[:, step]).sum() > 0  # some gaps at the step stay empty


def test_weighted_rasterization_smooths_flat_ground_and_keeps_the_step() -> None:
    x, y, z, _, t = _points()
    plain, _, n = rasterize.rasterize_points(x, y, z, np.ones_like(z), t, (30, 30))
    splat, _, n2 = rasterize.rasterize_points(
        x, y, z, np.ones_like(z), t, (30, 30), 1.0, 0.5, 1.5, empty_cells=False
    )
    np.testing.assert_array_equal(n, n2)
    np.testing.assert_array_equal(np.isnan(plain), np.isnan(splat))  # no cell filled
    cols = (np.arange(30) + 0.5) * 0.5
    truth = np.where(cols < 7.5, 10.0, 16.0)[None, :].repeat(30, 0)
    flat = np.abs(cols - 7.5) > 1.0  # away from the step
    err_plain, err_splat = (plain - truth)[:, flat], (splat - truth)[:, flat]
    assert np.nanstd(err_splat) < 0.75 * np.nanstd(err_plain)
    # the cells beside the step are not pulled toward the other side by more than the noise
    edge = np.abs(cols - 7.5) < 0.5
    assert np.nanmax(np.abs(splat - truth)[:, edge]) < np.nanmax(np.abs(plain - truth)[:, edge]) + 0.3
    assert abs(np.nanmean((splat - truth)[:, edge])) < 0.15
    with pytest.raises(ValueError, match="sigma"):
        rasterize.rasterize_points(x, y, z, np.ones_like(z), t, (30, 30), 1.0, 0.0, 1.0)


def test_window_sums_numba_equal_reference() -> None:
    rng = np.random.default_rng(4)
    img = rng.normal(100, 20, (37, 53))
    img[10, 20] = np.nan
    for ry, rx in [(2, 2), (5, 5), (1, 3)]:
        a = subpixel._box(img, ry, rx)
        b = subpixel._box_reference(img, ry, rx)
        np.testing.assert_array_equal(a[2], b[2])
        np.testing.assert_allclose(a[0], b[0], rtol=1e-10, atol=1e-7)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-10, atol=1e-5)
        assert not a[2][10, 20] and a[2][10 + ry + 1, 20]


def test_noise_estimate_and_predicted_precision() -> None:
    """image_noise recovers white noise on a smooth texture; the predicted precision grows with it, and the
    refinement weight goes from 0 (precise: SGM kept) to 1 (noise-limited: refined)."""
    rng = np.random.default_rng(5)
    smooth = ndimage.gaussian_filter(rng.normal(size=(120, 120)), 4.0) * 400 + 500
    for sigma in (2.0, 10.0):
        assert image_noise(smooth + rng.normal(0, sigma, smooth.shape)) == pytest.approx(sigma, rel=0.15)
    clean = sgm_precision(smooth + rng.normal(0, 1, smooth.shape), smooth, (5, 5))
    noisy = sgm_precision(smooth + rng.normal(0, 20, smooth.shape), smooth, (5, 5))
    inner = (slice(4, -4), slice(4, -4))
    assert np.median(noisy[inner]) > 5 * np.median(clean[inner])
    assert np.isinf(clean[0, 0])  # the window leaves the image
    w = refinement_weight(np.array([0.01, 0.05, 0.1, 0.15, 0.3, np.inf]), 0.1)
    np.testing.assert_allclose(w, [0, 0, 0.5, 1, 1, 1])
    assert refinement_weight(np.array([0.01]), 0.0)[0] == 1


def test_relief_and_jump_gates_keep_sgm_at_ridges_and_walls_only() -> None:
    """The relief gate drops the ZNCC value where it departs from SGM's in one direction over the neighbourhood
    (a ridge averaged down), not where the two differ by zero-mean noise; the jump gate drops it on the upper
    side of a wall (disparities grow with height) as far as the window reaches, not at the foot of the wall, on
    a gentle slope or at a lone outlier."""
    rng = np.random.default_rng(6)
    h, w = 40, 60
    sgm_d = np.repeat(np.linspace(10.0, 12.0, w)[None, :], h, 0)  # a plane: 2 px over 60 columns
    noise = rng.choice([-0.2, 0.2], size=(h, w))  # zero-mean disagreement
    zncc = sgm_d + noise
    zncc[:, 28:33] -= 0.5  # a ridge flattened by the window
    zncc[5, 5] = np.nan
    g = subpixel.relief_gate(sgm_d, zncc, 2, 0.15)
    assert g.shape == (h, w) and np.all((g >= 0) & (g <= 1))
    assert np.all(g[5:-5, 29:32] == 0)  # the flattened band: SGM kept
    assert np.mean(g[5:-5, 5:20] == 1) > 0.95  # noise only: ZNCC kept
    np.testing.assert_array_equal(subpixel.relief_gate(sgm_d, zncc, 2, 0.0), np.ones((h, w)))

    wall = sgm_d.copy()
    wall[:, 40:] += 3.0  # a wall: a 3 px jump
    wall[20, 10] = 25.0  # a lone outlier, removed by the median
    wall[30, 15] = np.nan
    j = subpixel.jump_gate(wall, (13, 13), 1.0)
    assert np.all(j[:, 40:46] == 0)  # the roof's edge, as far as the window reaches the ground
    assert np.all(j[:, :40] == 1) and np.all(j[:, 47:] == 1)  # the foot of the wall, the rest of the roof
    # (the slope drops 0.2 px over half a window; the outlier and the hole change nothing)
    np.testing.assert_array_equal(subpixel.jump_gate(wall, (13, 13), 0.0), np.ones((h, w)))
