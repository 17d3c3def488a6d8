"""Adapter of rule ``ortho_tile``: DSM window + view windows of one tile -> its core's true ortho
(sat2lod.ortho_tiled.ortho_tile_from_files)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.ortho_tiled import ortho_tile_from_files

ortho_tile_from_files(
    dsm=snakemake.input.dsm,  # noqa: F821
    scenes=snakemake.input.scenes,  # noqa: F821
    shared=snakemake.input.shared,  # noqa: F821
    tiles=snakemake.input.tiles,  # noqa: F821
    tile=snakemake.wildcards.tile,  # noqa: F821
    out=snakemake.output.ortho,  # noqa: F821
    **snakemake.params.ortho,  # noqa: F821
)
