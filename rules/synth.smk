# Synthetic city with exact ground truth (the embedded demo and the tests' test bed).


rule synth_city:
    output:
        views=expand(
            "results/synth/{{aoi}}/view_{i}.tif",
            i=range(config["source"]["synthetic"]["n_views"]),
        ),
        dsm="results/synth/{aoi}/truth/dsm.tif",
        dtm="results/synth/{aoi}/truth/dtm.tif",
        ndsm="results/synth/{aoi}/truth/ndsm.tif",
        classes="results/synth/{aoi}/truth/classes.tif",
        buildings="results/synth/{aoi}/truth/buildings.gpkg",
        scene="results/synth/{aoi}/scene.json",
    log:
        "logs/synth_city/{aoi}.log",
    benchmark:
        "benchmarks/synth_city/{aoi}.tsv"
    conda:
        "../envs/synth.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 3000 * attempt,
        runtime=20,
    params:
        # the whole section: every key is a field of sat2lod.synth.SynthParams
        synthetic=config["source"]["synthetic"],
        truth_res_m=config["output"]["resolution_m"],
    script:
        "../scripts/synth_city.py"
