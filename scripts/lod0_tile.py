"""Adapter of rule ``lod0_tile``: the footprints of the building groups one tile owns (sat2lod.lod.tiled.lod0_tile)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.lod.tiled import lod0_tile

lod0_tile(
    mask=snakemake.input.mask,  # noqa: F821
    ndsm=snakemake.input.ndsm,  # noqa: F821
    ortho=snakemake.input.ortho,  # noqa: F821
    tiles=snakemake.input.tiles,  # noqa: F821
    tile=snakemake.wildcards.tile,  # noqa: F821
    out=snakemake.output.part,  # noqa: F821
    **dict(snakemake.params.items()),  # noqa: F821
)
