"""Adapter of rule ``train_segmenter``: synthetic cities -> U-Net checkpoint + metrics (sat2lod.segment.train)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.segment.train import train_segmenter

train_segmenter(
    model=snakemake.output.model,  # noqa: F821
    metrics=snakemake.output.metrics,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
    **dict(snakemake.params.items()),  # noqa: F821
)
