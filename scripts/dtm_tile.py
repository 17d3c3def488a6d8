"""Adapter of rule ``dtm_tile``: DSM mosaic over each tile of the job + halo -> the tile's DTM + nDSM
(sat2lod.terrain.dtm_tile_from_files, one tile after the other)."""

from sat2lod.workflow import job_params, setup, tile_folders

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.terrain import dtm_tile_from_files

tiles, params = job_params(snakemake)  # noqa: F821
for tile, folder in tile_folders(tiles, snakemake.output.job):  # noqa: F821
    dtm_tile_from_files(
        dsm=snakemake.input.dsm,  # noqa: F821
        tiles=snakemake.input.tiles,  # noqa: F821
        tile=tile,
        dtm=folder / "dtm.tif",
        ndsm=folder / "ndsm.tif",
        **params["terrain"],
    )
