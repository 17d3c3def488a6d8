"""Adapter of rule ``lod2_tile``: the LoD2.2 buildings of the footprints one tile owns (sat2lod.lod.tiled_city.lod2_tile)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.lod.tiled_city import lod2_tile

lod2_tile(
    footprints=snakemake.input.footprints,  # noqa: F821
    dsm=snakemake.input.dsm,  # noqa: F821
    dtm=snakemake.input.dtm,  # noqa: F821
    ortho=snakemake.input.ortho,  # noqa: F821
    tiles=snakemake.input.tiles,  # noqa: F821
    tile=snakemake.wildcards.tile,  # noqa: F821
    scene=snakemake.input.scene,  # noqa: F821
    out=snakemake.output.part,  # noqa: F821
    **dict(snakemake.params.items()),  # noqa: F821
)
