"""The one scene-sheet reader (sat2lod.io.scene_sheet): key checks, and view paths relative to the sheet's
folder work alike in tiling, stereo and ortho (a sheet written by hand beside its images)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

import sat2lod
from acquire_fakes import affine_camera_rpc, write_fake_view
from sat2lod.acquire.geometry import utm_epsg
from sat2lod.io.raster import write_raster
from sat2lod.io.scene_sheet import SceneSheetError, read_scene_sheet
from sat2lod.ortho import ortho_from_files
from sat2lod.stereo.pipeline import stereo_tile
from sat2lod.tiling import make_tiles

LON0, LAT0 = 2.35, 48.85


def _relative_sheet(folder: Path) -> tuple[Path, dict]:
    """A pair of fake views (100 m squares around (LON0, LAT0)) and a sheet naming them relative to itself."""
    folder.mkdir(parents=True)
    epsg = utm_epsg(LON0, LAT0)
    views = []
    for i, az in enumerate((0.0, 180.0)):
        rpc = affine_camera_rpc(LON0, LAT0, 200, 0.5, 10.0, az, (0.0, 50.0))
        write_fake_view(folder / "images" / f"v{i}.tif", rpc, 200, seed=i)
        views.append({"id": f"view{i}", "image": f"images/v{i}.tif", "rpc": None})
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(LON0, LAT0)
    x, y = round(x / 0.5) * 0.5, round(y / 0.5) * 0.5
    sheet = {
        "aoi": "t",
        "epsg": epsg,
        "aoi_bounds": [x - 20, y - 20, x + 20, y + 20],
        "height_range": [0.0, 50.0],
        "views": views,
        "pairs": [[0, 1]],
    }
    (folder / "scenes.json").write_text(json.dumps(sheet))
    return folder / "scenes.json", sheet


def test_relative_paths_work_in_tiling_stereo_and_ortho(tmp_path, monkeypatch):
    scenes, sheet = _relative_sheet(tmp_path / "sheet")
    monkeypatch.chdir(tmp_path)  # the working directory is not the sheet's folder
    assert not Path("images/v0.tif").exists()
    fc = make_tiles(
        scenes=scenes, tiles=tmp_path / "tiles.geojson", tile_size_m=40.0, margin_m=2.0, resolution_m=0.5
    )
    tile = fc["features"][0]["properties"]["tile"]
    stereo_tile(
        scenes=scenes,
        tiles=tmp_path / "tiles.geojson",
        tile=tile,
        dsm=tmp_path / "dsm.tif",
        quality=tmp_path / "quality.tif",
        resolution_m=0.5,
        pointing_correction=False,
        keypoint_range=False,
    )
    assert (tmp_path / "dsm.tif").is_file()
    x0, y1 = sheet["aoi_bounds"][0], sheet["aoi_bounds"][3]
    write_raster(
        tmp_path / "flat.tif",
        np.full((80, 80), 25.0, np.float32),
        from_origin(x0, y1, 0.5, 0.5),
        sheet["epsg"],
        nodata=float("nan"),
        tags={"VERTICAL_DATUM": sat2lod.ELLIPSOID_DATUM},
    )
    ortho_from_files(tmp_path / "flat.tif", scenes, tmp_path / "ortho.tif")
    with rasterio.open(tmp_path / "ortho.tif") as ds:
        assert np.isfinite(ds.read(1)).mean() > 0.9


def test_reader_resolves_and_checks(tmp_path, monkeypatch):
    scenes, _ = _relative_sheet(tmp_path / "sheet")
    monkeypatch.chdir(tmp_path)
    got = read_scene_sheet(scenes, require=("epsg", "height_range"), min_views=2)
    assert [v["image"] for v in got["views"]] == [
        str(tmp_path / "sheet" / f"images/v{i}.tif") for i in (0, 1)
    ]
    assert got["views"][0]["rpc"] is None
    # a path that exists relative to the working directory (what rule acquire writes) stays as written
    monkeypatch.chdir(tmp_path / "sheet")
    assert read_scene_sheet(scenes)["views"][0]["image"] == "images/v0.tif"
    bad = tmp_path / "bad.json"
    for content, match in [
        ({"views": [{"image": "a.tif"}]}, "lacks epsg"),
        ({"views": [{"image": "a.tif"}], "epsg": 1, "height_range": [0, 1]}, "2 views needed"),
        (
            {"views": [{"id": "x"}, {"image": "a.tif"}], "epsg": 1, "height_range": [0, 1]},
            "view 0 has no 'image'",
        ),
    ]:
        bad.write_text(json.dumps(content))
        with pytest.raises(SceneSheetError, match=match):
            read_scene_sheet(bad, require=("epsg", "height_range"), min_views=2)
    bad.write_text("{not json")
    with pytest.raises(SceneSheetError, match="invalid JSON"):
        read_scene_sheet(bad)
    with pytest.raises(SceneSheetError, match="not found"):
        read_scene_sheet(tmp_path / "none.json")
