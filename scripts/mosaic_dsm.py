"""Adapter of rule ``mosaic_dsm``: the tile DSMs of the stereo jobs -> feathered DSM mosaic (COG)."""

from sat2lod.workflow import setup, unpacked_tiles

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.mosaic import mosaic_dsm_files

with unpacked_tiles(snakemake.input.jobs, "dsm.tif") as (dsms,):  # noqa: F821
    mosaic_dsm_files(
        dsms=dsms,
        tiles=snakemake.input.tiles,  # noqa: F821
        out=snakemake.output.dsm,  # noqa: F821
        **dict(snakemake.params.items()),  # noqa: F821
    )
