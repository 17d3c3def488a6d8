"""Roof completion of the building mask (sat2lod.segment.completion)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sat2lod.segment.completion import (
    BLIND_REACH_M,
    PLANE_WINDOW,
    CompletionParams,
    complete_roofs,
    plane_roughness,
)

RES = 0.5


def test_plane_roughness_is_the_plane_fit_residual() -> None:
    yy, xx = np.mgrid[0:40, 0:50].astype(float)
    plane = 3.0 + 0.2 * xx - 0.7 * yy
    r = plane_roughness(plane)
    assert np.nanmax(np.abs(r[2:-2, 2:-2])) < 1e-6
    assert np.isnan(r[0, 0]) and np.isnan(r[-1, 10])  # the window reaches past the edge
    noisy = plane + np.random.default_rng(0).normal(0.0, 0.3, plane.shape)
    assert np.nanmedian(plane_roughness(noisy)) == pytest.approx(0.3, rel=0.15)
    holed = plane.copy()
    holed[20, 20] = np.nan
    rh = plane_roughness(holed)
    assert np.isnan(rh[18:23, 18:23]).all() and np.isfinite(rh[20, 24])
    # brute force on one window
    w = noisy[10:15, 30:35]
    k = np.arange(-2, 3, dtype=float)
    a = np.c_[np.ones(25), np.repeat(k, 5), np.tile(k, 5)]
    res = w.ravel() - a @ np.linalg.lstsq(a, w.ravel(), rcond=None)[0]
    assert plane_roughness(noisy)[12, 32] == pytest.approx(np.sqrt(res @ res / 22), rel=1e-9)


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A gable house (20 x 14 m, eaves 6 m, ridge 9 m) with half its roof in the mask, a domed tree crown 7 m
    high touching its side, a 1 m garden wall: nDSM (m), mask, truth of the house."""
    h, w = 120, 120
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    ndsm = np.zeros((h, w))
    house = (yy >= 30) & (yy < 58) & (xx >= 30) & (xx < 70)
    ridge = 44.0
    ndsm[house] = 9.0 - 3.0 * np.abs(yy[house] - ridge) / 14.0
    crown = (yy - 44.0) ** 2 + (xx - 80.0) ** 2 <= 10.0**2
    rng = np.random.default_rng(3)
    bumps = rng.normal(0.0, 0.8, (h, w))
    ndsm[crown & ~house] = (7.0 - 0.05 * ((yy - 44.0) ** 2 + (xx - 80.0) ** 2) + bumps)[crown & ~house]
    ndsm[(yy >= 60) & (yy < 62) & (xx >= 30) & (xx < 70)] = 1.0
    mask = np.zeros((h, w), np.uint8)
    mask[house & (yy < ridge)] = 1  # the north face only
    return ndsm, mask, house


def test_a_half_labelled_gable_roof_is_completed_and_the_tree_beside_it_is_not() -> None:
    ndsm, mask, house = _scene()
    prm = CompletionParams(distance_m=8.0)
    out, summary = complete_roofs(mask, ndsm, None, RES, prm)
    got = out == 1
    assert (got & house).sum() / house.sum() > 0.97  # the south face joined, up to its walls
    assert not (got & ~house).any()
    assert not got[:, 72:].any()  # the crown stays out
    assert not got[58:, :].any()  # the garden wall stays out
    assert summary == {"components": 1, "cells_added": int(got.sum() - (mask == 1).sum())}
    # the probability floor: cells the network ruled out entirely stay out
    prob = np.where(house & (np.indices(mask.shape)[0] >= 50), 0.0, 0.5)
    out2, _ = complete_roofs(mask, ndsm, prob, RES, prm)
    assert not (out2[50:58] == 1).any() and (out2[44:50, 32:68] == 1).all()
    # what the mask holds is never removed, nodata stays nodata
    mask[0, 0] = 255
    out3, _ = complete_roofs(mask, ndsm, None, RES, prm)
    assert out3[0, 0] == 255 and ((out3 == 1) >= (mask == 1)).all()


def test_completion_reaches_no_farther_than_distance_m() -> None:
    ndsm, mask, _ = _scene()
    out, _ = complete_roofs(mask, ndsm, None, RES, CompletionParams(distance_m=2.0))
    rows = np.nonzero((out == 1).any(axis=1))[0]
    assert rows.max() <= 44 + 4  # 2 m = 4 cells past the ridge
    assert (out[44:48, 32:68] == 1).all()


def test_completion_disabled_or_without_heights_leaves_the_mask() -> None:
    ndsm, mask, _ = _scene()
    same, s = complete_roofs(mask, ndsm, None, RES, {"enabled": False})
    assert np.array_equal(same, mask) and s["cells_added"] == 0
    same2, _ = complete_roofs(mask, None, None, RES)
    assert np.array_equal(same2, mask)
    with pytest.raises(ValueError, match="differ in shape"):
        complete_roofs(mask, ndsm[:-1], None, RES)


def _row(gap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two flat-roofed houses 8 m high, ``gap`` cells apart, each with a mid-wall rim cell (4 m) all round as a
    LiDAR cell straddling the wall gives, and the mask one cell inside their outlines: nDSM (m), mask, truth."""
    h, w = 60, 80
    ndsm = np.zeros((h, w))
    truth = np.zeros((h, w), bool)
    mask = np.zeros((h, w), np.uint8)
    for c0 in (10, 30 + gap):
        c1 = c0 + 20
        ndsm[10:40, c0:c1] = 4.0
        ndsm[11:39, c0 + 1 : c1 - 1] = 8.0
        truth[10:40, c0:c1] = True
        mask[11:39, c0 + 1 : c1 - 1] = 1
    return ndsm, mask, truth


def test_the_rim_across_the_walls_joins_and_the_gap_between_houses_stays_open() -> None:
    ndsm, mask, truth = _row(gap=2)
    out, _ = complete_roofs(mask, ndsm, None, RES, CompletionParams(rim_cells=1))
    got = out == 1
    assert not (got & ~truth).any()  # the ground beyond the walls (0 m) stays out
    # the outline cells join (4-connected: not the outer corner cells), the facing walls too: the mask keeps
    # the houses' two-cell gap
    assert got[11:39, 10].all() and got[11:39, 51].all() and got[10, 11:29].all() and got[39, 33:51].all()
    assert got[11:39, 29].all() and got[11:39, 32].all() and not got[:, 30:32].any()
    off, _ = complete_roofs(mask, ndsm, None, RES, CompletionParams(rim_cells=0))
    assert np.array_equal(off, mask)
    # a rim cell lower than rim_height_fraction of the roof stays out
    low, _ = complete_roofs(mask, ndsm, None, RES, CompletionParams(rim_cells=1, rim_height_fraction=0.6))
    assert np.array_equal(low, mask)


def test_the_rim_does_not_close_the_mask_between_two_houses_of_a_row() -> None:
    """Houses sharing a wall, each labelled one cell inside it: the two-cell gap of the mask is where LOD0 splits
    the row; the rim leaves it open (RIM_GAP) and closes the outer walls."""
    ndsm, mask, _ = _row(gap=0)
    out, _ = complete_roofs(mask, ndsm, None, RES, CompletionParams(rim_cells=1))
    got = out == 1
    assert not got[:, 29:31].any()
    assert got[11:39, 10].all() and got[11:39, 49].all()


def test_plane_roughness_of_a_wide_window_is_the_plane_fit_residual() -> None:
    """Windows wider than PLANE_WINDOW take the separable sums: the same residual, brute force."""
    z = np.random.default_rng(1).normal(0.0, 1.0, (40, 45)).cumsum(axis=0)
    r = plane_roughness(z, 9)
    k = np.arange(-4, 5, dtype=float)
    a = np.c_[np.ones(81), np.repeat(k, 9), np.tile(k, 9)]
    for i, j in ((4, 4), (20, 31), (35, 40)):
        w = z[i - 4 : i + 5, j - 4 : j + 5].ravel()
        res = w - a @ np.linalg.lstsq(a, w, rcond=None)[0]
        assert r[i, j] == pytest.approx(np.sqrt(res @ res / 78), rel=1e-9)
    assert np.isnan(r[3, 10]) and np.isnan(r[10, 41])


def _wide_roof(courtyard: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A flat roof 40 x 30 m, 6 m high (+ 0.1 m noise) on a 60 x 50 m grid at 0.5 m; with ``courtyard`` a
    14 x 10 m courtyard at ground level in its middle: nDSM (m), truth."""
    yy, xx = np.mgrid[0:100, 0:120]
    truth = (yy >= 20) & (yy < 80) & (xx >= 20) & (xx < 100)
    if courtyard:
        truth &= ~((yy >= 40) & (yy < 60) & (xx >= 46) & (xx < 74))
    ndsm = np.where(truth, 6.0, 0.0) + np.random.default_rng(5).normal(0.0, 0.1, truth.shape)
    return ndsm, truth


def test_the_middle_of_a_wide_roof_the_network_left_out_joins_and_a_courtyard_does_not() -> None:
    """The network labels a band along the walls of a wide roof and gives its middle no probability: a hole at
    roof height is filled (hole_roof_share), a courtyard down to the ground stays open."""
    ndsm, truth = _wide_roof()
    band = truth & ~((np.indices(truth.shape)[0] >= 32) & (np.indices(truth.shape)[0] < 68))
    band |= truth & ((np.indices(truth.shape)[1] < 32) | (np.indices(truth.shape)[1] >= 88))
    mask = band.astype(np.uint8)
    prob = np.where(band, 0.9, 0.0)  # the middle: nothing, below min_probability
    off = CompletionParams(rim_cells=0, blind_depth_m=None, hole_roof_share=None)
    out, _ = complete_roofs(mask, ndsm, prob, RES, off)
    assert np.array_equal(out, mask)
    out, _ = complete_roofs(mask, ndsm, prob, RES, CompletionParams(rim_cells=0, blind_depth_m=None))
    assert np.array_equal(out == 1, truth)
    # with a courtyard: the same band around it, the courtyard at ground level stays open
    ndsm_c, truth_c = _wide_roof(courtyard=True)
    mask_c = (band & truth_c).astype(np.uint8)
    out_c, _ = complete_roofs(mask_c, ndsm_c, prob, RES, CompletionParams(rim_cells=0, blind_depth_m=None))
    assert not (out_c == 1)[40:60, 46:74].any()
    # a hole partly at ground level (below hole_roof_share at roof height) stays open too
    half = ndsm.copy()
    half[32:68, 32:60] = 0.0
    out_h, _ = complete_roofs(mask, half, prob, RES, CompletionParams(rim_cells=0, blind_depth_m=None))
    assert np.array_equal(out_h, mask)


def test_the_blind_middle_of_a_wide_roof_joins_out_to_its_walls() -> None:
    """The network labels only an L along two walls (not enclosing anything): the roof's middle, deeper than
    blind_depth_m inside the raised region, and from there the rest out to the walls, join the component."""
    ndsm, truth = _wide_roof()
    yy, xx = np.indices(truth.shape)
    mask = (truth & ((yy < 30) | (xx < 30))).astype(np.uint8)
    prob = np.where(mask == 1, 0.9, 0.0)
    prm = CompletionParams(rim_cells=0, hole_roof_share=None)
    out, _ = complete_roofs(mask, ndsm, prob, RES, prm)
    got = out == 1
    assert not (got & ~truth).any()
    assert (got & truth).sum() / truth.sum() > 0.97  # all but the far corner's rounding (a disk's opening)
    same, _ = complete_roofs(
        mask, ndsm, prob, RES, CompletionParams(rim_cells=0, hole_roof_share=None, blind_depth_m=None)
    )
    assert (same == 1).sum() / truth.sum() < 0.6  # without it: the band and distance_m beyond it only


def test_a_clump_of_tree_crowns_beside_a_house_is_not_a_blind_middle() -> None:
    """Crowns as wide as a warehouse (40 x 30 m), at roof height and locally smooth (the nDSM's blur), beside a
    labelled house 15 m wide: their surface is no single plane over 2 x blind_depth_m, so the clump stays out.
    Windows straddling the house and crowns within about a metre of its height still pass the plane test: a
    fringe of such crowns along the house joins, never more than blind_depth_m."""
    yy, xx = np.mgrid[0:100, 0:140].astype(float)
    house = (yy >= 30) & (yy < 60) & (xx >= 10) & (xx < 40)
    clump = (yy >= 20) & (yy < 80) & (xx >= 40) & (xx < 120)
    mask = house.astype(np.uint8)
    prob = np.where(house, 0.9, 0.0)
    prm = CompletionParams(rim_cells=0)
    for amplitude, fringe in ((3.0, 0), (1.5, 12)):
        crowns = 7.0 + amplitude * np.cos(2 * np.pi * (xx - 40) / 16.0) * np.cos(2 * np.pi * (yy - 20) / 16.0)
        ndsm = np.where(house, 7.0, np.where(clump, crowns, 0.0))
        out, _ = complete_roofs(mask, ndsm, prob, RES, prm)
        assert not (out == 1)[:, 40 + fringe :].any()
        assert np.array_equal(out[house], mask[house])
        # without it, no crown cell (the network gave them nothing)
        off, _ = complete_roofs(mask, ndsm, prob, RES, CompletionParams(rim_cells=0, blind_depth_m=None))
        assert np.array_equal(off, mask)
    # the same clump flattened to one roof plane joins: the plane test is what keeps the crowns out
    flat = np.where(house | clump, 7.0, 0.0)
    out_f, _ = complete_roofs(mask, flat, prob, RES, prm)
    assert (out_f == 1)[clump].mean() > 0.9


def test_a_tile_with_the_default_halo_completes_a_wide_roof_as_the_whole_aoi() -> None:
    """The completion looks up to distance_m + the plane window + the rim + BLIND_REACH_M around a component:
    within the segment tiles' default halo (segmentation.tile_halo_m), so a tile whose window holds a wide
    roof crossing its edge, labelled as an L by the network, completes it as the whole AOI does."""
    from sat2lod.schema import defaults

    halo = round(defaults("segmentation")["tile_halo_m"] / RES)
    prm = CompletionParams()
    reach = np.ceil(prm.distance_m / RES) + PLANE_WINDOW + prm.rim_cells + np.ceil(BLIND_REACH_M / RES)
    assert reach <= halo
    yy, xx = np.mgrid[0:300, 0:400]
    roof = (yy >= 100) & (yy < 180) & (xx >= 150) & (xx < 260)  # 55 x 40 m, across the core edge x = 200
    ndsm = np.where(roof, 9.0, 0.0) + np.random.default_rng(2).normal(0.0, 0.15, roof.shape)
    mask = (roof & ((yy < 112) | (xx < 162))).astype(np.uint8)
    prob = np.where(mask == 1, 0.9, 0.0)
    whole, _ = complete_roofs(mask, ndsm, prob, RES, prm)
    assert (whole == 1)[roof].mean() > 0.97
    core = slice(0, 200)
    win = slice(0, 200 + halo)
    tile, _ = complete_roofs(mask[:, win], ndsm[:, win], prob[:, win], RES, prm)
    np.testing.assert_array_equal(tile[:, core], whole[:, core])


@st.composite
def _hostile_scenes(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plateaus of random heights (some wide, some with NaN holes, some at ground level inside others), a
    mask of bands along them and of rings around their middles, with nodata cells; a random probability."""
    h, w = draw(st.integers(8, 70)), draw(st.integers(8, 70))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    ndsm = rng.normal(0.0, draw(st.sampled_from([0.0, 0.1, 1.0])), (h, w))
    mask = np.zeros((h, w), np.uint8)
    for _ in range(draw(st.integers(0, 5))):
        r0, c0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        r1, c1 = int(rng.integers(r0 + 1, h + 1)), int(rng.integers(c0 + 1, w + 1))
        ndsm[r0:r1, c0:c1] += float(rng.choice([0.0, 3.0, 9.0, 25.0]))
        if rng.random() < 0.7:
            mask[r0 : min(r1, r0 + 3), c0:c1] = 1  # the network's band along one wall
    if draw(st.booleans()) and min(h, w) >= 8:  # a roof labelled as a ring around its middle
        r0, c0 = int(rng.integers(0, h - 7)), int(rng.integers(0, w - 7))
        r1, c1 = int(rng.integers(r0 + 7, h + 1)), int(rng.integers(c0 + 7, w + 1))
        ndsm[r0:r1, c0:c1] = 8.0 + rng.normal(0.0, 0.1, (r1 - r0, c1 - c0))
        mask[r0:r1, c0:c1] = 1
        mask[r0 + 2 : r1 - 2, c0 + 2 : c1 - 2] = 0
    ndsm[rng.random((h, w)) < draw(st.sampled_from([0.0, 0.05, 0.5, 1.0]))] = np.nan
    mask[rng.random((h, w)) < draw(st.sampled_from([0.0, 0.05]))] = 255
    prob = np.where(mask == 1, 0.9, rng.random((h, w)) * 0.02)
    return mask, ndsm, prob


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(scene=_hostile_scenes(), rim=st.sampled_from([0, 1, 2]))
def test_completion_on_hostile_scenes_only_adds_valid_cells(scene, rim: int) -> None:
    """Whatever the nDSM (NaN holes, ground-level holes in plateaus, noise, empty) and the mask: no exception, the
    mask's building cells stay, nodata stays nodata and is never written, only 0 / 1 / 255 come out."""
    mask, ndsm, prob = scene
    out, summary = complete_roofs(mask, ndsm, prob, RES, CompletionParams(rim_cells=rim))
    assert out.dtype == np.uint8 and set(np.unique(out)) <= {0, 1, 255}
    assert (out[mask == 1] == 1).all()
    assert np.array_equal(out == 255, mask == 255)
    assert summary["cells_added"] == int((out == 1).sum() - (mask == 1).sum()) >= 0
