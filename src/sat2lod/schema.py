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

#: libyaml's safe loader where PyYAML was built with it (conda-forge and the PyPI wheels are): the same
#: objects as ``yaml.safe_load`` (tests/test_config.py compares them) in a tenth of the time. The schema is
#: parsed in every job that imports a stage module (module-level ``defaults(...)``): 0.07 CPU-s of pure-Python
#: parsing per job, 0.007 s with libyaml (bench/tile_startup.py).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@cache
def _schema() -> dict:
    return yaml.load(SCHEMA_PATH.read_text(), Loader=_LOADER)  # a safe loader


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
