"""Adapter of rule ``lod1_tile``: the LoD1.2 blocks of the footprints each tile of the job owns (sat2lod.lod.tiled_city.lod1_tile, one tile after the other)."""

from sat2lod.workflow import job_params, setup, tile_folders

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.lod.tiled_city import lod1_tile

tiles, params = job_params(snakemake)  # noqa: F821
for tile, folder in tile_folders(tiles, snakemake.output.job):  # noqa: F821
    lod1_tile(
        footprints=snakemake.input.footprints,  # noqa: F821
        dtm=snakemake.input.dtm,  # noqa: F821
        ndsm=snakemake.input.ndsm,  # noqa: F821
        tiles=snakemake.input.tiles,  # noqa: F821
        tile=tile,
        out=folder / "city.jsonl",
        **params,
    )
