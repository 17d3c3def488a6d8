# Tiling (checkpoint): the tile grid over the AOI in the output CRS, aligned on the output pixel grid, kept
# where every view sees the ground (sat2lod.tiling). Downstream rules fan out per {tile} through
# tile_ids() in rules/common.smk, which re-reads this checkpoint's output.


checkpoint tiles:
    input:
        unpack(scene_files),
        scenes="results/acquire/{aoi}/scenes.json",
    output:
        tiles="results/tiles/{aoi}/tiles.geojson",
    log:
        "logs/tiles/{aoi}.log",
    benchmark:
        "benchmarks/tiles/{aoi}.tsv"
    conda:
        "../envs/acquire.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        # the section but tiles_per_job (how the per-tile rules group the tiles into jobs, not the grid): every
        # key is a keyword of sat2lod.tiling.make_tiles
        tiling={k: v for k, v in config["tiling"].items() if k != "tiles_per_job"},
        resolution_m=config["output"]["resolution_m"],
    script:
        "../scripts/tiles.py"
