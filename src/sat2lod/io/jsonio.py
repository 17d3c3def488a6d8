"""JSON / text I/O with atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sat2lod.io.raster import atomic_path


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_default) + "\n")
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; the error names the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: file not found; rerun the step that makes it.") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: invalid JSON ({exc}); delete it and rerun the step that makes it."
        ) from exc


def _default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o)}")
