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
        # the whole section: every key is a field of sat2lod.terrain.DTMParams
        terrain=config["terrain"],
    script:
        "../scripts/dtm.py"
