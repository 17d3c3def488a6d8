# Building models: LOD0 footprints (regularized, shared walls kept), LOD1 blocks, LOD2 roofs (sat2lod.lod).
# LOD0 runs per tile, in jobs of tiling.tiles_per_job tiles (each group of touching buildings made whole by the
# tile owning it, sat2lod.lod.tiled), then one job numbers and writes the footprints. LOD1 and LOD2 run per tile too (each footprint modelled by the tile
# holding its representative point, from a window of the rasters around it, sat2lod.lod.tiled_city), then one job
# streams the tiles' CityJSONSeq into the city model; LOD2 first estimates its scene-level roof parameters (DSM
# noise per tile, merged with the edge ramp's calibration on <= 400 roofs in rule lod2_scene).

# a lod0_tile job: ~150 bytes per cell of its window (core + 2 halos; lod0 over the whole AOI measured 147 bytes
# per cell, issue 16) + ~400 MB of interpreter and libraries
LOD0_TILE_MB = int(400 + 150 * tile_window_mcells(config["lod"]["tile_halo_m"]))


rule lod0_tile:
    input:
        mask="results/segment/{aoi}/building_mask.tif",
        ndsm="results/terrain/{aoi}/ndsm.tif",
        ortho="results/ortho/{aoi}/ortho.tif",
        tiles="results/tiles/{aoi}/tiles.geojson",
    output:
        # tar of {tile}/footprints.gpkg for each tile of the job (sat2lod.workflow.tile_folders)
        job=temp("results/lod0/{aoi}/tiles/{job}.tar"),
    log:
        "logs/lod0_tile/{aoi}/{job}.log",
    benchmark:
        "benchmarks/lod0_tile/{aoi}/{job}.tsv"
    conda:
        "../envs/lod.yaml"
    threads: 1
    resources:
        # ~150 bytes per cell of the tile's window (core + 2 halos); a group of touching buildings larger than
        # the halo doubles it (sat2lod.lod.tiled), hence more on a retry
        mem_mb=lambda wildcards, attempt: attempt * LOD0_TILE_MB,
        runtime=lambda wildcards, attempt: 20 * TILES_PER_JOB * attempt,
    params:
        tiles_per_job=TILES_PER_JOB,
        # the whole section: every key is a field of sat2lod.lod.pipeline.LodParams
        lod=config["lod"],
    script:
        "../scripts/lod0_tile.py"


rule lod0:
    input:
        # every job of lod0_tile (each holds its tiles' footprints)
        jobs=job_archives("results/lod0/{aoi}/tiles/{job}.tar"),
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


# a lod1_tile / lod2_noise_tile / lod2_tile job reads its rasters over the window of the footprints it owns: the
# tile's core, the buildings reaching past it (up to a group of touching buildings: lod.tile_halo_m, as lod0_tile)
# and the ground ring; LOD1 holds 2 float32 rasters (DTM, nDSM), LOD2 3 (DSM, DTM, ortho brightness) and the roof
# fits' temporaries: ~40 / ~80 bytes per cell + ~400 MB of interpreter and libraries
LOD_WINDOW_MCELLS = tile_window_mcells(config["lod"]["tile_halo_m"])
LOD1_TILE_MB = int(400 + 40 * LOD_WINDOW_MCELLS)
LOD2_TILE_MB = int(400 + 80 * LOD_WINDOW_MCELLS)
# minutes per tile (lod2: ~0.2 s per roof fit, a tile of 300 m holds a few hundred buildings in a dense city)
LOD_TILE_MIN = max(10, int(20 * (config["tiling"]["tile_size_m"] / 300.0) ** 2))


rule lod1_tile:
    input:
        footprints="results/lod0/{aoi}/footprints.gpkg",
        dtm="results/terrain/{aoi}/dtm.tif",
        ndsm="results/terrain/{aoi}/ndsm.tif",
        tiles="results/tiles/{aoi}/tiles.geojson",
    output:
        # tar of {tile}/city.jsonl for each tile of the job (sat2lod.workflow.tile_folders)
        job=temp("results/lod1/{aoi}/tiles/{job}.tar"),
    log:
        "logs/lod1_tile/{aoi}/{job}.log",
    benchmark:
        "benchmarks/lod1_tile/{aoi}/{job}.tsv"
    conda:
        "../envs/lod.yaml"
    threads: 1
    resources:
        # a building group larger than the halo widens the window: more on a retry
        mem_mb=lambda wildcards, attempt: attempt * LOD1_TILE_MB,
        runtime=lambda wildcards, attempt: attempt * LOD_TILE_MIN * TILES_PER_JOB,
    params:
        tiles_per_job=TILES_PER_JOB,
        # the whole section: every key is a field of sat2lod.lod.pipeline.LodParams
        lod=config["lod"],
    script:
        "../scripts/lod1_tile.py"


rule lod1:
    input:
        # every job of lod1_tile (each holds its tiles' buildings)
        jobs=job_archives("results/lod1/{aoi}/tiles/{job}.tar"),
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
        # streams one building at a time; holds the index of the distinct vertices (~150 bytes each, ~30 per
        # building) and of the features (~100 bytes each), no raster
        mem_mb=lambda wildcards, attempt: 1000 * attempt,
        runtime=lambda wildcards, attempt: 10 * attempt,
    params:
        title=lambda wildcards: f"sat2lod LoD1.2 {wildcards.aoi}",
    script:
        "../scripts/lod1.py"


rule lod2_noise_tile:
    input:
        footprints="results/lod0/{aoi}/footprints.gpkg",
        dsm="results/mosaic/{aoi}/dsm.tif",
        tiles="results/tiles/{aoi}/tiles.geojson",
    output:
        # tar of {tile}/noise.json for each tile of the job (sat2lod.workflow.tile_folders)
        job=temp("results/lod2/{aoi}/noise/{job}.tar"),
    log:
        "logs/lod2_noise_tile/{aoi}/{job}.log",
    benchmark:
        "benchmarks/lod2_noise_tile/{aoi}/{job}.tsv"
    conda:
        "../envs/lod.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: attempt * LOD1_TILE_MB,
        runtime=lambda wildcards, attempt: attempt * LOD_TILE_MIN * TILES_PER_JOB,
    params:
        tiles_per_job=TILES_PER_JOB,
        # the whole section: every key is a field of sat2lod.lod.pipeline.LodParams
        lod=config["lod"],
    script:
        "../scripts/lod2_noise_tile.py"


rule lod2_scene:
    input:
        # every job of lod2_noise_tile (each holds its tiles' noise estimates)
        noise=job_archives("results/lod2/{aoi}/noise/{job}.tar"),
        footprints="results/lod0/{aoi}/footprints.gpkg",
        dsm="results/mosaic/{aoi}/dsm.tif",
        dtm="results/terrain/{aoi}/dtm.tif",
        ortho="results/ortho/{aoi}/ortho.tif",
    output:
        scene="results/lod2/{aoi}/scene.json",
    log:
        "logs/lod2_scene/{aoi}.log",
    benchmark:
        "benchmarks/lod2_scene/{aoi}.tsv"
    conda:
        "../envs/lod.yaml"
    threads: 1
    resources:
        # the footprints (vectors, ~1 KB per building) and one building's window at a time; the edge ramp is
        # calibrated on at most 400 roofs, whatever the AOI
        mem_mb=lambda wildcards, attempt: 1000 * attempt,
        runtime=lambda wildcards, attempt: 20 * attempt,
    params:
        # the whole section: every key is a field of sat2lod.lod.pipeline.LodParams
        lod=config["lod"],
    script:
        "../scripts/lod2_scene.py"


rule lod2_tile:
    input:
        footprints="results/lod0/{aoi}/footprints.gpkg",
        dsm="results/mosaic/{aoi}/dsm.tif",
        dtm="results/terrain/{aoi}/dtm.tif",
        # roof face brightness: a second cue for the roof type (lod.roof_ortho_min_gain)
        ortho="results/ortho/{aoi}/ortho.tif",
        tiles="results/tiles/{aoi}/tiles.geojson",
        scene="results/lod2/{aoi}/scene.json",
    output:
        # tar of {tile}/city.jsonl for each tile of the job (sat2lod.workflow.tile_folders)
        job=temp("results/lod2/{aoi}/tiles/{job}.tar"),
    log:
        "logs/lod2_tile/{aoi}/{job}.log",
    benchmark:
        "benchmarks/lod2_tile/{aoi}/{job}.tsv"
    conda:
        "../envs/lod.yaml"
    threads: 1
    resources:
        # a building group larger than the halo widens the window: more on a retry
        mem_mb=lambda wildcards, attempt: attempt * LOD2_TILE_MB,
        runtime=lambda wildcards, attempt: attempt * 2 * LOD_TILE_MIN * TILES_PER_JOB,
    params:
        tiles_per_job=TILES_PER_JOB,
        # the whole section: every key is a field of sat2lod.lod.pipeline.LodParams
        lod=config["lod"],
    script:
        "../scripts/lod2_tile.py"


rule lod2:
    input:
        # every job of lod2_tile (each holds its tiles' buildings)
        jobs=job_archives("results/lod2/{aoi}/tiles/{job}.tar"),
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
        # streams one building at a time; holds the index of the distinct vertices (~150 bytes each) and of
        # the features (~100 bytes each), no raster
        mem_mb=lambda wildcards, attempt: 1000 * attempt,
        runtime=lambda wildcards, attempt: 10 * attempt,
    params:
        title=lambda wildcards: f"sat2lod LoD2.2 {wildcards.aoi}",
    script:
        "../scripts/lod2.py"
