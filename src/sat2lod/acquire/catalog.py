"""Publishing scenes as a static STAC catalog, served over HTTP on 127.0.0.1.

Layout (one endpoint per collection, because EODAG's StaticStacSearch does not filter items by collection):

    <catalog_dir>/catalog.json                                  root catalog -> child collection
    <catalog_dir>/<collection>/collection.json                  collection -> items
    <catalog_dir>/<collection>/<item_id>/<item_id>.json         item, assets with file:size and file:checksum

EODAG does not resolve relative asset hrefs, so hrefs are absolute URLs on the server that serves the catalog:
start the :class:`StacServer` first, then :func:`publish_catalog` with its URL. The server only answers the
paths registered in its route table (no directory listing, no path arithmetic on request paths).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from sat2lod.acquire.files import sha256_file, write_json
from sat2lod.acquire.verify import sha256_multihash

log = logging.getLogger(__name__)

STAC_VERSION = "1.0.0"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_STAC_EXTENSIONS = [
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
]


@dataclass
class SceneToPublish:
    """One image to publish as a STAC item.

    Attributes:
        item_id: STAC item id (letters, digits, '.', '_', '-').
        image: local file served as the ``image`` asset (GeoTIFF with RPC tags).
        footprint: lon/lat (WGS84) polygon of the image on the ground.
        datetime: ISO 8601 acquisition time (UTC, 'Z').
        properties: extra STAC properties (``view:incidence_angle``, ``view:azimuth``, ``sat:relative_orbit``...).
        rpc: external RPC file served as the ``rpc`` asset (role metadata), or None (RPC tags in the image).
    """

    item_id: str
    image: Path
    footprint: BaseGeometry
    datetime: str
    properties: dict[str, Any] = field(default_factory=dict)
    rpc: Path | None = None


def _check_id(value: str, what: str) -> str:
    if not _SAFE_ID.match(value) or ".." in value:
        raise ValueError(
            f"{what} {value!r}: use letters, digits, '.', '_' and '-' only (it becomes a URL and a path)"
        )
    return value


def stac_item(scene: SceneToPublish, collection: str, base_url: str) -> dict[str, Any]:
    """STAC item dict of ``scene``: ``image`` (and ``rpc``) assets at ``{base_url}/{collection}/{id}/{file name}``."""
    _check_id(scene.item_id, "STAC item id")
    href = f"{base_url}/{collection}/{scene.item_id}/{scene.image.name}"
    minx, miny, maxx, maxy = scene.footprint.bounds
    props = {"datetime": scene.datetime, "start_datetime": scene.datetime, "end_datetime": scene.datetime}
    props.update(scene.properties)
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": _STAC_EXTENSIONS,
        "id": scene.item_id,
        "collection": collection,
        "geometry": mapping(scene.footprint),
        "bbox": [minx, miny, maxx, maxy],
        "properties": props,
        "links": [
            {"rel": "root", "href": f"{base_url}/catalog.json", "type": "application/json"},
            {
                "rel": "collection",
                "href": f"{base_url}/{collection}/collection.json",
                "type": "application/json",
            },
            {"rel": "parent", "href": f"{base_url}/{collection}/collection.json", "type": "application/json"},
        ],
        "assets": {
            "image": {
                "href": href,
                "type": "image/tiff; application=geotiff",
                "roles": ["data"],
                "title": scene.image.name,
                "file:size": scene.image.stat().st_size,
                "file:checksum": sha256_multihash(sha256_file(scene.image)),
            }
        },
    }
    if scene.rpc is not None:
        item["assets"]["rpc"] = {
            "href": f"{base_url}/{collection}/{scene.item_id}/{scene.rpc.name}",
            "type": "text/plain",
            "roles": ["metadata"],
            "title": scene.rpc.name,
            "file:size": scene.rpc.stat().st_size,
            "file:checksum": sha256_multihash(sha256_file(scene.rpc)),
        }
    return item


def publish_catalog(
    catalog_dir: str | os.PathLike[str],
    base_url: str,
    collection: str,
    scenes: list[SceneToPublish],
    description: str = "sat2lod scenes",
) -> dict[str, Path]:
    """Write a static STAC catalog of ``scenes`` under ``catalog_dir`` with hrefs on ``base_url``.

    Returns:
        The route table of the server: URL path (e.g. ``/catalog.json``) -> local file to serve.
    """
    catalog_dir = Path(catalog_dir)
    _check_id(collection, "STAC collection id")
    if not scenes:
        raise ValueError("publish_catalog: no scene to publish")
    base_url = base_url.rstrip("/")
    routes: dict[str, Path] = {}
    items = [stac_item(s, collection, base_url) for s in scenes]
    for scene, item in zip(scenes, items):
        rel = f"{collection}/{scene.item_id}/{scene.item_id}.json"
        routes["/" + rel] = write_json(catalog_dir / rel, item)
        routes[f"/{collection}/{scene.item_id}/{scene.image.name}"] = scene.image.resolve()
        if scene.rpc is not None:
            routes[f"/{collection}/{scene.item_id}/{scene.rpc.name}"] = scene.rpc.resolve()
    lons = [b for it in items for b in (it["bbox"][0], it["bbox"][2])]
    lats = [b for it in items for b in (it["bbox"][1], it["bbox"][3])]
    times = sorted(it["properties"]["datetime"] for it in items)
    coll = {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "id": collection,
        "description": description,
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [[min(lons), min(lats), max(lons), max(lats)]]},
            "temporal": {"interval": [[times[0], times[-1]]]},
        },
        "links": [
            {"rel": "root", "href": f"{base_url}/catalog.json", "type": "application/json"},
            {"rel": "parent", "href": f"{base_url}/catalog.json", "type": "application/json"},
        ]
        + [
            {
                "rel": "item",
                "href": f"{base_url}/{collection}/{s.item_id}/{s.item_id}.json",
                "type": "application/geo+json",
            }
            for s in scenes
        ],
    }
    routes[f"/{collection}/collection.json"] = write_json(catalog_dir / collection / "collection.json", coll)
    root = {
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": "sat2lod",
        "description": description,
        "links": [
            {"rel": "root", "href": f"{base_url}/catalog.json", "type": "application/json"},
            {"rel": "child", "href": f"{base_url}/{collection}/collection.json", "type": "application/json"},
        ],
    }
    routes["/catalog.json"] = write_json(catalog_dir / "catalog.json", root)
    log.info(
        "published STAC catalog of %d item(s) in collection %s at %s", len(items), collection, catalog_dir
    )
    return routes


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        if self.server.on_request is not None:
            self.server.on_request(self)
        target = self.server.routes.get(unquote(urlsplit(self.path).path))
        if target is None or not target.is_file():
            self.send_error(HTTPStatus.NOT_FOUND, "not in the catalog")
            return
        ctype = {".json": "application/json", ".tif": "image/tiff"}.get(target.suffix.lower(), "text/plain")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(target.stat().st_size))
        self.end_headers()
        if body:
            with open(target, "rb") as fh:
                shutil.copyfileobj(fh, self.wfile)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("stac server: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Path]
    on_request: Callable[[BaseHTTPRequestHandler], None] | None = None


class StacServer:
    """A small HTTP server on 127.0.0.1 (free port) that serves a route table; a context manager.

    Example::

        with StacServer() as server:
            server.routes.update(publish_catalog(dir, server.url, "SYN", scenes))
            ...  # EODAG searches f"{server.url}/SYN/collection.json"
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port), _Handler)
        self._server.routes = {}
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sat2lod-stac-server", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def routes(self) -> dict[str, Path]:
        return self._server.routes

    @property
    def on_request(self) -> Callable[[BaseHTTPRequestHandler], None] | None:
        """Called with each request handler before it answers (tests: inspect headers)."""
        return self._server.on_request

    @on_request.setter
    def on_request(self, fn: Callable[[BaseHTTPRequestHandler], None] | None) -> None:
        self._server.on_request = fn

    def __enter__(self) -> StacServer:  # noqa: PYI034 (final class)
        self._thread.start()
        log.info("STAC server started at %s", self.url)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        log.info("STAC server at %s stopped", self.url)
