"""How much the default model's real-data figures depend on the training draw, and what the guided filter does
on each model (issue 15).

Trains candidate models with the default model's recipe (:func:`sat2lod.segment.default_model.build_default_model`:
schema defaults, synthetic cities 101/102, the IGN LiDAR HD renders of ``LIDAR_FILES``, one torch thread) and
``--steps`` / ``--seeds`` in place of the schema's ``steps`` / ``seed``, or reuses a checkpoint already in
``--models`` whose recorded recipe is the same (training is deterministic: the same recipe gives the same file).
Each model, and the shipped one, is then scored with the guided filter off and on (``segmentation.guided_filter``):

- synthetic demo mask IoU against the truth (the stored products of a demo run, ``--demo RUN_DIR``: its ortho,
  nDSM and DSM through rule segment's function);
- share of the scene labelled building on the real pairs Réunion and Ventoux (``--chain NAME=RUN_DIR``: the
  stored ortho / nDSM / DSM of a real_chains run; target <= 1 %);
- IGN LiDAR Montpellier and eastern France as bench/segment_real.py: IoU against class 6 and vegetation labelled
  building on the raw nDSM and on 5 stereo-degraded draws (targets IoU >= 0.85, vegetation <= 5 %).

Montpellier and eastern France are evaluation data: nothing here is chosen on them; the table shows the spread.

Run:  python bench/segment_recipe_seeds.py --steps 2400 --seeds 0 1 2 --models /tmp/seg_models \
          --demo /tmp/demo_run --chain reunion=/tmp/real_chains4/reunion --chain ventoux=/tmp/real_chains4/ventoux
Writes bench/results/segment_recipe_seeds.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import rasterio

from sat2lod.io.checkpoint import load_checkpoint
from sat2lod.segment import default_model as dm
from sat2lod.segment.image import segment_image
from sat2lod.segment.infer import CHECKPOINT_FORMAT
from sat2lod.segment.predict import segment_from_files
from sat2lod.segment.shipped import default_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
from segment_real import DATASETS, degraded_ndsm, lidar_reference, lidar_scores

OUT = Path(__file__).parent / "results"
DRAWS = 5
GUIDED = {"off": {"radius_m": 0.0}, "on": {}}  # on = the schema defaults


def recipe_train(steps: int, seed: int) -> dict:
    """The default recipe's segmentation.train with ``steps`` and ``seed``."""
    return dm.schema_training_defaults()["train"] | {"steps": steps, "seed": seed}


def train_or_reuse(models: Path, steps: int, seed: int) -> Path:
    """A model of the default recipe with ``steps`` / ``seed``: the one in ``models`` if its recorded recipe is
    that, else trained there (~9 min for 2400 steps on one thread)."""
    out = models / f"recipe_steps{steps}_seed{seed}.pt"
    want = recipe_train(steps, seed)
    if out.exists():
        got = load_checkpoint(out, CHECKPOINT_FORMAT)["default_model"]["config"]["segmentation"]["train"]
        if got == want:
            return out
        raise SystemExit(f"{out}: recorded recipe {got} is not {want}; remove it")
    models.mkdir(parents=True, exist_ok=True)
    dm.build_default_model(
        out, models / "cities", dm.DEFAULT_LIDAR_DIR, train_overrides={"steps": steps, "seed": seed}
    )
    return out


def _mask_of(run: Path, aoi: str, ck: Path, guided: dict) -> np.ndarray:
    """Rule segment's mask from a run's stored ortho / nDSM / DSM (the whole AOI at once)."""
    r = run / "results"
    with tempfile.TemporaryDirectory() as t:
        segment_from_files(
            r / "ortho" / aoi / "ortho.tif",
            r / "terrain" / aoi / "ndsm.tif",
            Path(t) / "p.tif",
            Path(t) / "m.tif",
            checkpoint=ck,
            dsm=r / "mosaic" / aoi / "dsm.tif",
            guided_filter=guided,
        )
        with rasterio.open(Path(t) / "m.tif") as src:
            return src.read(1)


def score(ck: Path, guided: dict, demo: Path | None, chains: dict[str, Path], lidar: dict) -> dict:
    out: dict = {}
    if demo is not None:
        m = _mask_of(demo, "demo", ck, guided) == 1
        with rasterio.open(demo / "results" / "synth" / "demo" / "truth" / "classes.tif") as src:
            t = src.read(1) == 1
        out["demo_mask_iou"] = float((m & t).sum() / (m | t).sum())
    for name, run in chains.items():
        m = _mask_of(run, name, ck, guided)
        out[f"{name}_labelled"] = float((m[m != 255] == 1).mean())
    for name, (r, s, ref, veg, raised, degraded) in lidar.items():
        for v, nds in (("raw", [r["ndsm"]]), ("degraded", degraded)):
            sc = [
                lidar_scores(
                    segment_image(s["ortho"], n, gsd_m=0.5, checkpoint=ck, threads=1, guided_filter=guided)[
                        1
                    ],
                    ref,
                    veg,
                    raised,
                )
                for n in nds
            ]
            out[f"{name}_{v}_iou"] = float(np.mean([x["iou"] for x in sc]))
            out[f"{name}_{v}_veg"] = float(np.mean([x["veg_as_building"] for x in sc]))
    return out


COLUMNS = [
    ("demo_mask_iou", "demo mask IoU", "{:.3f}"),
    ("reunion_labelled", "Réunion labelled", "{:.2%}"),
    ("ventoux_labelled", "Ventoux labelled", "{:.2%}"),
    ("montpellier_raw_iou", "Montpellier IoU raw", "{:.3f}"),
    ("montpellier_degraded_iou", "degraded", "{:.3f}"),
    ("montpellier_raw_veg", "veg. as building raw", "{:.1%}"),
    ("montpellier_degraded_veg", "degraded", "{:.1%}"),
    ("eastern_france_raw_iou", "eastern France IoU raw", "{:.3f}"),
    ("eastern_france_degraded_iou", "degraded", "{:.3f}"),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "sat2lod_recipe_seeds")
    ap.add_argument("--demo", type=Path, help="a demo run directory (its results/)")
    ap.add_argument("--chain", action="append", default=[], help="NAME=RUN_DIR of a real_chains run")
    ap.add_argument("--out-name", default="segment_recipe_seeds")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    chains = {k: Path(v) for k, v in (c.split("=", 1) for c in args.chain)}
    lidar = {}
    for name, (files, _) in DATASETS.items():
        if files and all(f.exists() for f in files):
            r, s, ref, veg, raised = lidar_reference(files)
            lidar[name] = (
                r,
                s,
                ref,
                veg,
                raised,
                [degraded_ndsm(s["ortho"], r["ndsm"], k) for k in range(DRAWS)],
            )
        else:
            print(f"lidar {name}: skipped, LAZ files not found")
    models = {"shipped v2 (chosen among 5 runs)": default_checkpoint()}
    for seed in args.seeds:
        models[f"recipe, {args.steps} steps, seed {seed}"] = train_or_reuse(args.models, args.steps, seed)
    res: dict = {}
    for label, ck in models.items():
        meta = load_checkpoint(ck, CHECKPOINT_FORMAT)
        res[label] = {"checkpoint": ck.name, "val_iou_mean": meta.get("metrics", {}).get("val_iou_mean")}
        for g, guided in GUIDED.items():
            res[label][g] = score(ck, guided, args.demo, chains, lidar)
            print(label, g, json.dumps({k: round(v, 4) for k, v in res[label][g].items()}), flush=True)
    cols = [c for c in COLUMNS if any(c[0] in r["off"] for r in res.values())]
    md = [
        "# Default recipe: spread over training draws, and the guided filter on each model (issue 15)",
        "",
        f"- command: `python {shlex.join(['bench/segment_recipe_seeds.py', *(argv or sys.argv[1:])])}`",
        (
            f"- date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}; "
            f"{platform.machine()}, torch threads 1"
        ),
        (
            "- Montpellier / eastern France: evaluation data (nothing chosen on them); degraded = mean of "
            f"{DRAWS} draws of the stereo defect model; targets IoU >= 0.85, vegetation <= 5 %, real pairs <= 1 %"
        ),
        "",
        "| model | val IoU (city 103) | guided filter | " + " | ".join(c[1] for c in cols) + " |",
        "|---|---|---|" + "---|" * len(cols),
    ]
    for label, r in res.items():
        for g in GUIDED:
            vals = [c[2].format(r[g][c[0]]) if c[0] in r[g] else "–" for c in cols]
            md.append(f"| {label} | {r['val_iou_mean']:.3f} | {g} | " + " | ".join(vals) + " |")
    OUT.mkdir(exist_ok=True)
    (OUT / f"{args.out_name}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (OUT / f"{args.out_name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
