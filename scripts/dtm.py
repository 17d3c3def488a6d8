"""Adapter of rule ``dtm``: DSM mosaic -> DTM + nDSM (sat2lod.terrain.dtm_from_dsm_file)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.terrain import dtm_from_dsm_file

dtm_from_dsm_file(
    dsm=snakemake.input.dsm,  # noqa: F821
    dtm=snakemake.output.dtm,  # noqa: F821
    ndsm=snakemake.output.ndsm,  # noqa: F821
    **snakemake.params.terrain,  # noqa: F821
)
