"""Adapter of rule ``segment_tile``: ortho + nDSM windows of each tile of the job (+ checkpoint) -> its building
probability and mask (sat2lod.segment.tiled, one tile after the other)."""

from sat2lod.workflow import job_params, setup, tile_folders

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.segment.tiled import segment_tile_from_files

tiles, params = job_params(snakemake)  # noqa: F821
# params["default_model"] (the shipped model's identity) is only there to rerun the rule when it changes
for tile, folder in tile_folders(tiles, snakemake.output.job):  # noqa: F821
    segment_tile_from_files(
        ortho=snakemake.input.ortho,  # noqa: F821
        ndsm=snakemake.input.ndsm,  # noqa: F821
        dsm=snakemake.input.dsm,  # noqa: F821
        tiles=snakemake.input.tiles,  # noqa: F821
        tile=tile,
        ortho_range=snakemake.input.ortho_range or None,  # noqa: F821
        checkpoint=snakemake.input.checkpoint or None,  # noqa: F821
        prob=folder / "building_prob.tif",
        mask=folder / "building_mask.tif",
        # torch_threads is a fixed thread count, not snakemake.threads: the probabilities must not depend on --cores
        **params["segmentation"],
    )
