"""Adapter of rule ``segment_tile``: ortho + nDSM windows of one tile (+ checkpoint) -> its building probability
and mask (sat2lod.segment.tiled)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.segment.tiled import segment_tile_from_files

# params.default_model (the shipped model's identity) is only there to rerun the rule when it changes
segment_tile_from_files(
    ortho=snakemake.input.ortho,  # noqa: F821
    ndsm=snakemake.input.ndsm,  # noqa: F821
    dsm=snakemake.input.dsm,  # noqa: F821
    tiles=snakemake.input.tiles,  # noqa: F821
    tile=snakemake.wildcards.tile,  # noqa: F821
    ortho_range=snakemake.input.ortho_range or None,  # noqa: F821
    checkpoint=snakemake.input.checkpoint or None,  # noqa: F821
    prob=snakemake.output.prob,  # noqa: F821
    mask=snakemake.output.mask,  # noqa: F821
    # torch_threads is a fixed thread count, not snakemake.threads: the probabilities must not depend on --cores
    **snakemake.params.segmentation,  # noqa: F821
)
