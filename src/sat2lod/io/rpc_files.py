"""Reading RPC camera models attached to satellite images.

Supported now: RPC tags of a GeoTIFF (as GDAL exposes them). Other formats (OSSIM .geom, DIMAP XML,
_RPC.TXT) and the CNES crop convention are added by the stereo work (see :func:`read_rpc`).
"""

from __future__ import annotations

import os
from pathlib import Path

import rasterio

from sat2lod.rpc import RPCModel


class RPCReadError(RuntimeError):
    """No usable RPC model; the message names the file and the fix."""


def read_rpc(image: str | os.PathLike[str], rpc_file: str | os.PathLike[str] | None = None) -> RPCModel:
    """Return the RPC model of ``image`` (RPC tags of the GeoTIFF), or of ``rpc_file`` when given."""
    image = Path(image)
    if rpc_file is not None:
        raise RPCReadError(f"{rpc_file}: external RPC files are not supported yet; embed RPC tags in {image}.")
    with rasterio.open(image) as ds:
        rpcs = ds.rpcs
    if rpcs is None:
        raise RPCReadError(
            f"{image}: no RPC model found in the GeoTIFF tags. Give the RPC file next to the image in the "
            "config (source.local.images[].rpc) or use an image product that embeds its RPCs."
        )
    return RPCModel.from_rasterio(rpcs)
