# True ortho per tile of the tiling checkpoint's grid (sat2lod.ortho_tiled): the quantities every tile shares
# estimated once (ortho_gains), each tile's core from a DSM window with an occlusion halo and the view windows
# that see it (ortho_tile), the cores pasted streamed (ortho).

# cells (millions) of the block of ortho_gains, and of an ortho_tile window: the tile plus a nominal 50 m halo
# on each side (the halo is derived per tile from the heights around it: a 100 m tower seen at 25 degrees
# needs ~47 m), which size their memory and runtime
ORTHO_GAINS_MCELLS = (
    config["ortho"]["gains_window_m"] / config["output"]["resolution_m"]
) ** 2 / 1e6
ORTHO_TILE_MCELLS = tile_window_mcells(50.0)


rule ortho_gains:
    input:
        unpack(scene_files),
        dsm="results/mosaic/{aoi}/dsm.tif",
        scenes="results/acquire/{aoi}/scenes.json",
    output:
        shared="results/ortho/{aoi}/ortho_shared.json",
    log:
        "logs/ortho_gains/{aoi}.log",
    benchmark:
        "benchmarks/ortho_gains/{aoi}.tsv"
    conda:
        "../envs/terrain.yaml"
    threads: 1
    resources:
        # the true ortho of the central block (ortho.gains_window_m) plus the DSM streamed in 128-row strips:
        # 395 MB for the default 1-Mcell block at 0.6 and 1.2 km (bench/results/ortho_tiled.md); asked 400 MB +
        # 250 bytes per block cell (650 MB there)
        mem_mb=lambda wildcards, attempt: round(400 + 250 * ORTHO_GAINS_MCELLS)
        * attempt,
        runtime=lambda wildcards, attempt: round(5 + 5 * ORTHO_GAINS_MCELLS) * attempt,
    params:
        # the whole section: every key is a field of sat2lod.ortho.OrthoParams
        ortho=config["ortho"],
    script:
        "../scripts/ortho_gains.py"


rule ortho_tile:
    input:
        unpack(scene_files),
        dsm="results/mosaic/{aoi}/dsm.tif",
        scenes="results/acquire/{aoi}/scenes.json",
        shared="results/ortho/{aoi}/ortho_shared.json",
        tiles="results/tiles/{aoi}/tiles.geojson",
    output:
        # tar of {tile}/ortho.tif for each tile of the job (sat2lod.workflow.tile_folders)
        job=temp("results/ortho/{aoi}/{job}.tar"),
    log:
        "logs/ortho_tile/{aoi}/{job}.log",
    benchmark:
        "benchmarks/ortho_tile/{aoi}/{job}.tsv"
    conda:
        "../envs/terrain.yaml"
    threads: 1
    resources:
        # the window (tile + halo) and the view windows that see it, not the AOI: 270-282 MB for 300 m tiles
        # at 0.6 and 1.2 km (bench/results/ortho_tiled.md); asked 400 MB + 250 bytes per window cell (560 MB)
        mem_mb=lambda wildcards, attempt: round(400 + 250 * ORTHO_TILE_MCELLS) * attempt,
        runtime=lambda wildcards, attempt: round(5 + 5 * ORTHO_TILE_MCELLS)
        * TILES_PER_JOB
        * attempt,
    params:
        tiles_per_job=TILES_PER_JOB,
        # the whole section: every key is a field of sat2lod.ortho.OrthoParams
        ortho=config["ortho"],
    script:
        "../scripts/ortho_tile.py"


rule ortho:
    input:
        # every job of ortho_tile (each holds its tiles' orthos)
        jobs=job_archives("results/ortho/{aoi}/{job}.tar"),
        dsm="results/mosaic/{aoi}/dsm.tif",
        scenes="results/acquire/{aoi}/scenes.json",
        shared="results/ortho/{aoi}/ortho_shared.json",
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
        # streamed (sat2lod.io.raster.paste_tiles): 1024-cell blocks, bounded by the block, not the area
        mem_mb=lambda wildcards, attempt: 500 * attempt,
        runtime=lambda wildcards, attempt: 20 * attempt,
    # no params: the rule only pastes its tiles' cores (sat2lod.ortho_tiled.assemble_ortho)
    script:
        "../scripts/ortho.py"
