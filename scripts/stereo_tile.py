"""Adapter of rule ``stereo_tile``: scene sheet + tile grid -> the DSM + quality layers of each tile of the job."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.stereo.pipeline import stereo_job

stereo_job(
    scenes=snakemake.input.scenes,  # noqa: F821
    tiles=snakemake.input.tiles,  # noqa: F821
    job_tiles=snakemake.params.tiles,  # noqa: F821
    out_dir=snakemake.output.tiles,  # noqa: F821
    resolution_m=snakemake.params.resolution_m,  # noqa: F821
    max_mem_mb=snakemake.params.max_mem_mb,  # noqa: F821
    **snakemake.params.stereo,  # noqa: F821
)
