"""Adapter of rule ``lod0``: the tiles' footprints numbered and written as one layer (sat2lod.lod.tiled.merge_lod0)."""

from sat2lod.workflow import setup, unpacked_tiles

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.lod.tiled import merge_lod0

with unpacked_tiles(snakemake.input.jobs, "footprints.gpkg") as (parts,):  # noqa: F821
    merge_lod0(
        parts=parts,
        gpkg=snakemake.output.gpkg,  # noqa: F821
        fgb=snakemake.output.fgb,  # noqa: F821
        **dict(snakemake.params.items()),  # noqa: F821
    )
