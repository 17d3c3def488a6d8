"""Adapter of rule ``lod0``: building mask + nDSM + ortho -> regularized footprints (sat2lod.lod.pipeline.run_lod0)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.lod.pipeline import run_lod0

run_lod0(
    mask=snakemake.input.mask,  # noqa: F821
    ndsm=snakemake.input.ndsm,  # noqa: F821
    ortho=snakemake.input.ortho,  # noqa: F821
    gpkg=snakemake.output.gpkg,  # noqa: F821
    fgb=snakemake.output.fgb,  # noqa: F821
    **dict(snakemake.params.items()),  # noqa: F821
)
