"""File access of the acquisition and tiling stages (the only module of :mod:`sat2lod.acquire` that opens files).

JSON documents (scene sheets, STAC catalogs, tile grids) go through :mod:`sat2lod.io.jsonio` (atomic writes),
re-exported here; images are probed with rasterio (size, RPC tags, a last-row read that catches a truncated
file whose header is intact); downloads are hashed by chunks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import rasterio
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from sat2lod.io.digest import hash_file, sha256_file
from sat2lod.io.jsonio import read_json, write_json, write_text

__all__ = [
    "ImageProbe",
    "ImageProbeError",
    "hash_file",
    "probe_image",
    "read_json",
    "read_text",
    "sha256_file",
    "write_json",
    "write_text",
]


def read_text(path: str | os.PathLike[str]) -> str:
    """Read a UTF-8 text file (provider YAML...)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file not found. Check the path in the config.")
    return path.read_text(encoding="utf-8")


@dataclass
class ImageProbe:
    """What the acquisition needs to know about an image file.

    Attributes:
        width, height: size in pixels.
        count: number of bands; dtype: numpy dtype name.
        has_rpc: RPC tags present in the GeoTIFF.
    """

    width: int
    height: int
    count: int
    dtype: str
    has_rpc: bool


class ImageProbeError(RuntimeError):
    """The image cannot be opened or read to its end; the message names the file."""


#: GDAL drivers accepted for an image file, by suffix (a PNG renamed .tif is not a scene image)
IMAGE_DRIVERS = {
    ".tif": {"GTiff", "COG"},
    ".tiff": {"GTiff", "COG"},
    ".ntf": {"NITF"},
    ".jp2": {"JP2OpenJPEG", "JP2KAK", "JP2ECW", "JPEG2000", "JP2MrSID"},
}


def probe_image(path: str | os.PathLike[str]) -> ImageProbe:
    """Open ``path`` with rasterio, check that its format matches its suffix (:data:`IMAGE_DRIVERS`), read its
    last row (catches truncated data) and report size and RPC presence."""
    path = Path(path)
    try:
        with rasterio.open(path) as ds:
            allowed = IMAGE_DRIVERS.get(path.suffix.lower())
            if allowed is not None and ds.driver not in allowed:
                raise ImageProbeError(
                    f"{path}: a {ds.driver} file named {path.suffix}, not a {'/'.join(sorted(allowed))} "
                    "image; the download or copy is wrong"
                )
            ds.read(1, window=Window(0, ds.height - 1, ds.width, 1))
            return ImageProbe(ds.width, ds.height, ds.count, str(ds.dtypes[0]), ds.rpcs is not None)
    except (RasterioIOError, OSError, ValueError) as exc:
        raise ImageProbeError(f"{path}: cannot be read as an image ({exc})") from exc
