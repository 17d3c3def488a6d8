"""LOD1 / LOD2 per tile (sat2lod.lod.tiled_city): the merged city models are the untiled ones (run_lod1,
run_lod2), every building once, whole, whatever the tile grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from scipy import ndimage

from sat2lod.grid import grid_for_bounds
from sat2lod.io.cityjson import validate_cityjson
from sat2lod.io.raster import write_raster
from sat2lod.io.vector import read_vector, write_vector
from sat2lod.lod.pipeline import run_lod0, run_lod1, run_lod2
from sat2lod.lod.tiled import read_ownership
from sat2lod.lod.tiled_city import lod1_tile, lod2_noise_tile, lod2_scene, lod2_tile, merge_city
from sat2lod.synth.layout import make_layout
from sat2lod.synth.scene import rasterize_layout
from tile_grids import write_tiles

X0, Y0, SIZE, EPSG = 374000.0, 4828000.0, 150.0, 32631
DATUM = {"VERTICAL_DATUM": "WGS84 ellipsoid"}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 150 m city (~15 buildings), a blurred noisy DSM (the edge ramp and noise are estimated), the untiled
    LOD0 footprints and LOD1 / LOD2 models."""
    d = tmp_path_factory.mktemp("lod_city_tiled")
    layout = make_layout(np.random.default_rng(3), (X0, Y0, X0 + SIZE, Y0 + SIZE), 16, with_water=False)
    tr, shape = grid_for_bounds((X0, Y0, X0 + SIZE, Y0 + SIZE), 0.5)
    t = rasterize_layout(layout, tr, shape)
    dsm = ndimage.gaussian_filter(t["dsm"], 1.0) + np.random.default_rng(0).normal(0, 0.1, shape)
    dsm, dtm = dsm.astype(np.float32), t["dtm"].astype(np.float32)
    ortho = (100 + 3 * (dsm - dtm)).astype(np.float32)
    for name, arr in (("dsm", dsm), ("dtm", dtm), ("ndsm", dsm - dtm), ("ortho", ortho)):
        write_raster(d / f"{name}.tif", arr, tr, EPSG, nodata=float("nan"), tags=DATUM)
    write_raster(d / "mask.tif", (t["classes"] == 1).astype(np.uint8), tr, EPSG, nodata=255)
    fp = run_lod0(d / "mask.tif", d / "ndsm.tif", d / "fp.gpkg")
    assert len(fp) >= 10
    run_lod1(
        d / "fp.gpkg", d / "dtm.tif", d / "ndsm.tif", d / "l1.json", title="T1", cityjsonseq=d / "l1.jsonl"
    )
    run_lod2(
        d / "fp.gpkg",
        d / "dsm.tif",
        d / "dtm.tif",
        d / "l2.json",
        d / "l2.obj",
        ortho=d / "ortho.tif",
        title="T2",
        cityjsonseq=d / "l2.jsonl",
    )
    return d


def _tiles(d, tile_m: float, drop: tuple[int, ...] = ()):
    return write_tiles(d, (X0, Y0, X0 + SIZE, Y0 + SIZE), EPSG, tile_m, drop)


def _coords(doc: dict) -> dict[str, list]:
    """Per building its boundaries as vertex coordinates (integer mm), so that documents whose vertices are
    numbered differently compare."""
    v = doc["vertices"]

    def res(x):
        return [res(i) for i in x] if isinstance(x, list) else tuple(v[x])

    return {k: res(o["geometry"][0]["boundaries"]) for k, o in doc["CityObjects"].items()}


def _same_city(got: dict, ref: dict) -> None:
    assert validate_cityjson(got) == []
    assert list(got["CityObjects"]) == list(ref["CityObjects"])  # same buildings, ids, order
    assert got["metadata"] == ref["metadata"] and got["transform"] == ref["transform"]
    for k, o in ref["CityObjects"].items():
        g = got["CityObjects"][k]
        assert g["attributes"].keys() == o["attributes"].keys()
        for a, val in o["attributes"].items():
            if isinstance(val, float):
                assert g["attributes"][a] == pytest.approx(val, abs=1e-3), (k, a)
            else:
                assert g["attributes"][a] == val, (k, a)
    gc, rc = _coords(got), _coords(ref)
    for k in rc:  # vertices within 1 mm (a pixel centre from a window's transform may differ in its last bit)
        a, b = np.array(_flat(gc[k])), np.array(_flat(rc[k]))
        assert a.shape == b.shape and np.abs(a - b).max() <= 1, k


def _flat(x) -> list:
    return [t for i in x for t in _flat(i)] if isinstance(x, list) else [x]


@pytest.mark.parametrize(("tile_m", "drop"), [(50.0, ()), (80.0, (0,))])
def test_tiled_lod1_is_the_untiled_one(scene, tile_m, drop):
    d = scene
    tiles, ids = _tiles(d, tile_m, drop)
    parts = []
    for t in ids:
        parts.append(d / f"l1_{tile_m:.0f}_{t}.jsonl")
        lod1_tile(d / "fp.gpkg", d / "dtm.tif", d / "ndsm.tif", tiles, t, parts[-1])
    n = merge_city(parts, d / "m1.json", d / "m1.jsonl", title="T1")
    ref = json.loads((d / "l1.json").read_text())
    assert n == len(ref["CityObjects"]) > 0
    got = json.loads((d / "m1.json").read_text())
    _same_city(got, ref)
    seq = (d / "m1.jsonl").read_text().splitlines()
    assert len(seq) == n + 1 and json.loads(seq[0])["metadata"] == ref["metadata"]
    # on a grid of exact binary steps (0.5 m) the files are the untiled ones byte for byte
    assert (d / "m1.json").read_bytes() == (d / "l1.json").read_bytes()
    assert (d / "m1.jsonl").read_bytes() == (d / "l1.jsonl").read_bytes()


def test_tiled_lod2_is_the_untiled_one(scene):
    d = scene
    tiles, ids = _tiles(d, 50.0)
    # the case the neighbours' window is for: a wall shared by footprints of two tiles
    fp = read_vector(d / "fp.gpkg")
    own = read_ownership(tiles)
    owner = [own.owner(p.x, p.y) for p in fp.geometry.representative_point()]
    tree = shapely.STRtree(list(fp.geometry))
    assert any(
        owner[i] != owner[int(j)] for i, g in enumerate(fp.geometry) for j in tree.query(g, "dwithin", 0.5)
    )
    noise = []
    for t in ids:
        noise.append(d / f"n_{t}.json")
        lod2_noise_tile(d / "fp.gpkg", d / "dsm.tif", tiles, t, noise[-1])
    prm = lod2_scene(
        noise, d / "fp.gpkg", d / "dsm.tif", d / "dtm.tif", d / "scene.json", ortho=d / "ortho.tif"
    )
    assert prm.noise_m is not None and len(prm.edge_ramp) > 0
    parts = []
    for t in ids:
        parts.append(d / f"l2_{t}.jsonl")
        lod2_tile(
            d / "fp.gpkg",
            d / "dsm.tif",
            d / "dtm.tif",
            tiles,
            t,
            d / "scene.json",
            parts[-1],
            ortho=d / "ortho.tif",
        )
    merge_city(parts, d / "m2.json", d / "m2.jsonl", d / "m2.obj", title="T2")
    ref = json.loads((d / "l2.json").read_text())
    _same_city(json.loads((d / "m2.json").read_text()), ref)
    # on a grid of exact binary steps (0.5 m) the files are the untiled ones byte for byte
    for a, b in (("l2.json", "m2.json"), ("l2.jsonl", "m2.jsonl"), ("l2.obj", "m2.obj")):
        assert (d / a).read_bytes() == (d / b).read_bytes(), a


def test_merge_refuses_tiles_of_another_grid(scene, tmp_path):
    d = scene
    tiles, ids = _tiles(d, 80.0)
    lod1_tile(d / "fp.gpkg", d / "dtm.tif", d / "ndsm.tif", tiles, ids[0], tmp_path / "a.jsonl")
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    head = json.loads(lines[0])
    head["transform"]["translate"][0] += 1.0
    (tmp_path / "b.jsonl").write_text("\n".join([json.dumps(head), *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match="b.jsonl: its transform differs"):
        merge_city([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], tmp_path / "c.json", title="x")
    assert not (tmp_path / "c.json").exists()


def test_a_city_of_no_building_merges_as_the_untiled_one(scene, tmp_path):
    d = scene
    fp = read_vector(d / "fp.gpkg")
    write_vector(tmp_path / "none.gpkg", fp.iloc[:0], layer="footprints")
    run_lod1(tmp_path / "none.gpkg", d / "dtm.tif", d / "ndsm.tif", tmp_path / "ref.json", title="T1")
    tiles, ids = _tiles(d, 80.0)
    parts = [tmp_path / f"{t}.jsonl" for t in ids]
    for t, p in zip(ids, parts):
        assert lod1_tile(tmp_path / "none.gpkg", d / "dtm.tif", d / "ndsm.tif", tiles, t, p) == 0
    assert merge_city(parts, tmp_path / "m.json", title="T1") == 0
    got = json.loads((tmp_path / "m.json").read_text())
    assert validate_cityjson(got) == [] and "geographicalExtent" not in got["metadata"]
    assert (tmp_path / "m.json").read_bytes() == (tmp_path / "ref.json").read_bytes()
