"""Where the shipped default segmentation model lives, and its identity (version, sha256).

Kept apart from its training recipe (:mod:`sat2lod.segment.default_model`) so that inference imports nothing of
the configuration or training code.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

#: file name of the default checkpoint inside the package's ``data`` folder
DEFAULT_MODEL_FILE = "segmenter_default.pt"
#: version of the shipped default model; bump it with every retrained file
DEFAULT_MODEL_VERSION = "2"
#: file name of the image-only checkpoint (``sat2lod segment`` without an nDSM), beside the default one
IMAGE_ONLY_MODEL_FILE = "segmenter_image_only.pt"
#: version of the shipped image-only model
IMAGE_ONLY_MODEL_VERSION = "1"


def default_checkpoint(image_only: bool = False) -> Path:
    """Path of the shipped default checkpoint (``sat2lod/data/segmenter_default.pt``), or with ``image_only``
    of the image-only one (``sat2lod/data/segmenter_image_only.pt``, for an image without nDSM).

    Raises:
        FileNotFoundError: the package was installed without it; the message names the file and the fixes.
    """
    name = IMAGE_ONLY_MODEL_FILE if image_only else DEFAULT_MODEL_FILE
    path = Path(str(resources.files("sat2lod") / "data" / name))
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the default segmentation model is not installed with this sat2lod. Reinstall the package, "
            "or give a model (segmentation.checkpoint / --checkpoint, e.g. the output of rule train_segmenter), "
            "or use segmentation.method / --method ndsm_threshold."
        )
    return path


def resolve_checkpoint(checkpoint: str | os.PathLike[str] | None, image_only: bool = False) -> Path:
    """The checkpoint to use: ``checkpoint`` when given, else the shipped default (the image-only one for an
    input without nDSM, ``image_only``)."""
    return Path(checkpoint) if checkpoint else default_checkpoint(image_only)
