"""The configuration schema, the single source of every parameter's default.

Two identical files: ``config/schema.yaml``, the one the workflow validates against (Snakefile) and
readers open beside config.yaml, and the package resource ``sat2lod/data/schema.yaml``, the one the package
reads (``sat2lod validate-config`` and the defaults below work from an installed package, without the
repository). tests/test_config.py fails when they differ: edit config/schema.yaml and copy it over. Code that needs a default takes it from here
(:func:`defaults`), never as a literal of its own: tests/test_defaults.py fails on a literal default that
disagrees with the schema.
"""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

#: the schema inside the installed package (a real file: the package is never imported from a zip)
SCHEMA_PATH = Path(str(resources.files("sat2lod").joinpath("data", "schema.yaml")))


@cache
def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def load_schema() -> dict:
    """The schema as a dict (a fresh copy: callers may modify it)."""
    return copy.deepcopy(_schema())


def defaults(*section: str) -> dict[str, Any]:
    """Defaults of the keys of one config section, e.g. ``defaults("lod")`` or
    ``defaults("segmentation", "train")`` (a fresh dict; keys without a default, objects, are left out).

    Raises:
        KeyError: ``section`` is not a section of the schema.
    """
    node = _schema()
    for name in section:
        try:
            node = node["properties"][name]
        except KeyError:
            raise KeyError(f"config section {'.'.join(section)!r} is not in {SCHEMA_PATH}") from None
    return {
        k: copy.deepcopy(v["default"])
        for k, v in node["properties"].items()
        if "default" in v and v.get("type") != "object"
    }
