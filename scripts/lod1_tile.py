"""Adapter of rule ``lod1_tile``: the LoD1.2 blocks of the footprints one tile owns (sat2lod.lod.tiled_city.lod1_tile)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.lod.tiled_city import lod1_tile

lod1_tile(
    footprints=snakemake.input.footprints,  # noqa: F821
    dtm=snakemake.input.dtm,  # noqa: F821
    ndsm=snakemake.input.ndsm,  # noqa: F821
    tiles=snakemake.input.tiles,  # noqa: F821
    tile=snakemake.wildcards.tile,  # noqa: F821
    out=snakemake.output.part,  # noqa: F821
    **dict(snakemake.params.items()),  # noqa: F821
)
