# Stereo: jobs of tiles (tiling.tiles_per_job; each tile computed alone, all pairs of the scene sheet fused),
# then the mosaic of the tile DSMs. rectify -> pointing correction -> census/SGM -> RPC triangulation ->
# rasterization run in one job because their intermediates are large and used once (see
# sat2lod.stereo.pipeline); a job takes several tiles, one after the other, to share its start-up.


# cells of a stereo_tile window (tile core + margin on each side), which size its memory
STEREO_TILE_MCELLS = tile_window_mcells(config["tiling"]["margin_m"])


rule stereo_tile:
    input:
        unpack(scene_files),
        scenes="results/acquire/{aoi}/scenes.json",
        tiles="results/tiles/{aoi}/tiles.geojson",
    output:
        # tar of {tile}/dsm.tif and {tile}/quality.tif for each tile of the job (sat2lod.workflow.tile_folders)
        job="results/stereo/{aoi}/{job}.tar",
    log:
        "logs/stereo_tile/{aoi}/{job}.log",
    benchmark:
        "benchmarks/stereo_tile/{aoi}/{job}.tsv"
    conda:
        "../envs/stereo.yaml"
    threads: 2
    resources:
        # one tile at a time: the SGM volumes (<= stereo.sgm_volume_mb, strips beyond it) + the interpreter,
        # rectified images and point clouds (~500 bytes per cell of the tile window): 545-613 MB measured on the
        # 300 m tiles of 0.6-4.8 km cities (bench/results/scaling_chain.md), 781 MB asked. A retry gets more
        # memory and the same strips (the same products).
        mem_mb=lambda wildcards, attempt: round(
            250 + 500 * STEREO_TILE_MCELLS + config["stereo"]["sgm_volume_mb"]
        )
        * attempt,
        # ~2-40 CPU-s per tile of 300-500 m (bench/results/stereo_vs_cars.md): minutes per tile are ample
        runtime=lambda wildcards, attempt: attempt * (20 + 5 * TILES_PER_JOB),
    params:
        tiles_per_job=TILES_PER_JOB,
        resolution_m=config["output"]["resolution_m"],
        # the whole section: every key is a field of sat2lod.stereo.pipeline.StereoParams
        stereo=config["stereo"],
    script:
        "../scripts/stereo_tile.py"


rule mosaic_dsm:
    input:
        # every job of stereo_tile (each holds its tiles' DSMs)
        jobs=job_archives("results/stereo/{aoi}/{job}.tar"),
        tiles="results/tiles/{aoi}/tiles.geojson",
    output:
        dsm="results/mosaic/{aoi}/dsm.tif",
    log:
        "logs/mosaic_dsm/{aoi}.log",
    benchmark:
        "benchmarks/mosaic_dsm/{aoi}.tsv"
    conda:
        "../envs/stereo.yaml"
    threads: 1
    resources:
        # streamed (sat2lod.mosaic): 1024-cell blocks, windows of the tiles covering one, GDAL cache 16 MB:
        # bounded by the block, neither the area nor the tile size. Peak RSS ~130 -> ~150 MB from 0.36 to
        # 23 km2 (bench/results/mosaic_memory*.md; interpreter + imports ~100 MB of it). CPU ~1 s per km2:
        # a 400 km2 scene ~7 min, under the runtime.
        mem_mb=lambda wildcards, attempt: 500 * attempt,
        runtime=lambda wildcards, attempt: 20 * attempt,
    params:
        resolution_m=config["output"]["resolution_m"],
    script:
        "../scripts/mosaic_dsm.py"
