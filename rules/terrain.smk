# Terrain: DTM from the DSM mosaic alone, and nDSM = DSM - DTM (sat2lod.terrain).


rule dtm:
    input:
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
        # ~ 40 bytes per DSM cell (float32 copies, distance transform indices); grows on retry
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 30 * attempt,
    params:
        max_object_size_m=config["terrain"]["max_object_size_m"],
        max_slope=config["terrain"]["max_slope"],
        min_object_height_m=config["terrain"]["min_object_height_m"],
        window_step_m=config["terrain"]["window_step_m"],
        object_buffer_m=config["terrain"]["object_buffer_m"],
        ground_tolerance_m=config["terrain"]["ground_tolerance_m"],
        slope_tolerance_scale=config["terrain"]["slope_tolerance_scale"],
        adaptive_slope=config["terrain"]["adaptive_slope"],
        max_pit_size_m=config["terrain"]["max_pit_size_m"],
        pit_depth_m=config["terrain"]["pit_depth_m"],
        refine=config["terrain"]["refine"],
        despeckle=config["terrain"]["despeckle"],
        smooth_sigma_px=config["terrain"]["smooth_sigma_px"],
    script:
        "../scripts/dtm.py"
