"""Hostile or unlucky inputs (issue 18): servers that lie, full disks, garbage RPCs, wrong search ranges.

Each test reproduces one case of the issue through the code path a real run takes and checks the outcome: a
clear error naming the file / URL / key and nothing half-written, or a correct result.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window
from shapely.geometry import box

from acquire_fakes import LAT0, LON0, PROVIDERS, SELECTION, TIMES, fake_triplet
from sat2lod.acquire.catalog import SceneToPublish, publish_catalog
from sat2lod.acquire.eodag_client import AcquisitionError, load_provider_config, make_gateway
from sat2lod.acquire.files import hash_file
from sat2lod.acquire.geometry import footprint_lonlat
from sat2lod.acquire.pipeline import LOCAL_PROVIDER, fetch_stereo_set
from sat2lod.acquire.verify import VerificationError, verify_image
from sat2lod.io import raster as raster_io
from sat2lod.io.raster import RasterWriteError, read_raster, write_raster, write_raster_blocks
from sat2lod.io.rpc_files import RPCReadError, read_rpc, read_rpc_file
from sat2lod.stereo import pipeline as stereo_pipeline
from sat2lod.stereo.pipeline import (
    CUT_MIN_COMPONENT_PX,
    MAX_OUTSIDE_NARROWED,
    SearchRangeError,
    StereoParams,
    process_pair,
    range_end_coherence,
)
from sat2lod.stereo.pointing import range_keypoints
from sat2lod.stereo.rasterize import grid_for_bounds
from sat2lod.workflow import (
    RUN_FILE,
    active_run,
    claim_run_directory,
    guard_run_directory,
    release_run_directory,
)

REPO = Path(__file__).resolve().parents[1]
AOI = box(2.3499, 48.8499, 2.3501, 48.8501)


# ------------------------------------------------------------------------------------------- hostile server
@dataclass
class Trick:
    """What the hostile server does on one path: extra headers, and garbage bytes appended to the file."""

    headers: dict[str, str] = field(default_factory=dict)
    extra_bytes: int = 0
    sent: int = 0  # bytes written to the socket (set by the server)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        path = urlsplit(self.path).path
        target = self.server.routes.get(path)
        if target is None:
            self.send_error(404)
            return
        trick = self.server.tricks.get(path, Trick())
        data = target.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data) + trick.extra_bytes))
        for k, v in trick.headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not body:
            return
        try:
            self.wfile.write(data)
            trick.sent += len(data)
            chunk = b"\0" * (1 << 16)
            left = trick.extra_bytes
            while left > 0:
                n = min(left, len(chunk))
                self.wfile.write(chunk[:n])
                trick.sent += n
                left -= n
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up: what we want when we send too much

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Path]
    tricks: dict[str, Trick]


@pytest.fixture()
def hostile_server() -> Iterator[_Server]:
    """A threaded http.server on 127.0.0.1 serving ``routes`` with the ``tricks`` of each path."""
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.routes, srv.tricks = {}, {}
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    th.join(timeout=10)


def _url(srv: _Server) -> str:
    host, port = srv.server_address[:2]
    return f"http://{host}:{port}"


def _publish(srv: _Server, tmp_path: Path, edit_asset=None) -> list[SceneToPublish]:
    """Publish three fake views in collection 'vhr' on ``srv``; ``edit_asset(asset dict)`` alters each image asset."""
    d = tmp_path / "pub"
    d.mkdir()
    scenes = []
    for i, v in enumerate(fake_triplet(d, LON0, LAT0)):
        img = d / v["file"]
        scenes.append(
            SceneToPublish(
                item_id=f"demo-view{i}",
                image=img,
                footprint=footprint_lonlat(read_rpc(img), 200, 200, 50.0),
                datetime=TIMES[i],
                properties={
                    "view:incidence_angle": v["incidence_deg"],
                    "view:azimuth": v["azimuth_deg"],
                    "platform": "x",
                    "sat:relative_orbit": 1,
                },
            )
        )
    srv.routes.update(publish_catalog(tmp_path / "cat", _url(srv), "vhr", scenes))
    if edit_asset is not None:
        for s in scenes:
            item_file = srv.routes[f"/vhr/{s.item_id}/{s.item_id}.json"]
            item = json.loads(item_file.read_text())
            edit_asset(item["assets"]["image"], s)
            item_file.write_text(json.dumps(item))
    return scenes


def _fetch(srv: _Server, tmp_path: Path, dl: Path, **kw):
    conf = load_provider_config(PROVIDERS.read_text(), LOCAL_PROVIDER, str(PROVIDERS))
    gw = make_gateway(
        LOCAL_PROVIDER,
        tmp_path / "eodag",
        provider_conf=conf,
        endpoint=f"{_url(srv)}/{{_collection}}/collection.json",
        isolated=True,
    )
    return fetch_stereo_set(gw, "vhr", AOI, "2024-04-01", "2024-06-01", dl, SELECTION, **kw)


def _files(d: Path) -> set[Path]:
    return {p for p in d.rglob("*") if p.is_file()} if d.exists() else set()


# ------------------------------------------------------------------------------------------- downloads
@pytest.mark.parametrize("declared_size", [True, False], ids=["file_size", "no_file_size"])
def test_content_disposition_cannot_place_files_outside_the_download_dir(
    hostile_server: _Server, tmp_path: Path, declared_size: bool
) -> None:
    """Issue 18.1: ``Content-Disposition: filename="../../x"`` or an absolute path (in HEAD and GET answers)."""
    absolute = tmp_path / "abs" / "planted.pth"
    absolute.parent.mkdir()
    names = ["../../../../escaped.tif", str(absolute), "..\\..\\win.tif"]

    def edit(asset: dict, scene: SceneToPublish) -> None:
        if (
            not declared_size
        ):  # EODAG then asks HEAD for the size, and takes the file name from its answer too
            del asset["file:size"]

    scenes = _publish(hostile_server, tmp_path, edit)
    for s, name in zip(scenes, names):
        hostile_server.tricks[f"/vhr/{s.item_id}/{s.image.name}"] = Trick(
            headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )
    dl = tmp_path / "work" / "results" / "dl"
    before = _files(tmp_path)
    views, pairs, _ = _fetch(hostile_server, tmp_path, dl)
    new = _files(tmp_path) - before - _files(tmp_path / "eodag")
    assert len(views) == 3 and pairs
    assert new and all(dl.resolve() in p.resolve().parents for p in new), sorted(map(str, new))
    assert not absolute.exists()
    assert not list(tmp_path.rglob("escaped.tif")) and not list(tmp_path.rglob("*win.tif"))
    # the files are named after their URL, not after the header
    assert sorted(Path(v["image"]).name for v in views) == ["view_0.tif", "view_1.tif", "view_2.tif"]
    assert not list(dl.rglob("*.part"))


def test_oversized_download_is_cut_at_the_declared_size(hostile_server: _Server, tmp_path: Path) -> None:
    """Issue 18.2: a server sending 64 MiB for a ~80 kB file: cut early, partial file removed, URL in the error."""
    scenes = _publish(hostile_server, tmp_path)
    path = f"/vhr/{scenes[1].item_id}/{scenes[1].image.name}"
    trick = hostile_server.tricks[path] = Trick(extra_bytes=64 << 20)
    dl = tmp_path / "dl"
    with pytest.raises(AcquisitionError) as err:
        _fetch(hostile_server, tmp_path, dl)
    msg = str(err.value)
    assert f"download of {_url(hostile_server)}{path} refused" in msg
    assert f"the catalog declares file:size {scenes[1].image.stat().st_size}" in msg
    assert "partial file was removed" in msg
    assert not list(dl.rglob("view_1.tif*"))
    assert (
        trick.sent < 16 << 20
    )  # the client hung up long before the end (socket buffers let a few MiB through)


def test_download_without_declared_size_is_capped_by_the_config(
    hostile_server: _Server, tmp_path: Path
) -> None:
    def edit(asset: dict, scene: SceneToPublish) -> None:
        del asset["file:size"]

    scenes = _publish(hostile_server, tmp_path, edit)
    path = f"/vhr/{scenes[0].item_id}/{scenes[0].image.name}"
    hostile_server.tricks[path] = Trick(extra_bytes=8 << 20)
    dl = tmp_path / "dl"
    with pytest.raises(AcquisitionError, match=r"more than 1048576 bytes \(no file:size.*max_download_mb"):
        _fetch(hostile_server, tmp_path, dl, max_download_mb=1.0)
    assert not list(dl.rglob("view_0.tif*"))


@pytest.mark.parametrize("kind", ["md5", "md5_wrong", "unsupported"])
def test_checksum_algorithms(hostile_server: _Server, tmp_path: Path, kind: str) -> None:
    """Issue 18.2: an md5 ``file:checksum`` is checked; an unknown one is refused naming the file and URL."""

    def edit(asset: dict, scene: SceneToPublish) -> None:
        if scene.item_id == "demo-view2":
            md5 = hash_file(scene.image, "md5")
            asset["file:checksum"] = {
                "md5": "d50110" + md5,
                "md5_wrong": "d50110" + "0" * 32,
                "unsupported": "1e20" + "0" * 64,  # blake3
            }[kind]

    _publish(hostile_server, tmp_path, edit)
    dl = tmp_path / "dl"
    url = f"{_url(hostile_server)}/vhr/demo-view2/view_2.tif"
    if kind == "md5":
        views, _, _ = _fetch(hostile_server, tmp_path, dl)
        assert len(views) == 3
        return
    with pytest.raises(AcquisitionError) as err:
        _fetch(hostile_server, tmp_path, dl)
    msg = str(err.value)
    assert f"view_2.tif (downloaded from {url})" in msg and "The file was deleted." in msg
    assert ("md5 " if kind == "md5_wrong" else "unsupported file:checksum") in msg
    assert not list(dl.rglob("view_2.tif"))


# ------------------------------------------------------------------------------------------- full disk
def _dsm_like(n: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (100.0 + 0.01 * rng.normal(size=(n, n))).astype(np.float32)


@pytest.fixture()
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted in ``tmp_path`` (root only; skipped where mounting is not allowed)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
        check=False,
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or res.returncode}): needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.parametrize(
    ("cog", "streamed"),
    [(False, False), (True, False), (False, True), (True, True)],
    ids=["gtiff", "cog", "gtiff-blocks", "cog-blocks"],
)
def test_full_disk_fails_the_write_and_leaves_no_output(small_tmpfs: Path, cog: bool, streamed: bool) -> None:
    """Issue 18.3: with 0.5-4 KiB left, every write either succeeds intact or raises; nothing half-written stays.
    The same for the streamed writer (issue 16), whose staging file must not stay either.

    Before: GDAL reported the error at close on stderr only; a 4096-byte or 0-byte file took the product's name.
    """
    arr = _dsm_like()
    out = small_tmpfs / "dsm.tif"
    outcomes = set()
    for left in range(512, 4608, 512):
        for p in small_tmpfs.iterdir():
            p.unlink()
        free = shutil.disk_usage(small_tmpfs).free
        (small_tmpfs / "fill").write_bytes(b"\0" * (free - left))
        try:
            if streamed:
                blocks = [(Window(0, r, 64, 16), arr[r : r + 16]) for r in range(0, 64, 16)]
                write_raster_blocks(
                    out,
                    blocks,
                    (1, 64, 64),
                    np.float32,
                    from_origin(0, 0, 1, 1),
                    32631,
                    nodata=np.nan,
                    cog=cog,
                )
            else:
                write_raster(
                    out, arr, from_origin(0, 0, 1, 1), 32631, nodata=np.nan, cog=cog, compress="deflate"
                )
        except RasterWriteError as exc:
            outcomes.add("refused")
            assert str(out) in str(exc) and "nothing was written there" in str(exc)
            assert sorted(p.name for p in small_tmpfs.iterdir()) == ["fill"]  # no output, no temporary
            continue
        outcomes.add("written")
        r = read_raster(out)
        np.testing.assert_array_equal(r.array, arr)
    assert "refused" in outcomes


@pytest.mark.parametrize("damage", ["empty", "half", "last_block"])
def test_a_raster_damaged_at_close_is_refused_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """The same logic without a mount: the temporary file is damaged after GDAL closed it (what a full disk does)."""
    real = raster_io.verify_written

    def damaged(tmp: Path, *args, **kw) -> None:
        data = tmp.read_bytes()
        if damage == "empty":
            data = b""
        elif damage == "half":
            data = data[: len(data) // 2]
        else:  # an intact header, the last block overwritten by another one (rewritten in place)
            with rasterio.open(tmp) as ds:
                win = raster_io._last_block(ds)
                a = ds.read(window=win)
            with rasterio.open(tmp, "r+") as ds:
                ds.write(a + 1.0, window=win)
            data = tmp.read_bytes()
        tmp.write_bytes(data)
        real(tmp, *args, **kw)

    monkeypatch.setattr(raster_io, "verify_written", damaged)
    out = tmp_path / "tile" / "quality.tif"
    with pytest.raises(RasterWriteError, match=r"quality.tif: the raster could not be written completely"):
        write_raster(out, _dsm_like(300), from_origin(0, 0, 1, 1), 32631, nodata=np.nan, tags={"A": "b"})
    assert list(out.parent.iterdir()) == []


# ------------------------------------------------------------------------------------------- garbage RPCs
SAMPLES = "rpc_samples"
GEOM_IMAGE = ("cnes_pleiades_gizeh_pair", "img1.tif")
TAGGED = (SAMPLES, "shareloc_PHR1B_P_201709281038393_SEN_PRG_FC_178609-001.tif")


def test_real_rpc_models_pass_the_validation(shared_data: Path) -> None:
    """The good cases: every real sample and the real pairs read and validate (round trip within 0.01 px)."""
    files = [
        p
        for p in sorted((shared_data / SAMPLES).iterdir())
        if p.suffix.lower() not in (".md", ".tif", ".ntf")
    ]
    for f in files:
        read_rpc_file(f)
    for img in [*(shared_data / SAMPLES).glob("*.tif"), *(shared_data / SAMPLES).glob("*.NTF")]:
        read_rpc(img)
    for pair, names in [
        ("cnes_pleiades_gizeh_pair", ["img1", "img2"]),
        ("cnes_pleiades_ventoux_pair", ["left_image", "right_image"]),
    ]:
        for n in names:
            read_rpc(shared_data / pair / f"{n}.tif", shared_data / pair / f"{n}.geom")
    assert len(files) >= 14


def _edit_lines(src: Path, dst: Path, edits: dict[str, str], sep: str = ":") -> Path:
    """Copy a ``key: value`` file, replacing the values of ``edits``' keys."""
    out = []
    for line in src.read_text().splitlines():
        key = line.split(sep, 1)[0].strip()
        out.append(f"{key}{sep} {edits[key]}" if key in edits else line)
    dst.write_text("\n".join(out) + "\n")
    return dst


GEOM_CASES = {
    "nan_coefficient": ({"line_num_coeff_03": "nan"}, r"line_num_coeff\[3\]: nan is not a finite"),
    "huge_coefficient": ({"samp_num_coeff_05": "1e308"}, r"samp_num_coeff\[5\]: 1e\+308 is not a finite"),
    "huge_negative_offset": ({"lat_off": "-1e308"}, r"lat_off: -1e\+308 is out of range"),
    "zero_denominator": (
        {f"line_den_coeff_{i:02d}": "0" for i in range(20)},
        r"line_den_coeff: all 20 coefficients are 0",
    ),
    "denominator_through_zero": (
        {"samp_den_coeff_00": "0", "samp_den_coeff_01": "1"},
        r"samp_den_coeff: the denominator reaches 0",
    ),
    "zero_scale": ({"lat_scale": "0"}, r"lat_scale: is 0"),
    "inf_line_off": ({"line_off": "inf"}, r"line_off: inf is not a finite number"),
}


@pytest.mark.parametrize("case", sorted(GEOM_CASES))
def test_garbage_geom_is_refused_naming_file_and_field(shared_data: Path, tmp_path: Path, case: str) -> None:
    """Issue 18.4: before, these passed every reader and crashed far away in shapely (no file named)."""
    edits, field = GEOM_CASES[case]
    image = shared_data.joinpath(*GEOM_IMAGE)
    bad = _edit_lines(image.with_suffix(".geom"), tmp_path / "img1.geom", edits)
    with pytest.raises(RPCReadError, match=rf"{tmp_path / 'img1.geom'}: invalid RPC model, {field}"):
        read_rpc(image, bad)
    # the same through the acquisition's image check (source.kind local), which names the image
    with pytest.raises(VerificationError, match=rf"img1.tif: no usable RPC model .*{field}"):
        verify_image(image, rpc_file=bad)


TAG_CASES = {
    "nan": (lambda r: r.line_num_coeff.__setitem__(2, float("nan")), r"line_num_coeff\[2\]: nan"),
    "huge": (lambda r: r.samp_den_coeff.__setitem__(1, 1e308), r"samp_den_coeff\[1\]: 1e\+308"),
    "minus_huge": (lambda r: setattr(r, "long_off", -1e308), r"long_off: -1e\+308 is out of range"),
    "zero_denominator": (
        lambda r: r.samp_den_coeff.__setitem__(slice(None), [0.0] * 20),
        r"samp_den_coeff: all",
    ),
    "zero_scale": (lambda r: setattr(r, "height_scale", 0.0), r"height_scale: is 0"),
}


@pytest.mark.parametrize("case", sorted(TAG_CASES))
def test_garbage_geotiff_rpc_tags_are_refused(shared_data: Path, tmp_path: Path, case: str) -> None:
    edit, field = TAG_CASES[case]
    img = tmp_path / "scene.tif"
    shutil.copy(shared_data.joinpath(*TAGGED), img)
    img.chmod(0o644)
    with rasterio.open(img, "r+") as ds:
        rpc = ds.rpcs
        rpc.line_num_coeff, rpc.samp_den_coeff = list(rpc.line_num_coeff), list(rpc.samp_den_coeff)
        edit(rpc)
        ds.rpcs = rpc
    with pytest.raises(RPCReadError, match=rf"scene.tif: invalid RPC model, {field}"):
        read_rpc(img)


def test_dimap_empty_coefficient(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / SAMPLES / "shareloc_RPC_PHR1B_P_201709281038045_SEN_PRG_FC_178608-001.XML"
    text = src.read_text()
    inverse = text.index("<Inverse_Model>")  # the ground-to-image model sat2lod reads
    start = text.index("<SAMP_DEN_COEFF_4>", inverse)
    end = text.index("</SAMP_DEN_COEFF_4>", start)
    bad = tmp_path / "RPC_bad.XML"
    bad.write_text(text[: start + len("<SAMP_DEN_COEFF_4>")] + text[end:])
    with pytest.raises(RPCReadError, match=r"RPC_bad.XML: invalid RPC model, samp_den_coeff\[3\]: nan"):
        read_rpc_file(bad)


def test_rpc_txt_line_off_inf(shared_data: Path, tmp_path: Path) -> None:
    bad = _edit_lines(
        shared_data / SAMPLES / "rpcm_rpc_IKONOS.txt", tmp_path / "x_RPC.TXT", {"LINE_OFF": "inf"}
    )
    with pytest.raises(RPCReadError, match=r"x_RPC.TXT: invalid RPC model, line_off: inf is not a finite"):
        read_rpc_file(bad)


@pytest.mark.parametrize("value", [None, "NaN"], ids=["null", "NaN_string"])
@pytest.mark.parametrize("where", ["row_scale", "col_den"])
def test_rpcm_json_null_or_nan(shared_data: Path, tmp_path: Path, value: object, where: str) -> None:
    d = json.loads((shared_data / SAMPLES / "rpcm_JAX_068_001_RGB.json").read_text())
    if where == "col_den":
        d["rpc"]["col_den"][4] = value
    else:
        d["rpc"][where] = value
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    field = r"samp_den_coeff\[4\]: nan" if where == "col_den" else "line_scale: nan"
    msg = rf"bad.json: (invalid RPC model, {field}|malformed RPC value)"
    with pytest.raises(RPCReadError, match=msg):
        read_rpc_file(bad)


def test_rpc_json_nested_100000_deep(tmp_path: Path) -> None:
    bad = tmp_path / "deep.json"
    bad.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(RPCReadError, match=r"deep.json: JSON nested too deeply"):
        read_rpc_file(bad)


def test_png_renamed_tif_is_a_bad_image(shared_data: Path, tmp_path: Path) -> None:
    """Issue 18.4: before, the PNG was 'verified' and reported as 'images see no common ground'."""
    png = tmp_path / "img1.tif"
    with rasterio.open(png, "w", driver="PNG", width=64, height=64, count=1, dtype="uint8") as ds:
        ds.write(np.zeros((1, 64, 64), np.uint8))
    geom = shared_data / GEOM_IMAGE[0] / "img1.geom"
    with pytest.raises(VerificationError, match=r"img1.tif: not a readable image .*a PNG file named .tif"):
        verify_image(png, rpc_file=geom)


# ------------------------------------------------------------------------------------------- search range
GIZEH_TILE = (319950.0, 3317800.0, 320150.0, 3318000.0)  # 200 m of the Giza plateau, terrain ~70-150 m


@pytest.fixture(scope="module")
def gizeh_pair() -> tuple:
    from conftest import shared_file

    d = "cnes_pleiades_gizeh_pair"
    imgs = [str(shared_file(d, f"img{i}.tif")) for i in (1, 2)]
    rpcs = [read_rpc(shared_file(d, f"img{i}.tif"), shared_file(d, f"img{i}.geom")) for i in (1, 2)]
    return imgs, rpcs


def _gizeh_heights(gizeh_pair: tuple, height_range: tuple[float, float], **params) -> tuple[np.ndarray, dict]:
    (img1, img2), (rpc1, rpc2) = gizeh_pair
    transform, shape = grid_for_bounds(GIZEH_TILE, 1.0)
    res = process_pair(
        img1, rpc1, img2, rpc2, GIZEH_TILE, 32636, height_range, transform, shape, StereoParams(**params)
    )
    return res.height, res.info


@pytest.mark.parametrize("wrong", [(100.0, 100.0), (-100.0, -100.0), (1000.0, 1000.0)])
def test_a_search_range_missing_the_scene_is_widened(gizeh_pair: tuple, wrong: tuple[float, float]) -> None:
    """Issue 18.5: before, [100, 100] gave a DSM 49 % empty clipped to 80-120 m, [-100, -100] a DSM at -99 m,
    [1000, 1000] 2 % of cells at ~960 m, all without an error."""
    ref, _ = _gizeh_heights(gizeh_pair, (50.0, 130.0))
    dsm, info = _gizeh_heights(gizeh_pair, wrong)
    assert "range_widened_to" in info
    assert np.isfinite(dsm).mean() >= 0.85 * np.isfinite(ref).mean()
    both = np.isfinite(dsm) & np.isfinite(ref)
    assert abs(np.median(dsm[both] - ref[both])) < 0.5
    assert np.nanmin(dsm) > 50.0  # nothing at the wrong heights
    if wrong != (-100.0, -100.0):
        assert abs(np.nanmedian(dsm) - np.nanmedian(ref)) < 3.0
    # (-100, -100): the keypoints of the widened range miss the pyramid's faces (NCC ambiguity on its steps), so
    # the keypoint narrowing (stereo.keypoint_range) cut it above ~103 m (9 % of the cells) until the cut check
    # (MAX_OUTSIDE_NARROWED) extended the range's top by range_probe_m and matched again (issue 17)
    # without the probe (stereo.range_probe_m: 0) this case still gives the wrong DSM: the probe is what catches it
    if wrong == (-100.0, -100.0):
        bad, _ = _gizeh_heights(gizeh_pair, wrong, range_probe_m=0.0)
        assert np.nanmedian(bad) < -50.0  # what the check prevents


def test_search_range_beyond_every_probe_fails_clearly(
    gizeh_pair: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keypoints at the very end of the probe: the scene lies further out; the job fails naming the key."""
    real = stereo_pipeline.match_keypoints

    def at_the_low_end(left, right, dmin, dmax, **kw):
        kp = real(left, right, dmin, dmax, **kw)
        kp.dx = np.full_like(kp.dx, dmin + 1.0) if dmax - dmin > 20 else kp.dx
        return kp

    monkeypatch.setattr(stereo_pipeline, "match_keypoints", at_the_low_end)
    with pytest.raises(SearchRangeError, match=r"does not contain the scene.*Set source.height_range"):
        _gizeh_heights(gizeh_pair, (100.0, 100.0))


def test_keypoint_narrowing_does_not_cut_the_great_pyramid(gizeh_pair: tuple) -> None:
    """Issue 17: the keypoints (strongest corners) miss the smooth faces of Khufu's pyramid, so the keypoint
    height range (stereo.keypoint_range) stopped at 167 m and the DSM lost the top ~40 m of the pyramid
    (p99 167.4 m, 87 % valid) without a warning; the pair is now matched again up to the range's top."""
    dsm, info = _gizeh_heights(gizeh_pair, (40.0, 200.0))
    assert info["range_cut_share"] > MAX_OUTSIDE_NARROWED
    assert info["height_range"][1] == 220.0  # the top of the search range (40 .. 200 m +- height_margin_m)
    # apex ~212 m ellipsoidal (plateau ~74 m + 138.5 m); as good as without narrowing
    assert np.nanpercentile(dsm, 99) > 200.0
    ref, _ = _gizeh_heights(gizeh_pair, (40.0, 200.0), keypoint_range=False)
    assert np.isfinite(dsm).mean() >= 0.98 * np.isfinite(ref).mean()
    both = np.isfinite(dsm) & np.isfinite(ref)
    # no bias; cell by cell they differ by the pair's noise (1 px of disparity = 6 m here; median |dh| ~0.7 m
    # between two search ranges, rectified on slightly different grids)
    assert abs(np.median(dsm[both] - ref[both])) < 0.3


def test_keypoint_narrowing_kept_where_it_holds_the_scene(gizeh_pair: tuple) -> None:
    """The re-matching is only for a cut scene: on the flat part of the plateau the narrowed range stays."""
    (img1, img2), (rpc1, rpc2) = gizeh_pair
    tile = (320150.0, 3317700.0, 320300.0, 3317800.0)  # mastaba field south-east of the pyramid
    transform, shape = grid_for_bounds(tile, 1.0)
    res = process_pair(img1, rpc1, img2, rpc2, tile, 32636, (40.0, 200.0), transform, shape, StereoParams())
    assert "range_cut_share" not in res.info
    assert res.info["height_range"][1] - res.info["height_range"][0] < 100.0
    assert res.info["outside_range_share"] <= MAX_OUTSIDE_NARROWED


def test_range_keypoints_fence_only_the_low_side() -> None:
    """Keypoints far below the others are mismatches; far above, maybe a tower: kept."""
    rng = np.random.default_rng(0)
    h = np.r_[rng.uniform(499.0, 558.0, 40), 170.0, 213.1, 389.1, 760.0]
    keep = range_keypoints(h, 50.0)
    assert not keep[40:43].any()  # the three mismatches under the surface
    assert keep[:40].all() and keep[43]  # the surface and the tower
    # a spread-out scene (quartiles 100 m apart): 3 IQR = 300 m of fence, nothing left out
    wide = np.r_[np.linspace(200.0, 500.0, 40), 0.0]
    assert range_keypoints(wide, 50.0).all()
    assert range_keypoints(np.array([1.0, 900.0, 901.0]), 50.0).all()  # too few to tell


def test_range_end_coherence_tells_a_surface_from_specks() -> None:
    """A surface cut by the range ends at it as an area; mismatches as scattered pixels."""
    rng = np.random.default_rng(1)
    disp = rng.uniform(3.0, 17.0, (200, 200)).astype(np.float32)
    specks = rng.random((200, 200)) < 0.05
    disp[specks & (np.indices(disp.shape).sum(0) % 2 == 0)] = 0.0  # a checkerboard of specks: none touch
    disp[50:70, 100:120] = 20.0  # 400 px at the top end
    disp[0:5, 0:5] = np.nan
    low, high = range_end_coherence(disp, 0, 20)
    assert low == 0.0
    assert high == pytest.approx(400 / np.isfinite(disp).sum())
    assert 400 >= CUT_MIN_COMPONENT_PX
    assert range_end_coherence(np.full((10, 10), np.nan, np.float32), 0, 20) == (0.0, 0.0)


VENTOUX_TILE = (675206.5, 4897003.0, 675496.5, 4897261.0)  # the whole pair's overlap, forest on a slope


def test_mismatched_keypoints_do_not_open_the_range_on_a_steep_pair() -> None:
    """Issue 15: on Ventoux (0.7 px of disparity per metre) 5 of 43 keypoints are mismatched along the epipolar
    line at 170-389 m under a surface at 499-558 m. The 1-99 % keypoint range was [173, 566] m; mismatches of the
    forest piled up at its low end, were taken for a cut surface, and the pair was matched twice more, down to
    [-30, 1980] m: 33 % of the DSM's cells were blunders (more than 50 m off SRTM, down to -30 m). Now the
    mismatched keypoints are fenced off, and scattered pixels at the end of the range are not a cut."""
    from conftest import shared_file

    d = "cnes_pleiades_ventoux_pair"
    imgs = [str(shared_file(d, f"{s}_image.tif")) for s in ("left", "right")]
    rpcs = [
        read_rpc(shared_file(d, f"{s}_image.tif"), shared_file(d, f"{s}_image.geom"))
        for s in ("left", "right")
    ]
    transform, shape = grid_for_bounds(VENTOUX_TILE, 0.5)
    res = process_pair(
        imgs[0],
        rpcs[0],
        imgs[1],
        rpcs[1],
        VENTOUX_TILE,
        32631,
        (190.0, 1960.0),
        transform,
        shape,
        StereoParams(),
    )
    lo, hi = res.info["height_range"]
    assert 450.0 < lo < 520.0 and 550.0 < hi < 620.0
    assert "range_cut_share" not in res.info
    assert res.info["range_keypoints"] < res.info["keypoints"]
    assert res.info["below_end_coherent"] < 0.001  # what piled up there were specks
    h = res.height[np.isfinite(res.height)]
    assert h.size > 0.15 * res.height.size
    assert np.percentile(h, 0.5) > lo - 5.0  # nothing hundreds of metres under the terrain


# ------------------------------------------------------------------------------------------- smaller points
def test_credentials_for_a_provider_without_auth_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 18.8: before, search failed with "'PluginConfig' object has no attribute 'type'"."""
    secret = "not-for-the-logs-42"
    monkeypatch.setenv("EODAG__SAT2LOD_STAC__AUTH__CREDENTIALS__APIKEY", secret)
    conf = load_provider_config(PROVIDERS.read_text(), LOCAL_PROVIDER, str(PROVIDERS))
    assert "auth" not in conf
    with pytest.raises(AcquisitionError) as err:
        make_gateway(LOCAL_PROVIDER, tmp_path / "eodag", provider_conf=conf, isolated=True)
    msg = str(err.value)
    assert "EODAG__SAT2LOD_STAC__AUTH__CREDENTIALS__APIKEY" in msg and "no auth: block" in msg
    assert secret not in msg and secret not in caplog.text


def test_an_error_that_ends_a_rule_script_reaches_its_log_file(tmp_path: Path) -> None:
    """Issue 18.8: errors raised outside the logged checks (e.g. 'images see no common ground') were only on the
    terminal, not in logs/<rule>/<aoi>.log. A script set up as the adapters are, then failing:"""
    log = tmp_path / "logs" / "acquire" / "demo.log"
    script = tmp_path / "adapter.py"
    script.write_text(
        "from types import SimpleNamespace\n"
        "from sat2lod.workflow import setup\n"
        f"setup(SimpleNamespace(log=[{str(log)!r}], threads=1, rule='acquire'))\n"
        "from sat2lod.acquire.eodag_client import AcquisitionError\n"
        "raise AcquisitionError('source.local.images: the images see no common ground')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, str(script)], check=False, capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    text = log.read_text()
    assert "job failed: AcquisitionError: source.local.images: the images see no common ground" in text
    assert "Traceback" in text and 'adapter.py", line 5' in text
    assert proc.stderr.count("Traceback") == 1  # the terminal shows it once, as before


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        "1",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
    ]
    (workdir / "config").mkdir(exist_ok=True)  # the Snakefile's configfile, relative to the working directory
    shutil.copy(REPO / "config" / "config.yaml", workdir / "config" / "config.yaml")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([*cmd, *args], check=False, capture_output=True, text=True, timeout=300, env=env)


def test_unlock_is_refused_while_another_run_is_alive(tmp_path: Path) -> None:
    """Issue 18.7: following Snakemake's --unlock hint while a run was active made both fail and delete each
    other's scenes.json and downloads. A live run recorded in .snakemake/sat2lod_run.json now blocks --unlock."""
    # stands in for a running `snakemake` main process (its command line names snakemake)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "snakemake"])
    try:
        run_file = tmp_path / RUN_FILE
        run_file.parent.mkdir(parents=True)
        run = {
            "pid": live.pid,
            "host": socket.gethostname(),
            "started": "now",
            "command": "snakemake --cores 2",
        }
        run_file.write_text(json.dumps(run))
        for _ in range(100):  # until the child has exec'd (its command line names snakemake)
            if active_run(run_file) is not None:
                break
            time.sleep(0.05)
        assert active_run(run_file)["pid"] == live.pid
        proc = _snakemake(tmp_path, "--unlock")
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert f"another sat2lod run is active in this directory (pid {live.pid}" in out
        assert "Wait for it to end, or stop it first" in out
    finally:
        live.kill()
        live.wait()
    assert active_run(run_file) is None  # the process is gone: --unlock goes through
    proc = _snakemake(tmp_path, "--unlock")
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_run_file_is_claimed_and_released(tmp_path: Path) -> None:
    run_file = tmp_path / "run.json"
    claim_run_directory(run_file)
    run = json.loads(run_file.read_text())
    assert run["pid"] == os.getpid() and run["host"] == socket.gethostname()
    assert active_run(run_file) is None  # this process's own run (or a job of it) is not "another run"
    guard_run_directory(["snakemake", "--unlock"], run_file)  # so nothing is refused
    release_run_directory(run_file)
    assert not run_file.exists()
