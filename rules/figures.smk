# Paper figures (sat2lod.figures): PNG per figure with report captions, one multi-page PDF, a done marker.

FIGURE_NAMES = [
    "dsm_hillshade",
    "error_map",
    "error_histogram",
    "ortho_footprints",
    "lod2_rendering",
    "accuracy_table",
    "throughput",
]


rule figures:
    input:
        # references drawn in the figures: the synthetic truth, else those set in config 'qualify'
        unpack(lambda wildcards: reference_files(wildcards, classes=False)),
        # the upstream jobs' benchmark files (throughput figure)
        benchmarks=benchmark_files,
        dsm="results/mosaic/{aoi}/dsm.tif",
        dtm="results/terrain/{aoi}/dtm.tif",
        ortho="results/ortho/{aoi}/ortho.tif",
        footprints="results/lod0/{aoi}/footprints.gpkg",
        # read one line at a time (the whole-scene model is not loaded)
        lod2="results/lod2/{aoi}/city.jsonl",
        accuracy="results/qualify/{aoi}/accuracy.json",
    output:
        **{
            name: report(
                f"results/figures/{{aoi}}/{name}.png",
                caption=f"../report/figures/{name}.rst",
                category="Figures",
                labels={"figure": name.replace("_", " ")},
            )
            for name in FIGURE_NAMES
        },
        pdf="results/figures/{aoi}/figures.pdf",
        done="results/figures/{aoi}/done.txt",
    log:
        "logs/figures/{aoi}.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 3000 * attempt,
        runtime=lambda wildcards, attempt: 15 * attempt,
    params:
        names=FIGURE_NAMES,
        # the whole section: every key is a field of sat2lod.figures.FigureParams
        figures=config["figures"],
    script:
        "../scripts/figures.py"
