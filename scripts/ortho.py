"""Adapter of rule ``ortho``: the tiles' true orthos -> the AOI's, streamed (sat2lod.ortho_tiled.assemble_ortho)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.ortho_tiled import assemble_ortho

assemble_ortho(
    tiles=list(snakemake.input.tiles),  # noqa: F821
    dsm=snakemake.input.dsm,  # noqa: F821
    shared=snakemake.input.shared,  # noqa: F821
    scenes=snakemake.input.scenes,  # noqa: F821
    out=snakemake.output.ortho,  # noqa: F821
)
