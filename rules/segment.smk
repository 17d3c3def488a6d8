# Building segmentation: U-Net training on synthetic cities of other seeds; inference per tile of the tiling
# checkpoint's grid (segment_tile, with a halo), assembled by a streamed paste (segment): sat2lod.segment.tiled.

SEG = config["segmentation"]
# Request a GPU from the scheduler only when the configuration asks for CUDA.
SEG_GPU = {"gpu": 1} if SEG["device"] == "cuda" else {}
# The checkpoint the segment rule reads: a configured file (results/models/segmenter.pt is made by
# train_segmenter), or none: the default model shipped in the package, named in params by its digest.
SEG_CHECKPOINT = (SEG["checkpoint"] or []) if SEG["method"] == "unet" else []
# With user footprints (segmentation.labels), rule finetune_segmenter adapts that model to the AOI first and
# segment reads the fine-tuned one.
SEG_FINETUNES = SEG["method"] == "unet" and bool(SEG["labels"])
SEG_FINETUNED = "results/models/{aoi}/segmenter_finetuned.pt"


rule train_segmenter:
    output:
        model=TRAINED_SEGMENTER,
        metrics="results/models/segmenter_metrics.json",
    log:
        "logs/train_segmenter/segmenter.log",
    benchmark:
        "benchmarks/train_segmenter/segmenter.tsv"
    conda:
        "../envs/segment.yaml"
    threads: SEG["torch_threads"]
    resources:
        **SEG_GPU,
        mem_mb=lambda wildcards, attempt: 6000 * attempt,
        runtime=lambda wildcards, attempt: 30 * attempt,
    params:
        torch_threads=SEG["torch_threads"],
        seeds=SEG["train"]["seeds"],
        val_seeds=SEG["train"]["val_seeds"],
        city_size_m=SEG["train"]["city_size_m"],
        n_views=SEG["train"]["n_views"],
        steps=SEG["train"]["steps"],
        batch_size=SEG["train"]["batch_size"],
        patch_px=SEG["train"]["patch_px"],
        lr=SEG["train"]["lr"],
        base_channels=SEG["train"]["base_channels"],
        depth=SEG["train"]["depth"],
        seed=SEG["train"]["seed"],
        ndsm_dropout=SEG["train"]["ndsm_dropout"],
        ndsm_fatten_px=SEG["train"]["ndsm_fatten_px"],
        scale_aug=SEG["train"]["scale_aug"],
        photometric_aug=SEG["train"]["photometric_aug"],
        patch_normalize=SEG["train"]["patch_normalize"],
        material_aug=SEG["train"]["material_aug"],
        device=SEG["device"],
    script:
        "../scripts/train_segmenter.py"


rule finetune_segmenter:
    input:
        ortho="results/ortho/{aoi}/ortho.tif",
        ndsm="results/terrain/{aoi}/ndsm.tif",
        labels=SEG["labels"] or [],
        checkpoint=SEG_CHECKPOINT,
    output:
        model=SEG_FINETUNED,
        metrics="results/models/{aoi}/segmenter_finetuned_metrics.json",
    log:
        "logs/finetune_segmenter/{aoi}.log",
    benchmark:
        "benchmarks/finetune_segmenter/{aoi}.tsv"
    conda:
        "../envs/segment.yaml"
    threads: SEG["torch_threads"]
    resources:
        **SEG_GPU,
        mem_mb=lambda wildcards, attempt: 6000 * attempt,
        runtime=lambda wildcards, attempt: 30 * attempt,
    params:
        # a new shipped model reruns the rule when it is the starting model
        default_model=(
            default_model_id() if SEG_FINETUNES and not SEG["checkpoint"] else None
        ),
        torch_threads=SEG["torch_threads"],
        finetune=SEG["finetune"],
        device=SEG["device"],
    script:
        "../scripts/finetune_segmenter.py"


rule segment_range:
    input:
        ortho="results/ortho/{aoi}/ortho.tif",
    output:
        range="results/segment/{aoi}/ortho_range.json",
    log:
        "logs/segment_range/{aoi}.log",
    benchmark:
        "benchmarks/segment_range/{aoi}.tsv"
    conda:
        "../envs/segment.yaml"
    threads: 1
    resources:
        # streamed: a few passes over the ortho in 4-Mcell blocks, whatever the area
        mem_mb=lambda wildcards, attempt: 500 * attempt,
        runtime=lambda wildcards, attempt: 20 * attempt,
    # no params: the range is the 2-98 % percentiles the network input always takes (sat2lod.segment.features)
    script:
        "../scripts/segment_range.py"


# cells of a segment_tile window (tile core + halo on each side), which size its memory and runtime
SEG_TILE_MCELLS = tile_window_mcells(SEG["tile_halo_m"])


rule segment_tile:
    input:
        ortho="results/ortho/{aoi}/ortho.tif",
        ndsm="results/terrain/{aoi}/ndsm.tif",
        # the surface of the plausibility filter's walls (a hillside above a component counts against it)
        dsm="results/mosaic/{aoi}/dsm.tif",
        tiles="results/tiles/{aoi}/tiles.geojson",
        # the AOI's radiometric range of the network input (none for the nDSM-threshold method)
        ortho_range=(
            "results/segment/{aoi}/ortho_range.json" if SEG["method"] == "unet" else []
        ),
        checkpoint=SEG_FINETUNED if SEG_FINETUNES else SEG_CHECKPOINT,
    output:
        # tar of {tile}/building_prob.tif and {tile}/building_mask.tif for each tile of the job
        # (sat2lod.workflow.tile_folders)
        job=temp("results/segment/{aoi}/{job}.tar"),
    log:
        "logs/segment_tile/{aoi}/{job}.log",
    benchmark:
        "benchmarks/segment_tile/{aoi}/{job}.tsv"
    conda:
        "../envs/segment.yaml"
    threads: SEG["torch_threads"]
    resources:
        **SEG_GPU,
        # the window (tile + halo) is read and segmented alone, not the AOI: torch and the model plus the
        # window's arrays and activations. Measured 670-750 MB for 300 m tiles (0.63 Mcells windows) at 0.6 and
        # 1.2 km (bench/results/scaling_chain.md); asked: 500 MB + 1 KB per window cell (1130 MB there)
        mem_mb=lambda wildcards, attempt: round(500 + 1000 * SEG_TILE_MCELLS) * attempt,
        runtime=lambda wildcards, attempt: round(5 + 5 * SEG_TILE_MCELLS)
        * TILES_PER_JOB
        * attempt,
    params:
        tiles_per_job=TILES_PER_JOB,
        # a new shipped model reruns the rule
        default_model=(
            default_model_id()
            if SEG["method"] == "unet" and not SEG["checkpoint"] and not SEG_FINETUNES
            else None
        ),
        # the section but for the keys of rules train_segmenter (train) and finetune_segmenter (finetune,
        # labels) and checkpoint (an input): every key is a field of sat2lod.segment.predict.SegmentParams
        segmentation={
            k: v
            for k, v in SEG.items()
            if k not in ("train", "finetune", "labels", "checkpoint")
        },
    script:
        "../scripts/segment_tile.py"


rule segment:
    input:
        # every job of segment_tile (each holds its tiles' probability and mask)
        jobs=job_archives("results/segment/{aoi}/{job}.tar"),
        ortho="results/ortho/{aoi}/ortho.tif",
    output:
        prob="results/segment/{aoi}/building_prob.tif",
        mask="results/segment/{aoi}/building_mask.tif",
    log:
        "logs/segment/{aoi}.log",
    benchmark:
        "benchmarks/segment/{aoi}.tsv"
    conda:
        "../envs/segment.yaml"
    threads: 1
    resources:
        # streamed (sat2lod.io.raster.paste_tiles): 1024-cell blocks, bounded by the block, not the area
        mem_mb=lambda wildcards, attempt: 500 * attempt,
        runtime=lambda wildcards, attempt: 20 * attempt,
    # no params: the rule only pastes its tiles' cores (sat2lod.segment.tiled.assemble_segmentation)
    script:
        "../scripts/segment.py"
