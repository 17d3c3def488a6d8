"""Adapter of rule ``lod2``: footprints + DSM + DTM (+ ortho) -> LoD2.2 CityJSON + OBJ (sat2lod.lod.pipeline.run_lod2)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.lod.pipeline import run_lod2

run_lod2(
    footprints=snakemake.input.footprints,  # noqa: F821
    dsm=snakemake.input.dsm,  # noqa: F821
    dtm=snakemake.input.dtm,  # noqa: F821
    ortho=snakemake.input.ortho,  # noqa: F821
    city=snakemake.output.city,  # noqa: F821
    obj=snakemake.output.obj,  # noqa: F821
    cityjsonseq=snakemake.output.seq,  # noqa: F821
    **dict(snakemake.params.items()),  # noqa: F821
)
