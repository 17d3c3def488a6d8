"""Adapter of rule ``dtm_tile``: DSM mosaic over one tile + halo -> the tile's DTM + nDSM
(sat2lod.terrain.dtm_tile_from_files)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.terrain import dtm_tile_from_files

dtm_tile_from_files(
    dsm=snakemake.input.dsm,  # noqa: F821
    tiles=snakemake.input.tiles,  # noqa: F821
    tile=snakemake.wildcards.tile,  # noqa: F821
    dtm=snakemake.output.dtm,  # noqa: F821
    ndsm=snakemake.output.ndsm,  # noqa: F821
    **snakemake.params.terrain,  # noqa: F821
)
