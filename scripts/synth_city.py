"""Snakemake adapter of rule synth_city: generate the synthetic city with exact truth."""

from pathlib import Path

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821 (injected by Snakemake)

from sat2lod.synth import generate_city

p = snakemake.params  # noqa: F821
generate_city(
    Path(snakemake.output.scene).parent,  # noqa: F821
    truth_res_m=p.truth_res_m,
    **p.synthetic,
)
