# Building models: LOD0 footprints (regularized, shared walls kept), LOD1 blocks, LOD2 roofs (sat2lod.lod).


rule lod0:
    input:
        mask="results/segment/{aoi}/building_mask.tif",
        ndsm="results/terrain/{aoi}/ndsm.tif",
        # roof-image edges split touching buildings of one height (lod.split_contrast)
        ortho="results/ortho/{aoi}/ortho.tif",
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
        # mask + nDSM + label images: ~ 30 bytes per cell; grows on retry
        mem_mb=lambda wildcards, attempt: 2000 * attempt,
        runtime=lambda wildcards, attempt: 20 * attempt,
    params:
        # the whole section: every key is a field of sat2lod.lod.pipeline.LodParams
        lod=config["lod"],
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
