# Terrain: DTM from the DSM mosaic alone, and nDSM = DSM - DTM (sat2lod.terrain), per tile of the tiling
# checkpoint's grid (dtm_tile reads its tile + terrain.tile_halo_m; jobs of tiling.tiles_per_job tiles), assembled
# by a streamed paste (dtm).

# cells of a dtm_tile window (tile core + halo on each side), which size its memory and runtime
DTM_TILE_MCELLS = tile_window_mcells(config["terrain"]["tile_halo_m"])


rule dtm_tile:
    input:
        dsm="results/mosaic/{aoi}/dsm.tif",
        tiles="results/tiles/{aoi}/tiles.geojson",
    output:
        # tar of {tile}/dtm.tif and {tile}/ndsm.tif for each tile of the job (sat2lod.workflow.tile_folders)
        job=temp("results/terrain/{aoi}/{job}.tar"),
    log:
        "logs/dtm_tile/{aoi}/{job}.log",
    benchmark:
        "benchmarks/dtm_tile/{aoi}/{job}.tsv"
    conda:
        "../envs/terrain.yaml"
    threads: 1
    resources:
        # the window (tile + halo) is read and filtered alone, not the AOI: measured 240 / 277 MB for windows of
        # 0.37 / 0.66 Mcells (~130 bytes per cell on ~190 MB of interpreter and libraries,
        # bench/results/terrain_tiled.md); asked 300 MB + 250 B per cell (610 MB for the demo's 300 m tiles)
        mem_mb=lambda wildcards, attempt: round(300 + 250 * DTM_TILE_MCELLS) * attempt,
        runtime=lambda wildcards, attempt: round(5 + 2 * DTM_TILE_MCELLS)
        * TILES_PER_JOB
        * attempt,
    params:
        tiles_per_job=TILES_PER_JOB,
        # the whole section: every key is a field of sat2lod.terrain.DTMParams
        terrain=config["terrain"],
    script:
        "../scripts/dtm_tile.py"


rule dtm:
    input:
        # every job of dtm_tile (each holds its tiles' DTM and nDSM)
        jobs=job_archives("results/terrain/{aoi}/{job}.tar"),
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
