# Terrain: DTM from the DSM mosaic alone, and nDSM = DSM - DTM (sat2lod.terrain), per tile of the tiling
# checkpoint's grid (dtm_tile reads its tile + terrain.tile_halo_m), assembled by a streamed paste (dtm).

# cells of a dtm_tile window (tile core + halo on each side), which size its memory and runtime
DTM_TILE_MCELLS = (
    (config["tiling"]["tile_size_m"] + 2 * config["terrain"]["tile_halo_m"])
    / config["output"]["resolution_m"]
) ** 2 / 1e6


rule dtm_tile:
    input:
        dsm="results/mosaic/{aoi}/dsm.tif",
        tiles="results/tiles/{aoi}/tiles.geojson",
    output:
        dtm=temp("results/terrain/{aoi}/{tile}/dtm.tif"),
        ndsm=temp("results/terrain/{aoi}/{tile}/ndsm.tif"),
    log:
        "logs/dtm_tile/{aoi}/{tile}.log",
    benchmark:
        "benchmarks/dtm_tile/{aoi}/{tile}.tsv"
    conda:
        "../envs/terrain.yaml"
    threads: 1
    resources:
        # the window (tile + halo) is read and filtered alone, not the AOI: measured 240 / 277 MB for windows of
        # 0.37 / 0.66 Mcells (~130 bytes per cell on ~190 MB of interpreter and libraries,
        # bench/results/terrain_tiled.md); asked 300 MB + 250 B per cell (610 MB for the demo's 300 m tiles)
        mem_mb=lambda wildcards, attempt: round(300 + 250 * DTM_TILE_MCELLS) * attempt,
        runtime=lambda wildcards, attempt: round(5 + 2 * DTM_TILE_MCELLS) * attempt,
    params:
        # the whole section: every key is a field of sat2lod.terrain.DTMParams
        terrain=config["terrain"],
    script:
        "../scripts/dtm_tile.py"


rule dtm:
    input:
        # every tile of the tiling checkpoint
        dtms=lambda wildcards: expand(
            "results/terrain/{aoi}/{tile}/dtm.tif",
            aoi=wildcards.aoi,
            tile=tile_ids(wildcards),
        ),
        ndsms=lambda wildcards: expand(
            "results/terrain/{aoi}/{tile}/ndsm.tif",
            aoi=wildcards.aoi,
            tile=tile_ids(wildcards),
        ),
        dsm="results/mosaic/{aoi}/dsm.tif",
    output:
        dtm="results/terrain/{aoi}/dtm.tif",
        ndsm="results/terrain/{aoi}/ndsm.tif",
    log:
        "logs/dtm/{aoi}.log",
    benchmark:
        "benchmarks/dtm/{aoi}.tsv"
    conda:
        "../envs/terrain.yaml"
    threads: 1
    resources:
        # streamed (sat2lod.io.raster.paste_tiles): 1024-cell blocks, bounded by the block, not the area
        mem_mb=lambda wildcards, attempt: 500 * attempt,
        runtime=lambda wildcards, attempt: 20 * attempt,
    # no params: the rule only pastes its tiles' cores (sat2lod.terrain.assemble_terrain)
    script:
        "../scripts/dtm.py"
