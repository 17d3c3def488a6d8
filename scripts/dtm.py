"""Adapter of rule ``dtm``: the tiles' DTMs and nDSMs (rule dtm_tile) -> the AOI's dtm.tif and ndsm.tif,
streamed (sat2lod.terrain.assemble_terrain)."""

from sat2lod.workflow import setup, unpacked_tiles

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.terrain import assemble_terrain

with unpacked_tiles(snakemake.input.jobs, "dtm.tif", "ndsm.tif") as (dtms, ndsms):  # noqa: F821
    assemble_terrain(
        dtms=dtms,
        ndsms=ndsms,
        dsm=snakemake.input.dsm,  # noqa: F821
        dtm=snakemake.output.dtm,  # noqa: F821
        ndsm=snakemake.output.ndsm,  # noqa: F821
    )
