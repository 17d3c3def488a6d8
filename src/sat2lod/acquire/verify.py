"""Verification of downloaded (or local) scene files: size, checksum, readability, RPC model.

EODAG 4.10 verifies no checksum and accepts a truncated file, so every asset is checked here against the
STAC ``file:size`` / ``file:checksum`` (multihash: sha2-256 ``1220``, sha2-512 ``1340``, sha1 ``1114`` or md5
``d50110``, + hex digest) before it is used.
A file that fails is deleted (only when it lies inside the download directory) and reported with its URL.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sat2lod.acquire.files import ImageProbeError, hash_file, probe_image, sha256_file
from sat2lod.io.rpc_files import RPCReadError, read_rpc

log = logging.getLogger(__name__)

#: multihash prefix of a SHA2-256 digest (code 0x12, length 0x20)
SHA256_MULTIHASH_PREFIX = "1220"


class VerificationError(RuntimeError):
    """A scene file failed verification; the message names the file, its URL and the fix."""


def sha256_multihash(hex_digest: str) -> str:
    """STAC ``file:checksum`` (multihash hex) of a SHA-256 hex digest."""
    return SHA256_MULTIHASH_PREFIX + hex_digest.lower()


#: multihash prefixes (varint code + digest length, hex) of the supported STAC ``file:checksum`` algorithms
MULTIHASH_PREFIXES = {"1220": "sha256", "1340": "sha512", "d50110": "md5", "1114": "sha1"}
_DIGEST_HEX = {"sha256": 64, "sha512": 128, "md5": 32, "sha1": 40}


def parse_multihash(checksum: str) -> tuple[str, str]:
    """Split a STAC ``file:checksum`` into (hashlib algorithm name, hex digest).

    Supported: sha2-256 (``1220``), sha2-512 (``1340``), sha1 (``1114``) and md5 (``d50110``).

    Raises:
        VerificationError: unsupported or malformed multihash.
    """
    c = str(checksum).strip().lower()
    for prefix, algo in MULTIHASH_PREFIXES.items():
        digest = c[len(prefix) :]
        if (
            c.startswith(prefix)
            and len(digest) == _DIGEST_HEX[algo]
            and all(ch in "0123456789abcdef" for ch in digest)
        ):
            return algo, digest
    raise VerificationError(
        f"unsupported file:checksum {checksum!r}: expected a multihash of sha2-256 ('1220' + 64 hex digits), "
        "sha2-512 ('1340' + 128), sha1 ('1114' + 40) or md5 ('d50110' + 32)"
    )


@dataclass
class VerifiedImage:
    """A scene image that passed verification (size in pixels, digest, RPC source)."""

    path: Path
    width: int
    height: int
    sha256: str
    rpc: Path | None


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _fail(
    path: Path, url: str | None, reason: str, fix: str, delete_root: str | os.PathLike[str] | None
) -> VerificationError:
    """Build the error (deleting ``path`` first when it lies inside ``delete_root``)."""
    where = f" (downloaded from {url})" if url else ""
    deleted = ""
    if delete_root is not None and path.is_file() and _inside(path, Path(delete_root)):
        path.unlink()
        deleted = " The file was deleted."
    log.error("verification failed: %s%s: %s", path, where, reason)
    return VerificationError(f"{path}{where}: {reason}.{deleted} {fix}")


def _redo(url: str | None) -> str:
    if url is None:
        return "Replace the file with an intact copy."
    return "Rerun the acquisition to download it again; if it fails again the provider serves a bad file."


def verify_file(
    path: str | os.PathLike[str],
    url: str | None = None,
    expected_size: int | None = None,
    expected_checksum: str | None = None,
    delete_root: str | os.PathLike[str] | None = None,
) -> str:
    """Check that ``path`` exists and matches the catalog's ``file:size`` / ``file:checksum``; return its SHA-256.

    Arguments as :func:`verify_image`. Raises :class:`VerificationError`.
    """
    path = Path(path)
    if not path.is_file():
        raise _fail(
            path,
            url,
            "file not found",
            "Check the path in source.local.images or rerun the acquisition.",
            delete_root,
        )
    size = path.stat().st_size
    if expected_size is not None and size != int(expected_size):
        raise _fail(
            path,
            url,
            f"size {size} bytes differs from the catalog's file:size {int(expected_size)} "
            "(truncated or corrupt download)",
            _redo(url),
            delete_root,
        )
    digest = sha256_file(path)
    if expected_checksum is not None:
        try:
            algo, want = parse_multihash(expected_checksum)
        except VerificationError as exc:
            raise _fail(
                path, url, str(exc), "Report the catalog entry to its maintainer.", delete_root
            ) from exc
        got = digest if algo == "sha256" else hash_file(path, algo)
        if got != want:
            raise _fail(
                path,
                url,
                f"{algo} {got} differs from the catalog's file:checksum {want}",
                _redo(url),
                delete_root,
            )
    return digest


def verify_image(
    path: str | os.PathLike[str],
    url: str | None = None,
    expected_size: int | None = None,
    expected_checksum: str | None = None,
    rpc_file: str | os.PathLike[str] | None = None,
    delete_root: str | os.PathLike[str] | None = None,
) -> VerifiedImage:
    """Check one scene image and return what the scene sheet needs.

    Checks, in order: the file exists; its size equals ``expected_size``; its SHA-256 equals
    ``expected_checksum`` (STAC multihash); rasterio opens it and reads its last row; an RPC model is found
    (GeoTIFF tags, or ``rpc_file``) and read by :func:`sat2lod.io.rpc_files.read_rpc`.

    Args:
        path: the image file.
        url: where it was downloaded from (named in errors); None for local files.
        expected_size: bytes (STAC ``file:size``), or None to skip.
        expected_checksum: STAC ``file:checksum`` multihash, or None to skip.
        rpc_file: external RPC file (.geom, DIMAP XML, _RPC.TXT), or None for RPC tags.
        delete_root: when given, a failing file inside this directory is deleted (a download must not leave a
            bad file that a rerun would trust); files elsewhere are never touched.
    Raises:
        VerificationError: naming the file, the URL and what to do.
    """
    path = Path(path)
    digest = verify_file(path, url, expected_size, expected_checksum, delete_root)
    try:
        probe = probe_image(path)
    except ImageProbeError as exc:
        raise _fail(
            path, url, f"not a readable image ({exc.__cause__ or exc})", _redo(url), delete_root
        ) from exc
    try:
        read_rpc(path, rpc_file)
    except (RPCReadError, OSError, ValueError) as exc:
        raise _fail(
            path,
            url,
            f"no usable RPC model ({exc})",
            "Give the RPC file of the image "
            "(source.local.images[].rpc, source.stac.rpc_asset) or use a product with RPC tags.",
            delete_root,
        ) from exc
    where = f" (downloaded from {url})" if url else ""
    log.info("verified %s%s: %dx%d px, sha256 %s", path, where, probe.width, probe.height, digest[:12])
    return VerifiedImage(path, probe.width, probe.height, digest, Path(rpc_file) if rpc_file else None)
