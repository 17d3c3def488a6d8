"""Packaging: the wheel carries what the package reads at run time (the config schema, py.typed, data/), and
``sat2lod validate-config`` works from a non-editable install, outside the repository (the Dockerfile's
install)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the sources (the build writes build/ and *.egg-info beside them)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            ".",
        ],
        cwd=src,
        check=True,
        capture_output=True,
        text=True,
    )
    (whl,) = out.glob("sat2lod-*.whl")
    return whl


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "sat2lod/data/schema.yaml" in names
    # the shipped models: the chain's default one and the image-only one of sat2lod segment
    assert {"sat2lod/data/segmenter_default.pt", "sat2lod/data/segmenter_image_only.pt"} <= names
    assert "sat2lod/py.typed" in names
    assert "sat2lod/schema.py" in names and "sat2lod/grid.py" in names
    with zipfile.ZipFile(wheel) as z:
        assert z.read("sat2lod/data/schema.yaml") == (REPO / "config" / "schema.yaml").read_bytes()


def test_validate_config_from_a_non_editable_install(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    # install into the venv with the running pip (the venv has none of its own: quicker)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = subprocess.run(
        [str(py), "-c", "import sat2lod.schema as s; print(s.__file__); print(s.SCHEMA_PATH)"],
        cwd=outside,
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout.split()
    assert all(str(env_dir) in p for p in where), where  # the installed copy, not the repository's
    cfg = REPO / "config" / "config.yaml"
    ok = subprocess.run(
        [str(env_dir / "bin" / "sat2lod"), "validate-config", str(cfg)],
        cwd=outside,
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (outside / "bad.yaml").write_text("aoi: {name: x}\nstereo: {p3: 1}\n")
    bad = subprocess.run(
        [str(env_dir / "bin" / "sat2lod"), "validate-config", "bad.yaml"],
        cwd=outside,
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode != 0 and "p3" in bad.stdout + bad.stderr
