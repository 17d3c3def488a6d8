# Qualification: accuracy of DSM/DTM, footprints, LOD1/LOD2 against the synthetic truth or a given
# reference (sat2lod.qualify); ASPRS Ed. 2 accuracy classes.

#: cells of a block of the streamed comparisons (millions)
QUALIFY_BLOCK_MCELLS = config["qualify"]["block_px"] ** 2 / 1e6


rule qualify:
    input:
        # references: the synthetic truth, else the files named in config 'qualify' (those set)
        unpack(reference_files),
        dsm="results/mosaic/{aoi}/dsm.tif",
        dtm="results/terrain/{aoi}/dtm.tif",
        footprints="results/lod0/{aoi}/footprints.gpkg",
        # the CityJSONSeq models: qualify reads their attributes feature by feature, not the geometry
        lod1="results/lod1/{aoi}/city.jsonl",
        lod2="results/lod2/{aoi}/city.jsonl",
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
        # streamed (sat2lod.qualify.streamed): block_px blocks of the reference grid (~60 B per cell), GDAL
        # cache 16 MB, the reference nDSM read per building: the rasters bounded by the block, not the area
        # (249 -> 265 MB from 0.36 to 5.76 km2, interpreter + imports ~200 MB of it; bench/results/
        # qualify_memory.md). The vector part (footprint matching, model attributes) grows ~10 KB per
        # building: the ~400 MB of headroom cover ~40 000 buildings, a retry doubles it.
        # One job over the AOI (its CPU ~3.5 s per km2): a 400 km2 scene ~25 min, under the runtime.
        mem_mb=lambda wildcards, attempt: round(600 + 100 * QUALIFY_BLOCK_MCELLS)
        * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
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
