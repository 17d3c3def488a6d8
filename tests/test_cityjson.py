"""CityJSON 2.0 writer: structural validity, closed solids in the file, CityJSONSeq and OBJ exports."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from shapely.geometry import box

from cityjson_schema import official_schemas, schema_errors
from sat2lod.io.cityjson import (
    CityBuilding,
    CityWriter,
    city_features,
    city_model,
    grid_translate,
    iter_seq_features,
    read_cityjson,
    read_seq_header,
    seq_header,
    validate_cityjson,
    write_cityjson,
    write_cityjsonseq,
    write_obj,
)
from sat2lod.lod.solid import Surface, build_solid, check_solid


def _buildings():
    gable = build_solid(
        [box(0, 0, 10, 2.5), box(0, 2.5, 10, 5)], [(105.0, 0.0, 1.0), (110.0, 0.0, -1.0)], 100.0
    )
    block = build_solid([box(10, 0, 20, 5)], [(108.0, 0.0, 0.0)], 100.0)  # shares a wall with the gable
    return [
        CityBuilding("b1", [(s.rings, s.semantic) for s in gable], "2.2", {"roof_type": "gable"}),
        CityBuilding("b2", [(s.rings, s.semantic) for s in block], "2.2", {"roof_type": "flat"}),
    ]


def _solids_from_doc(doc):
    """Rebuild each object's surfaces (integer mm, in the file's transformed frame) from the vertex list."""
    v = doc["vertices"]
    out = {}
    for oid, o in doc["CityObjects"].items():
        g = o["geometry"][0]
        sems = g["semantics"]["surfaces"]
        out[oid] = [
            Surface([[tuple(v[i]) for i in ring] for ring in surf], sems[val]["type"])
            for surf, val in zip(g["boundaries"][0], g["semantics"]["values"][0])
        ]
    return out


def test_city_model_is_valid_and_solids_closed(tmp_path):
    doc = city_model(_buildings(), 32631, "WGS84 ellipsoid", "test")
    assert validate_cityjson(doc) == []
    p = write_cityjson(tmp_path / "city.json", doc)
    back = read_cityjson(p)
    assert back["version"] == "2.0" and back["metadata"]["referenceSystem"].endswith("/EPSG/0/32631")
    assert "WGS84 ellipsoid" in back["metadata"]["title"]
    assert {o["attributes"]["height_reference"] for o in back["CityObjects"].values()} == {"WGS84 ellipsoid"}
    for oid, surfaces in _solids_from_doc(back).items():
        chk = check_solid(surfaces)
        assert chk["closed"] and chk["planar"] and chk["volume_m3"] > 0, oid
    # shared vertices: the common wall corners are stored once
    assert len(back["vertices"]) == len({tuple(x) for x in back["vertices"]})
    # real coordinates = vertex * scale + translate
    z = np.array(back["vertices"])[:, 2] * back["transform"]["scale"][2] + back["transform"]["translate"][2]
    assert z.min() == pytest.approx(100.0) and z.max() == pytest.approx(108.0)


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (lambda d: d.update(version="1.1"), "version"),
        (lambda d: d["metadata"].update(referenceSystem="EPSG:32631"), "referenceSystem"),
        (lambda d: d["metadata"].update(verticalDatum="WGS84 ellipsoid"), "metadata members"),
        (lambda d: d["vertices"].append([0.5, 1, 2]), "vertices"),
        (lambda d: d["CityObjects"]["b1"].update(type="House"), "CityObject type"),
        (lambda d: d["CityObjects"]["b1"]["geometry"][0].update(lod=2), "lod"),
        (lambda d: d["CityObjects"]["b1"]["geometry"][0]["boundaries"][0][0][0].append(10**6), "indices"),
        (
            lambda d: d["CityObjects"]["b1"]["geometry"][0]["semantics"]["surfaces"].append({"type": "Roof"}),
            "semantic",
        ),
        (lambda d: d["CityObjects"]["b1"]["geometry"][0]["semantics"]["values"][0].pop(), "shape"),
        (lambda d: d["CityObjects"]["b1"]["geometry"][0].update(boundaries=[[1, 2, 3]]), "depth"),
        (lambda d: d["CityObjects"]["b1"].update(children=["nope"]), "child"),
    ],
)
def test_validator_catches_each_error(mutate, expected):
    doc = copy.deepcopy(city_model(_buildings(), 32631, "WGS84 ellipsoid", "test"))
    mutate(doc)
    errors = validate_cityjson(doc)
    assert any(expected in e for e in errors), errors


def test_cityjsonseq_and_obj(tmp_path):
    doc = city_model(_buildings(), 32631, "WGS84 ellipsoid", "test")
    seq = write_cityjsonseq(tmp_path / "city.jsonl", doc)
    lines = [json.loads(x) for x in seq.read_text().splitlines()]
    assert lines[0]["type"] == "CityJSON" and lines[0]["CityObjects"] == {} and "transform" in lines[0]
    feats = lines[1:]
    assert [f["type"] for f in feats] == ["CityJSONFeature"] * 2
    for f in feats:
        one = dict(lines[0], CityObjects=f["CityObjects"], vertices=f["vertices"])
        assert validate_cityjson(one) == []
        assert check_solid(_solids_from_doc(one)[f["id"]])["closed"]
    obj = write_obj(tmp_path / "city.obj", doc).read_text().splitlines()
    nv = sum(1 for x in obj if x.startswith("v "))
    faces = [x for x in obj if x.startswith("f ")]
    assert nv == len(doc["vertices"]) and len(faces) >= 14
    assert all(1 <= int(i) <= nv for f in faces for i in f.split()[1:])


def test_city_model_against_official_schema(tmp_path):
    city, feature = official_schemas()
    doc = city_model(_buildings(), 32631, "WGS84 ellipsoid", "test", reference_date="2026-11-27")
    assert schema_errors(city, doc) == []
    lines = [json.loads(x) for x in write_cityjsonseq(tmp_path / "c.jsonl", doc).read_text().splitlines()]
    assert schema_errors(city, lines[0]) == []
    assert [schema_errors(feature, f) for f in lines[1:]] == [[], []]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["metadata"].update(
            verticalDatum="WGS84 ellipsoid"
        ),  # what the writer did before 2.0.0 was checked
        lambda d: d["metadata"].update(referenceSystem="EPSG:32631"),
        lambda d: d["CityObjects"]["b1"].update(type="House"),
        lambda d: d["CityObjects"]["b1"]["geometry"][0].update(lod=2),
        lambda d: d["CityObjects"]["b1"]["geometry"][0]["semantics"]["surfaces"].append({"type": "Roof"}),
        lambda d: d["transform"].pop("scale"),
    ],
)
def test_official_schema_and_own_validator_reject_the_same_errors(mutate):
    """Each broken document is refused by the official schema and by validate_cityjson alike (the
    writer refuses to write what validate_cityjson rejects, so it must catch what the schema catches)."""
    city, _ = official_schemas()
    doc = copy.deepcopy(city_model(_buildings(), 32631, "WGS84 ellipsoid", "test"))
    mutate(doc)
    assert schema_errors(city, doc) and validate_cityjson(doc)


def test_city_writer_streams_the_documents_files(tmp_path):
    """Features added one by one give write_cityjson's file byte for byte (vertices shared again across
    features); an error inside the block leaves no file."""
    doc = city_model(_buildings(), 32631, "WGS84 ellipsoid", "test", translate=grid_translate(-5.0, -5.0))
    assert doc["transform"]["translate"] == [-5.0, -5.0, 0.0] and min(min(v) for v in doc["vertices"]) >= 0
    with CityWriter(doc, tmp_path / "w.json", tmp_path / "w.jsonl") as w:
        for f in city_features(doc):
            w.add(f)
    assert (tmp_path / "w.json").read_bytes() == write_cityjson(tmp_path / "c.json", doc).read_bytes()
    assert (tmp_path / "w.jsonl").read_bytes() == write_cityjsonseq(tmp_path / "c.jsonl", doc).read_bytes()
    with (
        pytest.raises(RuntimeError, match="stop"),
        CityWriter(doc, tmp_path / "x.json", obj=tmp_path / "x.obj") as w,
    ):
        w.add(next(city_features(doc)))
        raise RuntimeError("stop")
    assert not list(tmp_path.glob("x.*")) and not list(tmp_path.glob(".x.*"))


def test_seq_features_in_key_order_with_few_open_files(tmp_path):
    """Features of several CityJSONSeq files come in key order, whatever the file, with one file open."""
    doc = city_model(_buildings() * 3, 32631, "e", "t")  # ids b1 b2 b1 b2 ...: renamed below
    feats = list(city_features(doc))
    paths = []
    for k, ids in enumerate([(5, 1), (2, 4), (3, 6)]):
        lines = [json.dumps(seq_header(doc))]
        lines += [json.dumps(dict(feats[0], id=f"b{i}")) for i in ids]
        paths.append(tmp_path / f"{k}.jsonl")
        paths[-1].write_text("\n".join(lines) + "\n")
    got = [f["id"] for f in iter_seq_features(paths, key=lambda i: int(i[1:]), max_open=1)]
    assert got == ["b1", "b2", "b3", "b4", "b5", "b6"]
    assert read_seq_header(paths[0])["metadata"] == doc["metadata"]
    paths[1].write_text(paths[1].read_text() + "not json\n")
    with pytest.raises(ValueError, match="1.jsonl: a line is not JSON"):
        list(iter_seq_features(paths, key=str))


def test_obj_triangulates_a_face_with_a_hole_whose_first_vertices_are_collinear(tmp_path):
    """A flat roof with a hole whose exterior starts with three collinear vertices (the scaling bench's 2.4 km
    city had one): the face's plane comes from the whole ring, so the triangulation sees the real face and
    the OBJ's triangles cover the roof minus the hole."""
    mm = 1000  # city_model takes the transform's integers (mm)
    ext = [
        (0, 0, 5 * mm),
        (mm, 0, 5 * mm),
        (2 * mm, 0, 5 * mm),
        (2 * mm, 2 * mm, 5 * mm),
        (0, 2 * mm, 5 * mm),
    ]
    hole = [(mm // 2, mm // 2, 5 * mm), (mm // 2, 3 * mm // 2, 5 * mm), (3 * mm // 2, 3 * mm // 2, 5 * mm)]
    hole.append((3 * mm // 2, mm // 2, 5 * mm))
    walls = [
        ([[(0, 0, 0), (2 * mm, 0, 0), (2 * mm, 0, 5 * mm), (mm, 0, 5 * mm), (0, 0, 5 * mm)]], "WallSurface")
    ]
    doc = city_model([CityBuilding("b1", [([ext, hole], "RoofSurface"), *walls], "2.2", {})], 32631, "e", "t")
    obj = write_obj(tmp_path / "c.obj", doc).read_text().splitlines()
    verts = [tuple(map(float, line.split()[1:])) for line in obj if line.startswith("v ")]
    tris = [[verts[int(i) - 1] for i in line.split()[1:]] for line in obj if line.startswith("f ")]
    roof = [t for t in tris if len(t) == 3 and all(abs(p[2] - 5) < 1e-6 for p in t)]
    area = sum(abs(np.cross(np.subtract(b, a), np.subtract(c, a))[2]) / 2 for a, b, c in roof)
    assert area == pytest.approx(4.0 - 1.0, abs=1e-6)
