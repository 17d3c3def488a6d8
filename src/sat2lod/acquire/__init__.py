"""Scene acquisition: EODAG search/download/verification, STAC publishing on 127.0.0.1, stereo selection.

Entry point: :func:`sat2lod.acquire.pipeline.acquire` (rule ``acquire``), which writes the scene sheet
``results/acquire/{aoi}/scenes.json`` described in docs/ARCHITECTURE.md. Nothing is imported here, so that the
workflow can import :mod:`sat2lod.acquire.rule_inputs` at parse time without loading EODAG or GDAL.
"""
