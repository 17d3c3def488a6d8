"""LOD0 per tile (sat2lod.lod.tiled): the merged per-tile footprints are the untiled ones, every building
once, whole, whatever the tile grid and halo."""

from __future__ import annotations

import numpy as np
import pytest

from sat2lod.grid import grid_for_bounds
from sat2lod.io.jsonio import write_json
from sat2lod.io.raster import write_raster
from sat2lod.io.vector import read_vector
from sat2lod.lod.pipeline import run_lod0
from sat2lod.lod.tiled import lod0_tile, merge_lod0, read_ownership
from sat2lod.synth.layout import make_layout
from sat2lod.synth.scene import rasterize_layout
from tile_grids import write_tiles

X0, Y0, SIZE, EPSG = 374000.0, 4828000.0, 260.0, 32631


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("lod_tiled")
    layout = make_layout(np.random.default_rng(11), (X0, Y0, X0 + SIZE, Y0 + SIZE), 45)
    tr, shape = grid_for_bounds((X0, Y0, X0 + SIZE, Y0 + SIZE), 0.5)
    t = rasterize_layout(layout, tr, shape)
    ndsm = (t["dsm"] - t["dtm"]).astype(np.float32)
    mask = (t["classes"] == 1).astype(np.uint8)
    mask[:3, :] = 255  # a nodata strip
    ortho = (100 + 5 * ndsm + np.random.default_rng(0).normal(0, 2, ndsm.shape)).astype(np.float32)
    write_raster(d / "mask.tif", mask, tr, EPSG, nodata=255)
    write_raster(
        d / "ndsm.tif", ndsm, tr, EPSG, nodata=float("nan"), tags={"VERTICAL_DATUM": "height above DTM"}
    )
    write_raster(d / "ortho.tif", ortho, tr, EPSG, nodata=float("nan"))
    ref = run_lod0(d / "mask.tif", d / "ndsm.tif", d / "ref.gpkg", ortho=d / "ortho.tif")
    assert len(ref) >= 20
    return d, ref


def _tiles(d, tile_m: float, drop: tuple[int, ...] = ()):
    return write_tiles(d, (X0, Y0, X0 + SIZE, Y0 + SIZE), EPSG, tile_m, drop)


def _tiled(d, tiles, ids, tag: str, halo: float | None = None):
    lod = {} if halo is None else {"tile_halo_m": halo}
    parts = []
    for t in ids:
        out = d / f"{tag}_{t}.gpkg"
        lod0_tile(d / "mask.tif", d / "ndsm.tif", tiles, t, out, ortho=d / "ortho.tif", lod=lod)
        parts.append(out)
    return merge_lod0(parts, d / f"{tag}.gpkg", d / f"{tag}.fgb")


def _same(a, b) -> None:
    assert len(a) == len(b)
    assert list(a.columns) == list(b.columns)
    for col in ("id", "block", "area_m2", "n_vertices", "traced_area_m2", "ndsm_median_m"):
        np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy(), err_msg=col)
    for ga, gb in zip(a.geometry, b.geometry):
        assert ga.equals_exact(gb, 1e-6)


@pytest.mark.parametrize(("tile_m", "halo"), [(90.0, 25.0), (130.0, None)])
def test_tiled_footprints_are_the_untiled_ones(scene, tile_m, halo):
    d, ref = scene
    tiles, ids = _tiles(d, tile_m)
    got = _tiled(d, tiles, ids, f"t{tile_m:.0f}", halo)
    _same(got, ref)
    _same(read_vector(d / f"t{tile_m:.0f}.gpkg"), read_vector(d / "ref.gpkg"))


def test_a_small_halo_grows_until_groups_fit(scene, caplog):
    d, ref = scene
    tiles, ids = _tiles(d, 130.0)
    with caplog.at_level("INFO", logger="sat2lod.lod.tiled"):
        got = _tiled(d, tiles, ids, "halo2", halo=2.0)
    assert "doubling" in caplog.text
    _same(got, ref)


def test_buildings_outside_every_kept_core_go_to_the_nearest_tile(scene):
    d, ref = scene
    tiles, ids = _tiles(d, 130.0, drop=(0,))  # the north-west tile is not kept
    got = _tiled(d, tiles, ids, "drop", 30.0)
    _same(got, ref)


def test_ownership_of_cells_not_kept(scene):
    d, _ = scene
    tiles, _ids = _tiles(d, 130.0, drop=(0, 3))  # 2 x 2 grid: north-west and south-east not kept
    own = read_ownership(tiles)
    # the south-east cell is as near to both kept tiles: the first in row-major order takes it
    assert own.cells.tolist() == [["t0000_0001", "t0000_0001"], ["t0001_0000", "t0000_0001"]]
    assert own.owner(X0 + 1, Y0 + SIZE - 1) == "t0000_0001"  # in the north-west cell: nearest kept, first
    assert own.owner(X0 - 50, Y0 - 50) == "t0001_0000"  # beyond the grid: the nearest edge cell's owner
    inf = float("inf")
    assert own.region("t0001_0000") == (-inf, -inf, X0 + 130.0, Y0 + SIZE - 130.0)


def test_bad_grid(tmp_path):
    write_json(tmp_path / "bad.geojson", {"features": [{"properties": {}}]})
    with pytest.raises(RuntimeError, match="bad.geojson"):
        read_ownership(tmp_path / "bad.geojson")


def test_empty_tiles_merge_to_an_empty_layer(tmp_path):
    empty = np.zeros((20, 20), np.uint8)
    tr, _ = grid_for_bounds((X0, Y0, X0 + 10, Y0 + 10), 0.5)
    write_raster(tmp_path / "m.tif", empty, tr, EPSG, nodata=255)
    write_raster(tmp_path / "n.tif", empty.astype(np.float32), tr, EPSG, nodata=float("nan"))
    tiles, ids = write_tiles(tmp_path, (X0, Y0, X0 + 10, Y0 + 10), EPSG, 10.0, margin_m=0.0)
    lod0_tile(tmp_path / "m.tif", tmp_path / "n.tif", tiles, ids[0], tmp_path / "x.gpkg")
    got = merge_lod0([tmp_path / "x.gpkg"], tmp_path / "all.gpkg")
    assert len(got) == 0 and read_vector(tmp_path / "all.gpkg").crs is not None
