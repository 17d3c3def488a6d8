"""Adapter of rule ``lod1``: the tiles' LoD1.2 CityJSONSeq streamed into one CityJSON (sat2lod.lod.tiled_city.merge_city)."""

from sat2lod.workflow import setup, unpacked_tiles

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.lod.tiled_city import merge_city

with unpacked_tiles(snakemake.input.jobs, "city.jsonl") as (parts,):  # noqa: F821
    merge_city(
        parts=parts,
        city=snakemake.output.city,  # noqa: F821
        seq=snakemake.output.seq,  # noqa: F821
        **dict(snakemake.params.items()),  # noqa: F821
    )
