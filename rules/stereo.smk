# Stereo: one job per tile (all pairs of the scene sheet, fused), then the mosaic of the tile DSMs.
# rectify -> pointing correction -> census/SGM -> RPC triangulation -> rasterization run in one job because
# their intermediates are large and used once (see sat2lod.stereo.pipeline).


rule stereo_tile:
    input:
        unpack(scene_files),
        scenes="results/acquire/{aoi}/scenes.json",
        tiles="results/tiles/{aoi}/tiles.geojson",
    output:
        dsm="results/stereo/{aoi}/{tile}/dsm.tif",
        quality="results/stereo/{aoi}/{tile}/quality.tif",
    log:
        "logs/stereo_tile/{aoi}/{tile}.log",
    benchmark:
        "benchmarks/stereo_tile/{aoi}/{tile}.tsv"
    conda:
        "../envs/stereo.yaml"
    threads: 2
    resources:
        # SGM volumes are capped to 55 % of mem_mb (strip processing), so a retry with more memory also
        # processes larger strips; the rest holds the rectified images and the point cloud.
        mem_mb=lambda wildcards, attempt: 1000 * attempt,
        runtime=lambda wildcards, attempt: 30 * attempt,
    params:
        resolution_m=config["output"]["resolution_m"],
        max_mem_mb=lambda wildcards, resources: 0.55 * resources.mem_mb,
        census_window=config["stereo"]["census_window"],
        p1=config["stereo"]["p1"],
        p2=config["stereo"]["p2"],
        paths=config["stereo"]["paths"],
        lr_tol=config["stereo"]["lr_tol"],
        median=config["stereo"]["median"],
        pointing_correction=config["stereo"]["pointing_correction"],
        max_pointing_px=config["stereo"]["max_pointing_px"],
        keypoint_range=config["stereo"]["keypoint_range"],
        range_margin_m=config["stereo"]["range_margin_m"],
        height_margin_m=config["stereo"]["height_margin_m"],
        range_probe_m=config["stereo"]["range_probe_m"],
        max_residual_px=config["stereo"]["max_residual_px"],
        fuse_tol_m=config["stereo"]["fuse_tol_m"],
        fill_iterations=config["stereo"]["fill_iterations"],
        densify=config["stereo"]["densify"],
    script:
        "../scripts/stereo_tile.py"


rule mosaic_dsm:
    input:
        # every tile of the tiling checkpoint
        dsms=lambda wildcards: expand(
            "results/stereo/{aoi}/{tile}/dsm.tif",
            aoi=wildcards.aoi,
            tile=tile_ids(wildcards),
        ),
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
        # two float64 accumulators over the mosaic + one tile at a time
        mem_mb=lambda wildcards, attempt: 2000 * attempt,
        runtime=lambda wildcards, attempt: 20 * attempt,
    params:
        resolution_m=config["output"]["resolution_m"],
    script:
        "../scripts/mosaic_dsm.py"
