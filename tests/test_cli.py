"""The `sat2lod` command as a person meets it: help, version, and one-line errors on bad input."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import sat2lod

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sat2lod.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=REPO,
    )


def test_validate_config_missing_file_is_one_line(tmp_path):
    missing = tmp_path / "nope.yaml"
    proc = _cli("validate-config", str(missing))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0] and "No such file" in lines[0], proc.stderr


def test_validate_config_reports_each_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list, not a mapping\n")
    proc = _cli("validate-config", "config/config.yaml", str(bad))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "config/config.yaml: valid" in proc.stdout
    assert str(bad) in proc.stderr and "mapping" in proc.stderr


def test_version_matches_package_metadata():
    proc = _cli("--version")
    assert proc.returncode == 0
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert proc.stdout.strip() == f"sat2lod {project['version']}" == f"sat2lod {sat2lod.__version__}"


def test_help_is_plain_text_and_lists_the_commands():
    for args in (["--help"], ["synth", "--help"], ["validate-config", "--help"]):
        proc = _cli(*args)
        assert proc.returncode == 0, args
        assert "``" not in proc.stdout and ":func:" not in proc.stdout, proc.stdout
    top = _cli("--help").stdout
    assert "synth" in top and "validate-config" in top and "--version" in top


def test_segment_options_default_to_the_schema():
    """`sat2lod segment`'s defaults are the rule segment's (config/schema.yaml), not restated numbers."""
    from sat2lod.cli import build_parser
    from sat2lod.schema import defaults

    seg = defaults("segmentation")
    args = build_parser().parse_args(["segment", "--image", "i.tif", "--out", "m.tif"])
    assert args.ndvi_bands is None  # per image: the chain ortho's schema bands, or the file's red / NIR
    assert (args.max_ndvi, args.torch_threads, args.threshold) == (
        seg["max_ndvi"],
        seg["torch_threads"],
        seg["threshold"],
    )
    assert (args.min_area_m2, args.method, args.device) == (seg["min_area_m2"], seg["method"], seg["device"])
    assert args.plausibility is defaults("segmentation", "plausibility")["enabled"]
    no_filter = build_parser().parse_args(["segment", "--image", "i", "--out", "m.tif", "--no-plausibility"])
    assert no_filter.plausibility is False
    assert args.roof_completion is defaults("segmentation", "roof_completion")["enabled"]
    as_drawn = build_parser().parse_args(
        ["segment", "--image", "i", "--out", "m.tif", "--no-roof-completion"]
    )
    assert as_drawn.roof_completion is False
    args = build_parser().parse_args(
        ["--threads", "2", "segment", "--image", "i", "--out", "m.tif", "--threads", "4"]
        + ["--ndvi-bands", "1", "4", "--max-ndvi", "0.4"]
    )
    assert (args.threads, args.torch_threads, args.ndvi_bands, args.max_ndvi) == (2, 4, [1, 4], 0.4)
    help_text = _cli("segment", "--help").stdout
    assert "--ndvi-bands RED NIR" in help_text and "--max-ndvi" in help_text and "--threads N" in help_text
