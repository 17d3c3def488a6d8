# Building segmentation: U-Net training on synthetic cities of other seeds, tiled inference (sat2lod.segment).

SEG = config["segmentation"]
# Request a GPU from the scheduler only when the configuration asks for CUDA.
SEG_GPU = {"gpu": 1} if SEG["device"] == "cuda" else {}
# The checkpoint the segment rule uses: a configured one (reused, not retrained), the trained one, or none.
SEG_CHECKPOINT = (
    (SEG["checkpoint"] or "results/models/segmenter.pt")
    if SEG["method"] == "unet"
    else []
)


rule train_segmenter:
    output:
        model="results/models/segmenter.pt",
        metrics="results/models/segmenter_metrics.json",
    log:
        "logs/train_segmenter/segmenter.log",
    benchmark:
        "benchmarks/train_segmenter/segmenter.tsv"
    conda:
        "../envs/segment.yaml"
    threads: 2
    resources:
        **SEG_GPU,
        mem_mb=lambda wildcards, attempt: 6000 * attempt,
        runtime=lambda wildcards, attempt: 30 * attempt,
    params:
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
        device=SEG["device"],
    script:
        "../scripts/train_segmenter.py"


rule segment:
    input:
        ortho="results/ortho/{aoi}/ortho.tif",
        ndsm="results/terrain/{aoi}/ndsm.tif",
        checkpoint=SEG_CHECKPOINT,
    output:
        prob="results/segment/{aoi}/building_prob.tif",
        mask="results/segment/{aoi}/building_mask.tif",
    log:
        "logs/segment/{aoi}.log",
    benchmark:
        "benchmarks/segment/{aoi}.tsv"
    conda:
        "../envs/segment.yaml"
    threads: 2
    resources:
        **SEG_GPU,
        mem_mb=lambda wildcards, attempt: 6000 * attempt,
        runtime=lambda wildcards, attempt: 30 * attempt,
    params:
        method=SEG["method"],
        tile_px=SEG["tile_px"],
        overlap_px=SEG["overlap_px"],
        batch_size=SEG["batch_size"],
        threshold=SEG["threshold"],
        min_area_m2=SEG["min_area_m2"],
        min_height_m=SEG["min_height_m"],
        max_roughness_m=SEG["max_roughness_m"],
        device=SEG["device"],
    script:
        "../scripts/segment.py"
