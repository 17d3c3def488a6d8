"""Adapter of rule ``segment_range``: ortho -> the 2-98 % range of the network input (sat2lod.segment.tiled)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.segment.tiled import ortho_range_file

ortho_range_file(ortho=snakemake.input.ortho, out=snakemake.output.range)  # noqa: F821
