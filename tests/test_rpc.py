"""RPC readers and the numba projection / localization, checked against GDAL's RPC transformer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import RPCTransformer

from conftest import shared_file
from sat2lod.io.rpc_files import RPCReadError, crop_origin, read_rpc, read_rpc_file
from sat2lod.rpc import RPCModel, fit_rpc

SAMPLE_FILES = [
    "rpcm_20191015_073816_ssc1d3_0011_basic_l1a_panchromatic_dn_RPC.TXT",
    "rpcm_JAX_068_001_RGB.json",
    "rpcm_rpc_IKONOS.txt",
    "rpcm_rpc_PLANET_L1A.txt",
    "rpcm_rpc_PLANET_L1B.txt",
    "rpcm_rpc_PLEIADES.xml",
    "rpcm_rpc_SPOT6.xml",
    "rpcm_rpc_WV1.xml",
    "rpcm_rpc_WV2.xml",
    "rpcm_rpc_WV3.xml",
    "shareloc_PHR1B_P_201709281038045_SEN_PRG_FC_178608-001.geom",
    "shareloc_PHR1B_P_201709281038393_SEN_PRG_FC_178609-001.geom",
    "shareloc_PHRDIMAP_P1BP--2017030824934340CP.XML",
    "shareloc_PHRDIMAP_P1BP--2018122638935449CP.XML",
    "shareloc_RPC_PHR1B_P_201709281038045_SEN_PRG_FC_178608-001.XML",
    "shareloc_RPC_PHR1B_P_201709281038393_SEN_PRG_FC_178609-001.XML",
]
# GDAL's RPC transformer puts integer pixel coordinates on pixel corners; RPCModel on pixel centres.
GDAL_HALF_PIXEL = 0.5


def _ground_samples(m: RPCModel, n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground points seen by the image: random pixels of the model's image at random heights, localized."""
    rng = np.random.default_rng(seed)
    row = m.line_off + m.line_scale * rng.uniform(-0.9, 0.9, n)
    col = m.samp_off + m.samp_scale * rng.uniform(-0.9, 0.9, n)
    h = m.height_off + min(m.height_scale, 1000.0) * rng.uniform(-0.5, 0.5, n)
    lon, lat = m.localize(row, col, h)
    assert np.all(np.isfinite(lon))
    return lon, lat, h


def _gdal_project(m: RPCModel, lon, lat, h) -> tuple[np.ndarray, np.ndarray]:
    with RPCTransformer(m.to_rasterio()) as t:
        rows, cols = t.rowcol(lon, lat, h, op=lambda v: v)
    return np.asarray(rows, float) - GDAL_HALF_PIXEL, np.asarray(cols, float) - GDAL_HALF_PIXEL


def _gdal_localize(m: RPCModel, row, col, h) -> tuple[np.ndarray, np.ndarray]:
    with RPCTransformer(m.to_rasterio(), RPC_PIXEL_ERROR_THRESHOLD=1e-6) as t:
        xs, ys = t.xy(row, col, h, offset="center")
    return np.asarray(xs, float), np.asarray(ys, float)


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_reader_and_projection_match_gdal(name: str) -> None:
    m = read_rpc_file(shared_file("rpc_samples", name))
    assert m.line_scale > 0 and m.samp_scale > 0 and abs(m.line_den_coeff[0]) > 0
    lon, lat, h = _ground_samples(m)
    row, col = m.project(lon, lat, h)
    grow, gcol = _gdal_project(m, lon, lat, h)
    assert np.max(np.abs(row - grow)) < 0.01
    assert np.max(np.abs(col - gcol)) < 0.01
    # the ground points lie within the model's validity box: the reader got the normalisation right
    assert np.all(np.abs(lat - m.lat_off) <= 1.2 * abs(m.lat_scale))
    assert np.all(np.abs(lon - m.long_off) <= 1.2 * abs(m.long_scale))


@pytest.mark.parametrize(
    "name", ["shareloc_wv3_20.NTF", "shareloc_PHR1B_P_201709281038393_SEN_PRG_FC_178609-001.tif"]
)
def test_embedded_rpc_tags(name: str) -> None:
    m = read_rpc(shared_file("rpc_samples", name))
    lon, lat, h = _ground_samples(m, seed=3)
    row, col = m.project(lon, lat, h)
    grow, gcol = _gdal_project(m, lon, lat, h)
    assert np.max(np.abs(row - grow)) < 0.01 and np.max(np.abs(col - gcol)) < 0.01


def test_three_formats_of_one_model_agree() -> None:
    """The same Pléiades model as GeoTIFF tags, OSSIM .geom and DIMAP XML (1-based offsets converted)."""
    stem = "PHR1B_P_201709281038393_SEN_PRG_FC_178609-001"
    tif = read_rpc(shared_file("rpc_samples", f"shareloc_{stem}.tif"))
    geom = read_rpc_file(shared_file("rpc_samples", f"shareloc_{stem}.geom"))
    xml = read_rpc_file(shared_file("rpc_samples", f"shareloc_RPC_{stem}.XML"))
    lon, lat, h = _ground_samples(geom, seed=5)
    r0, c0 = tif.project(lon, lat, h)
    for other in (geom, xml):
        r, c = other.project(lon, lat, h)
        assert np.max(np.abs(r - r0)) < 1e-3 and np.max(np.abs(c - c0)) < 1e-3


def test_ventoux_dimap_is_one_based() -> None:
    d = "cnes_pleiades_ventoux_pair"
    geom = read_rpc_file(shared_file(d, "left_image.geom"))
    xml = read_rpc_file(shared_file(d, "RPC_PHR1B_P_201308051042194_SEN_690908101-001.XML"))
    assert xml.samp_off == pytest.approx(geom.samp_off) and xml.line_off == pytest.approx(geom.line_off)


@pytest.mark.parametrize(
    "pair,images",
    [
        ("cnes_pleiades_ventoux_pair", ("left_image", "right_image")),
        ("cnes_pleiades_gizeh_pair", ("img1", "img2")),
    ],
)
def test_cnes_crop_convention_and_localize_match_gdal(pair: str, images: tuple[str, str]) -> None:
    for stem in images:
        image = shared_file(pair, f"{stem}.tif")
        full = read_rpc_file(shared_file(pair, f"{stem}.geom"))
        crop = read_rpc(image, shared_file(pair, f"{stem}.geom"))
        row0, col0 = crop_origin(image)
        assert (row0, col0) != (0.0, 0.0)
        assert crop.line_off == pytest.approx(full.line_off - row0)
        assert crop.samp_off == pytest.approx(full.samp_off - col0)
        rng = np.random.default_rng(2)
        r = rng.uniform(0, 500, 400)
        c = rng.uniform(0, 500, 400)
        h = rng.uniform(0, 800, 400)
        lon, lat = crop.localize(r, c, h)
        # GDAL localisation of the full-scene pixel = crop pixel + origin gives the same ground point
        glon, glat = _gdal_localize(full, r + row0, c + col0, h)
        rb, cb = crop.project(glon, glat, h)
        assert np.max(np.abs(rb - r)) < 0.01 and np.max(np.abs(cb - c)) < 0.01
        assert np.max(np.abs(lon - glon)) * 1e5 < 0.01  # < ~1 mm
        grow, gcol = _gdal_project(full, lon, lat, h)
        assert np.max(np.abs(grow - row0 - r)) < 0.01 and np.max(np.abs(gcol - col0 - c)) < 0.01


def test_reunion_tags_localize_match_gdal() -> None:
    m = read_rpc(shared_file("s2p_pleiades_pair_reunion", "img_02.tif"))
    rng = np.random.default_rng(4)
    r, c, h = rng.uniform(0, 1100, 500), rng.uniform(0, 1030, 500), rng.uniform(2000, 2600, 500)
    glon, glat = _gdal_localize(m, r, c, h)
    rb, cb = m.project(glon, glat, h)
    assert np.max(np.abs(rb - r)) < 0.01 and np.max(np.abs(cb - c)) < 0.01


def test_numba_kernels_match_numpy_reference() -> None:
    m = read_rpc_file(shared_file("rpc_samples", "rpcm_rpc_WV3.xml"))
    lon, lat, h = _ground_samples(m, n=1000, seed=7)
    r, c = m.project(lon, lat, h)
    rr, cr = m.project_reference(lon, lat, h)
    np.testing.assert_allclose(r, rr, atol=1e-8)
    np.testing.assert_allclose(c, cr, atol=1e-8)
    lo, la = m.localize(r, c, h)
    lor, lar = m.localize_reference(r, c, h)
    np.testing.assert_allclose(lo, lor, atol=1e-9)
    np.testing.assert_allclose(la, lar, atol=1e-9)
    np.testing.assert_allclose(lo, lon, atol=1e-9)


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_small_point_sets_in_numpy_equal_the_kernels_to_the_bit(name: str) -> None:
    """project / localize run point sets up to NUMPY_MAX_POINTS in NumPy: the same bits as the numba kernels,
    non-converging and NaN points included, so the path taken never changes a product."""
    from sat2lod.rpc import _localize_numpy, _project_numpy
    from sat2lod.rpc.kernels import localize_points, project_points

    m = read_rpc_file(shared_file("rpc_samples", name))
    lon, lat, h = _ground_samples(m, n=500, seed=3)
    norm, coef = m._packed()
    rng = np.random.default_rng(5)
    # in the image, far outside it (Newton may not converge), at heights far off, and NaN
    row = m.line_off + m.line_scale * np.concatenate(
        [rng.uniform(-1, 1, 400), rng.uniform(-40, 40, 90), [np.nan] * 10]
    )
    col = m.samp_off + m.samp_scale * np.concatenate(
        [rng.uniform(-1, 1, 400), rng.uniform(-40, 40, 90), [0.0] * 10]
    )
    hh = m.height_off + m.height_scale * np.concatenate([rng.uniform(-1, 1, 450), rng.uniform(-30, 30, 50)])
    lon[:5] = np.nan
    for numba_out, numpy_out in (
        (project_points(lon, lat, h, norm, coef), _project_numpy(lon, lat, h, norm, coef)),
        (
            localize_points(row, col, hh, norm, coef, 30, 1e-8),
            _localize_numpy(row, col, hh, norm, coef, 30, 1e-8),
        ),
        (
            localize_points(row, col, hh, norm, coef, 3, 1e-8),
            _localize_numpy(row, col, hh, norm, coef, 3, 1e-8),
        ),
    ):
        for a, b in zip(numba_out, numpy_out, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a.view(np.int64), b.view(np.int64))


def test_project_and_localize_take_numpy_for_small_point_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to NUMPY_MAX_POINTS points, no numba kernel is called; above, the kernels are."""
    from sat2lod import rpc
    from sat2lod.rpc import kernels

    m = read_rpc_file(shared_file("rpc_samples", "rpcm_rpc_WV3.xml"))
    calls: list[str] = []
    for name in ("project_points", "localize_points"):
        real = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *a, _real=real, _n=name: calls.append(_n) or _real(*a))
    for n in (1, rpc.NUMPY_MAX_POINTS):
        r, c = m.project(np.full(n, m.long_off), np.full(n, m.lat_off), m.height_off)
        m.localize(r, c, m.height_off)
    assert calls == []
    n = rpc.NUMPY_MAX_POINTS + 1
    r, c = m.project(np.full(n, m.long_off), np.full(n, m.lat_off), m.height_off)
    m.localize(r, c, m.height_off)
    assert calls == ["project_points", "localize_points"]


def test_shapes_are_broadcast() -> None:
    m = read_rpc_file(shared_file("rpc_samples", "rpcm_rpc_IKONOS.txt"))
    r, c = m.project(np.full((3, 4), m.long_off), np.full((3, 4), m.lat_off), 0.0)
    assert r.shape == (3, 4) and c.shape == (3, 4)
    lon, _lat = m.localize(r, c, np.zeros((3, 4)))
    assert lon.shape == (3, 4)


def test_fit_rpc_roundtrip_still_works() -> None:
    m = read_rpc_file(shared_file("rpc_samples", "rpcm_rpc_PLEIADES.xml"))
    lon, lat, h = _ground_samples(m, n=2000, seed=9)
    r, c = m.project(lon, lat, h)
    fit = fit_rpc(lon, lat, h, r, c)
    r2, c2 = fit.project(lon, lat, h)
    assert np.max(np.abs(r2 - r)) < 0.05 and np.max(np.abs(c2 - c)) < 0.05


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(RPCReadError, match="not found"):
        read_rpc_file(tmp_path / "missing.geom")
    bad = tmp_path / "model.xyz"
    bad.write_text("x")
    with pytest.raises(RPCReadError, match="unknown RPC file type"):
        read_rpc_file(bad)
    partial = tmp_path / "cut_RPC.TXT"
    partial.write_text("LINE_OFF: 1\nSAMP_OFF: 2\n")
    with pytest.raises(RPCReadError, match="incomplete RPC model.*lat_off"):
        read_rpc_file(partial)
    notxml = tmp_path / "RPC_x.XML"
    notxml.write_text("<a><b></a>")
    with pytest.raises(RPCReadError, match="not a valid XML"):
        read_rpc_file(notxml)
