# True ortho: every view resampled on the DSM grid through its RPC, occlusions detected (sat2lod.ortho).


rule ortho:
    input:
        unpack(scene_files),
        dsm="results/mosaic/{aoi}/dsm.tif",
        scenes="results/acquire/{aoi}/scenes.json",
    output:
        ortho="results/ortho/{aoi}/ortho.tif",
    log:
        "logs/ortho/{aoi}.log",
    benchmark:
        "benchmarks/ortho/{aoi}.tsv"
    conda:
        "../envs/terrain.yaml"
    threads: 1
    resources:
        # the views are read whole, plus ~ 60 bytes per DSM cell and view; grows on retry
        mem_mb=lambda wildcards, attempt: 6000 * attempt,
        runtime=lambda wildcards, attempt: 30 * attempt,
    params:
        occlusion_tol_m=config["ortho"]["occlusion_tol_m"],
        detect_occlusions=config["ortho"]["detect_occlusions"],
        radiometric_match=config["ortho"]["radiometric_match"],
        fill_dsm_holes=config["ortho"]["fill_dsm_holes"],
        pansharpen_ms=config["ortho"]["pansharpen"],
    script:
        "../scripts/ortho.py"
