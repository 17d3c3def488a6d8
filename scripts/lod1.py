"""Adapter of rule ``lod1``: footprints + DTM + nDSM -> LoD1.2 CityJSON (sat2lod.lod.pipeline.run_lod1)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.lod.pipeline import run_lod1

run_lod1(
    footprints=snakemake.input.footprints,  # noqa: F821
    dtm=snakemake.input.dtm,  # noqa: F821
    ndsm=snakemake.input.ndsm,  # noqa: F821
    city=snakemake.output.city,  # noqa: F821
    cityjsonseq=snakemake.output.seq,  # noqa: F821
    **dict(snakemake.params.items()),  # noqa: F821
)
