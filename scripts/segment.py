"""Adapter of rule ``segment``: the tiles' building probabilities and masks -> the AOI's (sat2lod.segment.tiled)."""

from sat2lod.workflow import setup, unpacked_tiles

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.segment.tiled import assemble_segmentation

with unpacked_tiles(snakemake.input.jobs, "building_prob.tif", "building_mask.tif") as (probs, masks):  # noqa: F821
    assemble_segmentation(
        probs=probs,
        masks=masks,
        ortho=snakemake.input.ortho,  # noqa: F821
        prob=snakemake.output.prob,  # noqa: F821
        mask=snakemake.output.mask,  # noqa: F821
    )
