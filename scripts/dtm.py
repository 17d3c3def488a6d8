"""Adapter of rule ``dtm``: the tiles' DTMs and nDSMs (rule dtm_tile) -> the AOI's dtm.tif and ndsm.tif,
streamed (sat2lod.terrain.assemble_terrain)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.terrain import assemble_terrain

assemble_terrain(
    dtms=list(snakemake.input.dtms),  # noqa: F821
    ndsms=list(snakemake.input.ndsms),  # noqa: F821
    dsm=snakemake.input.dsm,  # noqa: F821
    dtm=snakemake.output.dtm,  # noqa: F821
    ndsm=snakemake.output.ndsm,  # noqa: F821
)
