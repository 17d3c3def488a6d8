"""bench/real_chains.py: each real scene's configuration is the demo's with only the AOI name and the images
changed, and it passes the schema (a new user's first run on a real pair)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from sat2lod.config import validate_config

sys.path.insert(0, str(REPO / "bench"))
real_chains = pytest.importorskip("real_chains")


@pytest.mark.parametrize("name", sorted(real_chains.SCENES))
def test_scene_config_is_the_demo_with_local_images(name: str, tmp_path: Path) -> None:
    config = real_chains.scene_config(name, tmp_path)
    demo = yaml.safe_load((REPO / "config/config.yaml").read_text())
    assert {k: v for k, v in config.items() if k not in ("aoi", "source")} == {
        k: v for k, v in demo.items() if k not in ("aoi", "source")
    }
    assert config["aoi"] == {"name": name}
    images = config["source"]["local"]["images"]
    assert len(images) == len(real_chains.SCENES[name]["views"])
    assert all(Path(v).parent == tmp_path for i in images for v in i.values() if v is not None)
    validate_config(config)
