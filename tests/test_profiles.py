"""The snakemake profiles parse as snakemake parses them, say why for every key, and keep site values out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILES = ["default", "slurm", "kubernetes"]


def profile(name: str) -> tuple[list[str], dict]:
    path = REPO / "profiles" / name / "config.v8+.yaml"
    assert path.is_file(), f"missing {path}"
    text = path.read_text()
    return text.splitlines(), yaml.safe_load(text)


@pytest.mark.parametrize("name", PROFILES)
def test_every_key_is_commented(name: str) -> None:
    """Each top-level key sits in a paragraph (run of non-blank lines) that starts with a comment."""
    lines, _ = profile(name)
    for i, line in enumerate(lines):
        if re.match(r"^[a-z][a-z0-9-]*:", line):
            j = i
            while j > 0 and lines[j - 1].strip() and not lines[j - 1].startswith("#"):
                j -= 1
            assert j > 0 and lines[j - 1].startswith("#"), f"profiles/{name}: key without a comment: {line!r}"


@pytest.mark.parametrize("name", PROFILES)
def test_profile_parses_with_snakemake(name: str) -> None:
    """snakemake's own profile parser accepts the file (yte processing, key-value flattening)."""
    from snakemake.profiles import ProfileConfigFileParser

    path = REPO / "profiles" / name / "config.v8+.yaml"
    with open(path) as fh:
        parsed = ProfileConfigFileParser().parse(fh)
    assert parsed, f"profiles/{name} is empty"


def test_default_profile_does_not_override_cluster_profiles() -> None:
    """The workflow profile wins key by key over --profile: it must not set what the cluster profiles set."""
    _, default = profile("default")
    for name in ("slurm", "kubernetes"):
        _, cluster = profile(name)
        clash = set(default) & set(cluster)
        assert not clash, f"profiles/default would override profiles/{name} for {sorted(clash)}"
    assert not {"executor", "jobs", "cores", "default-resources", "software-deployment-method"} & set(default)


def test_slurm_profile_site_values_are_placeholders() -> None:
    lines, cfg = profile("slurm")
    assert cfg["executor"] == "slurm"
    # without slurmdbd, sacct auto-detection loses jobs: the status command must be explicit
    assert cfg["slurm-status-command"] == "squeue"
    res = cfg["default-resources"]
    assert (
        res["slurm_partition"] == "$SAT2LOD_SLURM_PARTITION"
        and res["slurm_account"] == "$SAT2LOD_SLURM_ACCOUNT"
    )
    assert {"mem_mb", "runtime"} <= set(res)
    text = "\n".join(lines)
    assert "SAT2LOD_SLURM_PARTITION" in text.split("executor:")[0], "document the site variables at the top"


def test_kubernetes_profile_uses_s3_and_an_image() -> None:
    _, cfg = profile("kubernetes")
    assert cfg["executor"] == "kubernetes" and cfg["default-storage-provider"] == "s3"
    assert (
        cfg["container-image"] == "$SAT2LOD_IMAGE" and cfg["default-storage-prefix"] == "$SAT2LOD_S3_PREFIX"
    )
    assert {"mem_mb", "disk_mb", "runtime"} <= set(cfg["default-resources"])
