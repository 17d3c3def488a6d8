"""Config is a contract: every config in the repo validates, unknown keys fail with their name."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from sat2lod.config import ConfigError, load_config, load_schema, validate_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(
    p
    for p in [*REPO.glob("config/*.yaml"), *REPO.glob("tests/data/*.yaml")]
    if p.name != "schema.yaml" and "eodag" not in p.name
)


def _walk(schema: dict, path: str = ""):
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{key}" if path else key)


def test_schema_documents_every_key():
    schema = load_schema()
    for path, sub in _walk(schema):
        if not path:
            continue
        assert sub.get("description"), f"{path}: no description"
        assert "default" in sub, f"{path}: no default"
        if sub.get("type") == "object" or "properties" in sub:
            assert sub.get("additionalProperties") is False, f"{path}: additionalProperties must be false"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_repo_configs_validate(path):
    cfg = load_config(path)
    assert cfg["aoi"]["name"]


def test_defaults_alone_make_a_valid_config():
    cfg = validate_config({})
    assert cfg["source"]["kind"] == "synthetic"
    assert cfg["output"]["resolution_m"] > 0


@pytest.mark.parametrize("section", ["stereo", "tiling", "lod", "source", "segmentation"])
def test_unknown_key_is_named(section):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    bad = copy.deepcopy(cfg)
    bad.setdefault(section, {})["bogus_key"] = 1
    with pytest.raises(ConfigError, match=rf"'{section}'.*bogus_key"):
        validate_config(bad)


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="output.resolution_m"):
        validate_config({"output": {"resolution_m": "half a metre"}})


def test_snakemake_rejects_a_bad_key(tmp_path):
    # the workflow validates at start: a typo in a config stops a dry run with the key's name
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("stereo:\n  censsus_window: [5, 7]\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--cores",
            "1",
            "--configfile",
            str(bad),
            "--directory",
            str(tmp_path),
            "-s",
            str(REPO / "Snakefile"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "censsus_window" in proc.stdout + proc.stderr


def test_workflow_schema_is_the_package_schema():
    """The Snakefile validates against config/schema.yaml, the package (sat2lod validate-config, the code's
    defaults) reads its resource sat2lod/data/schema.yaml: one schema, two identical files."""
    from sat2lod.schema import SCHEMA_PATH

    assert SCHEMA_PATH.is_relative_to(REPO / "src" / "sat2lod") or "site-packages" in str(SCHEMA_PATH)
    assert (REPO / "config" / "schema.yaml").read_bytes() == SCHEMA_PATH.read_bytes(), (
        "config/schema.yaml and src/sat2lod/data/schema.yaml differ: edit config/schema.yaml, then "
        "cp config/schema.yaml src/sat2lod/data/schema.yaml"
    )


def test_schema_loader_reads_what_safe_load_reads():
    """sat2lod.schema parses the schema with libyaml's loader (a tenth of the start-up of every job): the
    same keys, values and types as the pure-Python ``yaml.safe_load`` (a float default stays a float)."""
    import json

    from sat2lod.schema import _LOADER, SCHEMA_PATH, load_schema

    if _LOADER is yaml.SafeLoader:
        pytest.skip("PyYAML without libyaml: the schema is read by yaml.SafeLoader itself")
    reference = yaml.safe_load(SCHEMA_PATH.read_text())
    assert json.dumps(load_schema(), sort_keys=True) == json.dumps(reference, sort_keys=True)


def test_yaml_1_1_exponent_without_dot_is_read_as_a_number():
    """Issue 18.8: ``resolution_m: 1e-6`` is a string for PyYAML (YAML 1.1); it was refused as 'not a number'."""
    cfg = validate_config(yaml.safe_load("output:\n  resolution_m: 1e-1\ntiling:\n  tile_size_m: 2E+2\n"))
    assert cfg["output"]["resolution_m"] == 0.1 and cfg["tiling"]["tile_size_m"] == 200.0
    with pytest.raises(ConfigError, match="output.resolution_m"):  # a real string is still refused
        validate_config({"output": {"resolution_m": "1e-1 m"}})


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_numbers_are_refused_with_their_key(value):
    """Issue 18.8: ``margin_m: .nan`` passed the schema (NaN >= 0 is not false) and failed far away."""
    with pytest.raises(ConfigError, match=r"'tiling.margin_m': (nan|inf|-inf) is not a finite number"):
        validate_config(yaml.safe_load(f"tiling:\n  margin_m: {value}\n"))


def test_snakemake_refuses_nan_and_accepts_1e_exponent(tmp_path):
    import subprocess
    import sys

    def dry_run(text: str) -> subprocess.CompletedProcess:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(text)
        cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(cfg)]
        cmd += ["--directory", str(tmp_path), "-s", str(REPO / "Snakefile"), "results/synth/demo/scene.json"]
        return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)

    bad = dry_run("tiling:\n  margin_m: .nan\n")
    assert bad.returncode != 0 and "'tiling.margin_m': nan is not a finite number" in bad.stdout + bad.stderr
    ok = dry_run("output:\n  resolution_m: 5e-1\n")
    assert ok.returncode == 0, ok.stderr[-2000:]
