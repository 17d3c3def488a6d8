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
        # the whole section: every key is a field of sat2lod.ortho.OrthoParams
        ortho=config["ortho"],
    script:
        "../scripts/ortho.py"
