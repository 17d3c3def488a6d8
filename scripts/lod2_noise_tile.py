"""Adapter of rule ``lod2_noise_tile``: the DSM noise of the roofs one tile owns (sat2lod.lod.tiled_city.lod2_noise_tile)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.lod.tiled_city import lod2_noise_tile

lod2_noise_tile(
    footprints=snakemake.input.footprints,  # noqa: F821
    dsm=snakemake.input.dsm,  # noqa: F821
    tiles=snakemake.input.tiles,  # noqa: F821
    tile=snakemake.wildcards.tile,  # noqa: F821
    out=snakemake.output.noise,  # noqa: F821
    **dict(snakemake.params.items()),  # noqa: F821
)
