# Building models: LOD0 footprints (regularized, shared walls kept), LOD1 blocks, LOD2 roofs (sat2lod.lod).
# LOD0 runs per tile (each group of touching buildings made whole by the tile owning it, sat2lod.lod.tiled), then
# one job numbers and writes the footprints.

# a lod0_tile job: ~150 bytes per cell of its window (core + 2 halos; lod0 over the whole AOI measured 147 bytes
# per cell, issue 16) + ~400 MB of interpreter and libraries
LOD0_TILE_MB = int(
    400
    + 150e-6
    * (
        (config["tiling"]["tile_size_m"] + 2 * config["lod"]["tile_halo_m"])
        / config["output"]["resolution_m"]
    )
    ** 2
)


rule lod0_tile:
    input:
        mask="results/segment/{aoi}/building_mask.tif",
        ndsm="results/terrain/{aoi}/ndsm.tif",
        ortho="results/ortho/{aoi}/ortho.tif",
        tiles="results/tiles/{aoi}/tiles.geojson",
    output:
        part=temp("results/lod0/{aoi}/tiles/{tile}.gpkg"),
    log:
        "logs/lod0_tile/{aoi}/{tile}.log",
    benchmark:
        "benchmarks/lod0_tile/{aoi}/{tile}.tsv"
    conda:
        "../envs/lod.yaml"
    threads: 1
    resources:
        # ~150 bytes per cell of the tile's window (core + 2 halos); a group of touching buildings larger than
        # the halo doubles it (sat2lod.lod.tiled), hence more on a retry
        mem_mb=lambda wildcards, attempt: attempt * LOD0_TILE_MB,
        runtime=lambda wildcards, attempt: 20 * attempt,
    params:
        # the whole section: every key is a field of sat2lod.lod.pipeline.LodParams
        lod=config["lod"],
    script:
        "../scripts/lod0_tile.py"


rule lod0:
    input:
        # every tile of the tiling checkpoint
        parts=lambda wildcards: expand(
            "results/lod0/{aoi}/tiles/{tile}.gpkg",
            aoi=wildcards.aoi,
            tile=tile_ids(wildcards),
        ),
    output:
        gpkg="results/lod0/{aoi}/footprints.gpkg",
        fgb="results/lod0/{aoi}/footprints.fgb",
    log:
        "logs/lod0/{aoi}.log",
    benchmark:
        "benchmarks/lod0/{aoi}.tsv"
    conda:
        "../envs/lod.yaml"
    threads: 1
    resources:
        # holds the footprints (vectors, ~1 KB per building), no raster
        mem_mb=lambda wildcards, attempt: 1000 * attempt,
        runtime=lambda wildcards, attempt: 10 * attempt,
    params:
        layer="footprints",
    script:
        "../scripts/lod0.py"


rule lod1:
    input:
        footprints="results/lod0/{aoi}/footprints.gpkg",
        dtm="results/terrain/{aoi}/dtm.tif",
        ndsm="results/terrain/{aoi}/ndsm.tif",
    output:
        city="results/lod1/{aoi}/city.json",
        seq="results/lod1/{aoi}/city.jsonl",
    log:
        "logs/lod1/{aoi}.log",
    benchmark:
        "benchmarks/lod1/{aoi}.tsv"
    conda:
        "../envs/lod.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 2000 * attempt,
        runtime=lambda wildcards, attempt: 20 * attempt,
    params:
        # the whole section: every key is a field of sat2lod.lod.pipeline.LodParams
        lod=config["lod"],
        title=lambda wildcards: f"sat2lod LoD1.2 {wildcards.aoi}",
    script:
        "../scripts/lod1.py"


rule lod2:
    input:
        footprints="results/lod0/{aoi}/footprints.gpkg",
        dsm="results/mosaic/{aoi}/dsm.tif",
        dtm="results/terrain/{aoi}/dtm.tif",
        # roof face brightness: a second cue for the roof type (lod.roof_ortho_min_gain)
        ortho="results/ortho/{aoi}/ortho.tif",
    output:
        city="results/lod2/{aoi}/city.json",
        seq="results/lod2/{aoi}/city.jsonl",
        obj="results/lod2/{aoi}/city.obj",
    log:
        "logs/lod2/{aoi}.log",
    benchmark:
        "benchmarks/lod2/{aoi}.tsv"
    conda:
        "../envs/lod.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 3000 * attempt,
        runtime=lambda wildcards, attempt: 30 * attempt,
    params:
        # the whole section: every key is a field of sat2lod.lod.pipeline.LodParams
        lod=config["lod"],
        title=lambda wildcards: f"sat2lod LoD2.2 {wildcards.aoi}",
    script:
        "../scripts/lod2.py"
