"""Foreground fattening at depth jumps (sat2lod.stereo.edges): kernel = NumPy reference, what moves and what not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from sat2lod.stereo.edges import (
    edge_refine,
    edge_refine_reference,
    jump_map,
    jump_map_reference,
    occluded_side,
)


def scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A bright 20 x 30 px roof (disparity 15) on dark ground (10), its disparity fattened 3 px to the east (as
    a census window straddling the wall gives the ground beside it the roof's disparity), a 5 x 5 px shed, a
    roof of the ground's grey level (nothing in the image tells it from the ground), a sloping roof (smooth:
    disparity 12 to 17.5 across it, steeper than the jump threshold over the window), noise, a hole. Returns (disparity, image, truth disparity)."""
    rng = np.random.default_rng(seed)
    h, w = 64, 96
    img = rng.normal(0.3, 0.02, (h, w))
    truth = np.full((h, w), 10.0)
    img[20:40, 20:50] = 0.8 + rng.normal(0, 0.02, (20, 30))
    truth[20:40, 20:50] = 15.0
    img[45:50, 60:65] = 0.8
    truth[45:50, 60:65] = 15.0
    truth[4:14, 60:80] = 15.0  # grey like the ground: must be kept
    truth[50:62, 5:40] = 12.0 + 0.5 * np.arange(12)[:, None]  # 0.5 px per row: a 6 px span
    img[50:62, 5:40] = 0.6
    d = truth.copy()
    d[20:40, 50:53] = 15.0  # fattening
    d = (d + rng.normal(0, 0.1, d.shape)).astype(np.float32)
    d[5:8, 5:9] = np.nan
    img[30, 30] = np.nan
    return d, img, truth


@pytest.mark.parametrize("radius", [3, 5])
def test_kernel_equals_reference(radius: int) -> None:
    d, img, _ = scene()
    np.testing.assert_array_equal(
        edge_refine(d, img, radius, 0.1, 1.5), edge_refine_reference(d, img, radius, 0.1, 1.5)
    )


def test_fattening_taken_back_the_rest_kept() -> None:
    d, img, truth = scene()
    out = edge_refine(d, img, 5, 0.1, 1.5)
    fat = np.zeros(d.shape, bool)
    fat[21:39, 50:53] = True
    assert (d[fat] > 12.5).all()  # the input is fattened there
    assert (out[fat] < 12.5).mean() > 0.9  # and no longer: the ground's disparity
    changed = (out != d) & np.isfinite(d)
    # only foreground pixels move, and only down (fattening only spreads the foreground)
    assert (out[changed] < d[changed]).all()
    assert not changed[20:40, 20:50].any()  # the roof keeps its disparities
    assert not changed[45:50, 60:65].any()  # a small shed too
    assert not changed[4:14, 60:80].any()  # a roof the image does not tell from the ground: kept
    assert not changed[52:60, 7:38].any()  # a sloping roof away from its edges: smooth, untouched
    assert not changed[:, 70:][20:44].any()  # open ground
    # each new value is a disparity of the window (no height made up), invalid pixels stay invalid
    assert np.isin(out[changed], d).all()
    assert np.array_equal(np.isnan(out), np.isnan(d))
    # no pixel moved away from the truth: every change takes back fattening
    ok = np.isfinite(d)
    assert (np.abs(out - truth)[ok] <= np.abs(d - truth)[ok] + 0.5).all()
    assert (np.abs(out - truth)[ok] > 1).sum() < 0.1 * (np.abs(d - truth)[ok] > 1).sum()


def test_off_and_deterministic() -> None:
    d, img, _ = scene(1)
    assert edge_refine(d, img, 0, 0.1, 1.5) is d
    a = edge_refine(d, img, 5, 0.1, 1.5)
    assert np.array_equal(a, edge_refine(d, img, 5, 0.1, 1.5), equal_nan=True)
    # a jump threshold above the scene's jumps changes nothing
    assert np.array_equal(edge_refine(d, img, 5, 0.1, 10.0), d, equal_nan=True)
    # the image's radiometric unit does not matter (grey levels are scaled by their 2-98 % range)
    assert np.array_equal(edge_refine(d, 1000.0 * img + 50.0, 5, 0.1, 1.5), a, equal_nan=True)


@pytest.mark.parametrize("seed", range(4))
def test_kernel_equals_reference_random_scenes(seed: int) -> None:
    """Blobs raised by 6 px and brighter, noise, 5 % holes: kernels and references agree bit for bit."""
    r = np.random.default_rng(seed)
    h, w = 50, 70
    g = ndimage.gaussian_filter(r.normal(size=(h, w)), 1).astype(np.float32)
    d = (r.normal(size=(h, w)) * 0.3 + 10).astype(np.float32)
    m = ndimage.gaussian_filter(r.random((h, w)), 3) > 0.5
    d[m] += 6
    g[m] += 1.0
    d[r.random((h, w)) < 0.05] = np.nan
    g[r.random((h, w)) < 0.01] = np.nan
    np.testing.assert_array_equal(jump_map(d, g), jump_map_reference(d, g))
    out = edge_refine(d, g, 4, 0.1, 1.5)
    np.testing.assert_array_equal(out, edge_refine_reference(d, g, 4, 0.1, 1.5))
    assert (out != d)[np.isfinite(d)].any()  # the case does exercise the correction


def test_one_side_only_when_the_view_sees_walls() -> None:
    """The roof leans towards +x in the left view (its east edge hides the ground beyond it): fattening there is
    taken back; west of the roof the view sees the wall, and a band there (the wall's pixels, given the roof's
    disparity) is left as it is: given the ground's, they would triangulate inside the footprint."""
    d, img, _ = scene()
    d[20:40, 17:20] = 15.0 + d[20:40, 17:20] - 10.0  # the wall band west of the roof, at the roof's disparity
    both = edge_refine(d, img, 5, 0.1, 1.5, 0)
    east = edge_refine(d, img, 5, 0.1, 1.5, 1)
    np.testing.assert_array_equal(east, edge_refine_reference(d, img, 5, 0.1, 1.5, 1))
    np.testing.assert_array_equal(
        edge_refine(d, img, 5, 0.1, 1.5, -1), edge_refine_reference(d, img, 5, 0.1, 1.5, -1)
    )
    fat_e, fat_w = np.s_[21:39, 50:53], np.s_[21:39, 17:20]
    assert (both[fat_e] < 12.5).mean() > 0.9 and (both[fat_w] < 12.5).mean() > 0.9
    assert (east[fat_e] < 12.5).mean() > 0.9
    assert np.array_equal(east[fat_w], d[fat_w])  # the wall side untouched
    assert occluded_side(0.4) == 1 and occluded_side(-0.4) == -1
    assert occluded_side(0.2) == 0 and occluded_side(-0.015) == 0  # near nadir: no wall seen, both sides
