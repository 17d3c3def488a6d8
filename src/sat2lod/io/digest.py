"""Content digests of workflow products, to prove that two runs made the same products bit for bit."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

#: files under results/ that are not products (the package's own working files)
_SKIP_SUFFIXES = {".log", ".tsv"}


def hash_file(path: str | os.PathLike[str], algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file with a :mod:`hashlib` algorithm, read by 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file, read by 1 MiB chunks."""
    return hash_file(path, "sha256", chunk)


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a product by content: a raster by CRS, grid, nodata, tags and array bytes (not its GeoTIFF
    byte layout); a vector file by its rows (geometry WKB and attributes); any other file byte for byte."""
    from sat2lod.io.raster import read_raster
    from sat2lod.io.vector import read_vector

    p = Path(path)
    h = hashlib.sha256()
    if p.suffix == ".tif":
        r = read_raster(p)
        crs = r.crs.to_wkt() if r.crs else None
        h.update(repr((crs, tuple(r.transform), r.nodata, sorted(r.tags.items()))).encode())
        h.update(repr(r.band_tags).encode())
        h.update(np.ascontiguousarray(r.array).tobytes())
    elif p.suffix in {".gpkg", ".fgb"}:
        g = read_vector(p)
        if len(g):
            h.update(b"".join(g.geometry.to_wkb()))
        h.update(g.drop(columns="geometry").to_json().encode())
    else:
        h.update(p.read_bytes())
    return h.hexdigest()


def product_digests(results: str | os.PathLike[str]) -> dict[str, str]:
    """{path relative to ``results``: :func:`file_digest`} of every file under ``results`` (hidden files, logs
    and benchmark tables aside)."""
    root = Path(results)
    return {
        str(p.relative_to(root)): file_digest(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and p.suffix not in _SKIP_SUFFIXES
    }


def is_run_record(rel: str) -> bool:
    """Whether a product path (relative to results/) records the run itself rather than the data, and so
    differs between runs of one config: the acquisition's catalog and scene sheet name the URL of the
    synthetic source's local STAC server, whose port is chosen at run time; the throughput figure (and the
    PDF holding it) plots the jobs' measured CPU times."""
    return (rel.startswith("acquire/") and rel.endswith((".json", ".yml"))) or rel.endswith(
        ("throughput.png", ".pdf")
    )


def comparable(digests: dict[str, str]) -> dict[str, str]:
    """``digests`` without the run records (:func:`is_run_record`): what two runs of one config share."""
    return {k: v for k, v in digests.items() if not is_run_record(k)}
