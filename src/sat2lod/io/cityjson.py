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

import contextlib
import json
import logging
import os
import re
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np

from sat2lod.io.raster import atomic_path

log = logging.getLogger(__name__)

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


def grid_translate(west: float, south: float) -> tuple[int, int, int]:
    """A fixed ``transform.translate`` (integer millimetres): the west-south corner of the AOI's grid, z 0.

    Chosen from the grid, not from the buildings, so that every tile of one AOI writes its vertices on the same
    integers and the per-tile sequences merge exactly (:class:`CityWriter`)."""
    return round(west / SCALE), round(south / SCALE), 0


def city_header(
    epsg: int,
    vertical_datum: str,
    title: str,
    translate: tuple[int, int, int],
    extent: list[float] | None = None,
    reference_date: str | None = None,
) -> dict[str, Any]:
    """The members of a CityJSON 2.0 document but its objects and vertices: type, version, transform (1 mm,
    ``translate`` in integer millimetres), metadata (``extent``: geographicalExtent in metres, None for a
    model of no building; ``vertical_datum`` stated in the title)."""
    # CityJSON 2.0 metadata takes only its 6 members and an EPSG URL names no vertical datum for ellipsoidal
    # heights over a projected CRS: the datum goes in the title (read by people) and in every building's
    # attributes (read by programs; attributes are free in the schema)
    meta: dict[str, Any] = {"referenceSystem": epsg_url(epsg)}
    if extent is not None:  # a model of no building (a scene without any) has no extent
        meta["geographicalExtent"] = list(extent)
    meta["title"] = f"{title} (heights in metres above the {vertical_datum})"
    if reference_date:
        meta["referenceDate"] = reference_date
    return {
        "type": "CityJSON",
        "version": VERSION,
        "transform": {"scale": [SCALE] * 3, "translate": [float(v) * SCALE for v in translate]},
        "metadata": meta,
    }


def header_datum(header: dict[str, Any]) -> str:
    """The vertical datum a :func:`city_header` states in its title."""
    m = re.search(r"\(heights in metres above the (.*)\)$", str(header.get("metadata", {}).get("title", "")))
    if m is None:
        raise ValueError("the CityJSON title states no vertical datum ('(heights in metres above the ...)')")
    return m.group(1)


def header_epsg(header: dict[str, Any]) -> int:
    """The EPSG code of a CityJSON header's ``metadata.referenceSystem`` (:func:`epsg_url`)."""
    url = str(header.get("metadata", {}).get("referenceSystem", ""))
    m = re.fullmatch(r"https?://www.opengis.net/def/crs/EPSG/0/(\d+)", url)
    if m is None:
        raise ValueError(f"referenceSystem {url!r} is not an EPSG CRS URL")
    return int(m.group(1))


def city_model(
    buildings: list[CityBuilding],
    epsg: int,
    vertical_datum: str,
    title: str,
    reference_date: str | None = None,
    translate: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """A CityJSON 2.0 document (dict) with all buildings, vertices shared, transform at 1 mm.

    ``vertical_datum`` (e.g. "WGS84 ellipsoid") is stated in ``metadata.title`` and as the attribute
    ``height_reference`` of every building. ``translate``: integer millimetres (:func:`grid_translate`);
    None = the buildings' lowest corner.
    """
    ext = _extent(buildings)
    tr = np.asarray(ext[:3] if translate is None else translate, np.int64)
    index: dict[tuple[int, int, int], int] = {}
    objs = {}
    for b in buildings:
        attrs = {**b.attributes, "height_reference": vertical_datum}
        objs[b.id] = {"type": "Building", "attributes": attrs, "geometry": [_geometry(b, index, tr)]}
    extent = [float(v) * SCALE for v in ext] if buildings else None
    doc = city_header(epsg, vertical_datum, title, tuple(int(v) for v in tr), extent, reference_date)
    return {**doc, "CityObjects": objs, "vertices": [list(k) for k in index]}


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
    out: dict[str, dict[str, Any]] = {}
    for doc in seq_lines(path):
        for oid, o in doc.get("CityObjects", {}).items():
            out[oid] = o.get("attributes", {})
    return out


def seq_lines(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of a CityJSONSeq file (the header first, then the features), one line in memory at a
    time; blank lines skipped.

    Raises:
        FileNotFoundError, ValueError: missing file, or a line that is not JSON (naming the file and line).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found; rerun the lod1/lod2 rule that makes it.")
    with open(path) as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"{path}: line {i} is not valid JSON ({exc}); delete it and rerun the rule."
                ) from exc


def city_features(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The CityJSONFeatures of a CityJSON document, one per CityObject in order, each with its own vertex list
    (in order of first use; integers of the document's transform)."""
    verts = doc["vertices"]
    for oid, obj in doc["CityObjects"].items():
        local: dict[int, int] = {}
        o = dict(obj)
        o["geometry"] = [dict(g, boundaries=_remap(g["boundaries"], local)) for g in obj["geometry"]]
        fv = [verts[i] for i in sorted(local, key=local.get)]  # type: ignore[arg-type]
        yield {"type": "CityJSONFeature", "id": oid, "CityObjects": {oid: o}, "vertices": fv}


def seq_header(doc: dict[str, Any]) -> dict[str, Any]:
    """The first line of a CityJSONSeq: the document with no objects and no vertices."""
    first = {k: v for k, v in doc.items() if k not in ("CityObjects", "vertices")}
    return {**first, "CityObjects": {}, "vertices": []}


def write_cityjsonseq(path: str | os.PathLike[str], doc: dict[str, Any]) -> Path:
    """Write a CityJSON document as CityJSONSeq (JSON Lines): a first CityJSON line with metadata and
    transform and no objects, then one CityJSONFeature per building with its own vertex list."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(_dumps(seq_header(doc)) + "\n")
        fh.writelines(_dumps(feat) + "\n" for feat in city_features(doc))
    return path


def read_seq_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The first line of a CityJSONSeq (the CityJSON header: transform, metadata), nothing else read."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found; rerun the rule that makes it.")
    with open(path) as fh:
        line = fh.readline()
    try:
        header = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: the first line is not JSON ({exc}); delete it and rerun the rule."
        ) from exc
    if not isinstance(header, dict) or header.get("type") != "CityJSON":
        raise ValueError(f"{path}: the first line is not a CityJSON header; delete it and rerun the rule.")
    return header


def iter_seq_features(
    paths: list[str | os.PathLike[str]], key: Callable[[str], Any], max_open: int = 64
) -> Iterator[dict[str, Any]]:
    """The CityJSONFeatures of several CityJSONSeq files in the order of ``key(feature id)``, one feature in
    memory at a time: a first pass records each feature's id and byte offset (~100 bytes per feature), the
    second reads them in order, keeping at most ``max_open`` files open (least recently used closed first)."""
    index = []
    for k, p in enumerate(paths):
        with open(p, "rb") as fh:
            fh.readline()
            while True:
                off = fh.tell()
                line = fh.readline()
                if not line:
                    break
                if line.strip():
                    index.append((key(_feature(line, p)["id"]), k, off))
    index.sort(key=lambda e: (e[0], e[1]))
    handles: OrderedDict[int, Any] = OrderedDict()
    try:
        for _, k, off in index:
            fh = handles.pop(k, None) or open(paths[k], "rb")  # noqa: SIM115  (closed in finally or when evicted)
            handles[k] = fh
            if len(handles) > max_open:
                handles.popitem(last=False)[1].close()
            fh.seek(off)
            yield _feature(fh.readline(), paths[k])
    finally:
        for fh in handles.values():
            fh.close()


def _feature(line: bytes, path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        feat = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: a line is not JSON ({exc}); delete the file and rerun the rule.") from exc
    if not isinstance(feat, dict) or feat.get("type") != "CityJSONFeature" or "id" not in feat:
        raise ValueError(f"{path}: a line is not a CityJSONFeature; delete the file and rerun the rule.")
    return feat


def _remap(x: Any, local: dict[int, int]) -> Any:
    """Renumber nested vertex indices in order of first use (``local``: global -> feature index)."""
    if isinstance(x, list):
        return [_remap(i, local) for i in x]
    if x not in local:
        local[x] = len(local)
    return local[x]


def _dumps(x: Any) -> str:
    return json.dumps(x, separators=(",", ":"))


class CityWriter:
    """Writes CityJSONFeatures, one at a time, as one CityJSON file (vertices shared across features), and
    optionally as CityJSONSeq and OBJ; memory: the vertex index (~150 bytes per distinct vertex), no object.

    Use as a context manager: ``with CityWriter(header, city, seq, obj) as w: w.add(feature)``; the files
    appear (atomically) when the block ends without error. ``header``: :func:`city_header` (the features'
    vertices are integers of its transform). The CityJSON written equals ``write_cityjson`` of the document
    the features come from (:func:`city_features`), byte for byte.
    """

    def __init__(
        self,
        header: dict[str, Any],
        city: str | os.PathLike[str],
        seq: str | os.PathLike[str] | None = None,
        obj: str | os.PathLike[str] | None = None,
    ) -> None:
        self.header = {k: v for k, v in header.items() if k not in ("CityObjects", "vertices")}
        self.paths = (Path(city), None if seq is None else Path(seq), None if obj is None else Path(obj))
        self.index: dict[tuple[int, int, int], int] = {}
        self.obj_ids: list[
            int
        ] = []  # OBJ vertex number of each vertex (extra triangulation points shift them)
        self.n_obj = 0
        self.n_features = 0

    def __enter__(self) -> Self:
        self._stack = contextlib.ExitStack()
        try:
            city, seq, obj = self.paths
            self._city = self._stack.enter_context(open(self._stack.enter_context(atomic_path(city)), "w"))
            self._city.write(_dumps(self.header)[:-1] + ',"CityObjects":{')
            self._seq = None
            if seq is not None:
                self._seq = self._stack.enter_context(open(self._stack.enter_context(atomic_path(seq)), "w"))
                self._seq.write(_dumps({**self.header, "CityObjects": {}, "vertices": []}) + "\n")
            self._obj = None
            if obj is not None:
                self._obj = self._stack.enter_context(open(self._stack.enter_context(atomic_path(obj)), "w"))
                self._obj.write(
                    f"# sat2lod OBJ export, origin = {self.header['transform']['translate']} in "
                    f"{self.header['metadata']['referenceSystem']}\n"
                )
        except BaseException:
            self._stack.close()
            raise
        return self

    def add(self, feature: dict[str, Any]) -> None:
        """Append one CityJSONFeature (its own vertex list, integers of the header's transform)."""
        lut = []
        new = []
        for v in feature["vertices"]:
            key = (int(v[0]), int(v[1]), int(v[2]))
            i = self.index.get(key)
            if i is None:
                i = self.index[key] = len(self.index)
                new.append(i)
            lut.append(i)
        for oid, o in feature["CityObjects"].items():
            glob = dict(o)
            if "geometry" in o:
                glob["geometry"] = [dict(g, boundaries=_relabel(g["boundaries"], lut)) for g in o["geometry"]]
            self._city.write(("," if self.n_features else "") + _dumps(oid) + ":" + _dumps(glob))
            self.n_features += 1
        if self._seq is not None:
            self._seq.write(_dumps(feature) + "\n")
        if self._obj is not None:
            self._obj.write(self._obj_lines(feature, lut, new))

    def _obj_lines(self, feature: dict[str, Any], lut: list[int], new: list[int]) -> str:
        scale = np.array(self.header["transform"]["scale"])
        local = np.array(feature["vertices"], float).reshape(-1, 3) * scale
        out = []
        first_local = {g: k for k, g in reversed(list(enumerate(lut)))}
        for g in new:
            self.n_obj += 1
            self.obj_ids.append(self.n_obj)
            x, y, z = local[first_local[g]]
            out.append(f"v {x:.3f} {y:.3f} {z:.3f}")
        faces: list[str] = []
        for oid, o in feature["CityObjects"].items():
            faces.append(f"g {oid}")
            for geom in o.get("geometry", []):
                for shell in geom["boundaries"]:
                    for surf in shell:
                        faces += self._faces(surf, local, lut, out)
        return "\n".join(out + faces) + "\n"

    def _faces(self, surf: list[list[int]], local: np.ndarray, lut: list[int], extra: list[str]) -> list[str]:
        """OBJ face lines of one surface (local vertex indices); a face with holes is triangulated (constrained
        Delaunay in the face plane); a point the triangulation adds is appended to ``extra``."""
        import shapely
        from shapely.geometry import Polygon

        num = self.obj_ids
        if len(surf) == 1:
            return ["f " + " ".join(str(num[lut[i]]) for i in surf[0])]
        # the face's plane from Newell's normal of its whole exterior ring (the first three vertices may be
        # collinear: their cross product is zero and the projection then flattens the face to a line)
        pts = local[surf[0]] - local[surf[0][0]]
        n = np.cross(pts, np.roll(pts, -1, axis=0)).sum(axis=0)
        drop = int(np.argmax(np.abs(n)))
        keep = [i for i in range(3) if i != drop]
        poly = Polygon(local[surf[0]][:, keep], [local[r][:, keep] for r in surf[1:]])
        lookup = {tuple(np.round(local[i][keep], 6)): num[lut[i]] for r in surf for i in r}
        try:
            triangles = shapely.get_parts(shapely.constrained_delaunay_triangles(poly))
        except shapely.errors.GEOSException:
            # a face that is not a valid polygon in its plane (a hole touching the exterior after rounding):
            # its valid parts; if even those fail, the exterior ring alone (the OBJ is a preview, the
            # CityJSON keeps the face as it is)
            try:
                triangles = shapely.get_parts(
                    shapely.constrained_delaunay_triangles(shapely.make_valid(poly))
                )
            except shapely.errors.GEOSException:
                log.warning("OBJ: a face with holes could not be triangulated; written without its holes")
                return ["f " + " ".join(str(num[lut[i]]) for i in surf[0])]
        lines = []
        for tri in triangles:
            ids = []
            for c in np.asarray(tri.exterior.coords)[:3]:
                key = tuple(np.round(c, 6))
                if (
                    key not in lookup
                ):  # a new vertex from the triangulation (should not happen for simple faces)
                    full = np.zeros(3)
                    full[keep] = c
                    full[drop] = float(np.mean(local[surf[0]][:, drop]))
                    extra.append(f"v {full[0]:.3f} {full[1]:.3f} {full[2]:.3f}")
                    self.n_obj += 1
                    lookup[key] = self.n_obj
                ids.append(lookup[key])
            lines.append("f " + " ".join(map(str, ids)))
        return lines

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:  # the temporary files are removed, nothing is half-written
            self._stack.__exit__(exc_type, exc, tb)
            return
        try:
            self._city.write('},"vertices":[')
            keys = iter(self.index)
            sep = ""
            while chunk := [_dumps(list(k)) for _, k in zip(range(100_000), keys)]:
                self._city.write(sep + ",".join(chunk))
                sep = ","
            self._city.write("]}")
        except BaseException as err:
            self._stack.__exit__(type(err), err, err.__traceback__)
            raise
        self._stack.__exit__(None, None, None)


def _relabel(x: Any, lut: list[int]) -> Any:
    """Nested vertex indices mapped through ``lut``."""
    if isinstance(x, list):
        return [_relabel(i, lut) for i in x]
    return lut[x]


def write_obj(path: str | os.PathLike[str], doc: dict[str, Any]) -> Path:
    """Write the CityJSON solids as a Wavefront OBJ for viewers (one group per building, each preceded by the
    vertices it uses first; coordinates relative to the CityJSON ``transform.translate`` so that float
    precision holds). Faces with holes are triangulated (constrained Delaunay in the face plane)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(dir=path.parent) as tmp,
        CityWriter(doc, Path(tmp) / "c.json", obj=path) as w,
    ):
        for feat in city_features(doc):
            w.add(feat)
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
