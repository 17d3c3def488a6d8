"""Adapter of rule ``mosaic_dsm``: the tile DSMs of the stereo jobs -> feathered DSM mosaic (COG)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.mosaic import mosaic_dsm_files, tile_dsms

mosaic_dsm_files(
    dsms=tile_dsms(snakemake.input.jobs),  # noqa: F821
    tiles=snakemake.input.tiles,  # noqa: F821
    out=snakemake.output.dsm,  # noqa: F821
    **dict(snakemake.params.items()),  # noqa: F821
)
