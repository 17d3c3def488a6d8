"""The ``acquire`` step: find, fetch and verify the scenes, choose the stereo set, write the scene sheet.

Three sources (``source.kind``):

* ``synthetic``: the synthetic views are published as a STAC catalog served on 127.0.0.1 by a server started
  and stopped here, then searched and downloaded through EODAG like any provider (demo and tests);
* ``local``: images (and optional RPC files) listed in the config, used in place;
* ``stac``: a real provider through EODAG (credentials from the environment or the EODAG user config).

The scene sheet format is in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import box

from sat2lod import ELLIPSOID_DATUM
from sat2lod.acquire.catalog import SceneToPublish, StacServer, publish_catalog
from sat2lod.acquire.eodag_client import (
    AcquisitionError,
    Candidate,
    Gateway,
    download_assets,
    load_provider_config,
    make_gateway,
    pick_asset,
    search,
)
from sat2lod.acquire.files import probe_image, read_json, read_text, write_json
from sat2lod.acquire.geometry import (
    angles_from_parallax,
    base_to_height,
    common_footprint,
    footprint_lonlat,
    parallax_vector,
    utm_epsg,
)
from sat2lod.acquire.selection import SelectionError, ViewInfo, select_stereo
from sat2lod.acquire.verify import VerificationError, verify_file, verify_image
from sat2lod.io.rpc_files import RPCReadError, read_rpc
from sat2lod.rpc import RPCModel
from sat2lod.schema import defaults

log = logging.getLogger(__name__)

#: provider name of the catalog served by the acquire rule (defined in config/eodag_providers.yaml)
LOCAL_PROVIDER = "sat2lod_stac"
#: STAC collection of the synthetic scenes
SYNTHETIC_COLLECTION = "sat2lod-synthetic"
TRUTH_KEYS = ("dsm", "dtm", "ndsm", "classes", "buildings")


def _shown(path: str | os.PathLike[str]) -> str:
    """Path as written in the scene sheet: relative to the working directory when inside it."""
    p = Path(path)
    if p.is_absolute():
        try:
            return str(p.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(p)
    return str(p)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


def _parse_time(value: str) -> datetime:
    t = datetime.fromisoformat(str(value))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def rpc_height_range(rpcs: Sequence[RPCModel]) -> tuple[float, float]:
    """Ellipsoidal height range valid for every RPC: intersection of [off - scale, off + scale] (union if empty)."""
    lo = [r.height_off - abs(r.height_scale) for r in rpcs]
    hi = [r.height_off + abs(r.height_scale) for r in rpcs]
    if max(lo) < min(hi):
        return float(max(lo)), float(min(hi))
    return float(min(lo)), float(max(hi))


def aoi_grid_frame(aoi_lonlat: shapely.Geometry, epsg: int | None) -> tuple[int, list[float]]:
    """(EPSG, [xmin, ymin, xmax, ymax]) of the AOI in the output CRS (UTM zone of its centre when epsg is None)."""
    c = aoi_lonlat.centroid
    epsg = int(epsg) if epsg is not None else utm_epsg(c.x, c.y)
    to_xy = Transformer.from_crs(4326, epsg, always_xy=True)
    dense = shapely.segmentize(aoi_lonlat, max_segment_length=max(aoi_lonlat.length / 400.0, 1e-9))
    xy = shapely.transform(dense, lambda a: np.column_stack(to_xy.transform(a[:, 0], a[:, 1])))
    return epsg, [float(v) for v in xy.bounds]


def _pairs_in_range(
    angles: list[tuple[float, float]], bh_min: float, bh_max: float
) -> tuple[list[list[int]], dict[str, float]]:
    ratios: dict[str, float] = {}
    pairs: list[list[int]] = []
    for a in range(len(angles)):
        for b in range(a + 1, len(angles)):
            r = base_to_height(*angles[a], *angles[b])
            ratios[f"{a}-{b}"] = round(r, 4)
            if bh_min <= r <= bh_max:
                pairs.append([a, b])
    return pairs, ratios


# ---------------------------------------------------------------------------------------------- EODAG fetch
def _view_info(c: Candidate) -> ViewInfo | None:
    """Selection view of a candidate; None when the catalog gives no viewing angles."""
    p = c.properties
    inc, az = p.get("view:incidence_angle"), p.get("view:azimuth")
    if inc is None or az is None:
        log.warning(
            "product %s: no view:incidence_angle / view:azimuth in the catalog; not a stereo candidate", c.id
        )
        return None
    orbit = p.get("sat:relative_orbit", p.get("sat:absolute_orbit"))
    return ViewInfo(
        key=c.id,
        datetime=c.datetime,
        incidence_deg=float(inc),
        azimuth_deg=float(az),
        footprint=c.footprint,
        platform=p.get("platform"),
        orbit=orbit,
    )


def fetch_stereo_set(
    gw: Gateway,
    collection: str,
    aoi_lonlat: shapely.Geometry,
    start: str,
    end: str,
    downloads: Path,
    selection: dict[str, Any],
    asset: str | None = None,
    rpc_asset: str | None = None,
    max_items: int = 200,
    download_timeout_min: float = 2.0,
    max_download_mb: float = 16384.0,
) -> tuple[list[dict[str, Any]], list[list[int]], dict[str, float]]:
    """Search, select, download and verify. Returns (views of the sheet, pairs, B/H of every selected pair).

    ``asset`` / ``rpc_asset``: file-name patterns of the image asset (None = the 'data' GeoTIFF) and of an
    external RPC file asset (None = RPC tags in the image), see :func:`pick_asset`. ``max_download_mb``: cap
    of an asset whose catalog entry gives no ``file:size`` (see :func:`download_assets`).
    """
    dl = {"timeout_min": download_timeout_min, "max_bytes": int(max_download_mb * 1024**2)}
    found = search(gw, collection, tuple(aoi_lonlat.bounds), start, end, max_items=max_items)
    with_angles = [(c, info) for c in found if (info := _view_info(c)) is not None]
    if len(with_angles) < 2:
        raise AcquisitionError(
            f"{len(found)} scene(s) found in {collection!r} but {len(with_angles)} with view:incidence_angle and "
            "view:azimuth (STAC view extension), which stereo selection needs. Use a collection that publishes "
            "them, or download the images and use source.kind: local."
        )
    cands = [c for c, _ in with_angles]
    infos = [info for _, info in with_angles]
    try:
        sel = select_stereo(infos, aoi_lonlat, **selection)
    except SelectionError as exc:
        raise AcquisitionError(str(exc)) from exc
    views: list[dict[str, Any]] = []
    bad: list[str] = []
    for n, i in enumerate(sel.views):
        c = cands[i]
        key, img_asset = pick_asset(c, asset, "image")
        rpc_path = None
        try:
            if rpc_asset is not None:
                rkey, r_asset = pick_asset(c, rpc_asset, "RPC file")
                path, rpc_path = download_assets(c, [key, rkey], downloads, **dl)
                verify_file(
                    rpc_path,
                    url=r_asset.get("href"),
                    expected_size=r_asset.get("file:size"),
                    expected_checksum=r_asset.get("file:checksum"),
                    delete_root=downloads,
                )
            else:
                (path,) = download_assets(c, [key], downloads, **dl)
            v = verify_image(
                path,
                url=img_asset.get("href"),
                expected_size=img_asset.get("file:size"),
                expected_checksum=img_asset.get("file:checksum"),
                rpc_file=rpc_path,
                delete_root=downloads,
            )
        except VerificationError as exc:
            bad.append(str(exc))
            continue
        log.info("view %d/%d: %s downloaded and verified (%s)", n + 1, len(sel.views), c.id, v.path.name)
        if img_asset.get("file:checksum") is None:
            log.warning(
                "%s: the catalog gives no file:checksum; only size, readability and RPCs were checked",
                img_asset.get("href"),
            )
        views.append(
            {
                "id": f"view{n}",
                "image": _shown(v.path),
                "rpc": _shown(rpc_path) if rpc_path else None,
                "datetime": _iso(c.datetime),
                "incidence_deg": infos[i].incidence_deg,
                "azimuth_deg": infos[i].azimuth_deg,
                "width": v.width,
                "height": v.height,
                "sha256": v.sha256,
                "product_id": c.id,
                "url": img_asset.get("href"),
            }
        )
    if bad:
        raise AcquisitionError(f"{len(bad)} downloaded file(s) failed verification:\n" + "\n".join(bad))
    pairs = [list(p) for p in sel.pairs]
    ratios = {f"{a}-{b}": round(r, 4) for (a, b), r in sel.base_to_height.items()}
    return views, pairs, ratios


# ---------------------------------------------------------------------------------------------- sources
def _synthetic(
    scene_json: Path,
    aoi: str,
    downloads: Path,
    catalog_dir: Path,
    providers_file: Path,
    selection: dict[str, Any],
    bbox_lonlat: list[float] | None,
    download_timeout_min: float,
    max_download_mb: float,
) -> dict[str, Any]:
    scene = read_json(scene_json)
    for k in ("epsg", "bounds", "lonlat_bounds", "height_range", "views"):
        if k not in scene:
            raise AcquisitionError(
                f"{scene_json}: key {k!r} missing; regenerate the synthetic city (rule synth_city)."
            )
    hmin, hmax = map(float, scene["height_range"])
    to_publish: list[SceneToPublish] = []
    for i, v in enumerate(scene["views"]):
        img = Path(v["file"])
        if not img.is_absolute() and not img.exists():
            img = scene_json.parent / img
        probe = probe_image(img)
        rpc = read_rpc(img)
        fp = footprint_lonlat(rpc, probe.width, probe.height, 0.5 * (hmin + hmax))
        to_publish.append(
            SceneToPublish(
                item_id=f"{aoi}-view{i}",
                image=img,
                footprint=fp,
                datetime=_iso(_parse_time(v["datetime"])),
                properties={
                    "view:incidence_angle": float(v["incidence_deg"]),
                    "view:azimuth": float(v["azimuth_deg"]),
                    "platform": "sat2lod-synthetic",
                    "sat:relative_orbit": 1,
                    "constellation": "sat2lod",
                },
            )
        )
    times = sorted(_parse_time(v["datetime"]) for v in scene["views"])
    aoi_ll = box(*bbox_lonlat) if bbox_lonlat else box(*scene["lonlat_bounds"])
    provider_conf = load_provider_config(read_text(providers_file), LOCAL_PROVIDER, str(providers_file))
    # EODAG's isolated config (it copies its bundled shapefile package, __pycache__ included) lives in a
    # scratch folder removed afterwards, not under results/.
    with StacServer() as server, TemporaryDirectory(prefix="sat2lod-eodag-") as eodag_dir:
        server.routes.update(
            publish_catalog(
                catalog_dir,
                server.url,
                SYNTHETIC_COLLECTION,
                to_publish,
                description=f"sat2lod synthetic scenes of AOI {aoi}",
            )
        )
        gw = make_gateway(
            LOCAL_PROVIDER,
            Path(eodag_dir),
            provider_conf=provider_conf,
            endpoint=f"{server.url}/{{_collection}}/collection.json",
            isolated=True,
        )
        views, pairs, ratios = fetch_stereo_set(
            gw,
            SYNTHETIC_COLLECTION,
            aoi_ll,
            _iso(times[0] - timedelta(days=1)),
            _iso(times[-1] + timedelta(days=1)),
            downloads,
            selection,
            download_timeout_min=download_timeout_min,
            max_download_mb=max_download_mb,
        )
    return {
        "views": views,
        "pairs": pairs,
        "base_to_height": ratios,
        "aoi_lonlat_geom": aoi_ll,
        "height_range": [hmin, hmax],
        "scene": scene,
        "provider": LOCAL_PROVIDER,
        "collection": SYNTHETIC_COLLECTION,
    }


def _local_ms(entry: dict[str, Any], i: int) -> dict[str, str]:
    """Scene-sheet keys of a local view's multispectral image (none when it has none); the files must exist."""
    out = {}
    for key in ("ms_image", "ms_rpc"):
        if entry.get(key):
            if not Path(entry[key]).is_file():
                raise AcquisitionError(
                    f"source.local.images[{i}].{key}: {entry[key]} not found; fix the path or remove the key."
                )
            out[key] = _shown(entry[key])
    if "ms_rpc" in out and "ms_image" not in out:
        raise AcquisitionError(f"source.local.images[{i}]: ms_rpc is given without ms_image.")
    return out


def _local(
    images: list[dict[str, Any]],
    selection: dict[str, Any],
    bbox_lonlat: list[float] | None,
    height_range: list[float] | None,
) -> dict[str, Any]:
    if len(images) < 2:
        raise AcquisitionError(f"source.local.images lists {len(images)} image(s); stereo needs at least 2.")
    verified, rpcs = [], []
    for i, entry in enumerate(images):
        img, rpc_file = Path(entry["image"]), entry.get("rpc")
        try:
            v = verify_image(img, rpc_file=rpc_file)
            rpcs.append(read_rpc(img, rpc_file))
        except (VerificationError, RPCReadError) as exc:
            raise AcquisitionError(f"source.local.images[{i}]: {exc}") from exc
        verified.append(v)
    hr = tuple(map(float, height_range)) if height_range else rpc_height_range(rpcs)
    hmid = 0.5 * (hr[0] + hr[1])
    if bbox_lonlat:
        aoi_ll = box(*bbox_lonlat)
    else:
        # crops overlap only near their true ground height, unknown within a wide RPC range: any height counts
        fp = common_footprint([(r, v.width, v.height) for r, v in zip(rpcs, verified)], hr, mode="any_height")
        if fp.is_empty:
            raise AcquisitionError(
                f"source.local.images: the images see no common ground at any height in {list(hr)} "
                "m; check that they are a stereo set of one area and that their RPC files match "
                "them, or set source.height_range."
            )
        aoi_ll = box(*fp.bounds)
    views, angles = [], []
    for i, (entry, v, rpc) in enumerate(zip(images, verified, rpcs)):
        inc, az = angles_from_parallax(parallax_vector(rpc, (v.height - 1) / 2.0, (v.width - 1) / 2.0, hmid))
        angles.append((inc, az))
        views.append(
            {
                "id": str(entry.get("id") or f"view{i}"),
                "image": _shown(v.path),
                "rpc": _shown(v.rpc) if v.rpc else None,
                **_local_ms(entry, i),
                "datetime": entry.get("datetime"),
                "incidence_deg": round(inc, 4),
                "azimuth_deg": round(az, 4),
                "width": v.width,
                "height": v.height,
                "sha256": v.sha256,
            }
        )
    pairs, ratios = _pairs_in_range(angles, selection.get("bh_min", 0.0), selection.get("bh_max", 10.0))
    if not pairs:
        raise AcquisitionError(
            f"source.local.images: no pair has a base-to-height ratio in "
            f"[{selection.get('bh_min')}, {selection.get('bh_max')}] (B/H: {ratios}); "
            "adjust source.selection.bh_min/bh_max or the images."
        )
    return {
        "views": views,
        "pairs": pairs,
        "base_to_height": ratios,
        "aoi_lonlat_geom": aoi_ll,
        "height_range": [float(hr[0]), float(hr[1])],
        "provider": None,
        "collection": None,
    }


def _stac(
    stac: dict[str, Any],
    downloads: Path,
    workdir: Path,
    providers_file: Path | None,
    selection: dict[str, Any],
    bbox_lonlat: list[float] | None,
    height_range: list[float] | None,
    download_timeout_min: float,
    max_download_mb: float,
) -> dict[str, Any]:
    for k in ("provider", "collection", "start", "end"):
        if not stac.get(k):
            raise AcquisitionError(f"source.stac.{k} must be set for source.kind: stac.")
    if not bbox_lonlat:
        raise AcquisitionError("aoi.bbox_lonlat must be set for source.kind: stac (it is the search area).")
    provider = str(stac["provider"])
    provider_conf = None
    if providers_file is not None:
        import yaml

        doc = yaml.safe_load(read_text(providers_file)) or {}
        if provider in doc:
            provider_conf = load_provider_config(read_text(providers_file), provider, str(providers_file))
    gw = make_gateway(provider, workdir, provider_conf=provider_conf, isolated=False)
    aoi_ll = box(*bbox_lonlat)
    views, pairs, ratios = fetch_stereo_set(
        gw,
        str(stac["collection"]),
        aoi_ll,
        str(stac["start"]),
        str(stac["end"]),
        downloads,
        selection,
        asset=stac.get("asset"),
        rpc_asset=stac.get("rpc_asset"),
        max_items=int(stac.get("max_items", 200)),
        download_timeout_min=download_timeout_min,
        max_download_mb=max_download_mb,
    )
    rpcs = [read_rpc(v["image"], v["rpc"]) for v in views]
    hr = tuple(map(float, height_range)) if height_range else rpc_height_range(rpcs)
    return {
        "views": views,
        "pairs": pairs,
        "base_to_height": ratios,
        "aoi_lonlat_geom": aoi_ll,
        "height_range": [float(hr[0]), float(hr[1])],
        "provider": provider,
        "collection": stac["collection"],
    }


# ---------------------------------------------------------------------------------------------- entry point
_SOURCE = defaults("source")  # defaults of config section source (its leaf keys)


@dataclass(frozen=True)
class AcquireParams:
    """Parameters of rule ``acquire``: config section ``source`` without ``providers_file`` (a file, an input
    of the rule) and ``synthetic`` (rule synth_city's), one field per key, plus ``epsg`` (key
    ``output.epsg``) and ``bbox_lonlat`` (key ``aoi.bbox_lonlat``); defaults from the schema (see
    config/schema.yaml for each). The rule passes the section whole but for those two. ``local``, ``stac`` and
    ``selection`` are sub-sections: a key left out of one takes the schema's default (:meth:`local_images`,
    :meth:`stac_query`, :meth:`selection_kwargs`).

    Attributes:
        kind: ``synthetic``, ``local`` or ``stac``.
        local: ``{images: [{image, rpc?, ms_image?, ms_rpc?, datetime?, id?}]}`` (kind local).
        stac: ``{provider, collection, start, end, asset?, rpc_asset?, max_items?}`` (kind stac).
        height_range: [hmin, hmax] ellipsoidal metres; None = the synthetic scene's, or the RPC height
            offsets/scales.
        download_timeout_min: retry budget of a failed download (minutes).
        max_download_mb: cap of a download whose catalog entry gives no ``file:size`` (MiB).
        selection: keyword arguments of :func:`sat2lod.acquire.selection.select_stereo`.
        epsg: output EPSG; None = UTM zone of the AOI centre.
        bbox_lonlat: [min_lon, min_lat, max_lon, max_lat] AOI; None = the scene (synthetic) / common footprint
            (local).
    """

    kind: str = _SOURCE["kind"]
    local: Mapping[str, Any] = field(default_factory=lambda: defaults("source", "local"))
    stac: Mapping[str, Any] = field(default_factory=lambda: defaults("source", "stac"))
    height_range: list[float] | None = _SOURCE["height_range"]
    download_timeout_min: float = _SOURCE["download_timeout_min"]
    max_download_mb: float = _SOURCE["max_download_mb"]
    selection: Mapping[str, Any] = field(default_factory=lambda: defaults("source", "selection"))
    epsg: int | None = defaults("output")["epsg"]
    bbox_lonlat: list[float] | None = defaults("aoi")["bbox_lonlat"]

    def local_images(self) -> list[dict[str, Any]]:
        """``local.images``, the schema's default where left out."""
        return list({**defaults("source", "local"), **self.local}["images"])

    def stac_query(self) -> dict[str, Any]:
        """``stac``, each key left out set to the schema's default."""
        return {**defaults("source", "stac"), **self.stac}

    def selection_kwargs(self) -> dict[str, Any]:
        """``selection``, each key left out set to the schema's default."""
        return {**defaults("source", "selection"), **self.selection}


def acquire(
    *,
    aoi: str,
    sheet: str | os.PathLike[str],
    downloads: str | os.PathLike[str],
    catalog_dir: str | os.PathLike[str],
    synthetic_scene: str | os.PathLike[str] | None = None,
    truth: dict[str, str] | None = None,
    providers_file: str | os.PathLike[str] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Acquire the scenes of ``aoi`` and write the scene sheet ``sheet`` (JSON, see docs/ARCHITECTURE.md).

    Args:
        aoi: AOI name.
        sheet: output scene sheet path.
        downloads: directory for downloaded files (created; nothing is written outside it but the sheet and catalog).
        catalog_dir: directory of the published STAC catalog and EODAG scratch files (synthetic/stac).
        synthetic_scene: ``results/synth/{aoi}/scene.json`` (kind synthetic).
        truth: reference files by key (dsm, dtm, ndsm, classes, buildings) or None.
        providers_file: EODAG provider YAML (config/eodag_providers.yaml).
        **params: fields of :class:`AcquireParams` (config section ``source``, ``output.epsg``,
            ``aoi.bbox_lonlat``); an unknown name is an error.
    Returns:
        The scene sheet (also written to ``sheet``).
    Raises:
        AcquisitionError: with the provider / file and the fix.
    """
    prm = AcquireParams(**params)
    kind, epsg, bbox_lonlat, height_range = prm.kind, prm.epsg, prm.bbox_lonlat, prm.height_range
    download_timeout_min, max_download_mb = prm.download_timeout_min, prm.max_download_mb
    downloads, catalog_dir = Path(downloads), Path(catalog_dir)
    downloads.mkdir(parents=True, exist_ok=True)
    catalog_dir.mkdir(parents=True, exist_ok=True)  # stays empty for local scenes
    selection = prm.selection_kwargs()
    if kind == "synthetic":
        if synthetic_scene is None or providers_file is None:
            raise AcquisitionError(
                "source.kind synthetic needs the synthetic scene.json and the providers file"
            )
        res = _synthetic(
            Path(synthetic_scene),
            aoi,
            downloads,
            catalog_dir,
            Path(providers_file),
            selection,
            bbox_lonlat,
            download_timeout_min,
            max_download_mb,
        )
        if height_range:
            res["height_range"] = [float(height_range[0]), float(height_range[1])]
    elif kind == "local":
        local_sel = {k: selection[k] for k in ("bh_min", "bh_max") if k in selection}
        res = _local(prm.local_images(), local_sel, bbox_lonlat, height_range)
    elif kind == "stac":
        res = _stac(
            prm.stac_query(),
            downloads,
            catalog_dir / "_eodag",
            Path(providers_file) if providers_file else None,
            selection,
            bbox_lonlat,
            height_range,
            download_timeout_min,
            max_download_mb,
        )
    else:
        raise AcquisitionError(f"source.kind {kind!r}: expected synthetic, local or stac.")

    aoi_ll = res["aoi_lonlat_geom"]
    out_epsg, bounds = aoi_grid_frame(aoi_ll, epsg)
    scene = res.get("scene")
    if scene is not None and int(scene["epsg"]) == out_epsg:
        sb = [float(v) for v in scene["bounds"]]
        bounds = [max(bounds[0], sb[0]), max(bounds[1], sb[1]), min(bounds[2], sb[2]), min(bounds[3], sb[3])]
        if not bbox_lonlat:
            bounds = sb
    truth_out = None
    if truth:
        truth_out = {k: (_shown(truth[k]) if truth.get(k) else None) for k in TRUTH_KEYS}
    out = {
        "aoi": aoi,
        "epsg": out_epsg,
        "aoi_bounds": bounds,
        "aoi_lonlat": [float(v) for v in aoi_ll.bounds],
        "height_range": res["height_range"],
        "vertical_datum": ELLIPSOID_DATUM,
        "views": res["views"],
        "pairs": res["pairs"],
        "base_to_height": res["base_to_height"],
        "truth": truth_out,
        "source": {"kind": kind, "provider": res.get("provider"), "collection": res.get("collection")},
    }
    write_json(sheet, out)
    log.info(
        "scene sheet %s: %d view(s), pairs %s, EPSG:%d, AOI %s",
        sheet,
        len(out["views"]),
        out["pairs"],
        out_epsg,
        [round(b, 2) for b in bounds],
    )
    return out
