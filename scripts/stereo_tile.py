"""Adapter of rule ``stereo_tile``: scene sheet + tile grid -> the DSM + quality layers of each tile of the job
(sat2lod.stereo.pipeline.stereo_tile, one tile after the other)."""

from sat2lod.workflow import job_params, setup, tile_folders

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.stereo.pipeline import stereo_tile

tiles, params = job_params(snakemake)  # noqa: F821
for tile, folder in tile_folders(tiles, snakemake.output.job):  # noqa: F821
    stereo_tile(
        scenes=snakemake.input.scenes,  # noqa: F821
        tiles=snakemake.input.tiles,  # noqa: F821
        tile=tile,
        dsm=folder / "dsm.tif",
        quality=folder / "quality.tif",
        resolution_m=params["resolution_m"],
        **params["stereo"],
    )
