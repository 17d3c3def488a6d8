"""CityJSON 2.0 / CityJSONSeq / OBJ writers and a structural CityJSON 2.0 validator.

Buildings come in as :class:`CityBuilding` records whose surfaces are integer-millimetre vertex rings (see
:mod:`sat2lod.lod.solid`). Files are written atomically.

The validator (:func:`validate_cityjson`) checks what the official CityJSON 2.0 schema requires for the
subset of the format written here, without the schema (the tests also validate against the official
2.0.0 schema, kept in ``tests/data/cityjson-2.0.0``): root ``type``/``version``/``transform``/
``CityObjects``/``vertices``; ``transform`` with 3 scale and 3 translate numbers; ``metadata`` with only
the 6 members of 2.0, ``referenceSystem`` matching ``^(http|https)://www.opengis.net/def/crs/`` and a
6-number ``geographicalExtent``; each CityObject's ``type`` among the 1st/2nd-level types, ``geometry``
items with ``type`` in the geometry types, ``lod`` a string of the form ``\\d(\\.\\d)?``, boundaries nested at
the depth of their type with integer indices inside the vertex list; ``semantics.surfaces`` items with a
known surface ``type`` and ``values`` of the boundaries' shape with indices inside ``surfaces``;
``parents``/``children`` pointing at existing objects both ways; vertices = lists of 3 integers.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sat2lod.io.raster import atomic_path

VERSION = "2.0"
SCALE = 0.001  # vertices are integer millimetres

_FIRST_LEVEL = {
    "Bridge",
    "Building",
    "CityFurniture",
    "CityObjectGroup",
    "GenericCityObject",
    "LandUse",
    "OtherConstruction",
    "PlantCover",
    "SolitaryVegetationObject",
    "TINRelief",
    "TransportSquare",
    "Railway",
    "Road",
    "Tunnel",
    "WaterBody",
    "Waterway",
}
_SECOND_LEVEL = {
    "BridgePart",
    "BridgeInstallation",
    "BridgeConstructiveElement",
    "BridgeRoom",
    "BridgeFurniture",
    "BuildingPart",
    "BuildingInstallation",
    "BuildingConstructiveElement",
    "BuildingFurniture",
    "BuildingStorey",
    "BuildingRoom",
    "BuildingUnit",
    "TunnelPart",
    "TunnelInstallation",
    "TunnelConstructiveElement",
    "TunnelHollowSpace",
    "TunnelFurniture",
}
_DEPTH = {
    "MultiPoint": 1,
    "MultiLineString": 2,
    "MultiSurface": 3,
    "CompositeSurface": 3,
    "Solid": 4,
    "MultiSolid": 5,
    "CompositeSolid": 5,
}
_SEM_DEPTH = {"MultiSurface": 1, "CompositeSurface": 1, "Solid": 2, "MultiSolid": 3, "CompositeSolid": 3}
_SURFACES = {
    "RoofSurface",
    "GroundSurface",
    "WallSurface",
    "ClosureSurface",
    "OuterCeilingSurface",
    "OuterFloorSurface",
    "Window",
    "Door",
    "InteriorWallSurface",
    "CeilingSurface",
    "FloorSurface",
    "WaterSurface",
    "WaterGroundSurface",
    "WaterClosureSurface",
    "TrafficArea",
    "AuxiliaryTrafficArea",
    "TransportationMarking",
    "TransportationHole",
}
_CRS_RE = re.compile(r"^(http|https)://www.opengis.net/def/crs/")
_LOD_RE = re.compile(r"^\d(\.\d)?$")
_METADATA = {
    "identifier",
    "pointOfContact",
    "referenceDate",
    "title",
    "geographicalExtent",
    "referenceSystem",
}


@dataclass
class CityBuilding:
    """One building for the CityJSON writer.

    Attributes:
        id: CityObject id (unique in the file).
        surfaces: list of (rings, semantic type); rings = list of lists of (x, y, z) integer millimetres.
        lod: "1.2" or "2.2".
        attributes: plain JSON attributes (heights in metres, roof type...).
    """

    id: str
    surfaces: list[tuple[list[list[tuple[int, int, int]]], str]]
    lod: str
    attributes: dict[str, Any] = field(default_factory=dict)


def epsg_url(epsg: int) -> str:
    return f"https://www.opengis.net/def/crs/EPSG/0/{int(epsg)}"


def _geometry(
    b: CityBuilding, index: dict[tuple[int, int, int], int], translate: np.ndarray
) -> dict[str, Any]:
    sem_types: list[str] = []
    values: list[int] = []
    shell = []
    for rings, sem in b.surfaces:
        surf = []
        for ring in rings:
            idx = []
            for v in ring:
                key = (v[0] - int(translate[0]), v[1] - int(translate[1]), v[2] - int(translate[2]))
                if key not in index:
                    index[key] = len(index)
                idx.append(index[key])
            surf.append(idx)
        shell.append(surf)
        if sem not in sem_types:
            sem_types.append(sem)
        values.append(sem_types.index(sem))
    return {
        "type": "Solid",
        "lod": b.lod,
        "boundaries": [shell],
        "semantics": {"surfaces": [{"type": t} for t in sem_types], "values": [values]},
    }


def _extent(buildings: list[CityBuilding]) -> np.ndarray:
    pts = np.array(
        [v for b in buildings for rings, _ in b.surfaces for r in rings for v in r], dtype=np.int64
    )
    if len(pts) == 0:
        return np.zeros(6, np.int64)
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


def city_model(
    buildings: list[CityBuilding],
    epsg: int,
    vertical_datum: str,
    title: str,
    reference_date: str | None = None,
) -> dict[str, Any]:
    """A CityJSON 2.0 document (dict) with all buildings, vertices shared, transform at 1 mm.

    ``vertical_datum`` (e.g. "WGS84 ellipsoid") is stated in ``metadata.title`` and as the attribute
    ``height_reference`` of every building.
    """
    ext = _extent(buildings)
    translate = ext[:3].copy()
    index: dict[tuple[int, int, int], int] = {}
    objs = {}
    for b in buildings:
        attrs = {**b.attributes, "height_reference": vertical_datum}
        objs[b.id] = {"type": "Building", "attributes": attrs, "geometry": [_geometry(b, index, translate)]}
    verts = [list(k) for k in index]
    # CityJSON 2.0 metadata takes only its 6 members and an EPSG URL names no vertical datum for ellipsoidal
    # heights over a projected CRS: the datum goes in the title (read by people) and in every building's
    # attributes (read by programs; attributes are free in the schema)
    meta: dict[str, Any] = {"referenceSystem": epsg_url(epsg)}
    if buildings:  # a model of no building (a scene without any) has no extent
        meta["geographicalExtent"] = [float(v) * SCALE for v in ext]
    meta["title"] = f"{title} (heights in metres above the {vertical_datum})"
    if reference_date:
        meta["referenceDate"] = reference_date
    return {
        "type": "CityJSON",
        "version": VERSION,
        "transform": {"scale": [SCALE] * 3, "translate": [float(v) * SCALE for v in translate]},
        "metadata": meta,
        "CityObjects": objs,
        "vertices": verts,
    }


def write_cityjson(path: str | os.PathLike[str], doc: dict[str, Any]) -> Path:
    """Write a CityJSON document atomically (compact JSON)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, separators=(",", ":")))
    return path


def read_cityjson(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a CityJSON file; the error names the file when it is missing or not JSON."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found; rerun the lod1/lod2 rule that makes it.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); delete it and rerun the rule.") from exc


def read_city_attributes(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The attributes of every city object of a CityJSON (``.json``) or CityJSONSeq (``.jsonl``) file, by object
    id. A CityJSONSeq is read line by line: memory is one feature plus the attributes, not the geometry of the
    model (a CityJSON file is read whole).

    Raises:
        FileNotFoundError, ValueError: missing file, or a line / file that is not JSON (naming the file).
    """
    path = Path(path)
    if path.suffix != ".jsonl":
        return {oid: o.get("attributes", {}) for oid, o in read_cityjson(path).get("CityObjects", {}).items()}
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found; rerun the lod1/lod2 rule that makes it.")
    out: dict[str, dict[str, Any]] = {}
    with open(path) as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"{path}: line {i} is not valid JSON ({exc}); delete it and rerun the rule."
                ) from exc
            for oid, o in doc.get("CityObjects", {}).items():
                out[oid] = o.get("attributes", {})
    return out


def write_cityjsonseq(path: str | os.PathLike[str], doc: dict[str, Any]) -> Path:
    """Write a CityJSON document as CityJSONSeq (JSON Lines): a first CityJSON line with metadata and
    transform and no objects, then one CityJSONFeature per building with its own vertex list."""
    path = Path(path)
    first = {k: v for k, v in doc.items() if k not in ("CityObjects", "vertices")}
    first["CityObjects"] = {}
    first["vertices"] = []
    verts = doc["vertices"]
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(json.dumps(first, separators=(",", ":")) + "\n")
        for oid, obj in doc["CityObjects"].items():
            local: dict[int, int] = {}
            o = dict(obj)
            o["geometry"] = [dict(g, boundaries=_remap(g["boundaries"], local)) for g in obj["geometry"]]
            fv = [verts[i] for i in sorted(local, key=local.get)]  # type: ignore[arg-type]
            feat = {"type": "CityJSONFeature", "id": oid, "CityObjects": {oid: o}, "vertices": fv}
            fh.write(json.dumps(feat, separators=(",", ":")) + "\n")
    return path


def _remap(x: Any, local: dict[int, int]) -> Any:
    """Renumber nested vertex indices in order of first use (``local``: global -> feature index)."""
    if isinstance(x, list):
        return [_remap(i, local) for i in x]
    if x not in local:
        local[x] = len(local)
    return local[x]


def write_obj(path: str | os.PathLike[str], doc: dict[str, Any]) -> Path:
    """Write the CityJSON solids as a Wavefront OBJ for viewers (one group per building, coordinates
    relative to the CityJSON ``transform.translate`` so that float precision holds). Faces with holes are
    triangulated (constrained Delaunay in the face plane)."""
    import shapely
    from shapely.geometry import Polygon

    path = Path(path)
    scale = np.array(doc["transform"]["scale"])
    verts = np.array(doc["vertices"], float).reshape(-1, 3) * scale  # (0, 3) for a model of no building
    lines = [
        f"# sat2lod OBJ export, origin = {doc['transform']['translate']} in {doc['metadata']['referenceSystem']}"
    ]
    lines += [f"v {x:.3f} {y:.3f} {z:.3f}" for x, y, z in verts]
    extra: list[str] = []
    nv = len(verts)
    for oid, obj in doc["CityObjects"].items():
        lines.append(f"g {oid}")
        for geom in obj.get("geometry", []):
            for shell in geom["boundaries"]:
                for surf in shell:
                    if len(surf) == 1:
                        lines.append("f " + " ".join(str(i + 1) for i in surf[0]))
                        continue
                    # project on the dominant plane axis, triangulate, map back to vertex ids
                    pts = verts[surf[0]]
                    n = np.cross(pts[1] - pts[0], pts[2] - pts[0])
                    drop = int(np.argmax(np.abs(n)))
                    keep = [i for i in range(3) if i != drop]
                    poly = Polygon(verts[surf[0]][:, keep], [verts[r][:, keep] for r in surf[1:]])
                    lut = {tuple(np.round(verts[i][keep], 6)): i for r in surf for i in r}
                    for tri in shapely.get_parts(shapely.constrained_delaunay_triangles(poly)):
                        ids = []
                        for c in np.asarray(tri.exterior.coords)[:3]:
                            key = tuple(np.round(c, 6))
                            if key in lut:
                                ids.append(lut[key] + 1)
                            else:  # a new vertex from the triangulation (should not happen for simple faces)
                                z = float(np.mean(verts[surf[0]][:, drop]))
                                full = np.zeros(3)
                                full[keep] = c
                                full[drop] = z
                                extra.append(f"v {full[0]:.3f} {full[1]:.3f} {full[2]:.3f}")
                                nv += 1
                                ids.append(nv)
                        lines.append("f " + " ".join(map(str, ids)))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines[: len(verts) + 1] + extra + lines[len(verts) + 1 :]) + "\n")
    return path


def _depth(x: Any) -> int:
    d = 0
    while isinstance(x, list):
        if not x:
            return d + 1
        x = x[0]
        d += 1
    return d


def _flat_ints(x: Any) -> list[Any]:
    out = []
    stack = [x]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(v)
        else:
            out.append(v)
    return out


def validate_cityjson(doc: dict[str, Any]) -> list[str]:
    """Structural CityJSON 2.0 checks (see the module docstring for the exact list). Returns the errors."""
    err: list[str] = []
    if doc.get("type") != "CityJSON":
        err.append("root 'type' must be 'CityJSON'")
    if doc.get("version") != VERSION:
        err.append(f"root 'version' must be '{VERSION}'")
    for key in ("transform", "CityObjects", "vertices"):
        if key not in doc:
            err.append(f"root '{key}' is required")
    tr = doc.get("transform", {})
    for k in ("scale", "translate"):
        v = tr.get(k)
        if not (isinstance(v, list) and len(v) == 3 and all(isinstance(i, (int, float)) for i in v)):
            err.append(f"transform.{k} must be 3 numbers")
    if set(tr) - {"scale", "translate"}:
        err.append("transform has unknown members")
    meta = doc.get("metadata", {})
    extra = set(meta) - _METADATA
    if extra:
        err.append(f"metadata members {sorted(extra)} are not CityJSON 2.0 metadata ({sorted(_METADATA)})")
    if "referenceSystem" in meta and not _CRS_RE.match(str(meta["referenceSystem"])):
        err.append("metadata.referenceSystem must be an OGC CRS URL (http(s)://www.opengis.net/def/crs/...)")
    ge = meta.get("geographicalExtent")
    if ge is not None and not (
        isinstance(ge, list) and len(ge) == 6 and all(isinstance(i, (int, float)) for i in ge)
    ):
        err.append("metadata.geographicalExtent must be 6 numbers")
    verts = doc.get("vertices", [])
    if not all(isinstance(v, list) and len(v) == 3 and all(isinstance(i, int) for i in v) for v in verts):
        err.append("vertices must be lists of 3 integers (transformed)")
    nv = len(verts)
    objs = doc.get("CityObjects", {})
    for oid, o in objs.items():
        t = o.get("type")
        if t not in _FIRST_LEVEL | _SECOND_LEVEL and not str(t).startswith("+"):
            err.append(f"{oid}: unknown CityObject type {t!r}")
        if t in _SECOND_LEVEL and not o.get("parents"):
            err.append(f"{oid}: a {t} needs 'parents'")
        for p in o.get("parents", []):
            if p not in objs or oid not in objs[p].get("children", []):
                err.append(f"{oid}: parent {p!r} missing or not listing it as a child")
        for c in o.get("children", []):
            if c not in objs or oid not in objs[c].get("parents", []):
                err.append(f"{oid}: child {c!r} missing or not listing it as a parent")
        if "attributes" in o and not isinstance(o["attributes"], dict):
            err.append(f"{oid}: attributes must be an object")
        for gi, g in enumerate(o.get("geometry", [])):
            gt = g.get("type")
            where = f"{oid}.geometry[{gi}]"
            if gt not in _DEPTH:
                err.append(f"{where}: unknown geometry type {gt!r}")
                continue
            if not (isinstance(g.get("lod"), str) and _LOD_RE.match(g["lod"])):
                err.append(f"{where}: 'lod' must be a string like '2.2'")
            b = g.get("boundaries")
            if _depth(b) != _DEPTH[gt]:
                err.append(f"{where}: boundaries nesting depth {_depth(b)} != {_DEPTH[gt]} for {gt}")
                continue
            ids = _flat_ints(b)
            if not all(isinstance(i, int) and 0 <= i < nv for i in ids):
                err.append(f"{where}: boundary indices must be integers in [0, {nv})")
            sem = g.get("semantics")
            if sem is not None and gt in _SEM_DEPTH:
                surfs = sem.get("surfaces", [])
                for s in surfs:
                    if s.get("type") not in _SURFACES and not str(s.get("type")).startswith("+"):
                        err.append(f"{where}: unknown semantic surface type {s.get('type')!r}")
                vals = sem.get("values")
                if _depth(vals) != _SEM_DEPTH[gt]:
                    err.append(f"{where}: semantics.values depth must be {_SEM_DEPTH[gt]}")
                else:
                    shape_b = [len(shell) for shell in b] if gt == "Solid" else None
                    if shape_b is not None and [len(v) for v in vals] != shape_b:
                        err.append(f"{where}: semantics.values shape differs from the boundaries")
                    if not all(
                        v is None or (isinstance(v, int) and 0 <= v < len(surfs)) for v in _flat_ints(vals)
                    ):
                        err.append(f"{where}: semantics.values must index semantics.surfaces")
    return err
