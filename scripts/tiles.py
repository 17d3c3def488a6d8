"""Adapter of checkpoint ``tiles``: scene sheet -> tile grid GeoJSON (sat2lod.tiling.make_tiles)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.tiling import make_tiles

make_tiles(
    scenes=snakemake.input.scenes,  # noqa: F821
    tiles=snakemake.output.tiles,  # noqa: F821
    resolution_m=snakemake.params.resolution_m,  # noqa: F821
    **snakemake.params.tiling,  # noqa: F821
)
