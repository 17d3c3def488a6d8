"""DTM extraction: a synthetic hill with boxes, kernel vs reference, nodata handling, file contract."""

from __future__ import annotations

import itertools
import logging

import numba
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage

import sat2lod
from conftest import shared_file
from sat2lod import terrain
from sat2lod.io.raster import write_raster
from sat2lod.terrain import (
    DTMParams,
    _harmonic_fill_multiscale,
    dtm_from_dsm_file,
    extract_dtm,
    harmonic_fill_reference,
    normalized_dsm,
    opening_windows,
)


def hill_with_boxes(n: int = 240, res: float = 0.5, seed: int = 0, noise: float = 0.2):
    """A 16 m Gaussian hill on a tilted plane with 12 flat-roofed boxes (8-30 m wide, 4-20 m tall)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n] * res
    c = n * res / 2
    dtm = 100 + 16 * np.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * (n * res / 4) ** 2)) + 0.02 * x
    dsm = dtm.copy()
    boxes = np.zeros(dtm.shape, bool)
    for _ in range(12):
        w, h = rng.uniform(8, 30, 2)
        x0, y0 = rng.uniform(0, n * res - 30, 2)
        m = (x >= x0) & (x < x0 + w) & (y >= y0) & (y < y0 + h)
        dsm[m] = np.maximum(dsm[m], dtm[m].min() + rng.uniform(4, 20))
        boxes |= m
    dsm = dsm + rng.normal(0, noise, dsm.shape)
    return dsm.astype(np.float32), dtm.astype(np.float32), boxes


def test_dtm_recovers_hill_under_boxes():
    dsm, truth, boxes = hill_with_boxes()
    assert boxes.mean() > 0.1  # the boxes cover a real share of the scene
    # The hill flanks reach a 0.33 slope: max_slope is set to the steepest terrain expected.
    dtm = extract_dtm(dsm, 0.5, DTMParams(max_object_size_m=40.0, max_slope=0.35))
    err = dtm - truth
    assert np.isfinite(dtm).all()
    rmse = float(np.sqrt(np.mean(err**2)))
    assert rmse < 0.5, rmse
    # Under the boxes (4-20 m above ground) the terrain is interpolated, not the roofs.
    assert np.percentile(np.abs(err[boxes]), 95) < 1.5
    # The hill top (16 m above the plane) is kept: no shaving of convex terrain.
    assert abs(float(dtm[120, 120] - truth[120, 120])) < 0.6
    # Without the slope term the hill is flagged as an object and shaved: the slope term matters.
    flat = extract_dtm(
        dsm,
        0.5,
        DTMParams(max_object_size_m=40.0, max_slope=0.0, adaptive_slope=0.0, min_object_height_m=0.3),
    )
    assert np.sqrt(np.mean((flat - truth) ** 2)) > 2 * rmse


def ridge_with_sheds(n: int = 200, res: float = 0.5, seed: int = 1):
    """Steep natural relief at the default settings: a 20 m ridge with 0.8-slope flanks (narrower than
    max_object_size_m, so the opening cuts its crest) on a plane, 4 flat sheds (10 x 12 m, 5 m tall) on the
    plane, 0.2 m noise; and clusters of stereo pits (2 x 2 cells, 40 m deep) on 3 % of the cells."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n] * res
    dtm = 500 + np.clip(20 - 0.8 * np.abs(x - 30.0), 0, None) + 0.05 * y
    dsm = dtm.copy()
    sheds = np.zeros(dtm.shape, bool)
    for x0, y0 in ((62, 10), (62, 60), (80, 35), (80, 80)):
        m = (x >= x0) & (x < x0 + 10) & (y >= y0) & (y < y0 + 12)
        dsm[m] = dtm[m].max() + 5.0
        sheds |= m
    dsm = dsm + rng.normal(0, 0.2, dsm.shape)
    seeds = rng.random((n // 2, n // 2)) < 0.03
    pits = np.kron(seeds, np.ones((2, 2), bool))[:n, :n] & ~sheds
    dsm[pits] -= 40.0
    return dsm.astype(np.float32), dtm.astype(np.float32), sheds, pits


def test_steep_ridge_stays_terrain_and_sheds_do_not():
    dsm, truth, sheds, pits = ridge_with_sheds()
    ndsm = dsm - extract_dtm(dsm, 0.5)
    ok = ~sheds & ~pits
    ridge = ok & (truth > 512)  # the upper half of the ridge, where the opening cuts
    assert np.percentile(np.abs(ndsm[ridge]), 95) < 1.0
    assert np.percentile(np.abs(ndsm[ok]), 95) < 1.0
    core = ndimage_erode(sheds, 4)
    assert np.median(ndsm[core]) > 4.0  # the sheds are still objects
    # without pit removal every cell is an object or next to one (pits and their buffer): no terrain at all
    with pytest.raises(ValueError, match="no ground cell"):
        extract_dtm(dsm, 0.5, DTMParams(max_pit_size_m=0.0))
    # without the slope-adaptive allowance the crest stays above the terrain
    no_adapt = dsm - extract_dtm(dsm, 0.5, DTMParams(adaptive_slope=0.0))
    assert np.percentile(no_adapt[ridge], 95) > 2.0


def fattened_block(slope: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 20 x 20 m block 10 m high on a plane of ``slope`` (rise over run along x), its foot fattened as the
    chain's stereo DSM of the synthetic demo has it: d m outside the walls the surface stands 2.2 exp(-d / 1.3) m
    above the ground (measured there: 1.6 m at 0.5-1 m, 0.9 m at 1-2 m, 0.35 m at 2-4 m, 0.08 m at 4-8 m):
    DSM, terrain, block."""
    n, res = 200, 0.5
    y, x = np.mgrid[0:n, 0:n] * res
    dtm = 100.0 + slope * x
    d = np.maximum(np.abs(x - 50.0), np.abs(y - 50.0)) - 10.0  # distance outside the block (m, Chebyshev)
    above = np.where(d <= 0.0, 10.0, 2.2 * np.exp(-np.maximum(d, 0.0) / 1.3))
    noise = np.random.default_rng(5).normal(0.0, 0.05, dtm.shape)
    return (dtm + above + noise).astype(np.float32), dtm.astype(np.float32), d <= 0.0


def test_flat_buffer_keeps_the_fattened_wall_feet_out_of_the_terrain():
    dsm, truth, block = fattened_block(0.0)
    off = DTMParams(flat_object_buffer_m=DTMParams().object_buffer_m)
    err_off = (extract_dtm(dsm, 0.5, off) - truth)[block]
    err_on = (extract_dtm(dsm, 0.5) - truth)[block]
    assert err_off.mean() > 0.2  # the ramp's tail anchors the terrain under the block
    assert abs(err_on.mean()) < 0.1 and err_on.mean() < err_off.mean() / 3  # 0.25 -> 0.07 m
    # on a slope steeper than flat_max_slope the narrow buffer stays: the same terrain as without the option
    dsm, _, _ = fattened_block(0.25)
    assert np.array_equal(extract_dtm(dsm, 0.5), extract_dtm(dsm, 0.5, off))


def ndimage_erode(m: np.ndarray, k: int) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_erosion(m, iterations=k)


def test_low_outliers_flags_pits_not_streets():
    from sat2lod.terrain import low_outliers

    z = np.full((60, 60), 100.0, np.float32)
    z[10:20, :] = 112.0  # two buildings with a 5 m street between them (rows 20-29)
    z[30:40, :] = 112.0
    z[50, 50] = 60.0  # one pit, and a 2 x 2 cluster
    z[45:47, 10:12] = 70.0
    m = low_outliers(z, 0.5, DTMParams())
    assert m[50, 50] and m[45:47, 10:12].all()
    assert m.sum() == 5  # the street is a valley wider than the pit window: not a pit
    assert not low_outliers(z, 0.5, DTMParams(max_pit_size_m=0.0)).any()


def test_ndsm_and_nodata():
    dsm, _, boxes = hill_with_boxes(n=160, noise=0.0)
    dsm[40:50, 40:50] = np.nan  # a small hole: terrain interpolated there
    dsm[:, 150:] = np.nan  # a wide nodata band, 5 m wide: still near data
    dtm = extract_dtm(dsm, 0.5, DTMParams(max_object_size_m=30.0))
    assert np.isfinite(dtm[40:50, 40:50]).all()
    ndsm = normalized_dsm(dsm, dtm)
    assert np.isnan(ndsm[40:50, 40:50]).all() and np.isnan(ndsm[:, 150:]).all()
    ok = np.isfinite(ndsm) & ~boxes
    assert np.abs(ndsm[ok]).mean() < 0.3
    # Far from any data there is no evidence: NaN.
    big = np.full((100, 200), np.nan, np.float32)
    big[:, :40] = 10.0
    out = extract_dtm(big, 0.5, DTMParams(max_object_size_m=20.0))
    assert np.isnan(out[:, 120:]).all() and np.isfinite(out[:, :40]).all()


def _hostile_masks() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(z, known) pairs the harmonic fill must solve: odd shapes, edge-touching and ragged unknown regions."""
    rng = np.random.default_rng(3)
    out = {}
    h, w = 37, 53
    y, x = np.mgrid[0:h, 0:w]
    z = 2300.0 + 0.8 * x - 0.5 * y + 3.0 * np.sin(x / 5.0) + rng.normal(0, 0.3, (h, w))
    out["random 30 %"] = (z, rng.random((h, w)) < 0.3)
    known = np.ones((h, w), bool)
    known[4:33, 5:48] = False
    out["one big hole"] = (z, known)
    known = np.ones((h, w), bool)
    known[10:, 20:] = False
    out["hole touching two edges"] = (z, known)
    known = np.zeros((h, w), bool)
    known[17, 40] = True
    out["a single known cell"] = (z, known)
    known = np.zeros((h, w), bool)
    known[::9, :] = True
    known[:, 11] = True
    known[3:30, 30] = True
    out["thin known lines"] = (z, known)
    field = ndimage.gaussian_filter(rng.normal(size=(h, w)), 3.0)
    known = ndimage.binary_opening(field > 0.02, iterations=1)
    known[20:24, 2:50] = False  # a long, thin object crossing the ragged ground
    out["ragged real-looking"] = (z, known)
    known = np.zeros((1, 41), bool)
    known[0, [0, 17]] = True
    out["one row"] = (np.linspace(0.0, 40.0, 41)[None, :] ** 2, known)
    return out


@pytest.mark.parametrize("case", list(_hostile_masks()))
def test_harmonic_fill_converges_to_the_exact_solve(case):
    """The multigrid fill equals the sparse direct solve (same equation: 4-neighbour Laplace on the unknown
    cells, known cells fixed, Neumann at the raster edge) to its tolerance, known cells to the bit."""
    z, known = _hostile_masks()[case]
    assert known.any() and not known.all()
    exact = harmonic_fill_reference(z, known)
    out = _harmonic_fill_multiscale(np.where(known, z, 0.0), known)
    assert out.dtype == np.float32 and out.shape == z.shape
    np.testing.assert_array_equal(out[known], z[known].astype(np.float32))
    # float32 rounding of ~2.3 km heights is 1.2e-4 m
    np.testing.assert_allclose(out, exact, rtol=0, atol=2.5e-4)
    # the start of the old solver (0) is far: a fill that stopped early would be off by metres
    assert np.abs(exact[~known]).min() > 1.0


def test_harmonic_fill_logs_when_the_iteration_cap_is_hit(monkeypatch, caplog):
    z, known = _hostile_masks()["one big hole"]
    monkeypatch.setattr(terrain, "FILL_MAX_ITER", 1)
    with caplog.at_level(logging.WARNING, logger="sat2lod.terrain"):
        out = _harmonic_fill_multiscale(np.where(known, z, 0.0), known)
    assert "not converged after 1 iterations" in caplog.text
    assert np.isfinite(out).all()


def test_coarse_operator_is_the_galerkin_product():
    """The numba coarsening equals P^T A P built with scipy.sparse (P: 2 x 2 aggregates, piecewise constant)."""
    from scipy import sparse

    z, known = _hostile_masks()["ragged real-looking"]
    d, we, ws, _ = terrain._fine_operator(z, known)
    h, w = d.shape
    idx = np.arange(h * w).reshape(h, w)
    a = sparse.diags(d.ravel()) - sparse.coo_matrix(
        (we[:, :-1].ravel(), (idx[:, :-1].ravel(), idx[:, 1:].ravel())), shape=(h * w, h * w)
    )
    a = a - sparse.coo_matrix((ws[:-1].ravel(), (idx[:-1].ravel(), idx[1:].ravel())), shape=(h * w, h * w))
    a = a + (a - sparse.diags(a.diagonal())).T
    a = sparse.csr_matrix(a)
    hc, wc = (h + 1) // 2, (w + 1) // 2
    p = sparse.coo_matrix((np.ones(h * w), (idx.ravel(), ((idx // w // 2) * wc + (idx % w) // 2).ravel())))
    ac = (p.T @ a @ p).toarray()
    dc, wec, wsc = terrain._coarsen(d, we, ws)
    np.testing.assert_array_equal(np.diag(ac), dc.ravel())
    ic = np.arange(hc * wc).reshape(hc, wc)
    np.testing.assert_array_equal(-ac[ic[:, :-1].ravel(), ic[:, 1:].ravel()], wec[:, :-1].ravel())
    np.testing.assert_array_equal(-ac[ic[:-1].ravel(), ic[1:].ravel()], wsc[:-1].ravel())
    assert not wec[:, -1].any() and not wsc[-1].any()
    assert np.count_nonzero(ac) == np.count_nonzero(dc) + 2 * (np.count_nonzero(wec) + np.count_nonzero(wsc))
    # the other kernels of the V-cycle against the same sparse matrices
    x = np.random.default_rng(5).normal(size=(h, w)) * (d > 0)
    b = np.random.default_rng(6).normal(size=(h, w)) * (d > 0)
    np.testing.assert_allclose(terrain._apply(x, d, we, ws).ravel(), a @ x.ravel(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        terrain._residual(x, b, d, we, ws).ravel(), b.ravel() - a @ x.ravel(), rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(terrain._restrict(b).ravel(), p.T @ b.ravel(), rtol=0, atol=1e-12)
    e = np.random.default_rng(7).normal(size=(hc, wc))
    y = x.copy()
    terrain._prolong_add(y, e, d, 1.8)
    np.testing.assert_allclose(
        y.ravel(), x.ravel() + 1.8 * (d.ravel() > 0) * (p @ e.ravel()), rtol=0, atol=1e-12
    )


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba limited to one thread here")
def test_harmonic_fill_is_the_same_on_any_thread_count():
    """Reproducible to the bit: the fill's kernels are serial, with a fixed summation order."""
    z, known = _hostile_masks()["ragged real-looking"]
    zz = np.where(known, z, 0.0)
    outs = []
    before = numba.get_num_threads()
    try:
        for n in (1, 2):
            numba.set_num_threads(n)
            outs.append(_harmonic_fill_multiscale(zz, known))
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize(
    ("shape", "size", "dtype"),
    [((278, 278), 33, np.float32), ((41, 67), 33, np.float64), ((9, 5), 33, np.float32), ((120, 90), 3, np.float64),
     ((1, 1), 5, np.float32), ((3, 500), 9, np.float32)],
)  # fmt: skip
def test_median_filter_square_equals_scipy(shape, size, dtype):
    """The running-histogram median is SciPy's median_filter (mode nearest) to the bit, ties included, on any
    number of threads; NaN input goes to SciPy."""
    rng = np.random.default_rng(size)
    a = rng.normal(size=shape).astype(dtype)
    tied = (np.round(a * 2) / 2).astype(dtype)
    for arr in (a, tied):
        ref = ndimage.median_filter(arr, size=size, mode="nearest")
        before = numba.get_num_threads()
        try:
            for n in sorted({1, numba.config.NUMBA_NUM_THREADS}):
                numba.set_num_threads(n)
                got = terrain.median_filter_square(arr, size)
                assert got.dtype == arr.dtype
                np.testing.assert_array_equal(got, ref)
        finally:
            numba.set_num_threads(before)
    a[0, 0] = np.nan
    np.testing.assert_array_equal(
        terrain.median_filter_square(a, size), ndimage.median_filter(a, size=size, mode="nearest")
    )


def test_opening_windows_grow_to_max_size():
    w = opening_windows(64.0, 0.5, 4.0)
    assert w[0] == 3 and w[-1] == 129 and all(b > a for a, b in itertools.pairwise(w))
    assert max(np.diff(w)) <= 8  # linear steps of 4 m = 8 px once the doubling gets there


def test_dtm_file_contract(tmp_path):
    dsm, _, _ = hill_with_boxes(n=120)
    dsm[:5, :5] = np.nan
    tr = from_origin(500000.0, 4800000.0, 0.5, 0.5)
    src = write_raster(
        tmp_path / "dsm.tif",
        dsm,
        tr,
        32631,
        nodata=float("nan"),
        tags={"VERTICAL_DATUM": sat2lod.ELLIPSOID_DATUM},
    )
    summary = dtm_from_dsm_file(src, tmp_path / "dtm.tif", tmp_path / "ndsm.tif", max_object_size_m=32.0)
    assert summary["dtm_valid_fraction"] == 1.0
    expected_datum = {"dtm.tif": sat2lod.ELLIPSOID_DATUM, "ndsm.tif": sat2lod.HEIGHT_ABOVE_DTM}
    for name, datum in expected_datum.items():
        with rasterio.open(tmp_path / name) as ds:
            # the DTM keeps the DSM's datum; the nDSM's values are heights above the DTM, not the ellipsoid
            assert ds.tags()["VERTICAL_DATUM"] == datum
            assert np.isnan(ds.nodata) and ds.dtypes[0] == "float32"
            assert ds.transform == tr and ds.crs.to_epsg() == 32631
            assert ds.profile.get("tiled") or ds.block_shapes[0][0] < ds.height
    with rasterio.open(tmp_path / "ndsm.tif") as ds:
        assert ds.tags()["DTM_VERTICAL_DATUM"] == sat2lod.ELLIPSOID_DATUM
        assert np.isnan(ds.read(1)[:5, :5]).all()
    with pytest.raises(TypeError):
        dtm_from_dsm_file(src, tmp_path / "a.tif", tmp_path / "b.tif", not_a_param=1)


def test_dtm_rejects_geographic_dsm(tmp_path):
    src = write_raster(
        tmp_path / "dsm.tif",
        np.zeros((20, 20), np.float32),
        from_origin(3.0, 44.0, 1e-5, 1e-5),
        4326,
        nodata=float("nan"),
    )
    with pytest.raises(ValueError, match="projected"):
        dtm_from_dsm_file(src, tmp_path / "dtm.tif", tmp_path / "ndsm.tif")


def test_dtm_on_ign_lidar_reference():
    """Real data: IGN LiDAR HD reference DSM -> DTM, against IGN's DTM (ground points TIN)."""
    from sat2lod.io.raster import read_raster

    dsm = read_raster(
        shared_file("ign_lidarhd_montpellier_tiles", "ref_DSM_test_data_77055_627760_LA93_IGN69_50CM.tif"),
        bands=1,
        masked_to_nan=True,
    ).array
    ref = read_raster(
        shared_file("ign_lidarhd_montpellier_tiles", "ref_DTM_test_data_77055_627760_LA93_IGN69_50CM.tif"),
        bands=1,
        masked_to_nan=True,
    ).array
    dtm = extract_dtm(dsm, 0.5, DTMParams(max_object_size_m=40.0, smooth_sigma_px=0.0))
    ok = np.isfinite(ref) & np.isfinite(dtm) & np.isfinite(dsm)
    err = dtm[ok] - ref[ok]
    # Buildings rise up to 18 m here; the DSM itself is 4.9 m RMSE from the DTM.
    assert np.sqrt(np.mean((dsm[ok] - ref[ok]) ** 2)) > 3.0
    assert np.sqrt(np.mean(err**2)) < 0.25  # measured 0.12 m (bench/terrain_compare.py)


def _tiled_scene(tmp_path, tile_m: float):
    """The hill with boxes (120 m, 0.5 m) as a DSM COG with a nodata corner wider than the largest object,
    and a grid of ``tile_m`` tiles over it (tiles.geojson as rule tiles writes it)."""
    from sat2lod.io.jsonio import write_json
    from sat2lod.tiling import grid_spec, tile_cores, tiles_feature_collection

    dsm, _, _ = hill_with_boxes(n=240, seed=3)
    dsm[:90, :90] = np.nan  # cells over 32 m from any valid one have no terrain
    dsm[150:160, 100:140] = np.nan  # a stereo hole across a tile edge
    x0, y1 = 500000.0, 4800000.0
    src = write_raster(
        tmp_path / "dsm.tif",
        dsm,
        from_origin(x0, y1, 0.5, 0.5),
        32631,
        nodata=float("nan"),
        tags={"VERTICAL_DATUM": sat2lod.ELLIPSOID_DATUM},
        cog=True,
    )
    spec = grid_spec([x0, y1 - 120.0, x0 + 120.0, y1], tile_m, 10.0, 0.5)
    fc = tiles_feature_collection(spec, tile_cores(spec), np.ones(spec.n_rows * spec.n_cols, bool), 32631)
    write_json(tmp_path / "tiles.geojson", fc)
    return src, tmp_path / "tiles.geojson", [f["properties"]["tile"] for f in fc["features"]]


def test_dtm_per_tile_equals_untiled(tmp_path):
    """Rules dtm_tile + dtm (3 x 3 tiles of 40 m, a 32 m halo = the largest object): the pasted DTM and nDSM
    have the untiled products' grid, tags and nodata cells, and their heights to within the harmonic solver's
    tolerance (not to the bit: its conjugate-gradient sums run over the window), except where a filled region
    runs past the halo: here the 45 m nodata corner, boxes and the stereo hole make one unknown region of
    16 k cells (rows 0-195, cols 0-180) that the window of tile t0001_0000 cuts (1.3 % of cells > 1 mm,
    max 6 cm measured)."""
    from sat2lod.io.raster import read_raster
    from sat2lod.terrain import assemble_terrain, dtm_tile_from_files

    src, tiles, ids = _tiled_scene(tmp_path, 40.0)
    prm = {"max_object_size_m": 32.0, "max_slope": 0.35, "tile_halo_m": 32.0}
    dtm_from_dsm_file(src, tmp_path / "ref_dtm.tif", tmp_path / "ref_ndsm.tif", **prm)
    out = {"dtm": [], "ndsm": []}
    for t in ids:
        out["dtm"].append(tmp_path / f"{t}_dtm.tif")
        out["ndsm"].append(tmp_path / f"{t}_ndsm.tif")
        dtm_tile_from_files(src, tiles, t, out["dtm"][-1], out["ndsm"][-1], **prm)
    assemble_terrain(out["dtm"], out["ndsm"], src, tmp_path / "dtm.tif", tmp_path / "ndsm.tif")
    assert len(ids) == 9
    for name in ("dtm", "ndsm"):
        got, ref = read_raster(tmp_path / f"{name}.tif"), read_raster(tmp_path / f"ref_{name}.tif")
        assert got.transform == ref.transform and got.crs == ref.crs and got.tags == ref.tags
        np.testing.assert_array_equal(np.isnan(got.array), np.isnan(ref.array))
        assert np.isnan(ref.array).any() and np.isfinite(ref.array).mean() > 0.8
        err = np.abs(got.array - ref.array)[np.isfinite(ref.array)]
        # most cells within the solver's tolerance, the cut region within cm, none off by a roof
        assert (err < 1e-4).mean() > 0.95 and (err < 1e-3).mean() > 0.98 and err.max() < 0.1, (
            (err < 1e-4).mean(),
            (err < 1e-3).mean(),
            err.max(),
        )


def test_dtm_tile_halo_must_cover_the_largest_object(tmp_path):
    from sat2lod.terrain import dtm_tile_from_files

    src, tiles, ids = _tiled_scene(tmp_path, 60.0)
    with pytest.raises(ValueError, match="tile_halo_m"):
        dtm_tile_from_files(
            src,
            tiles,
            ids[0],
            tmp_path / "a.tif",
            tmp_path / "b.tif",
            max_object_size_m=32.0,
            tile_halo_m=16.0,
        )
    assert not (tmp_path / "a.tif").exists()
