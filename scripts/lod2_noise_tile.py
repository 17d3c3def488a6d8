"""Adapter of rule ``lod2_noise_tile``: the DSM noise of the roofs each tile of the job owns (sat2lod.lod.tiled_city.lod2_noise_tile, one tile after the other)."""

from sat2lod.workflow import job_params, setup, tile_folders

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.lod.tiled_city import lod2_noise_tile

tiles, params = job_params(snakemake)  # noqa: F821
for tile, folder in tile_folders(tiles, snakemake.output.job):  # noqa: F821
    lod2_noise_tile(
        footprints=snakemake.input.footprints,  # noqa: F821
        dsm=snakemake.input.dsm,  # noqa: F821
        tiles=snakemake.input.tiles,  # noqa: F821
        tile=tile,
        out=folder / "noise.json",
        **params,
    )
