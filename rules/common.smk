# Workflow glue only: wildcard grammar, final targets, helpers that turn config into rule inputs.
import json

from sat2lod.workflow import tile_jobs

AOI = config["aoi"]["name"]
# the most tiles in one job of the per-tile rules; their runtimes are asked for this many (a static bound: a resource
# that reads the tiling checkpoint fails in a remote job, e.g. a Kubernetes pod)
TILES_PER_JOB = config["tiling"]["tiles_per_job"]


def tile_window_mcells(halo_m):
    """Cells (millions) of a per-tile job's window: the tile core plus ``halo_m`` on each side, at the output
    resolution; the per-tile rules size their memory and runtime from it."""
    return (
        (config["tiling"]["tile_size_m"] + 2 * halo_m)
        / config["output"]["resolution_m"]
    ) ** 2 / 1e6


wildcard_constraints:
    aoi=r"[A-Za-z0-9_-]+",
    tile=r"t\d{4}_\d{4}",
    job=r"j\d{4}",
    view=r"\d+",


def final_outputs():
    """Products of the whole chain for the configured AOI (the inputs of rule all)."""
    return [
        f"results/mosaic/{AOI}/dsm.tif",
        f"results/terrain/{AOI}/dtm.tif",
        f"results/terrain/{AOI}/ndsm.tif",
        f"results/ortho/{AOI}/ortho.tif",
        f"results/segment/{AOI}/building_mask.tif",
        f"results/lod0/{AOI}/footprints.gpkg",
        f"results/lod1/{AOI}/city.json",
        f"results/lod2/{AOI}/city.json",
        f"results/qualify/{AOI}/accuracy.json",
        f"results/figures/{AOI}/done.txt",
    ]


def default_model_id():
    """Identity (version and sha256) of the segmentation model shipped in the package."""
    from sat2lod.io.digest import sha256_file
    from sat2lod.segment.shipped import DEFAULT_MODEL_VERSION, default_checkpoint

    return f"v{DEFAULT_MODEL_VERSION}:{sha256_file(default_checkpoint())}"


def synthetic_views():
    """View image paths of the synthetic source (empty for other sources)."""
    if config["source"]["kind"] != "synthetic":
        return []
    n = config["source"]["synthetic"]["n_views"]
    return [f"results/synth/{AOI}/view_{i}.tif" for i in range(n)]


def truth_files():
    """Reference rasters/vectors for qualification: the synthetic truth, or none."""
    if config["source"]["kind"] == "synthetic":
        base = f"results/synth/{AOI}/truth"
        return {
            "ref_dsm": f"{base}/dsm.tif",
            "ref_dtm": f"{base}/dtm.tif",
            "ref_classes": f"{base}/classes.tif",
            "ref_buildings": f"{base}/buildings.gpkg",
        }
    return {}


def reference_files(wildcards, classes=True):
    """Reference inputs of rules qualify and figures: the synthetic truth, else the files named in config
    'qualify' (those set); ``classes=False`` leaves out the truth's class raster (figures do not draw it).
    """
    refs = truth_files() or {
        k: config["qualify"][f"reference_{k[4:]}"]
        for k in ("ref_dsm", "ref_dtm", "ref_buildings")
    }
    return {k: v for k, v in refs.items() if v and (classes or k != "ref_classes")}


def benchmark_files(wildcards):
    """Benchmark files of the AOI's upstream jobs (the throughput figure), declared as inputs so that the
    DAG and remote storage see them: one per rule, one per job of the per-tile rules, the training run when
    the workflow trains the segmenter; only rules this workflow defines (a workflow of some stages charts those).
    """
    aoi = wildcards.aoi
    names = ["synth_city", "acquire", "tiles", "mosaic_dsm", "dtm", "ortho", "segment"]
    names += ["ortho_gains", "lod2_scene"]
    names += ["lod0", "lod1", "lod2", "qualify"]
    if config["source"]["kind"] != "synthetic":
        names.remove("synth_city")
    files = [f"benchmarks/{r}/{aoi}.tsv" for r in names if rules.has(r)]
    if rules.has("segment_range") and config["segmentation"]["method"] == "unet":
        files.append(f"benchmarks/segment_range/{aoi}.tsv")
    for per_tile in (
        "stereo_tile",
        "dtm_tile",
        "ortho_tile",
        "segment_tile",
        "lod0_tile",
        "lod1_tile",
        "lod2_noise_tile",
        "lod2_tile",
    ):
        if rules.has("tiles") and rules.has(per_tile):
            files += [
                f"benchmarks/{per_tile}/{aoi}/{j}.tsv" for j in job_tiles(wildcards)
            ]
    if rules.has("train_segmenter") and trains_segmenter():
        files.append("benchmarks/train_segmenter/segmenter.tsv")
    seg = config["segmentation"]
    if rules.has("finetune_segmenter") and seg["method"] == "unet" and seg["labels"]:
        files.append(f"benchmarks/finetune_segmenter/{aoi}.tsv")
    return files


# the checkpoint rule train_segmenter writes (segmentation.checkpoint names it to train in the run)
TRAINED_SEGMENTER = "results/models/segmenter.pt"


def trains_segmenter():
    """Whether the run trains its own U-Net (segmentation.checkpoint is the train_segmenter output) instead
    of taking the shipped default model or another checkpoint."""
    seg = config["segmentation"]
    return seg["method"] == "unet" and seg["checkpoint"] == TRAINED_SEGMENTER


def tile_ids(wildcards):
    """Tile ids of the tiling checkpoint (re-evaluated once the tile grid exists)."""
    grid = checkpoints.tiles.get(aoi=wildcards.aoi).output.tiles
    # the file's own open(): with a remote default storage (Kubernetes + S3) it first retrieves the checkpoint's
    # output from storage, where a plain open() finds no local copy
    with grid.open() as fh:
        return [f["properties"]["tile"] for f in json.load(fh)["features"]]


def job_tiles(wildcards):
    """The jobs of the per-tile rules: {job id: [tile ids]} (sat2lod.workflow.tile_jobs, tiling.tiles_per_job)."""
    return tile_jobs(tile_ids(wildcards), TILES_PER_JOB)


def job_archives(pattern):
    """Input function of a merge rule: ``pattern`` (with {aoi} and {job}) for every job of the AOI."""
    return lambda wildcards: expand(
        pattern, aoi=wildcards.aoi, job=job_tiles(wildcards)
    )


def scene_files(wildcards):
    """The files the scene sheet points to (downloaded views, or the configured local images and RPC
    files), declared as inputs of the rules that read them so that executors without a shared
    filesystem (Kubernetes) ship them to the job."""
    files = {"scene_downloads": f"results/acquire/{wildcards.aoi}/downloads"}
    if config["source"]["kind"] == "local":
        for i, im in enumerate(config["source"]["local"]["images"]):
            files[f"scene_image_{i}"] = im["image"]
            for key in ("rpc", "ms_image", "ms_rpc"):
                if im.get(key):
                    files[f"scene_{key}_{i}"] = im[key]
    return files
