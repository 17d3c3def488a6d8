"""Adapter of rule ``lod0``: the tiles' footprints numbered and written as one layer (sat2lod.lod.tiled.merge_lod0)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.lod.tiled import merge_lod0

merge_lod0(
    parts=list(snakemake.input.parts),  # noqa: F821
    gpkg=snakemake.output.gpkg,  # noqa: F821
    fgb=snakemake.output.fgb,  # noqa: F821
    **dict(snakemake.params.items()),  # noqa: F821
)
