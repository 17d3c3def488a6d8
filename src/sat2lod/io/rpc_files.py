"""Reading RPC camera models attached to satellite images.

Supported sources (see :func:`read_rpc`):

- RPC tags of a GeoTIFF / NITF RPC00B TRE (as GDAL exposes them);
- OSSIM keyword lists (``.geom``, ``polynomial_format: B``);
- DIMAP XML: Pléiades/SPOT6-7 ``RPC_*.XML`` (DIMAP v2 ``Global_RFM/Inverse_Model`` + ``RFM_Validity``) and the
  older full-product ``PHRDIMAP_*.XML`` (``F_COL``/``F_ROW`` with ``A`` = scale, ``B`` = offset);
- DigitalGlobe/Maxar XML (``<RPB><IMAGE>``);
- ``_RPC.TXT`` / IKONOS / Planet key-value text files (``LINE_OFF: ...``);
- rpcm / DFC2019 JSON (``{"rpc": {"row_offset": ...}}``).

Pixel conventions: :class:`sat2lod.rpc.RPCModel` uses 0-based pixel *centres* (GDAL / RPC00B). DIMAP files use
1-based pixel centres (the first pixel is (1, 1)), so their ``LINE_OFF``/``SAMP_OFF`` are decreased by 1 here.

CNES crop convention: a crop of a full scene stored without CRS and with a geotransform
``(col0, 1, 0, row0, 0, 1)`` (positive unit pixel height, as CARS / shareloc write them) has its full-scene pixel
``(row, col) = (row0 + i, col0 + j)`` for array index ``[i, j]``; the model of the full scene is then shifted with
:meth:`sat2lod.rpc.RPCModel.crop` so that the returned model works directly in the crop's array indices.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioIOError

from sat2lod.rpc import RPCModel, RPCValidationError, validate_rpc

_FIELDS = (
    "line_off",
    "samp_off",
    "lat_off",
    "long_off",
    "height_off",
    "line_scale",
    "samp_scale",
    "lat_scale",
    "long_scale",
    "height_scale",
)


class RPCReadError(RuntimeError):
    """No usable RPC model; the message names the file and the fix."""


# ------------------------------------------------------------------------------------------- helpers
def _model(path: Path, values: dict[str, float], coeffs: dict[str, list[float]]) -> RPCModel:
    missing = [k for k in _FIELDS if k not in values]
    missing += [
        k
        for k in ("line_num_coeff", "line_den_coeff", "samp_num_coeff", "samp_den_coeff")
        if len(coeffs.get(k, [])) != 20
    ]
    if missing:
        raise RPCReadError(
            f"{path}: incomplete RPC model, missing or malformed: {', '.join(missing)}. "
            "Check that the file is a complete RPC00B model (20 coefficients per polynomial)."
        )
    return RPCModel(
        **{k: float(values[k]) for k in _FIELDS},
        **{k: np.asarray(coeffs[k], dtype=np.float64) for k in coeffs},
    )


def _num(text: str) -> float:
    """Parse '+005124.00 pixels' / '1.0e-3' style numbers (units after the number are ignored)."""
    return float(text.strip().split()[0])


# ------------------------------------------------------------------------------------------- formats
def read_geom(path: Path) -> RPCModel:
    """OSSIM keyword-list ``.geom`` (``type: ossimRpcModel`` / ``ossimPleiadesModel``, polynomial format B)."""
    kv: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            kv[k.strip().lower()] = v.strip()
    fmt = kv.get("polynomial_format", "B").upper()
    if fmt != "B":
        raise RPCReadError(
            f"{path}: polynomial_format {fmt} is not supported; convert the model to RPC00B (format B)."
        )
    values = {k: _num(kv[k]) for k in _FIELDS if k in kv}
    coeffs = {
        k: [_num(kv[f"{k}_{i:02d}"]) for i in range(20) if f"{k}_{i:02d}" in kv]
        for k in ("line_num_coeff", "line_den_coeff", "samp_num_coeff", "samp_den_coeff")
    }
    return _model(path, values, coeffs)


def read_rpc_txt(path: Path) -> RPCModel:
    """``_RPC.TXT`` style ``KEY: value [unit]`` files (IKONOS, Planet, SkySat, GDAL ``.RPB``-like text)."""
    kv: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            kv[k.strip().upper()] = v.strip()
    values = {k: _num(kv[k.upper()]) for k in _FIELDS if k.upper() in kv}
    coeffs = {
        k: [_num(kv[f"{k.upper()}_{i}"]) for i in range(1, 21) if f"{k.upper()}_{i}" in kv]
        for k in ("line_num_coeff", "line_den_coeff", "samp_num_coeff", "samp_den_coeff")
    }
    return _model(path, values, coeffs)


def _strip_ns(root: ET.Element) -> ET.Element:
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def read_xml(path: Path) -> RPCModel:
    """DIMAP (Pléiades / SPOT, v1 full product or v2 RPC file) or DigitalGlobe ``<RPB>`` XML."""
    try:
        root = _strip_ns(ET.parse(path).getroot())
    except ET.ParseError as exc:
        raise RPCReadError(
            f"{path}: not a valid XML file ({exc}); re-download the product metadata."
        ) from exc
    rpb = root.find(".//RPB/IMAGE")
    if rpb is not None:  # DigitalGlobe / Maxar
        tags = {
            "line_off": "LINEOFFSET",
            "samp_off": "SAMPOFFSET",
            "lat_off": "LATOFFSET",
            "long_off": "LONGOFFSET",
            "height_off": "HEIGHTOFFSET",
            "line_scale": "LINESCALE",
            "samp_scale": "SAMPSCALE",
            "lat_scale": "LATSCALE",
            "long_scale": "LONGSCALE",
            "height_scale": "HEIGHTSCALE",
        }
        values = {k: _num(rpb.findtext(t)) for k, t in tags.items() if rpb.findtext(t) is not None}
        coeffs = {}
        for k in ("line_num_coeff", "line_den_coeff", "samp_num_coeff", "samp_den_coeff"):
            tag = k.replace("_coeff", "coef").replace("_", "").upper()  # LINENUMCOEF
            text = rpb.findtext(f"{tag}List/{tag}") or ""
            coeffs[k] = [float(t) for t in text.split()]
        return _model(path, values, coeffs)

    rfm = root.find(".//Global_RFM")
    if rfm is None:
        raise RPCReadError(
            f"{path}: no RPC model found (neither DIMAP Global_RFM nor DigitalGlobe RPB). "
            "Give the RPC_*.XML (Pléiades/SPOT) or the .XML of a Maxar product."
        )
    inv = rfm.find("Inverse_Model")
    validity = rfm.find("RFM_Validity")
    if inv is None or validity is None:
        raise RPCReadError(
            f"{path}: DIMAP Global_RFM without Inverse_Model / RFM_Validity; the ground-to-image "
            "model is needed. Use the RPC_*.XML file of the product."
        )
    if inv.find("F_COL") is not None:  # older PHRDIMAP: 40 values (20 num + 20 den), A = scale, B = offset
        fcol = [float(t) for t in (inv.findtext("F_COL") or "").split()]
        frow = [float(t) for t in (inv.findtext("F_ROW") or "").split()]
        coeffs = {
            "line_num_coeff": frow[:20],
            "line_den_coeff": frow[20:],
            "samp_num_coeff": fcol[:20],
            "samp_den_coeff": fcol[20:],
        }
        ab = {
            name: (validity.findtext(f"{name}/A"), validity.findtext(f"{name}/B"))
            for name in ("Lon", "Lat", "Alt", "Col", "Row")
        }
        if any(a is None or b is None for a, b in ab.values()):
            raise RPCReadError(f"{path}: RFM_Validity lacks Lon/Lat/Alt/Col/Row A,B normalisation values.")
        values = {
            "long_scale": _num(ab["Lon"][0]),
            "long_off": _num(ab["Lon"][1]),
            "lat_scale": _num(ab["Lat"][0]),
            "lat_off": _num(ab["Lat"][1]),
            "height_scale": _num(ab["Alt"][0]),
            "height_off": _num(ab["Alt"][1]),
            "samp_scale": _num(ab["Col"][0]),
            "samp_off": _num(ab["Col"][1]),
            "line_scale": _num(ab["Row"][0]),
            "line_off": _num(ab["Row"][1]),
        }
    else:  # DIMAP v2 RPC file: SAMP_NUM_COEFF_1..20 etc.
        coeffs = {
            k: [
                _num(inv.findtext(f"{k.upper()}_{i}") or "nan")
                for i in range(1, 21)
                if inv.findtext(f"{k.upper()}_{i}") is not None
            ]
            for k in ("line_num_coeff", "line_den_coeff", "samp_num_coeff", "samp_den_coeff")
        }
        values = {
            k: _num(validity.findtext(k.upper())) for k in _FIELDS if validity.findtext(k.upper()) is not None
        }
    # DIMAP pixel (1, 1) is the centre of the first pixel: convert to 0-based centres.
    if "line_off" in values:
        values["line_off"] -= 1.0
    if "samp_off" in values:
        values["samp_off"] -= 1.0
    return _model(path, values, coeffs)


def read_rpc_json(path: Path) -> RPCModel:
    """rpcm / DFC2019 JSON: ``{"rpc": {"row_offset", "col_offset", ..., "row_num": [20], ...}}`` (0-based)."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RPCReadError(f"{path}: not valid JSON ({exc}).") from exc
    except RecursionError as exc:
        raise RPCReadError(
            f"{path}: JSON nested too deeply to be an RPC model; the file is corrupt."
        ) from exc
    d = data.get("rpc", data) if isinstance(data, dict) else {}
    names = {
        "line_off": "row_offset",
        "samp_off": "col_offset",
        "lat_off": "lat_offset",
        "long_off": "lon_offset",
        "height_off": "alt_offset",
        "line_scale": "row_scale",
        "samp_scale": "col_scale",
        "lat_scale": "lat_scale",
        "long_scale": "lon_scale",
        "height_scale": "alt_scale",
    }
    values = {k: float(d[v]) for k, v in names.items() if v in d}
    coeffs = {
        "line_num_coeff": d.get("row_num", []),
        "line_den_coeff": d.get("row_den", []),
        "samp_num_coeff": d.get("col_num", []),
        "samp_den_coeff": d.get("col_den", []),
    }
    return _model(path, values, coeffs)


_READERS: dict[str, Callable[[Path], RPCModel]] = {
    ".geom": read_geom,
    ".xml": read_xml,
    ".txt": read_rpc_txt,
    ".rpb": read_rpc_txt,
    ".json": read_rpc_json,
}


def _invalid(source: Path, exc: RPCValidationError) -> RPCReadError:
    return RPCReadError(
        f"{source}: invalid RPC model, {exc}. The file is corrupt or not the model of this image: "
        "re-download the product's RPC file (or the image with its RPC tags)."
    )


def read_rpc_file(path: str | os.PathLike[str]) -> RPCModel:
    """Read an external RPC file (format from the suffix: .geom, .xml, .txt/_RPC.TXT, .json) and validate it
    over its own line/sample validity range (:func:`sat2lod.rpc.validate_rpc`).

    Raises:
        RPCReadError: missing, unreadable or invalid model; the message names the file and the bad field.
    """
    model = _read_rpc_file(Path(path))
    try:
        validate_rpc(model)
    except RPCValidationError as exc:
        raise _invalid(Path(path), exc) from exc
    return model


def _read_rpc_file(path: Path) -> RPCModel:
    if not path.exists():
        raise RPCReadError(
            f"{path}: RPC file not found. Fix the 'rpc' path of the view in the config / scene sheet."
        )
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise RPCReadError(
            f"{path}: unknown RPC file type {path.suffix!r}; supported: "
            f"{', '.join(sorted(_READERS))} (or RPC tags in the GeoTIFF)."
        )
    try:
        return reader(path)
    except (ValueError, IndexError, TypeError) as exc:
        raise RPCReadError(
            f"{path}: malformed RPC value ({exc}); the file is corrupt or not an RPC model."
        ) from exc


def crop_origin(image: str | os.PathLike[str]) -> tuple[float, float]:
    """(row0, col0) of the CNES crop convention for ``image`` ((0, 0) when it does not apply)."""
    with rasterio.open(image) as ds:
        t = ds.transform
        if ds.crs is None and t.a == 1.0 and t.e == 1.0 and t.b == 0.0 and t.d == 0.0:
            return float(t.f), float(t.c)
    return 0.0, 0.0


def read_rpc(image: str | os.PathLike[str], rpc_file: str | os.PathLike[str] | None = None) -> RPCModel:
    """Return the RPC model of ``image`` in the image's own array pixel coordinates.

    Args:
        image: the image (GeoTIFF / NITF / any GDAL raster).
        rpc_file: external model (.geom, DIMAP/DigitalGlobe .XML, _RPC.TXT, rpcm .json); None = RPC tags of
            ``image``.
    The CNES crop convention (geotransform origin = crop offset in the full scene) is applied in both cases.
    The model is validated over the image (:func:`sat2lod.rpc.validate_rpc`: finite coefficients, non-zero
    scales and denominators, project(localize()) round trip): every reader of every format goes through here.

    Raises:
        RPCReadError: missing image or model, unreadable or invalid model; names the file and the bad field.
    """
    image = Path(image)
    if not image.exists():
        raise RPCReadError(f"{image}: image not found. Fix the image path in the config / scene sheet.")
    try:
        with rasterio.open(image) as ds:
            rpcs = ds.rpcs if rpc_file is None else None
            rows, cols = ds.height, ds.width
    except (RasterioIOError, CPLE_BaseError) as exc:
        raise RPCReadError(f"{image}: not a readable image ({exc}).") from exc
    source = Path(rpc_file) if rpc_file is not None else image
    if rpc_file is not None:
        model = _read_rpc_file(Path(rpc_file))
    else:
        if rpcs is None:
            raise RPCReadError(
                f"{image}: no RPC model found in the GeoTIFF tags. Give the RPC file next to the image in the "
                "config (source.local.images[].rpc) or use an image product that embeds its RPCs."
            )
        model = RPCModel.from_rasterio(rpcs)
    row0, col0 = crop_origin(image)
    if row0 or col0:
        model = model.crop(row0, col0)
    try:
        validate_rpc(model, rows, cols)
    except RPCValidationError as exc:
        raise _invalid(source, exc) from exc
    return model
