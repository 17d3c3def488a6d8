"""Search and download through EODAG (pinned to 4.10), with the behaviours of that version handled.

Measured with eodag 4.10.1 and handled here:

* ``search()`` swallows provider errors unless ``raise_errors=True``: we always raise, and turn EODAG's
  exceptions into :class:`AcquisitionError` naming the provider, its endpoint and the fix.
* StaticStacSearch does not filter by the item's ``collection``: sat2lod catalogs have one endpoint per collection
  (``{_collection}`` in ``api_endpoint``), and results are checked again here (dates, footprint).
* Date filtering needs ``start_datetime`` / ``end_datetime`` mapped in the provider's ``metadata_mapping``.
* No checksum is verified and a truncated file is accepted: see :mod:`sat2lod.acquire.verify`.
* ``EODAG_PROVIDERS_WHITELIST`` must be JSON (``'["name"]'``) in 4.10: we pass the whitelist in the settings and
  explain the error when the variable is malformed.
* Listing collections without ``provider=`` goes to the internet: every call names the provider, and the
  external collections list is read from a local file.

Credentials come only from environment variables (``EODAG__<PROVIDER>__AUTH__CREDENTIALS__<KEY>``) or the EODAG
user configuration file (``~/.config/eodag/eodag.yml`` or ``$EODAG_CFG_DIR``); never from the workflow config.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from sat2lod.acquire.files import write_json, write_text

log = logging.getLogger(__name__)

#: the EODAG version whose behaviours this module handles (also pinned in pyproject.toml and envs/acquire.yaml)
EODAG_VERSION = "4.10.1"


class AcquisitionError(RuntimeError):
    """Scene search, download or selection failed; the message names the provider/file and the fix."""


def check_eodag_version() -> str:
    """Return the installed EODAG version; raise if it is not the 4.10 series this module was written for."""
    import eodag

    version = eodag.__version__
    if version.split(".")[:2] != EODAG_VERSION.split(".")[:2]:
        raise AcquisitionError(
            f"eodag {version} is installed but sat2lod handles the behaviours of eodag {EODAG_VERSION}: "
            f"install it with `pip install eodag=={EODAG_VERSION}` (or use envs/acquire.yaml)."
        )
    return version


def load_provider_config(text: str, provider: str, source: str) -> dict[str, Any]:
    """Parse a provider YAML document and return the configuration of ``provider``.

    Raises:
        AcquisitionError: malformed YAML, provider missing, or credentials written in the file.
    """
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise AcquisitionError(f"{source}: not valid YAML ({exc}).") from exc
    if not isinstance(doc, dict) or provider not in doc:
        names = sorted(doc) if isinstance(doc, dict) else []
        raise AcquisitionError(f"{source}: provider {provider!r} not defined (found: {names}).")
    conf = doc[provider]
    if isinstance(conf, dict) and any(isinstance(v, dict) and "credentials" in v for v in conf.values()):
        raise AcquisitionError(
            f"{source}: provider {provider!r} has credentials in the file. Remove them and set them in the "
            f"environment (EODAG__{provider.upper()}__AUTH__CREDENTIALS__...) or in the EODAG user config."
        )
    return conf


@dataclass
class Gateway:
    """An EODAG gateway restricted to one provider, and where its search goes (for error messages)."""

    dag: Any
    provider: str
    endpoint: str


def make_gateway(
    provider: str,
    workdir: str | os.PathLike[str],
    provider_conf: dict[str, Any] | None = None,
    endpoint: str | None = None,
    isolated: bool = False,
) -> Gateway:
    """Build an EODAG gateway that only knows ``provider``.

    Args:
        provider: provider name (bundled with EODAG, or defined by ``provider_conf``).
        workdir: scratch directory (provider YAML, empty external collections list, EODAG config when isolated).
        provider_conf: provider configuration (from a provider YAML); None for an EODAG-bundled provider.
        endpoint: overrides ``search.api_endpoint`` (the URL of the STAC server the rule started).
        isolated: use a fresh EODAG config directory in ``workdir`` instead of the user's (demo/tests: no
            credentials needed, nothing written to the home directory).
    """
    check_eodag_version()
    from eodag import EODataAccessGateway
    from eodag.config import EODAGSettings

    workdir = Path(workdir)
    ext = write_json(workdir / "ext_collections.json", {})
    kwargs: dict[str, Any] = {"ext_collections_cfg_uri": str(ext), "providers_whitelist": [provider]}
    if isolated:
        kwargs["cfg_dir"] = workdir / "eodag_cfg"
    if provider_conf is not None:
        conf = dict(provider_conf)
        if endpoint is not None:
            conf["search"] = {**conf.get("search", {}), "api_endpoint": endpoint}
        pdir = workdir / "providers"
        for old in pdir.glob("*.yml") if pdir.is_dir() else []:
            old.unlink()
        write_text(pdir / f"{provider}.yml", yaml.safe_dump({provider: conf}, sort_keys=False))
        kwargs["providers_cfg_dir"] = pdir
    try:
        settings = EODAGSettings(**kwargs)
    except Exception as exc:  # pydantic-settings raises SettingsError for malformed EODAG_* variables
        raise AcquisitionError(
            f"EODAG settings could not be read ({exc}). In eodag 4.10 list-valued variables must be JSON, e.g. "
            "EODAG_PROVIDERS_WHITELIST='[\"peps\"]'; fix or unset the EODAG_* environment variable."
        ) from exc
    dag = EODataAccessGateway(settings=settings)
    if provider not in dag.providers:
        raise AcquisitionError(
            f"EODAG provider {provider!r} is not available (unknown name, missing plugin or missing credentials). "
            "Set source.stac.provider to an EODAG provider or define it in the providers file; credentials go "
            f"in EODAG__{provider.upper()}__AUTH__CREDENTIALS__* environment variables or the EODAG user config."
        )
    auth = getattr(dag.providers[provider].config, "auth", None)
    if auth is not None and not getattr(auth, "type", None):
        prefix = f"EODAG__{provider.upper()}__AUTH__"
        names = sorted(k for k in os.environ if k.upper().startswith(prefix))  # names only, never values
        raise AcquisitionError(
            f"credentials are set for provider {provider!r} ({', '.join(names) or 'EODAG user config'}) but the "
            "provider has no auth: block with a type, so EODAG cannot use them. Add an auth: block "
            "(e.g. type: HTTPHeaderAuth, matching_url, headers) to the provider in the providers file, or unset "
            "the credentials if the provider needs none."
        )
    search_conf = getattr(dag.providers[provider].config, "search", None)
    url = endpoint or getattr(search_conf, "api_endpoint", None) or "?"
    return Gateway(dag=dag, provider=provider, endpoint=str(url))


def _parse_time(value: str) -> datetime:
    t = datetime.fromisoformat(value)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass
class Candidate:
    """A search result reduced to what selection and download need.

    Attributes:
        id: product id from the provider; title: product title.
        datetime: acquisition time (UTC); footprint: lon/lat polygon.
        properties: the STAC properties EODAG returned; assets: asset key -> asset dict (href, file:*).
        product: the EODAG product (to download it).
    """

    id: str
    title: str
    datetime: datetime
    footprint: BaseGeometry
    properties: dict[str, Any]
    assets: dict[str, dict[str, Any]]
    product: Any


def search(
    gw: Gateway,
    collection: str,
    bbox_lonlat: tuple[float, float, float, float],
    start: str,
    end: str,
    max_items: int = 200,
) -> list[Candidate]:
    """Search ``collection`` over ``bbox_lonlat`` between ``start`` and ``end`` (ISO 8601, UTC when no offset).

    Results are filtered again here (acquisition time within [start, end], footprint intersecting the bbox)
    because a provider without date mapping returns everything.

    Raises:
        AcquisitionError: provider unreachable / failing (with its endpoint), or no scene found.
    """
    from eodag.utils.exceptions import EodagError

    where = f"provider {gw.provider!r} ({gw.endpoint.replace('{_collection}', collection)})"
    try:
        res = gw.dag.search(
            collection=collection,
            geom=list(bbox_lonlat),
            start=start,
            end=end,
            provider=gw.provider,
            raise_errors=True,
            limit=max_items,
        )
    except (EodagError, OSError) as exc:
        raise AcquisitionError(
            f"search failed on {where}: {type(exc).__name__}: {exc}. Check that the provider is reachable, the "
            "collection name exists there and the credentials (environment / EODAG user config) are valid."
        ) from exc
    t0, t1 = _parse_time(start), _parse_time(end)
    aoi = box(*bbox_lonlat)
    out: list[Candidate] = []
    for p in res:
        props = dict(p.properties)
        when = props.get("start_datetime") or props.get("datetime")
        if when is None:
            log.warning("%s: product %s has no acquisition time; skipped", where, p.properties.get("id"))
            continue
        t = _parse_time(str(when))
        geom = shape(p.geometry) if not isinstance(p.geometry, BaseGeometry) else p.geometry
        if not (t0 <= t <= t1) or not geom.intersects(aoi):
            log.info("%s: product %s outside the date range or the bbox; dropped", where, props.get("id"))
            continue
        out.append(
            Candidate(
                id=str(props.get("id")),
                title=str(props.get("title") or props.get("id")),
                datetime=t,
                footprint=geom,
                properties=props,
                assets={k: dict(v) for k, v in p.assets.items()},
                product=p,
            )
        )
    if not out:
        raise AcquisitionError(
            f"no scene found in collection {collection!r} over bbox {list(bbox_lonlat)} between {start} and {end} "
            f"on {where}. Widen the dates (source.stac.start/end) or the area (aoi.bbox_lonlat), or check the "
            "collection name."
        )
    log.info("%s: %d scene(s) found in %s", where, len(out), collection)
    return out


def safe_name(product_id: str) -> str:
    """A file-system name for a product id: unsafe characters become '_', never '.', '..' or empty."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", product_id).strip("._") or "product"
    return name[:120]


def check_asset_href(href: str, product_id: str) -> None:
    """Refuse an asset whose URL path has '..' segments (EODAG keeps them in the local file path)."""
    parts = unquote(urlsplit(href).path).replace("\\", "/").split("/")
    if any(p in ("..", ".") for p in parts):
        raise AcquisitionError(
            f"product {product_id!r}: asset URL {href} has '..' path segments and would be written outside the "
            "download directory; refused. Report it to the catalog's maintainer."
        )


def _file_name(asset: dict[str, Any]) -> str:
    return Path(unquote(urlsplit(str(asset.get("href", ""))).path)).name


def pick_asset(c: Candidate, pattern: str | None = None, what: str = "image") -> tuple[str, dict[str, Any]]:
    """The asset of ``c`` to download (EODAG re-keys assets, so they are chosen by file name, not by key).

    Args:
        pattern: regular expression searched in the asset's file name (href basename); None = the first asset
            with role 'data' and a TIFF media type.
        what: what the asset is, for the error message (``image``, ``RPC file``).
    Raises:
        AcquisitionError: no asset (or several) match; the message lists the product's assets.
    """
    names = {k: _file_name(a) for k, a in c.assets.items()}
    if pattern is not None:
        rx = re.compile(pattern)
        hits = [k for k, n in names.items() if rx.search(n)]
        if len(hits) != 1:
            raise AcquisitionError(
                f"product {c.id!r}: {len(hits)} asset(s) match the {what} pattern {pattern!r} "
                f"(asset files: {sorted(names.values())}); fix source.stac."
            )
        return hits[0], c.assets[hits[0]]
    for key, a in c.assets.items():
        if "data" in (a.get("roles") or []) and "tiff" in str(a.get("type", "")).lower():
            return key, a
    raise AcquisitionError(
        f"product {c.id!r} has no GeoTIFF data asset (asset files: {sorted(names.values())}); set source.stac.asset."
    )


#: bytes a server may send beyond the catalog's declared ``file:size`` before the download is cut (one chunk)
SIZE_MARGIN_BYTES = 64 * 1024


def asset_file_name(href: str, product_id: str) -> str:
    """Local file name of an asset: its URL's last path segment made safe (server headers are never used).

    Raises:
        AcquisitionError: the URL has no usable file name.
    """
    raw = Path(unquote(urlsplit(href).path)).name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", raw).lstrip(".")[:200]
    if not name or name in (".", ".."):
        raise AcquisitionError(
            f"product {product_id!r}: asset URL {href} has no file name to save it under; refused."
        )
    return name


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().parent == root.resolve()


def _stream_to_file(chunks: Any, tmp: Path, dest: Path, href: str, max_bytes: int, limit_reason: str) -> None:
    """Write ``chunks`` to ``tmp`` (at most ``max_bytes``), then rename it to ``dest``; ``tmp`` is removed on error."""
    written = 0
    try:
        with open(tmp, "xb") as fh:
            for chunk in chunks:
                written += len(chunk)
                if written > max_bytes:
                    raise AcquisitionError(
                        f"download of {href} refused: the server sent more than {max_bytes} bytes "
                        f"({limit_reason}); the partial file was removed. Report it to the provider."
                    )
                fh.write(chunk)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _download_one(
    c: Candidate, key: str, dest: Path, href: str, max_bytes: int, limit_reason: str, timeout_min: float
) -> None:
    """Stream one asset through EODAG (its HTTP plugin and auth) into ``dest``, retrying transient failures."""
    from eodag.utils.exceptions import EodagError
    from requests import RequestException

    deadline = time.monotonic() + 60.0 * timeout_min
    tmp = dest.with_name(dest.name + ".part")
    while True:
        tmp.unlink(missing_ok=True)
        try:
            stream = c.product.stream_download(asset=f"^{re.escape(key)}$", compress="raw")
            _stream_to_file(stream.content, tmp, dest, href, max_bytes, limit_reason)
            return
        except (EodagError, RequestException) as exc:  # network / provider: retried within the budget
            left = deadline - time.monotonic()
            if left <= 0:
                raise AcquisitionError(
                    f"download of {href} failed: {type(exc).__name__}: {exc}. Rerun later "
                    "or check the provider and credentials (source.download_timeout_min: retry budget)."
                ) from exc
            log.warning("download of %s failed (%s); retrying", href, exc)
            time.sleep(min(2.0, left))
        except OSError as exc:  # local file system (disk full...): not retried
            raise AcquisitionError(f"download of {href} into {dest} failed: {exc}.") from exc


def download_assets(
    c: Candidate,
    asset_keys: list[str],
    download_dir: str | os.PathLike[str],
    timeout_min: float = 2.0,
    max_bytes: int = 16 * 1024**3,
) -> list[Path]:
    """Download assets of ``c`` into ``download_dir/<safe product name>/<safe asset file name>``; return their files.

    Each asset is streamed through EODAG (``EOProduct.stream_download``: its HTTP plugin, auth and headers) and
    written by this function, so nothing the server says chooses where bytes go: the file is named after the
    asset URL's last segment made safe (``Content-Disposition`` is ignored; EODAG 4.10's ``download()`` joined
    it onto the product folder, ``../`` and absolute paths included), and the final path is checked to lie in
    the product folder before anything is written. The stream is cut, and the partial file removed, as soon as
    it exceeds the catalog's ``file:size`` + :data:`SIZE_MARGIN_BYTES`, or ``max_bytes`` when the catalog gives
    no size.

    Args:
        timeout_min: time budget for retrying a failed request (minutes).
        max_bytes: cap of an asset without ``file:size`` (``source.max_download_mb``).
    Raises:
        AcquisitionError: download failure, refused size or path (with the URL and the reason).
    """
    download_dir = Path(download_dir).resolve()
    hrefs = [str(c.assets[k].get("href", "")) for k in asset_keys]
    for href in hrefs:
        check_asset_href(href, c.id)
    out_dir = download_dir / safe_name(c.id)
    names = [asset_file_name(h, c.id) for h in hrefs]
    if len(set(names)) != len(names):
        raise AcquisitionError(
            f"product {c.id!r}: assets {hrefs} would be saved under one file name; refused."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for key, href, name in zip(asset_keys, hrefs, names):
        dest = out_dir / name
        if not _inside(dest, out_dir) or dest.is_symlink():
            raise AcquisitionError(f"download of {href}: {dest} is not a plain file in {out_dir}; refused.")
        size = c.assets[key].get("file:size")
        if size is not None:
            cap, why = int(size) + SIZE_MARGIN_BYTES, f"the catalog declares file:size {int(size)}"
        else:
            cap, why = int(max_bytes), "no file:size in the catalog; cap source.max_download_mb"
        _download_one(c, key, dest, href, cap, why, timeout_min)
        out.append(dest)
    return out
