"""One source of truth for parameter defaults: the schema (config/schema.yaml = sat2lod/data/schema.yaml).

Every default in the package's code (a function's keyword default, a dataclass field default) whose name
is a key of the config section that module serves (or the name a rule passes that key under) must equal
the schema's default. Code takes its defaults from :func:`sat2lod.schema.defaults`; a literal that drifts
(``min_edge_m=1.5`` against the schema's 2.5) fails here, naming the function and the key.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import sat2lod
from sat2lod.schema import defaults, load_schema

REPO = Path(__file__).resolve().parents[1]

#: module (prefix, below sat2lod.) -> the config sections whose keys it takes as parameters
SECTIONS: dict[str, list[tuple[str, ...]]] = {
    "lod": [("lod",)],
    "stereo": [("stereo",), ("output",)],
    "mosaic": [("output",)],
    "terrain": [("terrain",)],
    "ortho": [("ortho",)],
    "segment.train": [("segmentation", "train")],
    "segment.unet": [("segmentation", "train")],
    "segment.finetune": [("segmentation", "finetune")],
    "segment.plausibility": [("segmentation", "plausibility")],
    "segment": [("segmentation",)],
    "tiling": [("tiling",), ("output",)],
    "qualify": [("qualify",)],
    "figures": [("figures",)],
    "synth": [("source", "synthetic"), ("output",)],
    "acquire": [("source",), ("source", "selection"), ("source", "stac"), ("output",), ("aoi",)],
}

#: (module, object, parameter) that share a key's name but not its meaning, with the reason
NOT_THE_KEY: dict[tuple[str, str, str], str] = {
    # the ramp calibrated on the scene (fractions per distance), not the on/off switch lod.roof_edge_ramp
    ("lod.roof", "RoofParams", "edge_ramp"): "calibrated ramp",
    # a user's image has no gate unless its red / NIR bands are named (the schema's [1, 4] counts the MS bands
    # of the chain's ortho, which segment_image_file recognises and then applies)
    ("segment.image", "ImageRaster", "ndvi_bands"): "bands of a user's image",
    ("segment.image", "read_image", "ndvi_bands"): "bands of a user's image",
    ("segment.image", "segment_image_file", "ndvi_bands"): "bands of a user's image",
    # the file itself, an input of rule acquire (the schema's path is relative to the repository); None: none
    ("acquire.pipeline", "acquire", "providers_file"): "the input file",
}


def _rule_aliases() -> dict[tuple[str, ...], dict[str, str]]:
    """Parameter names the rules pass config keys under (``roof_percentile=config["lod"]["lod1_..."]``)."""
    text = "\n".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    text = text.replace('SEG["', 'config["segmentation"]["')
    out: dict[tuple[str, ...], dict[str, str]] = {}
    for m in re.finditer(r'(\w+)=config((?:\["\w+"\])+)', text):
        path = re.findall(r'"(\w+)"', m.group(2))
        out.setdefault(tuple(path[:-1]), {})[m.group(1)] = path[-1]
    # a section passed whole is renamed where its params object builds the stage's own (roof_max_rmse_m ->
    # RoofParams(max_rmse_m=...)): those names too
    from sat2lod.lod.pipeline import LodParams

    for m in re.finditer(r"(\w+)=self\.(\w+)", inspect.getsource(LodParams)):
        out.setdefault(("lod",), {})[m.group(1)] = m.group(2)
    return out


def _sections_of(modname: str) -> list[tuple[str, ...]]:
    best = max((k for k in SECTIONS if modname == k or modname.startswith(k + ".")), key=len, default=None)
    return SECTIONS[best] if best else []


def _code_defaults(mod) -> list[tuple[str, str, object]]:
    """(object name, parameter, default) of the functions, dataclasses and methods defined in ``mod``."""
    out = []

    def from_callable(qual: str, fn) -> None:
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return
        for p in sig.parameters.values():
            if p.default is not inspect.Parameter.empty:
                out.append((qual, p.name, p.default))

    for name, obj in vars(mod).items():
        if getattr(obj, "__module__", None) != mod.__name__:
            continue
        if inspect.isfunction(obj):
            from_callable(name, obj)
        elif inspect.isclass(obj):
            if dataclasses.is_dataclass(obj):
                for f in dataclasses.fields(obj):
                    if f.default is not dataclasses.MISSING:
                        out.append((name, f.name, f.default))
                    elif f.default_factory is not dataclasses.MISSING:
                        out.append((name, f.name, f.default_factory()))
            for mname, meth in vars(obj).items():
                if inspect.isfunction(meth) and mname != "__init__":
                    from_callable(f"{name}.{mname}", meth)
                elif isinstance(meth, (classmethod, staticmethod)):
                    from_callable(f"{name}.{mname}", meth.__func__)
            if not dataclasses.is_dataclass(obj) and "__init__" in vars(obj):
                from_callable(f"{name}.__init__", obj.__init__)
    return out


def _same(code, schema) -> bool:
    if isinstance(schema, bool) or isinstance(code, bool):
        return code is schema
    if isinstance(schema, list) and isinstance(code, (list, tuple)):
        return list(code) == schema
    return code == schema


def _disagreements() -> tuple[int, list[str]]:
    aliases = _rule_aliases()
    checked, bad = 0, []
    for info in pkgutil.walk_packages(sat2lod.__path__, "sat2lod."):
        modname = info.name.removeprefix("sat2lod.")
        sections = _sections_of(modname)
        if not sections:
            continue
        mod = importlib.import_module(info.name)
        for obj, param, value in _code_defaults(mod):
            if (modname, obj.split(".")[0], param) in NOT_THE_KEY:
                continue
            for section in sections:
                key = aliases.get(section, {}).get(param, param)
                schema_defaults = defaults(*section)
                if key not in schema_defaults:
                    continue
                checked += 1
                if not _same(value, schema_defaults[key]):
                    bad.append(
                        f"sat2lod.{modname}.{obj}({param}={value!r}): the schema's "
                        f"{'.'.join(section)}.{key} defaults to {schema_defaults[key]!r}; take it from "
                        f"sat2lod.schema.defaults({', '.join(map(repr, section))})"
                    )
    return checked, bad


def test_code_defaults_agree_with_schema():
    checked, bad = _disagreements()
    assert checked > 100, f"only {checked} defaults matched a schema key: is the module map stale?"
    assert not bad, "defaults in code disagree with the schema:\n" + "\n".join(bad)


def test_disagreement_is_detected(monkeypatch):
    """The check above can fail: a drifted default in a stage module is reported."""
    import sat2lod.lod.pipeline as lp

    def run_lod0(mask, ndsm, gpkg, *, min_edge_m: float = 1.5): ...

    run_lod0.__module__ = lp.__name__
    monkeypatch.setattr(lp, "run_lod0", run_lod0)
    _, bad = _disagreements()
    assert any("lod.pipeline.run_lod0(min_edge_m=1.5)" in b and "lod.min_edge_m" in b for b in bad), bad


def test_defaults_are_fresh_copies():
    d = defaults("qualify")
    d["thresholds_m"].append(99.0)
    assert 99.0 not in defaults("qualify")["thresholds_m"]
    with pytest.raises(KeyError, match="no_such"):
        defaults("lod", "no_such")


def test_sections_passed_whole_match_their_params_objects():
    """The rules that pass their config section whole (terrain, stereo, lod, ortho, segment, qualify, figures,
    synth_city, acquire; some leave out the keys that are inputs or other rules') hand it to one typed params
    object: every key of the section must be a field (a new schema key without code fails here, not in a
    run)."""
    from sat2lod.acquire.pipeline import AcquireParams
    from sat2lod.figures import FigureParams
    from sat2lod.lod.pipeline import LodParams
    from sat2lod.ortho import OrthoParams
    from sat2lod.qualify import QualifyParams
    from sat2lod.stereo.pipeline import StereoParams
    from sat2lod.synth import SynthParams
    from sat2lod.terrain import DTMParams

    assert set(defaults("terrain")) == {f.name for f in dataclasses.fields(DTMParams)}
    assert set(defaults("lod")) == {f.name for f in dataclasses.fields(LodParams)}
    assert set(defaults("ortho")) == {f.name for f in dataclasses.fields(OrthoParams)}
    assert set(defaults("stereo")) == {f.name for f in dataclasses.fields(StereoParams)}
    smk = {p.stem: p.read_text() for p in (REPO / "rules").glob("*.smk")}
    assert 'terrain=config["terrain"]' in smk["terrain"] and 'stereo=config["stereo"]' in smk["stereo"]
    # lod0_tile, lod1_tile, lod2_noise_tile, lod2_scene, lod2_tile (the merges take no lod key)
    assert smk["lod"].count('lod=config["lod"]') == 5
    assert 'ortho=config["ortho"]' in smk["ortho"]
    # rule segment passes the section but for the keys it names (other rules' and its checkpoint input)
    from sat2lod.segment.predict import SegmentParams

    left_out = re.search(r"segmentation=\{.*?if k not in \(([^)]*)\)", smk["segment"], re.DOTALL)
    assert left_out, "rules/segment.smk: segmentation={k: v for k, v in SEG.items() if k not in (...)}"
    seg_keys = set(load_schema()["properties"]["segmentation"]["properties"])
    left = set(re.findall(r'"(\w+)"', left_out.group(1)))
    assert seg_keys - left == {f.name for f in dataclasses.fields(SegmentParams)}
    assert set(defaults("figures")) == {f.name for f in dataclasses.fields(FigureParams)}
    assert 'figures=config["figures"]' in smk["figures"]
    # rule synth_city: section source.synthetic, and output.resolution_m as truth_res_m (an alias checked above)
    synth_fields = {f.name for f in dataclasses.fields(SynthParams)}
    assert set(defaults("source", "synthetic")) == synth_fields - {"truth_res_m"}
    assert 'synthetic=config["source"]["synthetic"]' in smk["synth"]
    assert 'truth_res_m=config["output"]["resolution_m"]' in smk["synth"]
    # rule acquire: section source but for providers_file (an input) and synthetic (rule synth_city's), and
    # output.epsg, aoi.bbox_lonlat
    source = set(load_schema()["properties"]["source"]["properties"]) - {"providers_file", "synthetic"}
    assert source | {"epsg", "bbox_lonlat"} == {f.name for f in dataclasses.fields(AcquireParams)}
    assert re.search(r'source=\{\s*k: v\s*for k, v in config\["source"\]\.items\(\)', smk["acquire"])
    assert 'epsg=config["output"]["epsg"]' in smk["acquire"]
    assert 'bbox_lonlat=config["aoi"]["bbox_lonlat"]' in smk["acquire"]
    # rule qualify passes the section but for its reference files (inputs)
    refs = {k for k in defaults("qualify") if k.startswith("reference_")}
    assert refs and set(defaults("qualify")) - refs == {f.name for f in dataclasses.fields(QualifyParams)}
    assert re.search(r'qualify=\{\s*k: v\s*for k, v in config\["qualify"\]\.items\(\)', smk["qualify"])
    # rule tiles passes section tiling to make_tiles' keywords, but for tiles_per_job (the per-tile rules', read
    # by job_tiles in rules/common.smk)
    from sat2lod.tiling import make_tiles

    assert set(defaults("tiling")) - {"tiles_per_job"} == set(inspect.signature(make_tiles).parameters) & set(
        defaults("tiling")
    )
    assert "tiles_per_job" not in inspect.signature(make_tiles).parameters
    assert re.search(
        r'tiling=\{k: v for k, v in config\["tiling"\]\.items\(\) if k != "tiles_per_job"\}', smk["tiling"]
    )
    assert 'config["tiling"]["tiles_per_job"]' in (REPO / "rules/common.smk").read_text()


def test_lod_bench_runs_like_the_rules():
    """bench/lod_metrics.py claims to run the LOD stages like the rules: the rules pass the whole section lod,
    the bench the section of a default config (the schema's defaults)."""
    import sys

    sys.path.insert(0, str(REPO / "bench"))
    try:
        from lod_metrics import lod_section
    finally:
        sys.path.remove(str(REPO / "bench"))
    text = (REPO / "rules" / "lod.smk").read_text()
    for rule in ("lod0_tile", "lod1_tile", "lod2_noise_tile", "lod2_scene", "lod2_tile", "lod1", "lod2"):
        body = text.split(f"rule {rule}:", 1)[1].split("\nrule ", 1)[0]
        params = body.split("    params:", 1)[1].split("    script:", 1)[0]
        if rule in ("lod1", "lod2"):  # the merges of the tiles' models take no lod key
            assert re.findall(r"(\w+)=", params) == ["title"], rule
            continue
        # the per-tile rules also pass tiles_per_job (sat2lod.workflow.job_params takes it out)
        assert re.findall(r"(\w+)=", params) == (
            ["lod"] if rule == "lod2_scene" else ["tiles_per_job", "lod"]
        ), rule
        assert 'lod=config["lod"]' in params, rule
    assert lod_section() == defaults("lod")


def test_lod_params_built_from_the_section():
    """LodParams takes the section rules/lod.smk passes: a key reaches the stage's own params object under
    its own name, an unknown key fails instead of falling back to a default."""
    from sat2lod.lod.pipeline import LodParams

    p = LodParams.of({"min_edge_m": 1.5, "roof_max_rmse_m": 0.8})
    assert p.footprints().regularize.min_edge_m == 1.5 and p.roofs().max_rmse_m == 0.8
    assert p.footprints().min_area_m2 == defaults("lod")["min_area_m2"]
    assert LodParams.of(None) == LodParams.of(defaults("lod")) == LodParams()
    with pytest.raises(TypeError, match="min_edge"):
        LodParams.of({"min_edge": 1.5})
