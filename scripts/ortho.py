"""Adapter of rule ``ortho``: the tiles' true orthos -> the AOI's, streamed (sat2lod.ortho_tiled.assemble_ortho)."""

from sat2lod.workflow import setup, unpacked_tiles

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.ortho_tiled import assemble_ortho

with unpacked_tiles(snakemake.input.jobs, "ortho.tif") as (tiles,):  # noqa: F821
    assemble_ortho(
        tiles=tiles,
        dsm=snakemake.input.dsm,  # noqa: F821
        shared=snakemake.input.shared,  # noqa: F821
        scenes=snakemake.input.scenes,  # noqa: F821
        out=snakemake.output.ortho,  # noqa: F821
    )
