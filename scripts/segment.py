"""Adapter of rule ``segment``: the tiles' building probabilities and masks -> the AOI's (sat2lod.segment.tiled)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.segment.tiled import assemble_segmentation

assemble_segmentation(
    probs=list(snakemake.input.probs),  # noqa: F821
    masks=list(snakemake.input.masks),  # noqa: F821
    ortho=snakemake.input.ortho,  # noqa: F821
    prob=snakemake.output.prob,  # noqa: F821
    mask=snakemake.output.mask,  # noqa: F821
)
