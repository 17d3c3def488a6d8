"""Acquisition: STAC publishing on 127.0.0.1, EODAG search + download, verification, selection, scene sheet."""

from __future__ import annotations

import json
import shutil
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from pyproj import Transformer
from rasterio.transform import Affine
from shapely.geometry import box

from acquire_fakes import (
    LAT0,
    LON0,
    PROVIDERS,
    SELECTION,
    TIMES,
    affine_camera_rpc,
    fake_triplet,
    write_fake_view,
    write_rpc_txt,
)
from sat2lod.acquire.catalog import SceneToPublish, StacServer, publish_catalog
from sat2lod.acquire.eodag_client import (
    EODAG_VERSION,
    AcquisitionError,
    check_asset_href,
    check_eodag_version,
    download_assets,
    load_provider_config,
    make_gateway,
    pick_asset,
    safe_name,
    search,
)
from sat2lod.acquire.files import sha256_file
from sat2lod.acquire.geometry import footprint_lonlat, utm_epsg
from sat2lod.acquire.pipeline import LOCAL_PROVIDER, SYNTHETIC_COLLECTION, acquire, fetch_stereo_set
from sat2lod.acquire.selection import SelectionError, ViewInfo, group_passes, select_stereo
from sat2lod.acquire.verify import VerificationError, parse_multihash, sha256_multihash, verify_image
from sat2lod.io.raster import write_raster
from sat2lod.io.rpc_files import read_rpc
from sat2lod.tiling import make_tiles

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def synth_scene(tmp_path: Path) -> Path:
    """A fake ``results/synth/{aoi}`` folder: three RPC views + scene.json in the generator's format."""
    d = tmp_path / "synth"
    d.mkdir()
    views = fake_triplet(d, LON0, LAT0)
    half = 40.0  # m: a 80 m scene around (LON0, LAT0), well inside every 100 m view
    epsg = utm_epsg(LON0, LAT0)
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(LON0, LAT0)
    to_ll = Transformer.from_crs(epsg, 4326, always_xy=True)
    lo = to_ll.transform(x - half, y - half)
    hi = to_ll.transform(x + half, y + half)
    scene = {
        "epsg": epsg,
        "bounds": [x - half, y - half, x + half, y + half],
        "lonlat_bounds": [lo[0], lo[1], hi[0], hi[1]],
        "height_range": [0.0, 100.0],
        "seed": 7,
        "views": [dict(v, datetime=t) for v, t in zip(views, TIMES)],
    }
    (d / "scene.json").write_text(json.dumps(scene))
    return d / "scene.json"


def _scenes(d: Path, times: list[str], platform: str = "sat2lod-synthetic") -> list[SceneToPublish]:
    out = []
    for i, v in enumerate(fake_triplet(d, LON0, LAT0)):
        img = d / v["file"]
        rpc = read_rpc(img)
        out.append(
            SceneToPublish(
                item_id=f"demo-view{i}",
                image=img,
                footprint=footprint_lonlat(rpc, 200, 200, 50.0),
                datetime=times[i],
                properties={
                    "view:incidence_angle": v["incidence_deg"],
                    "view:azimuth": v["azimuth_deg"],
                    "platform": platform,
                    "sat:relative_orbit": 1,
                },
            )
        )
    return out


def _gateway(tmp_path: Path, url: str):
    conf = load_provider_config(PROVIDERS.read_text(), LOCAL_PROVIDER, str(PROVIDERS))
    return make_gateway(
        LOCAL_PROVIDER,
        tmp_path / "eodag",
        provider_conf=conf,
        endpoint=f"{url}/{{_collection}}/collection.json",
        isolated=True,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _files_under(d: Path) -> set[Path]:
    return {p for p in d.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------------------- end to end
def test_synthetic_search_download_through_local_stac_server(synth_scene: Path, tmp_path: Path) -> None:
    out = tmp_path / "results" / "acquire" / "demo"
    sheet = acquire(
        kind="synthetic",
        aoi="demo",
        sheet=out / "scenes.json",
        downloads=out / "downloads",
        catalog_dir=out / "catalog",
        synthetic_scene=synth_scene,
        providers_file=PROVIDERS,
        selection=SELECTION,
        truth={
            "dsm": "t/dsm.tif",
            "dtm": "t/dtm.tif",
            "ndsm": "t/ndsm.tif",
            "classes": "t/classes.tif",
            "buildings": "t/buildings.gpkg",
        },
    )
    on_disk = json.loads((out / "scenes.json").read_text())
    assert on_disk == json.loads(json.dumps(sheet))
    scene = json.loads(synth_scene.read_text())
    assert sheet["epsg"] == 32631 == scene["epsg"]
    assert sheet["aoi_bounds"] == pytest.approx(scene["bounds"])
    assert sheet["aoi_lonlat"] == pytest.approx(scene["lonlat_bounds"])
    assert sheet["height_range"] == [0.0, 100.0]
    assert len(sheet["views"]) == 3
    # every view went through HTTP + EODAG: a new file under downloads/, byte-identical to the published one
    for i, v in enumerate(sheet["views"]):
        img = Path(v["image"])
        assert (out / "downloads").resolve() in img.resolve().parents
        assert sha256_file(img) == sha256_file(synth_scene.parent / f"view_{i}.tif") == v["sha256"]
        assert v["url"].startswith("http://127.0.0.1:")
        assert v["datetime"] == TIMES[i]
        assert read_rpc(img).height_off == pytest.approx(
            read_rpc(synth_scene.parent / f"view_{i}.tif").height_off
        )
    assert sorted(map(tuple, sheet["pairs"])) == [(0, 1), (0, 2), (1, 2)]
    assert sheet["base_to_height"]["0-2"] == pytest.approx(0.2126 + 0.1763, abs=1e-3)
    assert sheet["truth"]["dsm"] == "t/dsm.tif"
    # the published catalog is a static STAC catalog with checksums
    item = json.loads((out / "catalog" / SYNTHETIC_COLLECTION / "demo-view0" / "demo-view0.json").read_text())
    asset = item["assets"]["image"]
    assert asset["file:checksum"] == sha256_multihash(sha256_file(synth_scene.parent / "view_0.tif"))
    # the server was stopped
    with pytest.raises(requests.ConnectionError):
        requests.get(asset["href"], timeout=2)


def test_selection_from_search_results_keeps_one_pass(tmp_path: Path) -> None:
    """Two views from the pass plus one from another day: the pair of one pass is chosen, the stray one is not."""
    d = tmp_path / "pub"
    d.mkdir()
    scenes = _scenes(d, ["2024-05-01T10:30:00Z", "2024-05-01T10:30:40Z", "2024-05-03T10:31:20Z"])
    with StacServer() as srv:
        srv.routes.update(publish_catalog(tmp_path / "cat", srv.url, "vhr", scenes))
        gw = _gateway(tmp_path, srv.url)
        views, pairs, ratios = fetch_stereo_set(
            gw,
            "vhr",
            box(2.3499, 48.8499, 2.3501, 48.8501),
            "2024-04-01",
            "2024-06-01",
            tmp_path / "dl",
            SELECTION,
        )
    assert [v["product_id"] for v in views] == ["demo-view0", "demo-view1"]
    assert pairs == [[0, 1]]
    assert ratios["0-1"] == pytest.approx(0.2126 + 0.0524, abs=1e-3)
    assert {p.parent.name for p in _files_under(tmp_path / "dl") if p.suffix == ".tif"} == {
        "demo-view0",
        "demo-view1",
    }


# ------------------------------------------------------------------------------------------- failures
def test_empty_search_is_a_clear_error(synth_scene: Path, tmp_path: Path) -> None:
    out = tmp_path / "acq"
    with pytest.raises(
        AcquisitionError, match=r"no scene found in collection 'sat2lod-synthetic'.*aoi.bbox_lonlat"
    ):
        acquire(
            kind="synthetic",
            aoi="demo",
            sheet=out / "scenes.json",
            downloads=out / "downloads",
            catalog_dir=out / "catalog",
            synthetic_scene=synth_scene,
            providers_file=PROVIDERS,
            selection=SELECTION,
            bbox_lonlat=[10.0, 10.0, 10.1, 10.1],
        )
    assert not (out / "scenes.json").exists()


def test_date_range_filters_items(tmp_path: Path) -> None:
    """eodag 4.10 only filters dates when start/end_datetime are mapped: the provider file maps them."""
    d = tmp_path / "pub"
    d.mkdir()
    with StacServer() as srv:
        srv.routes.update(publish_catalog(tmp_path / "cat", srv.url, "vhr", _scenes(d, TIMES)))
        gw = _gateway(tmp_path, srv.url)
        assert len(search(gw, "vhr", (2.3, 48.8, 2.4, 48.9), "2024-04-01", "2024-06-01")) == 3
        with pytest.raises(AcquisitionError, match="no scene found"):
            search(gw, "vhr", (2.3, 48.8, 2.4, 48.9), "2024-06-01", "2024-07-01")
        with pytest.raises(AcquisitionError, match=r"search failed .*other"):
            search(gw, "other", (2.3, 48.8, 2.4, 48.9), "2024-04-01", "2024-06-01")


def test_unreachable_provider_is_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    gw = _gateway(tmp_path, url)
    with pytest.raises(
        AcquisitionError, match=rf"search failed on provider 'sat2lod_stac' \({url}/vhr/collection.json\)"
    ):
        search(gw, "vhr", (2.3, 48.8, 2.4, 48.9), "2024-04-01", "2024-06-01")


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_bad_asset_is_detected_deleted_and_reported(tmp_path: Path, damage: str) -> None:
    d = tmp_path / "pub"
    d.mkdir()
    scenes = _scenes(d, TIMES)
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched")
    with StacServer() as srv:
        srv.routes.update(publish_catalog(tmp_path / "cat", srv.url, "vhr", scenes))
        # serve a damaged copy of view 1 while the catalog keeps the checksum and size of the intact file
        good = scenes[1].image.read_bytes()
        bad = d / "bad.tif"
        bad.write_bytes(
            good[: len(good) // 2] if damage == "truncate" else good[:-1] + bytes([good[-1] ^ 0xFF])
        )
        srv.routes["/vhr/demo-view1/view_1.tif"] = bad
        gw = _gateway(tmp_path, srv.url)
        with pytest.raises(AcquisitionError) as err:
            fetch_stereo_set(
                gw,
                "vhr",
                box(2.3499, 48.8499, 2.3501, 48.8501),
                "2024-04-01",
                "2024-06-01",
                tmp_path / "dl",
                SELECTION,
            )
    msg = str(err.value)
    assert "1 downloaded file(s) failed verification" in msg
    assert f"{srv.url}/vhr/demo-view1/view_1.tif" in msg
    assert ("size" if damage == "truncate" else "sha256") in msg
    assert "deleted" in msg
    tifs = sorted(p.name for p in _files_under(tmp_path / "dl") if p.suffix == ".tif")
    assert tifs == ["view_0.tif", "view_2.tif"]  # the bad one is gone, the good ones stay
    assert outside.read_text() == "untouched"


def test_catalog_paths_cannot_escape_download_dir(tmp_path: Path) -> None:
    """A hand-written catalog with hostile ids and hrefs: downloads stay inside the download dir."""
    d = tmp_path / "pub"
    d.mkdir()
    rpc = affine_camera_rpc(LON0, LAT0, 200, 0.5, 10.0, 0.0)
    img = write_fake_view(d / "v.tif", rpc, 200)
    fp = footprint_lonlat(rpc, 200, 200, 50.0)
    with StacServer() as srv:

        def item(iid: str, href: str, when: str) -> dict:
            return {
                "type": "Feature",
                "stac_version": "1.0.0",
                "id": iid,
                "collection": "evil",
                "geometry": fp.__geo_interface__,
                "bbox": list(fp.bounds),
                "properties": {
                    "datetime": when,
                    "view:incidence_angle": 10.0,
                    "view:azimuth": 0.0,
                    "platform": "x",
                },
                "links": [],
                "assets": {
                    "image": {
                        "href": srv.url + href,
                        "type": "image/tiff; application=geotiff",
                        "roles": ["data"],
                    }
                },
            }

        items = {
            "a": item("../../../../escaped", "/evil/a/v.tif", TIMES[0]),
            "b": item("..", "/evil/b/v.tif", TIMES[1]),
        }
        coll = {
            "type": "Collection",
            "stac_version": "1.0.0",
            "id": "evil",
            "description": "x",
            "license": "proprietary",
            "extent": {"spatial": {"bbox": [list(fp.bounds)]}, "temporal": {"interval": [[TIMES[0], None]]}},
            "links": [{"rel": "item", "href": f"{srv.url}/evil/{k}.json"} for k in items],
        }
        for k, it in items.items():
            (d / f"{k}.json").write_text(json.dumps(it))
            srv.routes[f"/evil/{k}.json"] = d / f"{k}.json"
            srv.routes[f"/evil/{k}/v.tif"] = img
        (d / "collection.json").write_text(json.dumps(coll))
        srv.routes["/evil/collection.json"] = d / "collection.json"
        gw = _gateway(tmp_path, srv.url)
        before = _files_under(tmp_path) - _files_under(tmp_path / "eodag")
        dl = tmp_path / "work" / "dl"
        sel = {**SELECTION, "max_views": 2, "bh_min": 0.0}
        # identical viewing angles give B/H = 0 -> rejected unless bh_min = 0; we only test the paths here
        views, _, _ = fetch_stereo_set(
            gw, "evil", box(2.3499, 48.8499, 2.3501, 48.8501), "2024-04-01", "2024-06-01", dl, sel
        )
    after = _files_under(tmp_path) - _files_under(tmp_path / "eodag")
    new = after - before
    assert new and all(dl.resolve() in p.resolve().parents for p in new)
    assert len(views) == 2 and all(dl.resolve() in Path(v["image"]).resolve().parents for v in views)
    # each product stays in its own folder, named from its id made safe (a title '..' would climb one level)
    assert sorted(Path(v["image"]).resolve().relative_to(dl.resolve()).parts[0] for v in views) == [
        "escaped",
        "product",
    ]
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "work" / "escaped").exists()


def test_hostile_asset_href_and_names_are_refused() -> None:
    with pytest.raises(AcquisitionError, match="outside the download directory"):
        check_asset_href("http://h/x/../../../etc/passwd", "p")
    with pytest.raises(AcquisitionError, match="outside the download directory"):
        check_asset_href("http://h/x/%2e%2e/%2e%2e/passwd", "p")
    check_asset_href("http://h/x/a..b.tif", "p")
    assert safe_name("../../etc/v0") == "etc_v0"
    assert safe_name("..") == "product"
    with pytest.raises(ValueError, match="STAC item id"):
        publish_catalog(
            "/nonexistent",
            "http://127.0.0.1:1",
            "c",
            [SceneToPublish("../x", Path("v.tif"), box(0, 0, 1, 1), TIMES[0])],
        )


def test_server_serves_only_its_routes(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "secret.txt").write_text("no")
    with StacServer() as srv:
        srv.routes["/a.json"] = tmp_path / "a.json"
        assert srv.url.startswith("http://127.0.0.1:")
        assert requests.get(srv.url + "/a.json", timeout=5).json() == {}
        assert requests.get(srv.url + "/secret.txt", timeout=5).status_code == 404
        assert requests.get(srv.url + "/../secret.txt", timeout=5).status_code == 404
        assert requests.get(srv.url + "/", timeout=5).status_code == 404


# ------------------------------------------------------------------------------------------- verification
def test_verify_image_checks(tmp_path: Path) -> None:
    rpc = affine_camera_rpc(LON0, LAT0, 64, 0.5, 5.0, 0.0)
    img = write_fake_view(tmp_path / "v.tif", rpc, 64)
    digest = sha256_file(img)
    v = verify_image(
        img,
        url="http://x/v.tif",
        expected_size=img.stat().st_size,
        expected_checksum=sha256_multihash(digest),
        delete_root=tmp_path,
    )
    assert (v.width, v.height, v.sha256) == (64, 64, digest)
    assert parse_multihash(sha256_multihash(digest)) == ("sha256", digest)
    with pytest.raises(VerificationError, match="unsupported file:checksum"):
        parse_multihash("d50120" + digest)
    # a file outside delete_root is reported but never deleted
    keep = tmp_path / "keep"
    keep.mkdir()
    other = shutil.copy(img, keep / "v.tif")
    with pytest.raises(VerificationError, match=r"size \d+ bytes differs") as err:
        verify_image(other, url="http://x/v.tif", expected_size=1, delete_root=tmp_path / "dl")
    assert "deleted" not in str(err.value) and Path(other).exists()
    # a GeoTIFF without RPC tags
    norpc = write_raster(tmp_path / "norpc.tif", np.zeros((8, 8), np.uint16), Affine.identity(), None)
    with pytest.raises(VerificationError, match=r"norpc.tif: no usable RPC model"):
        verify_image(norpc)


def test_eodag_version_is_pinned() -> None:
    assert check_eodag_version() == EODAG_VERSION
    assert f'"eodag=={EODAG_VERSION}"' in (REPO / "pyproject.toml").read_text()


def test_credentials_in_provider_file_are_refused() -> None:
    text = (
        "p:\n  search: {type: StacSearch}\n  auth:\n    type: GenericAuth\n    credentials: {username: u}\n"
    )
    with pytest.raises(AcquisitionError, match="credentials in the file"):
        load_provider_config(text, "p", "x.yaml")
    with pytest.raises(AcquisitionError, match=r"provider 'q' not defined"):
        load_provider_config(text, "q", "x.yaml")


# ------------------------------------------------------------------------------------------- local scenes
def test_local_scenes_from_config(tmp_path: Path) -> None:
    views = fake_triplet(tmp_path, LON0, LAT0)
    images = [{"image": str(tmp_path / v["file"]), "datetime": t} for v, t in zip(views, TIMES)]
    out = tmp_path / "acq"
    sheet = acquire(
        kind="local",
        aoi="paris",
        sheet=out / "scenes.json",
        downloads=out / "downloads",
        catalog_dir=out / "catalog",
        local={"images": images},
        selection={"bh_min": 0.2, "bh_max": 0.6},
        epsg=2154,
    )
    assert sheet["epsg"] == 2154
    assert sheet["pairs"] == [[0, 1], [0, 2]]  # 1-2 has B/H 0.12 < bh_min
    for v, spec in zip(sheet["views"], views):
        assert v["incidence_deg"] == pytest.approx(spec["incidence_deg"], abs=0.05)
        assert v["rpc"] is None and Path(v["image"]).exists()
    # height range from the RPC height offsets/scales; AOI = common footprint at mid height
    assert sheet["height_range"] == pytest.approx([0.0, 100.0], abs=1e-6)
    lon0, lat0, lon1, lat1 = sheet["aoi_lonlat"]
    assert lon0 < LON0 < lon1 and lat0 < LAT0 < lat1
    # the 100 m views coincide at h = 0 (and drift apart with height): the AOI is their 100 m overlap
    assert (lat1 - lat0) * 111_320 == pytest.approx(100.0, abs=1.0)
    assert sheet["truth"] is None and sheet["source"]["kind"] == "local"
    assert list(Path(out / "downloads").iterdir()) == []  # local images are used in place


def test_local_scene_errors_name_the_file(tmp_path: Path) -> None:
    views = fake_triplet(tmp_path, LON0, LAT0)
    out = tmp_path / "acq"
    kw = {
        "kind": "local",
        "aoi": "x",
        "sheet": out / "s.json",
        "downloads": out / "dl",
        "catalog_dir": out / "c",
    }
    with pytest.raises(AcquisitionError, match=r"images\[1\]: .*missing.tif: file not found"):
        acquire(
            local={
                "images": [
                    {"image": str(tmp_path / views[0]["file"])},
                    {"image": str(tmp_path / "missing.tif")},
                ]
            },
            **kw,
        )
    with pytest.raises(AcquisitionError, match="stereo needs at least 2"):
        acquire(local={"images": [{"image": str(tmp_path / views[0]["file"])}]}, **kw)


def test_local_real_pleiades_pair_with_geom_rpc(tmp_path: Path, shared_data: Path) -> None:
    """The CNES Giza crops: float32 images without RPC tags, OSSIM .geom RPCs of the full scenes."""
    d = shared_data / "cnes_pleiades_gizeh_pair"
    images = [
        {"image": str(d / "img1.tif"), "rpc": str(d / "img1.geom")},
        {"image": str(d / "img2.tif"), "rpc": str(d / "img2.geom")},
    ]
    out = tmp_path / "acq"
    sheet = acquire(
        kind="local",
        aoi="gizeh",
        sheet=out / "scenes.json",
        downloads=out / "downloads",
        catalog_dir=out / "catalog",
        local={"images": images},
        selection={"bh_min": 0.05, "bh_max": 1.0},
    )
    assert sheet["epsg"] == 32636  # Giza, 31.1 E
    assert [v["rpc"] for v in sheet["views"]] == [str(d / "img1.geom"), str(d / "img2.geom")]
    assert sheet["height_range"] == pytest.approx([10.0, 270.0])  # .geom: height_off 140, height_scale 130
    lon0, lat0, lon1, lat1 = sheet["aoi_lonlat"]
    assert 31.10 < lon0 < lon1 < 31.16 and 29.95 < lat0 < lat1 < 30.0  # Giza plateau
    assert sheet["pairs"] == [[0, 1]]


def test_local_real_pleiades_crops_overlapping_only_near_the_ground(
    tmp_path: Path, shared_data: Path
) -> None:
    """Ventoux crops (500 px) with a wide RPC height range (1075 +- 885 m) and B/H ~ 0.3: they see common ground
    only near its true height (~540 m), so the AOI and the tiles come from the overlap at some height."""
    d = shared_data / "cnes_pleiades_ventoux_pair"
    images = [
        {"image": str(d / f"{s}_image.tif"), "rpc": str(d / f"{s}_image.geom")} for s in ("left", "right")
    ]
    out = tmp_path / "acq"
    sheet = acquire(
        kind="local",
        aoi="ventoux",
        sheet=out / "scenes.json",
        downloads=out / "downloads",
        catalog_dir=out / "catalog",
        local={"images": images},
        selection={"bh_min": 0.05, "bh_max": 1.0},
    )
    assert sheet["height_range"] == pytest.approx([190.0, 1960.0])
    assert 0.2 < sheet["base_to_height"]["0-1"] < 0.5
    w = sheet["aoi_bounds"][2] - sheet["aoi_bounds"][0]
    h = sheet["aoi_bounds"][3] - sheet["aoi_bounds"][1]
    assert 50 < w < 400 and 50 < h < 400  # about the 250 m crops
    fc = make_tiles(
        scenes=out / "scenes.json",
        tiles=out / "tiles.geojson",
        tile_size_m=50.0,
        margin_m=5.0,
        resolution_m=0.5,
    )
    assert len(fc["features"]) > 0
    with pytest.raises(ValueError, match="no tile of the AOI"):  # at every height of 190..1960 m: nothing
        make_tiles(
            scenes=out / "scenes.json",
            tiles=out / "t2.geojson",
            tile_size_m=50.0,
            margin_m=5.0,
            resolution_m=0.5,
            visibility="all_heights",
        )


def test_malformed_eodag_whitelist_variable_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EODAG_PROVIDERS_WHITELIST", "sat2lod_stac")  # eodag 4.10 wants '["sat2lod_stac"]'
    with pytest.raises(
        AcquisitionError, match=r"must be JSON, e\.g\. EODAG_PROVIDERS_WHITELIST='\[\"peps\"\]'"
    ):
        _gateway(tmp_path, "http://127.0.0.1:1")


def test_credentials_from_environment_never_reach_the_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider with header auth, its API key in the environment: used for the requests, never logged."""
    secret = "s3cr3t-token-1234"
    monkeypatch.setenv("EODAG__SAT2LOD_STAC__AUTH__CREDENTIALS__APIKEY", secret)
    caplog.set_level("DEBUG")
    # sat2lod.workflow.setup_logging (run by other tests in this process) quiets EODAG's logger to WARNING
    caplog.set_level("DEBUG", logger="eodag")
    seen: list[str] = []
    d = tmp_path / "pub"
    d.mkdir()
    conf = load_provider_config(PROVIDERS.read_text(), LOCAL_PROVIDER, str(PROVIDERS))
    with StacServer() as srv:
        conf["auth"] = {
            "type": "HTTPHeaderAuth",
            "matching_url": srv.url,
            "headers": {"Authorization": "Bearer {apikey}"},
        }
        srv.routes.update(publish_catalog(tmp_path / "cat", srv.url, "vhr", _scenes(d, TIMES)))
        srv.on_request = lambda handler: seen.append(handler.headers.get("Authorization", ""))
        gw = make_gateway(
            LOCAL_PROVIDER,
            tmp_path / "eodag",
            provider_conf=conf,
            endpoint=f"{srv.url}/{{_collection}}/collection.json",
            isolated=True,
        )
        views, _, _ = fetch_stereo_set(
            gw,
            "vhr",
            box(2.3499, 48.8499, 2.3501, 48.8501),
            "2024-04-01",
            "2024-06-01",
            tmp_path / "dl",
            SELECTION,
        )
    assert len(views) == 3
    assert f"Bearer {secret}" in seen  # the downloads were authenticated with the key from the environment
    assert "Finished filtering products" in caplog.text  # EODAG's own logs were captured
    assert secret not in caplog.text


def test_stac_source_with_a_provider_from_the_providers_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """source.kind stac: the provider is named in the config and defined in a providers file (here a static
    catalog on 127.0.0.1 standing in for a real provider)."""
    monkeypatch.setenv(
        "EODAG_CFG_DIR", str(tmp_path / "eodag_user_cfg")
    )  # the user config EODAG reads for stac
    d = tmp_path / "pub"
    d.mkdir()
    with StacServer() as srv:
        srv.routes.update(publish_catalog(tmp_path / "cat", srv.url, "vhr", _scenes(d, TIMES)))
        conf = load_provider_config(PROVIDERS.read_text(), LOCAL_PROVIDER, str(PROVIDERS))
        conf["search"] = {**conf["search"], "api_endpoint": f"{srv.url}/{{_collection}}/collection.json"}
        providers = tmp_path / "providers.yaml"
        providers.write_text(yaml.safe_dump({"my_vhr": conf}))
        out = tmp_path / "acq"
        kw = {
            "kind": "stac",
            "aoi": "paris",
            "sheet": out / "scenes.json",
            "downloads": out / "downloads",
            "catalog_dir": out / "catalog",
            "providers_file": providers,
            "selection": SELECTION,
        }
        stac = {"provider": "my_vhr", "collection": "vhr", "start": "2024-04-01", "end": "2024-06-01"}
        with pytest.raises(AcquisitionError, match=r"aoi.bbox_lonlat must be set"):
            acquire(stac=stac, **kw)
        with pytest.raises(AcquisitionError, match=r"source.stac.collection must be set"):
            acquire(stac={**stac, "collection": None}, bbox_lonlat=[2.3499, 48.8499, 2.3501, 48.8501], **kw)
        sheet = acquire(stac=stac, bbox_lonlat=[2.3499, 48.8499, 2.3501, 48.8501], **kw)
    assert sheet["source"] == {"kind": "stac", "provider": "my_vhr", "collection": "vhr"}
    assert [v["product_id"] for v in sheet["views"]] == ["demo-view0", "demo-view1", "demo-view2"]
    assert sheet["height_range"] == pytest.approx([0.0, 100.0], abs=1e-6)  # from the RPCs
    assert sheet["epsg"] == 32631
    assert (tmp_path / "eodag_user_cfg" / "eodag.yml").is_file()  # kind stac reads the user's EODAG config


def test_provider_gone_before_download_is_a_clear_error(tmp_path: Path) -> None:
    d = tmp_path / "pub"
    d.mkdir()
    with StacServer() as srv:
        srv.routes.update(publish_catalog(tmp_path / "cat", srv.url, "vhr", _scenes(d, TIMES)))
        cands = search(_gateway(tmp_path, srv.url), "vhr", (2.3, 48.8, 2.4, 48.9), "2024-04-01", "2024-06-01")
    with pytest.raises(AcquisitionError, match=rf"download of {srv.url}/vhr/demo-view\d/view_\d.tif failed"):
        download_assets(cands[0], [pick_asset(cands[0])[0]], tmp_path / "dl", timeout_min=0.02)


def test_synthetic_with_a_smaller_aoi_bbox(synth_scene: Path, tmp_path: Path) -> None:
    scene = json.loads(synth_scene.read_text())
    lon0, lat0, lon1, lat1 = scene["lonlat_bounds"]
    bbox = [lon0 + 0.25 * (lon1 - lon0), lat0 + 0.25 * (lat1 - lat0), lon1, lat1]  # north-east 3/4 x 3/4
    out = tmp_path / "acq"
    sheet = acquire(
        kind="synthetic",
        aoi="demo",
        sheet=out / "scenes.json",
        downloads=out / "downloads",
        catalog_dir=out / "catalog",
        synthetic_scene=synth_scene,
        providers_file=PROVIDERS,
        selection=SELECTION,
        bbox_lonlat=bbox,
        height_range=[10.0, 90.0],
    )
    x0, y0, x1, y1 = scene["bounds"]
    bx0, by0, bx1, by1 = sheet["aoi_bounds"]
    assert sheet["aoi_lonlat"] == pytest.approx(bbox)
    assert sheet["height_range"] == [10.0, 90.0]
    # the bbox in UTM, clipped to the scene: its west/south edges move in by a quarter (+- the grid rotation)
    assert bx1 == pytest.approx(x1) and by1 == pytest.approx(y1)
    assert bx0 == pytest.approx(x0 + 0.25 * (x1 - x0), abs=1.0) and by0 == pytest.approx(
        y0 + 0.25 * (y1 - y0), abs=1.0
    )


def test_stac_items_with_an_external_rpc_asset(tmp_path: Path) -> None:
    """Images without RPC tags, their RPCs as _RPC.TXT assets: both downloaded and verified, rpc in the sheet."""
    d = tmp_path / "pub"
    d.mkdir()
    scenes = []
    for i, (inc, az) in enumerate([(12.0, 0.0), (10.0, 180.0)]):
        rpc = affine_camera_rpc(LON0, LAT0, 200, 0.5, inc, az)
        img = write_fake_view(d / f"v{i}.tif", rpc, 200, seed=i, tags=False)
        txt = write_rpc_txt(d / f"v{i}_RPC.TXT", rpc)
        scenes.append(
            SceneToPublish(
                item_id=f"s{i}",
                image=img,
                footprint=footprint_lonlat(rpc, 200, 200, 50.0),
                datetime=TIMES[i],
                rpc=txt,
                properties={"view:incidence_angle": inc, "view:azimuth": az, "platform": "x"},
            )
        )
    aoi = box(2.3499, 48.8499, 2.3501, 48.8501)
    with StacServer() as srv:
        srv.routes.update(publish_catalog(tmp_path / "cat", srv.url, "vhr", scenes))
        gw = _gateway(tmp_path, srv.url)
        with pytest.raises(AcquisitionError, match=r"no usable RPC model"):  # RPC tags expected by default
            fetch_stereo_set(gw, "vhr", aoi, "2024-04-01", "2024-06-01", tmp_path / "dl0", SELECTION)
        views, pairs, _ = fetch_stereo_set(
            gw, "vhr", aoi, "2024-04-01", "2024-06-01", tmp_path / "dl", SELECTION, rpc_asset=r"_RPC\.TXT$"
        )
        with pytest.raises(AcquisitionError, match=r"0 asset\(s\) match the RPC file pattern"):
            fetch_stereo_set(
                gw, "vhr", aoi, "2024-04-01", "2024-06-01", tmp_path / "dl2", SELECTION, rpc_asset=r"\.geom$"
            )
    assert pairs == [[0, 1]]
    for i, v in enumerate(views):
        assert Path(v["rpc"]).name == f"v{i}_RPC.TXT" and Path(v["rpc"]).parent == Path(v["image"]).parent
        want = read_rpc(d / f"v{i}.tif", d / f"v{i}_RPC.TXT")
        got = read_rpc(v["image"], v["rpc"])
        assert got.samp_off == pytest.approx(want.samp_off) and got.line_num_coeff == pytest.approx(
            want.line_num_coeff
        )
    assert not any((tmp_path / "dl0").rglob("*.tif"))  # the images that failed were deleted


def test_select_stereo_prefers_a_full_pass_with_b_over_h_in_range() -> None:
    t0 = datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
    aoi = box(0, 0, 1, 1)
    cover, half = box(-1, -1, 2, 2), box(-1, -1, 0.4, 2)

    def v(key: str, dt_s: float, inc: float, az: float, fp=cover, platform: str = "PHR1A") -> ViewInfo:
        return ViewInfo(key, t0 + timedelta(seconds=dt_s), inc, az, fp, platform, 7)

    views = [
        v("a0", 0, 15.0, 0.0),
        v("a1", 40, 1.0, 180.0),
        v("a2", 80, 15.0, 180.0),  # tri-stereo pass
        v("b0", 86_400, 10.0, 0.0),
        v("b1", 86_440, 10.0, 180.0),  # next day's pair
        v("c0", 30, 20.0, 90.0, platform="PHR1B"),  # other satellite, same minute
        v("d0", 60, 12.0, 180.0, fp=half),  # covers 40 % of the AOI
    ]
    groups = group_passes(views, max_gap_s=600)
    assert sorted(sorted(views[i].key for i in g) for g in groups) == [
        ["a0", "a1", "a2", "d0"],
        ["b0", "b1"],
        ["c0"],
    ]
    sel = select_stereo(views, aoi, max_views=3, bh_min=0.1, bh_max=0.7)
    assert [views[i].key for i in sel.views] == ["a0", "a1", "a2"]
    # a1-a2 has B/H tan15 - tan1 = 0.25, a0-a2 2 tan15 = 0.54, a0-a1 tan15 + tan1 = 0.29: all in range
    assert sel.pairs == [(0, 1), (0, 2), (1, 2)]
    assert sel.base_to_height[(0, 2)] == pytest.approx(2 * np.tan(np.radians(15)))
    # a narrower B/H range drops a0-a2; the three views stay connected by the two other pairs
    sel = select_stereo(views, aoi, max_views=3, bh_min=0.1, bh_max=0.4)
    assert [views[i].key for i in sel.views] == ["a0", "a1", "a2"] and sel.pairs == [(0, 1), (1, 2)]
    # pairs only: the pass pair closest to bh_target among all passes
    sel = select_stereo(views, aoi, max_views=2, bh_min=0.1, bh_max=0.7, bh_target=0.36)
    assert [views[i].key for i in sel.views] == ["b0", "b1"]  # 2 tan10 = 0.353
    with pytest.raises(
        SelectionError, match=r"(?s)no stereo pair among 7 candidate\(s\).*d0: .*covers AOI=False"
    ):
        select_stereo(views, aoi, bh_min=0.8, bh_max=1.0)


def test_candidates_without_view_angles(tmp_path: Path) -> None:
    d = tmp_path / "pub"
    d.mkdir()
    scenes = _scenes(d, TIMES)
    for s in scenes[1:]:
        s.properties = {"platform": "sat2lod-synthetic"}  # no view:* angles
    with StacServer() as srv:
        srv.routes.update(publish_catalog(tmp_path / "cat", srv.url, "vhr", scenes))
        with pytest.raises(
            AcquisitionError, match=r"3 scene\(s\) found in 'vhr' but 1 with view:incidence_angle"
        ):
            fetch_stereo_set(
                _gateway(tmp_path, srv.url),
                "vhr",
                box(2.3499, 48.8499, 2.3501, 48.8501),
                "2024-04-01",
                "2024-06-01",
                tmp_path / "dl",
                SELECTION,
            )


def test_local_multispectral_image_goes_to_the_scene_sheet(tmp_path: Path, shared_data: Path) -> None:
    """source.local.images[].ms_image / ms_rpc (the Ventoux XS crop) reach the scene sheet, where the ortho
    pansharpens them; a missing MS file is refused with its key and path."""
    d = shared_data / "cnes_pleiades_ventoux_pair"
    images = [
        {"image": str(d / f"{s}_image.tif"), "rpc": str(d / f"{s}_image.geom")} for s in ("left", "right")
    ]
    images[0]["ms_image"] = str(d / "lowres_color_image.tif")
    images[0]["ms_rpc"] = str(d / "lowres_color_image.geom")
    out = tmp_path / "acq"
    kw = {
        "kind": "local",
        "aoi": "ventoux",
        "downloads": out / "downloads",
        "catalog_dir": out / "catalog",
        "selection": {"bh_min": 0.05, "bh_max": 1.0},
    }
    sheet = acquire(sheet=out / "scenes.json", local={"images": images}, **kw)
    v0, v1 = sheet["views"]
    assert v0["ms_image"].endswith("lowres_color_image.tif") and v0["ms_rpc"].endswith(".geom")
    assert "ms_image" not in v1
    images[0]["ms_image"] = str(d / "missing_xs.tif")
    with pytest.raises(AcquisitionError, match=r"images\[0\]\.ms_image: .*missing_xs.tif not found"):
        acquire(sheet=out / "s2.json", local={"images": images}, **kw)
