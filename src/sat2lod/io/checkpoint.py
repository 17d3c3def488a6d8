"""PyTorch checkpoint files (the segmentation model), written atomically and read without code execution."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sat2lod.io.raster import atomic_path


class CheckpointReadError(RuntimeError):
    """A checkpoint could not be read; the message names the file and the fix."""


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Save a dict of tensors and plain values (str, int, float, list, dict) with ``torch.save``, atomically."""
    import io

    import torch

    # saved through a buffer: torch.save names the zip archive's root folder after the file it writes to, and
    # the atomic write's temporary name is random, so the same model would give different bytes on every save
    buf = io.BytesIO()
    torch.save(payload, buf)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buf.getvalue())
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], expected_format: str | None = None) -> dict[str, Any]:
    """Load a checkpoint saved by :func:`save_checkpoint` (``weights_only=True``: no pickled code runs).

    Raises:
        CheckpointReadError: missing, unreadable, or not of ``expected_format`` (key ``format``).
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise CheckpointReadError(
            f"{path}: checkpoint not found. Run rule train_segmenter, or set "
            "segmentation.checkpoint to an existing file, or use segmentation.method: ndsm_threshold."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / foreign files
        raise CheckpointReadError(
            f"{path}: not a readable sat2lod checkpoint ({exc}); delete it and retrain."
        ) from exc
    if expected_format is not None and (
        not isinstance(payload, dict) or payload.get("format") != expected_format
    ):
        raise CheckpointReadError(
            f"{path}: not a {expected_format} checkpoint (format "
            f"{payload.get('format') if isinstance(payload, dict) else type(payload)}); retrain it."
        )
    return payload
