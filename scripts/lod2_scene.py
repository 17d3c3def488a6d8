"""Adapter of rule ``lod2_scene``: the scene-level roof parameters: DSM noise, edge ramp (sat2lod.lod.tiled_city.lod2_scene)."""

from sat2lod.workflow import setup, unpacked_tiles

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.lod.tiled_city import lod2_scene

with unpacked_tiles(snakemake.input.noise, "noise.json") as (noise,):  # noqa: F821
    lod2_scene(
        noise=noise,
        footprints=snakemake.input.footprints,  # noqa: F821
        dsm=snakemake.input.dsm,  # noqa: F821
        dtm=snakemake.input.dtm,  # noqa: F821
        ortho=snakemake.input.ortho,  # noqa: F821
        out=snakemake.output.scene,  # noqa: F821
        **dict(snakemake.params.items()),  # noqa: F821
    )
