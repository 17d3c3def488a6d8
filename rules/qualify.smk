# Qualification: accuracy of DSM/DTM, footprints, LOD1/LOD2 against the synthetic truth or a given
# reference (sat2lod.qualify); ASPRS Ed. 2 accuracy classes.


rule qualify:
    input:
        # references: the synthetic truth, else the files named in config 'qualify' (those set)
        unpack(reference_files),
        dsm="results/mosaic/{aoi}/dsm.tif",
        dtm="results/terrain/{aoi}/dtm.tif",
        footprints="results/lod0/{aoi}/footprints.gpkg",
        lod1="results/lod1/{aoi}/city.json",
        lod2="results/lod2/{aoi}/city.json",
    output:
        json="results/qualify/{aoi}/accuracy.json",
        md=report(
            "results/qualify/{aoi}/accuracy.md",
            caption="../report/accuracy.rst",
            category="Accuracy",
            labels={"table": "accuracy (Markdown)"},
        ),
    log:
        "logs/qualify/{aoi}.log",
    benchmark:
        "benchmarks/qualify/{aoi}.tsv"
    conda:
        "../envs/qualify.yaml"
    threads: 1
    resources:
        # a few float32 copies of the DSM grid plus the reference; grows on retry
        mem_mb=lambda wildcards, attempt: 3000 * attempt,
        runtime=lambda wildcards, attempt: 20 * attempt,
    params:
        # the section but for the reference_* files (inputs, above): every key is a field of
        # sat2lod.qualify.QualifyParams
        qualify={
            k: v
            for k, v in config["qualify"].items()
            if not k.startswith("reference_")
        },
    script:
        "../scripts/qualify.py"
