"""The image-guided refinement of the building probability (sat2lod.segment.guided)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from sat2lod.segment.guided import GuidedParams, box_mean, guided_filter, guided_tags, refine_probability


def _brute_force(g: np.ndarray, s: np.ndarray, r: int, eps: float) -> np.ndarray:
    """The guided filter written out window by window (edges repeat the border cell)."""
    H, W = g.shape
    gp, sp = np.pad(g, r, mode="edge"), np.pad(s, r, mode="edge")
    a, b = np.zeros((H, W)), np.zeros((H, W))
    for i in range(H):
        for j in range(W):
            wg, ws = gp[i : i + 2 * r + 1, j : j + 2 * r + 1], sp[i : i + 2 * r + 1, j : j + 2 * r + 1]
            a[i, j] = ((wg * ws).mean() - wg.mean() * ws.mean()) / (wg.var() + eps)
            b[i, j] = ws.mean() - a[i, j] * wg.mean()
    ap, bp = np.pad(a, r, mode="edge"), np.pad(b, r, mode="edge")
    k = 2 * r + 1
    return np.array(
        [
            [ap[i : i + k, j : j + k].mean() * g[i, j] + bp[i : i + k, j : j + k].mean() for j in range(W)]
            for i in range(H)
        ]
    )


@pytest.mark.parametrize("r,eps", [(1, 1e-3), (2, 1e-2), (3, 1e-4)])
def test_guided_filter_equals_the_window_by_window_fit(r, eps):
    rng = np.random.default_rng(r)
    g, s = rng.random((23, 31)), rng.random((23, 31))
    np.testing.assert_allclose(guided_filter(g, s, r, eps), _brute_force(g, s, r, eps), atol=1e-12)


def test_result_does_not_depend_on_the_array_extent():
    """A crop (a tile's window) gives the whole array's bits wherever its cells are 2 r from the crop's edge."""
    rng = np.random.default_rng(0)
    g, s = rng.random((60, 70)), rng.random((60, 70))
    r = 2
    whole = guided_filter(g, s, r, 1e-3)
    crop = guided_filter(g[7:51, 5:66], s[7:51, 5:66], r, 1e-3)
    m = 2 * r
    np.testing.assert_array_equal(crop[m:-m, m:-m], whole[7 + m : 51 - m, 5 + m : 66 - m])
    np.testing.assert_array_equal(
        box_mean(g, r)[m:-m, m:-m], box_mean(np.pad(g, 9, mode="reflect"), r)[9 + m : -9 - m, 9 + m : -9 - m]
    )


def test_a_blurred_edge_moves_onto_the_image_edge():
    """A roof sharp in the image, the network's probability blurred and 1 cell too wide: the refined mask
    follows the image."""
    truth = np.zeros((80, 80), bool)
    truth[20:50, 25:60] = True
    rng = np.random.default_rng(1)
    ortho = np.where(truth, 180.0, 90.0) + rng.normal(0, 4, truth.shape)
    prob = ndimage.gaussian_filter(ndimage.binary_dilation(truth).astype(np.float64), 2.0)
    before = prob > 0.5
    after = refine_probability(prob, ortho, 0.5, None, {"radius_m": 1.0, "eps": 1e-3}) > 0.5

    def iou(m):
        return (m & truth).sum() / (m | truth).sum()

    assert iou(after) > iou(before) + 0.03 and iou(after) > 0.95, (iou(before), iou(after))


def test_off_nodata_and_tags():
    rng = np.random.default_rng(2)
    prob = rng.random((30, 30)).astype(np.float32)
    prob[3:6, 4:9] = np.nan
    ortho = rng.random((30, 30)) * 100
    ortho[10:12, :] = np.nan
    off = refine_probability(prob, ortho, 0.5, None, {"radius_m": 0.0})
    np.testing.assert_array_equal(off, prob)
    assert guided_tags({"radius_m": 0.0}, 0.5) == {}
    out = refine_probability(prob, ortho, 0.5, None, {"radius_m": 1.0})
    assert out.dtype == np.float32 and np.isnan(out[3:6, 4:9]).all()
    assert (
        np.isfinite(out[~np.isnan(prob)]).all() and out[np.isfinite(out)].min() >= 0 and np.nanmax(out) <= 1
    )
    assert guided_tags({"radius_m": 1.0}, 0.5) == {
        "GUIDED_FILTER_RADIUS_PX": "2",
        "GUIDED_FILTER_EPS": "0.001",
    }
    # the radius is in metres: 1 m is 2 cells at 0.5 m, 3 cells at 0.3 m, off (under half a cell) at 3 m
    assert [GuidedParams(radius_m=1.0).radius_px(res) for res in (0.5, 0.3, 3.0)] == [2, 3, 0]
    with pytest.raises(ValueError, match="differ in shape"):
        refine_probability(prob, ortho[:, :-1], 0.5, None)
