"""The shipped default segmentation model: a package resource made by the repo's own training recipe.

A user's run does not train: with ``segmentation.checkpoint: null`` the rule ``segment`` uses
``sat2lod/data/segmenter_default.pt``, made by :func:`build_default_model`, which runs the rule's own training
function (:func:`sat2lod.segment.train.train_segmenter`) with the schema's defaults of ``segmentation.train``
and a fixed torch thread count, on data the project may redistribute: synthetic cities (exact labels, the
chain's own ortho) and real airborne LiDAR of IGN LiDAR HD (Etalab Open Licence 2.0; real roofs, trees and
relief with real building labels, rendered by :mod:`sat2lod.segment.lidar_samples`), the files of
:data:`LIDAR_FILES` from ``../shared/data/ign_lidarhd_more`` (checked by sha256). None of the LiDAR the
benches evaluate on (Montpellier tiles, the eastern-France subset and the myria3d file of the same area) is
trained on. The checkpoint records the recipe, the data, the seed and the validation metrics. Rebuild it with::

    python -m sat2lod.segment.default_model src/sat2lod/data/segmenter_default.pt \
        --lidar-dir ../shared/data/ign_lidarhd_more

The image-only model (``sat2lod segment --image`` without ``--ndsm``) is the same recipe with the nDSM hidden
in every training patch (:data:`IMAGE_ONLY_TRAIN`)::

    python -m sat2lod.segment.default_model src/sat2lod/data/segmenter_image_only.pt --image-only \
        --lidar-dir ../shared/data/ign_lidarhd_more

Training with the same recipe, seed and thread count on the same platform gives the same weights, bit for bit.
The shipped v2 predates a fix of the LiDAR renders (a colour constant over a cloud is dropped for its
intensity: two clouds of :data:`LIDAR_FILES`); it is rebuilt bit for bit at the commit that made it, 33c1507
(checked; docs/segmentation.md), not by this module as it is now.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
from pathlib import Path
from typing import Any

from sat2lod.io.digest import sha256_file
from sat2lod.segment.shipped import DEFAULT_MODEL_VERSION, IMAGE_ONLY_MODEL_VERSION

log = logging.getLogger(__name__)

#: recipe id recorded in the checkpoint
RECIPE = (
    "sat2lod.segment.default_model.build_default_model: train_segmenter with the schema defaults of "
    "segmentation, synthetic cities + IGN LiDAR HD renders"
)
#: recipe id of the image-only model (``--image-only``)
IMAGE_ONLY_RECIPE = (
    "sat2lod.segment.default_model.build_default_model(image_only=True): train_segmenter with the schema "
    "defaults of segmentation and IMAGE_ONLY_TRAIN, synthetic cities + IGN LiDAR HD renders"
)
#: what the image-only recipe changes in the schema defaults of ``segmentation.train``: the nDSM channels are
#: hidden in every patch (the default model hides them in 15 % of its patches and, measured on the real
#: building tiles, labels nothing from an image alone: bench/results/segment_real.md), and half the steps
#: (400: ~16 min on one thread of the shared 2-core build machine)
#: (a candidate v2 with 1500 steps, ten cities and the image augmentations scale_aug / photometric_aug /
#: patch_normalize was measured and not shipped: worse than v1 on the real tiles, docs/segmentation.md)
IMAGE_ONLY_TRAIN: dict[str, Any] = {"ndsm_dropout": 1.0, "steps": 400}
#: IGN LiDAR HD clouds trained on (path under the data folder: sha256), from ign_lidarhd_more/SOURCE.md:
#: full-density crops (buildings, trees, a bridge, water, mountain slopes), two lower-density strips and a
#: field, and decimated 1 km tiles (towns, villages, forest) gridded coarser than the output
LIDAR_FILES = {
    "pdal-ign-plugin/bat.laz": "7964d4cf333618373056ee84ea8fce7cfeaa506ca46e45e51dd8a1fc1199f8ba",
    "pdal-ign-plugin/crop_1.laz": "cd8ddd86ab9bccc2810e7957925ce6a26982660bc49e35c20b20c73e3c4fc50e",
    "pdal-ign-plugin/crop_2.laz": "078eacbee5a546dccd0904a079dace932ba87a0baeea15cb5eb0cb907c13b55f",
    "pdal-ign-plugin/pont.laz": "7955fd4a357e7d6a5f0c35f8cb49f623f2122bbaf64f4da90ba16d91962ec5ea",
    "lidar-prod/St_Barth_RGAF09_UTM20N_IGN_1988_SB_subset_100m.laz": (
        "d98b32d7c6bff8a99131e4260f935f69541399a9f18ff8c153739cf65762113b"
    ),
    "pacasam/792000_6272000-50mx100m-left.laz": "8eee9d9232ff0e3280ee00d2e8132f20ee410e6ee4917bcd96b111dd6a0379ba",
    "pacasam/792000_6272000-50mx100m-right.laz": "761a35d67f607ae6496048040915895b91b7a3c237a3ed8c560eef09d6005832",
    "ign-pdal-tools/las_with_several_extra_byte_bloc.laz": (
        "4acb579c77e2b8eb07136d55857481122d87991490aa7c875893341005e043e7"
    ),
    "ign-pdal-tools/test_semis_2023_0292_6833_LA93_IGN69.laz": (
        "99926fecd263944b8402815934dd9c1ffd0a1fc4fc258915a8c5bff21aeee207"
    ),
    "ign-pdal-tools/test_semis_2021_0382_6565_LA93_IGN69.laz": (
        "2dad01559a2e9145b63bef243be8f429b30883e581e57c90d5e7a53a805f6274"
    ),
    "las-digital-models/test_semis_2023_0299_6802_LA93_IGN69.laz": (
        "386879e07021aa8a46be3cc888a85ac615bc2f6d4a6640e788e67a55ea97be05"
    ),
    "las-digital-models/test_semis_2023_0300_6802_LA93_IGN69.laz": (
        "e713de7f979560557e53bc25e6b1f005d366096f062e6132a43a1509dc8f3880"
    ),
    "ign-pdal-tools/Semis_2022_0906_6665_LA93_IGN69_ok.laz": (
        "f11ad7e6758d9783b7b0551e8fc4d5ae8a4a029754f144d6e4f7611b08f7c16c"
    ),
    "lidar-for-fuel/test_semis_2022_0897_6577_LA93_IGN69_decimation.laz": (
        "03fe2380e4511b306103c9469c5a57bba922513f155544562695d67eb5556f73"
    ),
    "lidar-for-fuel/test_semis_2024_0751_6690_LA93_IGN69.laz": (
        "c684672f0a62c9bc94027d30df21c00f5756ed4c810d9897b7d0dd6cad829fbe"
    ),
}
#: grid of the LiDAR renders (m): the synthetic cities' GSD (segmentation.train's gsd)
OUTPUT_RES_M = 0.5
#: share of the training patches drawn from the LiDAR renders (the rest from the synthetic cities)
LIDAR_SHARE = 0.5
#: share of the image-only model's training patches drawn from the LiDAR renders (real roofs, trees, roads and
#: their real colours: what an image alone has to tell apart)
IMAGE_ONLY_LIDAR_SHARE = 0.5
#: the default place of the LiDAR data: ../shared/data/ign_lidarhd_more beside the repository
DEFAULT_LIDAR_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ign_lidarhd_more"


def lidar_training_samples(lidar_dir: str | os.PathLike[str]) -> list:
    """The LiDAR renders of :data:`LIDAR_FILES` under ``lidar_dir``, each file checked by its sha256.

    Raises:
        FileNotFoundError / ValueError: a file is missing or differs from the recipe's (names it and the fix).
    """
    from sat2lod.segment.lidar_samples import lidar_sample
    from sat2lod.segment.train import set_group_share

    root = Path(lidar_dir)
    samples = []
    for rel, digest in LIDAR_FILES.items():
        path = root / rel
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: a LiDAR file of the default model's recipe is missing; give the folder of "
                "ign_lidarhd_more (--lidar-dir)"
            )
        if sha256_file(path) != digest:
            raise ValueError(
                f"{path}: sha256 differs from the recipe's {digest[:16]}...: not the recipe's data"
            )
        samples.append(lidar_sample(path, name=rel, res=OUTPUT_RES_M))
    # full-density crops (heights on the output grid) and coarse-gridded decimated tiles each get half of the
    # LiDAR patches: by area alone the 1 km tiles would take 98 % of them
    set_group_share([s for s in samples if s.cell_m == OUTPUT_RES_M], 0.5)
    set_group_share([s for s in samples if s.cell_m != OUTPUT_RES_M], 0.5)
    return samples


def schema_training_defaults() -> dict[str, Any]:
    """The ``segmentation`` section with every default of the schema (the recipe's whole configuration)."""
    from sat2lod.schema import defaults

    # the order of config validation (schema order; train is the section's last key): the recipe's record,
    # and so the checkpoint's bytes, do not depend on how the defaults were gathered
    return {**defaults("segmentation"), "train": defaults("segmentation", "train")}


def build_default_model(
    out: str | os.PathLike[str],
    work_dir: str | os.PathLike[str] | None = None,
    lidar_dir: str | os.PathLike[str] = DEFAULT_LIDAR_DIR,
    image_only: bool = False,
    train_overrides: dict[str, Any] | None = None,
) -> dict:
    """Train the default model with the schema defaults and write it to ``out`` (+ ``out`` .json metrics).

    ``image_only``: the image-only model instead (:data:`IMAGE_ONLY_TRAIN` over the schema defaults: the nDSM
    channels are hidden in every patch, and validated so), shipped as
    :data:`sat2lod.segment.shipped.IMAGE_ONLY_MODEL_FILE` for ``sat2lod segment`` without ``--ndsm``.
    ``train_overrides``: keys of ``segmentation.train`` set over the recipe's (a candidate recipe of a bench,
    e.g. other ``steps`` / ``seed``: bench/segment_recipe_seeds.py); recorded in the checkpoint like the rest.
    Returns:
        The training metrics.
    """
    import torch

    from sat2lod.io.checkpoint import load_checkpoint, save_checkpoint
    from sat2lod.segment.infer import CHECKPOINT_FORMAT
    from sat2lod.segment.train import train_segmenter

    seg = schema_training_defaults()
    tr = seg["train"] | (IMAGE_ONLY_TRAIN if image_only else {}) | (train_overrides or {})
    out = Path(out)
    metrics_path = out.with_suffix(".json")
    met = train_segmenter(
        model=out,
        metrics=metrics_path,
        seeds=tr["seeds"],
        val_seeds=tr["val_seeds"],
        city_size_m=tr["city_size_m"],
        n_views=tr["n_views"],
        steps=tr["steps"],
        batch_size=tr["batch_size"],
        patch_px=tr["patch_px"],
        lr=tr["lr"],
        base_channels=tr["base_channels"],
        depth=tr["depth"],
        seed=tr["seed"],
        ndsm_dropout=tr["ndsm_dropout"],
        ndsm_fatten_px=tr["ndsm_fatten_px"],
        scale_aug=tr["scale_aug"],
        photometric_aug=tr["photometric_aug"],
        patch_normalize=tr["patch_normalize"],
        material_aug=tr["material_aug"],
        device="cpu",
        threads=seg["torch_threads"],
        work_dir=work_dir,
        extra_samples=lidar_training_samples(lidar_dir),
        extra_share=IMAGE_ONLY_LIDAR_SHARE if image_only else LIDAR_SHARE,
        extra_data={
            "source": "IGN LiDAR HD (ign_lidarhd_more), rendered by sat2lod.segment.lidar_samples",
            "files": LIDAR_FILES,
        },
    )
    payload = load_checkpoint(out, CHECKPOINT_FORMAT)
    payload["default_model"] = {
        "version": IMAGE_ONLY_MODEL_VERSION if image_only else DEFAULT_MODEL_VERSION,
        "recipe": IMAGE_ONLY_RECIPE if image_only else RECIPE,
        "image_only": image_only,
        "config": {"segmentation": seg | {"train": tr}},
        "torch": str(torch.__version__),
        "platform": f"{platform.system()}-{platform.machine()}",
        "data_licence": (
            "synthetic cities generated by sat2lod.synth (no third-party data); IGN LiDAR HD point clouds, "
            "Licence Ouverte / Etalab 2.0 (IGN - LiDAR HD)"
        ),
    }
    save_checkpoint(out, payload)
    log.info("model written to %s (sha256 %s)", out, sha256_file(out))
    return met


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Rebuild the shipped default segmentation model.")
    ap.add_argument("out", help="output checkpoint, e.g. src/sat2lod/data/segmenter_default.pt")
    ap.add_argument("--work-dir", default=None, help="keep the generated training cities here")
    ap.add_argument(
        "--image-only",
        action="store_true",
        help="the image-only model (src/sat2lod/data/segmenter_image_only.pt): nDSM hidden in every patch",
    )
    ap.add_argument(
        "--lidar-dir", default=os.fspath(DEFAULT_LIDAR_DIR), help="the ign_lidarhd_more folder (LIDAR_FILES)"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    build_default_model(args.out, args.work_dir, args.lidar_dir, args.image_only)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
