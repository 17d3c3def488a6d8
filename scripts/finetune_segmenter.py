"""Adapter of rule ``finetune_segmenter``: ortho + nDSM + user footprints -> fine-tuned U-Net (sat2lod.segment)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.segment.finetune import finetune_segmenter

params = dict(snakemake.params.items())  # noqa: F821
params.pop("default_model")  # the shipped model's identity: only there to rerun the rule when it changes
finetune_segmenter(
    ortho=snakemake.input.ortho,  # noqa: F821
    ndsm=snakemake.input.ndsm,  # noqa: F821
    labels=snakemake.input.labels,  # noqa: F821
    checkpoint=snakemake.input.checkpoint or None,  # noqa: F821
    model=snakemake.output.model,  # noqa: F821
    metrics=snakemake.output.metrics,  # noqa: F821
    # a fixed thread count, not snakemake.threads: the weights must not depend on --cores
    threads=params.pop("torch_threads"),
    **params.pop("finetune"),
    **params,
)
