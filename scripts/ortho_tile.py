"""Adapter of rule ``ortho_tile``: DSM window + view windows of each tile of the job -> its core's true ortho
(sat2lod.ortho_tiled.ortho_tile_from_files, one tile after the other)."""

from sat2lod.workflow import job_params, setup, tile_folders

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.ortho_tiled import ortho_tile_from_files

tiles, params = job_params(snakemake)  # noqa: F821
for tile, folder in tile_folders(tiles, snakemake.output.job):  # noqa: F821
    ortho_tile_from_files(
        dsm=snakemake.input.dsm,  # noqa: F821
        scenes=snakemake.input.scenes,  # noqa: F821
        shared=snakemake.input.shared,  # noqa: F821
        tiles=snakemake.input.tiles,  # noqa: F821
        tile=tile,
        out=folder / "ortho.tif",
        **params["ortho"],
    )
