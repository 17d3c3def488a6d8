"""Adapter of rule ``lod0_tile``: the footprints of the building groups each tile of the job owns (sat2lod.lod.tiled.lod0_tile, one tile after the other)."""

from sat2lod.workflow import job_params, setup, tile_folders

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.lod.tiled import lod0_tile

tiles, params = job_params(snakemake)  # noqa: F821
for tile, folder in tile_folders(tiles, snakemake.output.job):  # noqa: F821
    lod0_tile(
        mask=snakemake.input.mask,  # noqa: F821
        ndsm=snakemake.input.ndsm,  # noqa: F821
        ortho=snakemake.input.ortho,  # noqa: F821
        tiles=snakemake.input.tiles,  # noqa: F821
        tile=tile,
        out=folder / "footprints.gpkg",
        **params,
    )
