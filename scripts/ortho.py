"""Adapter of rule ``ortho``: DSM mosaic + scene sheet -> true ortho (sat2lod.ortho.ortho_from_files)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.ortho import ortho_from_files

ortho_from_files(
    dsm=snakemake.input.dsm,  # noqa: F821
    scenes=snakemake.input.scenes,  # noqa: F821
    ortho=snakemake.output.ortho,  # noqa: F821
    **snakemake.params.ortho,  # noqa: F821
)
