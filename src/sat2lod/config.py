"""Workflow configuration: validation against the schema (sat2lod.schema) with defaults filled in."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from sat2lod.schema import SCHEMA_PATH, load_schema

__all__ = ["SCHEMA_PATH", "ConfigError", "load_config", "load_schema", "validate_config"]


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


#: a number as YAML 1.2 writes it; PyYAML (YAML 1.1) reads ``1e-6`` (no dot) as a string
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _types(schema: dict) -> set[str]:
    t = schema.get("type", [])
    return {t} if isinstance(t, str) else set(t)


def normalize_numbers(config: Any, schema: dict, source: str = "config", path: str = "") -> Any:
    """Fix what YAML does to numbers before validation, in place; returns ``config``.

    * A string that is a number in YAML 1.2 (``1e-6``: PyYAML follows YAML 1.1 and wants ``1.0e-6``) where the
      schema expects a number is converted (an integer only when it is integral).
    * A non-finite number (``.nan``, ``.inf``) where the schema expects a number is refused: JSON-schema bounds
      are comparisons that NaN passes, and the error would come far away (``cannot convert float NaN to
      integer``).

    Raises:
        ConfigError: naming the key path and the fix.
    """
    where = path or "(top level)"
    if isinstance(config, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in config:
                config[key] = normalize_numbers(config[key], sub, source, f"{path}.{key}" if path else key)
        return config
    if isinstance(config, list) and isinstance(schema.get("items"), dict):
        return [normalize_numbers(v, schema["items"], source, f"{where}[{i}]") for i, v in enumerate(config)]
    numeric = _types(schema) & {"number", "integer"}
    if not numeric or isinstance(config, bool):
        return config
    if isinstance(config, str) and "string" not in _types(schema) and _NUMBER.match(config.strip()):
        value = float(config)
        if "number" in numeric:
            config = value
        elif value.is_integer():
            config = int(value)
    if isinstance(config, float) and not math.isfinite(config):
        raise ConfigError(
            f"{source}: invalid value at '{where}': {config} is not a finite number; give a number "
            "(see config/schema.yaml for its meaning and default)."
        )
    return config


def validate_config(config: dict, schema: dict | None = None, source: str = "config") -> dict:
    """Validate ``config`` (in place, filling defaults, numbers normalized by :func:`normalize_numbers`) and
    return it.

    Raises:
        ConfigError: naming the offending key path, e.g. ``stereo.bad_key``.
    """
    schema = schema or load_schema()
    normalize_numbers(config, schema, source)
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
