"""Workflow configuration: validation against config/schema.yaml with defaults filled in."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


class ConfigError(ValueError):
    """Invalid configuration; the message names the file, the key and the fix."""


def _with_defaults(validator_class: type) -> type:
    validate_props = validator_class.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: dict, instance: Any, schema: dict) -> Any:
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = yaml.safe_load(yaml.safe_dump(sub["default"]))
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def load_schema(path: str | os.PathLike[str] | None = None) -> dict:
    return yaml.safe_load(Path(path or SCHEMA_PATH).read_text())


def validate_config(config: dict, schema: dict | None = None, source: str = "config") -> dict:
    """Validate ``config`` (in place, filling defaults) and return it.

    Raises:
        ConfigError: naming the offending key path, e.g. ``stereo.bad_key``.
    """
    schema = schema or load_schema()
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        msgs = []
        for e in errors:
            where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
            if e.validator == "additionalProperties":
                msgs.append(
                    f"{source}: unknown key under '{where}': {e.message}. Check the spelling against "
                    "config/schema.yaml."
                )
            else:
                msgs.append(f"{source}: invalid value at '{where}': {e.message}")
        raise ConfigError("\n".join(msgs))
    return config


def load_config(path: str | os.PathLike[str]) -> dict:
    """Read a YAML config file and validate it.

    Raises:
        ConfigError: the file cannot be read, is not YAML, is not a mapping, or breaks the schema; the
            message names the file and the fix.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}); check the path") from exc
    try:
        cfg = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(cfg, dict):
        raise ConfigError(
            f"{path}: a config must be a YAML mapping of sections (got {type(cfg).__name__}); "
            "see config/config.yaml"
        )
    return validate_config(cfg, source=str(path))
