"""NDVI vegetation gate of the segmentation (issue 15: street trees are not buildings)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rasterio.transform import from_origin

from sat2lod.io.raster import read_raster, write_raster
from sat2lod.segment.predict import segment_from_files
from sat2lod.segment.vegetation import ndvi, ortho_ndvi, vegetation_gate


def test_ndvi_and_gate() -> None:
    red = np.array([[100.0, 100.0, 0.0]], np.float32)
    nir = np.array([[300.0, 100.0, 0.0]], np.float32)
    v = ndvi(red, nir)
    assert np.isclose(v[0, 0], 0.5) and v[0, 1] == 0 and np.isnan(v[0, 2])
    g = vegetation_gate(v, 0.3)
    assert g[0, 0] < 0.01 and g[0, 1] > 0.99 and g[0, 2] == 1.0


def test_ortho_ndvi_needs_ms_bands() -> None:
    pan = np.ones((1, 8, 8), np.float32)
    assert ortho_ndvi(pan[0], (1, 4)) is None and ortho_ndvi(pan, (1, 4)) is None
    five = np.ones((5, 8, 8), np.float32)
    five[4] = 3.0  # NIR (MS band 4) three times the red (MS band 1)
    assert np.allclose(ortho_ndvi(five, (1, 4)), 0.5)
    assert ortho_ndvi(five, (1, 5)) is None  # no 5th MS band


def _scene(tmp_path: Path, with_ms: bool) -> tuple[Path, Path]:
    """A 10 m high flat roof (grey: NDVI 0.1) and a 10 m high tree crown (NDVI 0.5) on a 0.5 m grid."""
    h = w = 120
    ndsm = np.zeros((h, w), np.float32)
    ndsm[20:60, 20:60] = 10.0  # roof
    ndsm[70:110, 70:110] = 10.0  # crown, as flat as the roof: only the spectrum tells them apart
    pan = np.full((h, w), 500.0, np.float32)
    red = np.full((h, w), 450.0, np.float32)
    nir = red * 1.2  # NDVI 0.09: roads, roofs
    nir[70:110, 70:110] = red[70:110, 70:110] * 3.0  # NDVI 0.5: leaves
    bands = [pan] + ([red, red * 0.9, red * 0.8, nir] if with_ms else [])
    tr = from_origin(500000.0, 4800000.0, 0.5, 0.5)
    write_raster(tmp_path / "ortho.tif", np.stack(bands), tr, 32631, nodata=float("nan"))
    write_raster(tmp_path / "ndsm.tif", ndsm, tr, 32631, nodata=float("nan"))
    return tmp_path / "ortho.tif", tmp_path / "ndsm.tif"


def test_segment_removes_vegetation_with_ms(tmp_path: Path) -> None:
    for with_ms in (False, True):
        d = tmp_path / str(with_ms)
        d.mkdir()
        ortho, ndsm = _scene(d, with_ms)
        segment_from_files(ortho, ndsm, d / "prob.tif", d / "mask.tif", method="ndsm_threshold")
        m = read_raster(d / "mask.tif").array
        assert m[40, 40] == 1  # the roof is a building either way
        # without MS bands the flat crown is taken for a roof; with them, NDVI rejects it
        assert m[90, 90] == (0 if with_ms else 1)
        tags = read_raster(d / "mask.tif").tags
        assert ("MAX_NDVI" in tags) == with_ms
