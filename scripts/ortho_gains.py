"""Adapter of rule ``ortho_gains``: DSM mosaic + scene sheet -> the quantities every ortho tile shares
(sat2lod.ortho_tiled.ortho_globals_from_files)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.ortho_tiled import ortho_globals_from_files

ortho_globals_from_files(
    dsm=snakemake.input.dsm,  # noqa: F821
    scenes=snakemake.input.scenes,  # noqa: F821
    out=snakemake.output.shared,  # noqa: F821
    **snakemake.params.ortho,  # noqa: F821
)
