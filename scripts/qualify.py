"""Adapter of rule ``qualify``: products + references -> accuracy.json / accuracy.md (sat2lod.qualify.qualify)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.qualify import qualify

inp = snakemake.input  # noqa: F821
qualify(
    dsm=inp.dsm,
    dtm=inp.dtm,
    footprints=inp.footprints,
    lod1=inp.lod1,
    lod2=inp.lod2,
    ref_dsm=inp.get("ref_dsm"),
    ref_dtm=inp.get("ref_dtm"),
    ref_classes=inp.get("ref_classes"),
    ref_buildings=inp.get("ref_buildings"),
    out_json=snakemake.output.json,  # noqa: F821
    out_md=snakemake.output.md,  # noqa: F821
    **snakemake.params.qualify,  # noqa: F821
)
