"""The scene sheet ``results/acquire/{aoi}/scenes.json`` (format in docs/ARCHITECTURE.md): the one reader
used by every stage that takes it (tiling, stereo, ortho)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: keys of a view that name files (resolved by :func:`read_scene_sheet`)
VIEW_FILE_KEYS = ("image", "rpc", "ms_image", "ms_rpc")


class SceneSheetError(ValueError):
    """The scene sheet is missing, unreadable or incomplete; the message names the file and the fix."""


def resolve_sheet_path(value: str, sheet_dir: Path) -> str:
    """A file path of the sheet as the stages open it: absolute paths and paths that exist relative to the
    working directory (what rule acquire writes: the workflow's working directory) stay as they are; any
    other relative path is taken relative to the sheet's folder (a sheet written by hand next to its
    images)."""
    if os.path.isabs(value) or os.path.exists(value):
        return value
    return os.path.join(sheet_dir, value)


def read_scene_sheet(
    path: str | os.PathLike[str], *, require: tuple[str, ...] = (), min_views: int = 1
) -> dict[str, Any]:
    """Read and check a scene sheet; file paths of the views resolved (:func:`resolve_sheet_path`).

    Args:
        require: top-level keys the caller needs besides ``views`` (e.g. ``("epsg", "height_range")``).
        min_views: fewest views the caller can work with (stereo: 2).
    Raises:
        SceneSheetError: file missing or not JSON, a required key or a view's ``image`` missing, too few views.
    """
    path = Path(path)
    try:
        sheet = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SceneSheetError(f"{path}: scene sheet not found; run rule acquire first.") from exc
    except json.JSONDecodeError as exc:
        raise SceneSheetError(f"{path}: invalid JSON ({exc}); delete it and rerun rule acquire.") from exc
    if not isinstance(sheet, dict):
        raise SceneSheetError(f"{path}: a scene sheet is a JSON object; regenerate it with rule acquire.")
    missing = [k for k in ("views", *require) if k not in sheet]
    if missing:
        raise SceneSheetError(
            f"{path}: scene sheet lacks {', '.join(missing)}; regenerate it with rule acquire."
        )
    views = sheet["views"]
    if len(views) < max(1, min_views):
        raise SceneSheetError(
            f"{path}: no views in the scene sheet; rerun rule acquire"
            if not views
            else f"{path}: {min_views} views needed (stereo needs a pair), the sheet lists {len(views)}."
        )
    for i, v in enumerate(views):
        if not v.get("image"):
            raise SceneSheetError(
                f"{path}: view {i} has no 'image'; fix the scene sheet (rerun rule acquire)."
            )
        for key in VIEW_FILE_KEYS:
            if isinstance(v.get(key), str) and v[key]:
                v[key] = resolve_sheet_path(v[key], path.parent)
    return sheet
