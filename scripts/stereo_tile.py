"""Adapter of rule ``stereo_tile``: scene sheet + tile grid -> tile DSM + quality layers."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.stereo.pipeline import stereo_tile

stereo_tile(
    scenes=snakemake.input.scenes,  # noqa: F821
    tiles=snakemake.input.tiles,  # noqa: F821
    tile=snakemake.wildcards.tile,  # noqa: F821
    dsm=snakemake.output.dsm,  # noqa: F821
    quality=snakemake.output.quality,  # noqa: F821
    resolution_m=snakemake.params.resolution_m,  # noqa: F821
    max_mem_mb=snakemake.params.max_mem_mb,  # noqa: F821
    **snakemake.params.stereo,  # noqa: F821
)
