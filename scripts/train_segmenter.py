"""Adapter of rule ``train_segmenter``: synthetic cities -> U-Net checkpoint + metrics (sat2lod.segment.train)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.segment.train import train_segmenter

params = dict(snakemake.params.items())  # noqa: F821
train_segmenter(
    model=snakemake.output.model,  # noqa: F821
    metrics=snakemake.output.metrics,  # noqa: F821
    # a fixed thread count, not snakemake.threads: the weights must not depend on --cores
    threads=params.pop("torch_threads"),
    **params,
)
