# Acquisition: find, fetch and verify the scenes, choose the stereo set, write the scene sheet
# (sat2lod.acquire). For source.kind synthetic the synthetic views are published as a STAC catalog on a
# 127.0.0.1 server that the job starts and stops itself, and fetched through EODAG like a real provider.


from sat2lod.acquire.rule_inputs import acquire_rule_inputs


# Runs where snakemake runs, never as a cluster/pod job: providers need internet access, which compute nodes
# often lack, and provider credentials live in the user's environment / EODAG config on this machine.
localrules:
    acquire,


rule acquire:
    input:
        unpack(
            lambda wildcards: {
                # the EODAG provider file (it may hold credentials) stays on this machine, never in
                # the default storage (S3 on Kubernetes): local()
                k: local(v) if k == "providers" else v
                for k, v in acquire_rule_inputs(
                    config["source"], wildcards.aoi, synthetic_views(), truth_files()
                ).items()
            }
        ),
    output:
        sheet="results/acquire/{aoi}/scenes.json",
        downloads=directory("results/acquire/{aoi}/downloads"),
        catalog=directory("results/acquire/{aoi}/catalog"),
    log:
        "logs/acquire/{aoi}.log",
    benchmark:
        "benchmarks/acquire/{aoi}.tsv"
    conda:
        "../envs/acquire.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 2000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
    params:
        # the section but for providers_file (an input) and synthetic (rule synth_city's): every key is a
        # field of sat2lod.acquire.pipeline.AcquireParams, as are these two keys of other sections
        source={
            k: v
            for k, v in config["source"].items()
            if k not in ("providers_file", "synthetic")
        },
        epsg=config["output"]["epsg"],
        bbox_lonlat=config["aoi"]["bbox_lonlat"],
    script:
        "../scripts/acquire.py"
