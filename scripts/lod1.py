"""Adapter of rule ``lod1``: the tiles' LoD1.2 CityJSONSeq streamed into one CityJSON (sat2lod.lod.tiled_city.merge_city)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.lod.tiled_city import merge_city

merge_city(
    parts=list(snakemake.input.parts),  # noqa: F821
    city=snakemake.output.city,  # noqa: F821
    seq=snakemake.output.seq,  # noqa: F821
    **dict(snakemake.params.items()),  # noqa: F821
)
