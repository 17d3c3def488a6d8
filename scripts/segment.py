"""Adapter of rule ``segment``: ortho + nDSM (+ checkpoint) -> building probability + mask (sat2lod.segment)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.segment.predict import segment_from_files

segment_from_files(
    ortho=snakemake.input.ortho,  # noqa: F821
    ndsm=snakemake.input.ndsm,  # noqa: F821
    checkpoint=snakemake.input.checkpoint or None,  # noqa: F821
    prob=snakemake.output.prob,  # noqa: F821
    mask=snakemake.output.mask,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
    **dict(snakemake.params.items()),  # noqa: F821
)
