"""Scene acquisition: EODAG search/download/verification, STAC publishing on 127.0.0.1, stereo selection.

Entry point: :func:`sat2lod.acquire.pipeline.acquire` (rule ``acquire``), which writes the scene sheet
``results/acquire/{aoi}/scenes.json`` described in docs/ARCHITECTURE.md.
"""

from sat2lod.acquire.eodag_client import EODAG_VERSION, AcquisitionError
from sat2lod.acquire.pipeline import acquire

__all__ = ["EODAG_VERSION", "AcquisitionError", "acquire"]
