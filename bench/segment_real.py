"""Building segmentation on real data (issue 15): IGN LiDAR HD, real aerial / satellite tiles, SpaceNet,
and optionally the chain's masks of real scenes with few buildings.

Methods come from the command line (``--methods unet,ndsm_threshold``; ``--checkpoint PATH`` repeated gives
one U-Net per model, default: the model shipped in the package). Every dataset is skipped, with a message,
when its folder is absent.

- **IGN LiDAR HD** (ign_lidarhd_montpellier_tiles: 6 tiles of a built-up quarter of Montpellier;
  ign_lidarhd_bdtopo_buildings: an eastern-France village subset), gridded at 0.5 m (bench/lidar_grid.py):
  DSM = highest return per cell, DTM = ground returns interpolated, nDSM = DSM - DTM; ortho = colour of the
  highest return as the mean of R, G, B (eastern France) or its intensity (Montpellier: no colour in the
  files); reference building mask = cells whose highest return is class 6, vegetation = highest return in
  classes 3-5; cells without a return are ignored. Each method runs (through
  :func:`sat2lod.segment.image.segment_image`, nDSM given) on the raw LiDAR nDSM and on stereo-degraded nDSMs:
  the training augmentation's defect model (:func:`sat2lod.segment.train.stereo_ndsm_defects`: foreground
  fattening by 1-3 cells in a random direction, blur, noise, a one-cell shift, occlusion holes), here always
  with fattening and holes, one draw per seed ``0 .. --draws - 1`` (metrics averaged over the draws).
  Metrics: building IoU against the class-6 mask; share of vegetation cells labelled building.
  **Targets: IoU >= 0.85, vegetation labelled building <= 5 %.**
- **real_building_tiles** (Inria / WHU / CrowdAI RGB tiles with masks; image only): through
  :func:`sat2lod.segment.image.segment_image_file`, the function of ``sat2lod segment``, with the tile's GSD
  from tiles.csv (``--gsd-m``). Mean IoU per tile (tiles whose truth and prediction are both empty left out)
  and pooled IoU, per source and overall. **Target: mean IoU >= 0.70.** These tiles are evaluation data
  only (research licences): no shipped model may be trained on them.
- **SpaceNet Atlanta tile** (WorldView-2 PAN, 0.5 m; image only): pixel IoU, and footprint F1 at IoU 0.5
  (predicted footprints = the 8-connected components of the mask, i.e. the polygons of its polygonization;
  SpaceNet-style one-to-one matching, :func:`sat2lod.segment.metrics.instance_f1`).
- **Chain masks** (``--chain-mask NAME=PATH``, optional ``--chain-ortho NAME=PATH``): share of the valid scene
  labelled building in a chain run's building_mask.tif, and a PNG of the mask over the ortho to check by eye
  (bench/out/, git-ignored: it renders the scene's imagery).
  **Target <= 1 % of the scene** on ventoux / reunion (few or no buildings).

Run:  python bench/segment_real.py --methods unet,ndsm_threshold [--checkpoint PATH ...]
Writes bench/results/segment_real.json and .md (``--out-name`` changes the base name).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import logging
import os
import platform
import shlex
import sys
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning

from sat2lod.segment.features import NDSM_SCALE_M, make_input
from sat2lod.segment.image import segment_image, segment_image_file
from sat2lod.segment.metrics import instance_f1
from sat2lod.segment.shipped import default_checkpoint
from sat2lod.segment.train import iou, stereo_ndsm_defects

sys.path.insert(0, str(Path(__file__).parent))
from lidar_grid import DATA, DATASETS, RES, VEGETATION, rasters, read_points, surface_rasters

OUT = Path(__file__).parent / "results"
FIGURES = Path(__file__).parent / "out"  # git-ignored
TARGETS = {"lidar_iou": 0.85, "lidar_veg": 0.05, "tiles_iou": 0.70, "chain_fraction": 0.01}
RAISED_M = (
    2.0  # "raised non-building": highest return not class 6, LiDAR nDSM above this (trees of any class)
)
FATTEN_PX = 3  # the training recipe's default ndsm_fatten_px
log = logging.getLogger("segment_real")


@dataclass
class Method:
    """One segmenter: label in the tables, ``unet`` or ``ndsm_threshold``, model file (U-Net)."""

    label: str
    method: str
    checkpoint: Path | None = None
    device: str = "cpu"
    threads: int = 1
    #: keys of segmentation.plausibility set over its defaults (e.g. max_roughness_m)
    plausibility: dict | None = None

    @property
    def needs_ndsm(self) -> bool:
        return self.method == "ndsm_threshold"

    def run(self, pan: np.ndarray, ndsm: np.ndarray | None, gsd_m: float) -> np.ndarray:
        return segment_image(pan, ndsm, gsd_m=gsd_m, **self.kwargs)[1]

    @property
    def kwargs(self) -> dict:
        """Arguments of segment_image / segment_image_file."""
        return {
            "method": self.method,
            "checkpoint": self.checkpoint,
            "device": self.device,
            "threads": self.threads,
        } | ({"plausibility": self.plausibility} if self.plausibility else {})


def parse_methods(names: str, checkpoints: list[str]) -> list[Method]:
    out = []
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        if name == "ndsm_threshold":
            out.append(Method("ndsm_threshold", name))
        elif name == "unet":
            if checkpoints:
                out += [Method(f"unet:{Path(c).stem}", "unet", Path(c)) for c in checkpoints]
            else:
                # the shipped models, as sat2lod segment picks them: the default one with an nDSM, the
                # image-only one without
                try:
                    default_checkpoint(), default_checkpoint(image_only=True)
                    out.append(Method("unet:shipped", "unet", None))
                except FileNotFoundError as exc:
                    print(f"unet skipped: {exc}")
        else:
            raise SystemExit(f"--methods: unknown method {name!r} (unet, ndsm_threshold)")
    return out


def checkpoint_summary(path: Path) -> dict:
    from sat2lod.io.checkpoint import load_checkpoint
    from sat2lod.io.digest import sha256_file

    p = load_checkpoint(path)
    shipped = set()
    for image_only in (False, True):
        try:
            shipped.add(default_checkpoint(image_only).resolve())
        except FileNotFoundError:
            pass
    return {
        # the shipped models by their package path (not where this install keeps them), others as given
        "path": (
            f"sat2lod/data/{path.name} (shipped, sha256 {sha256_file(path)[:16]})"
            if path.resolve() in shipped
            else os.fspath(path)
        ),
        "data": p.get("data"),
        "train": p.get("train"),
        "val_iou_mean": p.get("metrics", {}).get("val_iou_mean"),
    }


def _mean(v: list[float]) -> float:
    """Mean of the finite values; NaN when there is none."""
    a = np.asarray(v, float)
    return float(a[np.isfinite(a)].mean()) if np.isfinite(a).any() else float("nan")


def _float_or_none(v: str) -> float | None:
    """A GSD of tiles.csv; None for a range (WHU global: 0.3-2.5 m, unknown per tile: no resampling)."""
    try:
        return float(v)
    except ValueError:
        return None


def _finite(v: object) -> object:
    """``v`` with every non-finite float replaced by None (strict JSON)."""
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def _r(v: float, n: int = 3) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), n)


# ------------------------------------------------------------------------------------------ IGN LiDAR HD
def lidar_scores(mask: np.ndarray, ref: np.ndarray, veg: np.ndarray, raised: np.ndarray) -> dict:
    """IoU against ``ref`` (1 building, 0 not, 255 ignored), share of ``veg`` cells and of ``raised`` cells
    labelled building, share of the scene labelled building (255 in ``mask`` = nodata, counted as not
    building)."""
    pred = (mask == 1).astype(np.uint8)
    ok = ref != 255
    return {
        "iou": iou(pred, ref),
        "veg_as_building": float(pred[veg].mean()) if veg.any() else float("nan"),
        "raised_as_building": float(pred[raised].mean()) if raised.any() else float("nan"),
        "building_fraction": float(pred[ok].mean()),
    }


def degraded_ndsm(ortho: np.ndarray, ndsm: np.ndarray, seed: int) -> np.ndarray:
    """The LiDAR nDSM through the stereo defect model of training (always fattened, always holed): metres,
    NaN in the holes."""
    x = make_input(ortho, ndsm)
    n, holes = stereo_ndsm_defects(
        x[1], np.random.default_rng(seed), FATTEN_PX, fatten_share=1.0, hole_share=1.0
    )
    n = n * NDSM_SCALE_M
    n[holes] = np.nan
    return n.astype(np.float32)


def lidar_reference(files: list[Path]) -> tuple[dict, dict, np.ndarray, np.ndarray, np.ndarray]:
    """A LiDAR dataset as the benches score it: its rasters (lidar_grid.rasters, surface_rasters), the reference
    mask (uint8: 1 = class 6 on top, 0 = other, 255 = no return), the vegetation cells (classes 3-5 on top) and
    the raised non-building cells (reference 0, nDSM above RAISED_M)."""
    pts = read_points(files)
    r, s = rasters(pts), surface_rasters(pts)
    ref = (s["top_class"] == 6).astype(np.uint8)
    ref[s["empty"]] = 255
    veg = np.isin(s["top_class"], VEGETATION)
    raised = (ref == 0) & (r["ndsm"] > RAISED_M)
    return r, s, ref, veg, raised


def run_lidar(methods: list[Method], draws: int) -> tuple[dict, list[str]]:
    res, md = {}, ["## IGN LiDAR HD: building IoU vs class 6, vegetation labelled building", ""]
    md += [
        (
            f"Targets: IoU >= {TARGETS['lidar_iou']}, vegetation (classes 3-5) labelled building <= "
            f"{TARGETS['lidar_veg']:.0%}. Degraded: mean over {draws} draw(s) of the stereo defect model "
            f"(seeds 0-{draws - 1}; fattening 1-{FATTEN_PX} cells, blur, noise, shift, holes)."
        ),
        "",
        (
            "| dataset | nDSM | method | IoU | veg. as building | raised non-building as building | scene labelled "
            "building (ref.) | targets met |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, (files, _) in DATASETS.items():
        if not files or not all(f.exists() for f in files):
            print(f"lidar {name}: skipped, LAZ files not found under {DATA}")
            continue
        r, s, ref, veg, raised = lidar_reference(files)
        ref_frac = float(ref[ref != 255].mean())
        entry = {
            "files": [f.name for f in files],
            "grid": list(ref.shape),
            "empty_cells": int(s["empty"].sum()),
            "ortho": s["ortho_source"],
            "reference_building_fraction": ref_frac,
            "vegetation_fraction": float(veg[ref != 255].mean()),
            "raised_non_building_fraction": float(raised[ref != 255].mean()),
            "methods": {},
        }
        variants = {"raw": [r["ndsm"]]} | {
            "degraded": [degraded_ndsm(s["ortho"], r["ndsm"], k) for k in range(draws)]
        }
        for m in methods:
            entry["methods"][m.label] = {}
            for v, ndsms in variants.items():
                scores = [lidar_scores(m.run(s["ortho"], n, RES), ref, veg, raised) for n in ndsms]
                agg = {k: _mean([sc[k] for sc in scores]) for k in scores[0]}
                if len(scores) > 1:
                    agg["iou_per_draw"] = [_r(sc["iou"]) for sc in scores]
                entry["methods"][m.label][v] = agg
                veg_ok = not agg["veg_as_building"] > TARGETS["lidar_veg"]  # NaN: no vegetation class
                met = agg["iou"] >= TARGETS["lidar_iou"] and veg_ok
                veg_txt = "n/a" if np.isnan(agg["veg_as_building"]) else f"{agg['veg_as_building']:.1%}"
                md.append(
                    f"| {name} | {v} | {m.label} | {agg['iou']:.3f} | {veg_txt} | {agg['raised_as_building']:.1%} | "
                    f"{agg['building_fraction']:.1%} ({ref_frac:.1%}) | {'yes' if met else 'no'} |"
                )
        res[name] = entry
        print(md[-1])
    for name, e in res.items():
        md.append(
            f"\n{name}: {len(e['files'])} LAZ file(s), grid {e['grid'][0]} x {e['grid'][1]} cells at {RES} m "
            f"({e['empty_cells']} without a return, ignored), ortho = {e['ortho']}; class 6 on "
            f"{e['reference_building_fraction']:.1%} of the cells, vegetation on {e['vegetation_fraction']:.1%}"
            + (
                " (no vegetation class in this cloud: its trees are left unclassified, class 1)"
                if not e["vegetation_fraction"]
                else ""
            )
            + f"; raised non-building cells (highest return not class 6, nDSM > {RAISED_M} m: trees of any class, "
            f"walls, other objects) on {e['raised_non_building_fraction']:.1%}" + "."
        )
    return res, md + [""]


# ------------------------------------------------------------------------------------------ image-only sets
def read_mask(path: Path) -> np.ndarray:
    """First band of a mask file (the tiles' masks may have 3 identical bands and no georeferencing)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            return ds.read(1)


def run_tiles(methods: list[Method]) -> tuple[dict, list[str]]:
    root = DATA / "real_building_tiles"
    if not (root / "tiles.csv").exists():
        print(f"real_building_tiles: skipped, {root / 'tiles.csv'} not found")
        return {}, []
    rows = list(csv.DictReader((root / "tiles.csv").open()))
    res: dict = {}
    md = [
        "## real_building_tiles: image only, `sat2lod segment` (segment_image_file) with the tile's GSD",
        "",
        (
            f"Target: mean IoU >= {TARGETS['tiles_iou']}. Mean = mean of the per-tile IoUs (a tile whose truth "
            "and prediction are both empty is left out); pooled = all tiles' intersections over all their unions."
            " No tile was trained on by this bench (research licences: evaluation only)."
        ),
        "",
        "| method | source | tiles | mean IoU | pooled IoU | labelled building (truth) | target met |",
        "|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for m in [m for m in methods if not m.needs_ndsm]:
            per = []
            for row in rows:
                out = Path(tmp) / f"{row['name']}.tif"
                segment_image_file(
                    root / row["image"],
                    out,
                    gsd_m=_float_or_none(row["gsd_m"]),
                    **m.kwargs,
                )
                pred = (read_mask(out) == 1).astype(np.uint8)
                truth = (read_mask(root / row["mask"]) > 127).astype(np.uint8)
                per.append(
                    {
                        "name": row["name"],
                        "group": row["group"],
                        "iou": iou(pred, truth),
                        "inter": int((pred & truth).sum()),
                        "union": int((pred | truth).sum()),
                        "pred_fraction": float(pred.mean()),
                        "truth_fraction": float(truth.mean()),
                    }
                )
            groups = sorted({p["group"] for p in per}) + ["all"]
            res[m.label] = {"tiles": per, "groups": {}}
            for g in groups:
                sel = [p for p in per if g in ("all", p["group"])]
                mean = _mean([p["iou"] for p in sel])
                pooled = sum(p["inter"] for p in sel) / max(1, sum(p["union"] for p in sel))
                pf, tf = (
                    np.mean([p["pred_fraction"] for p in sel]),
                    np.mean([p["truth_fraction"] for p in sel]),
                )
                res[m.label]["groups"][g] = {"tiles": len(sel), "mean_iou": mean, "pooled_iou": pooled}
                md.append(
                    f"| {m.label} | {g} | {len(sel)} | {mean:.3f} | {pooled:.3f} | {pf:.1%} ({tf:.1%}) | "
                    f"{'yes' if mean >= TARGETS['tiles_iou'] else 'no'} |"
                )
            print(md[-1])
    if any(m.needs_ndsm for m in methods):
        md.append("\nndsm_threshold: not applicable (no nDSM on these tiles).")
    return res, md + [""]


def run_spacenet(methods: list[Method]) -> tuple[dict, list[str]]:
    import geopandas as gpd
    from rasterio.features import rasterize

    root = DATA / "spacenet4_atlanta_tile"
    img = root / "sample_geotiff.tif"
    if not img.exists():
        print(f"spacenet: skipped, {img} not found")
        return {}, []
    with rasterio.open(img) as ds:
        shape, tr, crs = ds.shape, ds.transform, ds.crs
    polys = gpd.read_file(root / "geotiff_labels.geojson").to_crs(crs)
    ids = rasterize(
        [(g, k + 1) for k, g in enumerate(polys.geometry) if g is not None and not g.is_empty],
        out_shape=shape,
        transform=tr,
        dtype="int32",
    )
    res: dict = {}
    md = [
        "## SpaceNet Atlanta tile (WorldView-2 PAN 0.5 m, 43 footprints): image only",
        "",
        "| method | pixel IoU | footprint F1 @ IoU 0.5 | precision | recall | predicted / true footprints |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for m in [m for m in methods if not m.needs_ndsm]:
            segment_image_file(img, Path(tmp) / "m.tif", **m.kwargs)
            pred = (read_mask(Path(tmp) / "m.tif") == 1).astype(np.uint8)
            f1 = instance_f1(pred, ids, 0.5)
            px = iou(pred, (ids > 0).astype(np.uint8))
            res[m.label] = {"pixel_iou": px, **f1}
            md.append(
                f"| {m.label} | {px:.3f} | {f1['f1']:.3f} | {f1['precision']:.3f} | {f1['recall']:.3f} | "
                f"{f1['n_pred']} / {f1['n_truth']} |"
            )
            print(md[-1])
    return res, md + [""]


# ------------------------------------------------------------------------------------------ chain masks
def run_chain_masks(masks: dict[str, Path], orthos: dict[str, Path], prefix: Path) -> tuple[dict, list[str]]:
    """Building share of each chain mask; figures ``{prefix}_{name}.png`` (not committed: they render the
    scene's imagery)."""
    if not masks:
        return {}, []
    res: dict = {}
    md = [
        "## Chain masks of real scenes (building_mask.tif of a chain run)",
        "",
        f"Target: <= {TARGETS['chain_fraction']:.0%} of the scene labelled building (scenes with few buildings).",
        "",
        "| scene | mask | method (mask tags) | labelled building | target met | figure (bench/out, not committed) |",
        "|---|---|---|---|---|---|",
    ]
    for name, path in masks.items():
        if not path.exists():
            print(f"chain mask {name}: skipped, {path} not found")
            continue
        m = read_mask(path)
        with rasterio.open(path) as ds:
            method = ds.tags().get("SAT2LOD_METHOD", "?")
            if "CHECKPOINT" in ds.tags():
                method += f" ({Path(ds.tags()['CHECKPOINT']).name})"
        valid = m != 255
        frac = float((m[valid] == 1).mean()) if valid.any() else float("nan")
        prefix.parent.mkdir(parents=True, exist_ok=True)
        fig = prefix.parent / f"{prefix.name}_{name}.png"
        _figure(m, orthos.get(name), fig, f"{name}: {frac:.2%} labelled building")
        res[name] = {"mask": os.fspath(path), "method": method, "building_fraction": frac, "figure": fig.name}
        md.append(
            f"| {name} | `{path}` | {method} | {frac:.2%} | "
            f"{'yes' if frac <= TARGETS['chain_fraction'] else 'no'} | {fig.name} |"
        )
    return res, md + [""]


def _figure(mask: np.ndarray, ortho: Path | None, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 8))
    if ortho is not None and ortho.exists():
        with rasterio.open(ortho) as ds:
            o = ds.read(1, masked=True).astype(float).filled(np.nan)
        lo, hi = np.nanpercentile(o, [2, 98])
        ax.imshow(o, cmap="gray", vmin=lo, vmax=hi)
    ax.imshow(np.ma.masked_where(mask != 1, mask), cmap="autumn", alpha=0.5, interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()
    fig.savefig(out, dpi=80, bbox_inches="tight")
    plt.close(fig)


# ------------------------------------------------------------------------------------------ main
def _checkpoint_text(c: dict) -> str:
    """One line on a model of :func:`checkpoint_summary`."""
    tr = c["train"] or {}
    return (
        f"`{c['path']}` (data: {json.dumps(c['data'])}; train steps {tr.get('steps')}, ndsm_dropout "
        f"{tr.get('ndsm_dropout')}, val IoU {_r(c['val_iou_mean'])})"
    )


def _pairs(items: list[str], flag: str) -> dict[str, Path]:
    out = {}
    for it in items:
        if "=" not in it:
            raise SystemExit(f"{flag} takes NAME=PATH, got {it!r}")
        k, v = it.split("=", 1)
        out[k] = Path(v)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="unet,ndsm_threshold", help="comma-separated: unet, ndsm_threshold")
    ap.add_argument("--checkpoint", action="append", default=[], help="U-Net model (repeat for several)")
    ap.add_argument(
        "--datasets", default="lidar,tiles,spacenet", help="comma-separated: lidar, tiles, spacenet"
    )
    ap.add_argument("--draws", type=int, default=5, help="stereo-degradation draws per LiDAR dataset")
    ap.add_argument(
        "--max-roughness-m",
        type=float,
        action="append",
        default=[],
        help="also run each method with segmentation.plausibility.max_roughness_m at this value (repeatable)",
    )
    ap.add_argument(
        "--chain-mask", action="append", default=[], help="NAME=PATH of a chain building_mask.tif"
    )
    ap.add_argument("--chain-ortho", action="append", default=[], help="NAME=PATH of its ortho (figure)")
    ap.add_argument("--out-name", default="segment_real", help="base name of the results files")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--note", action="append", default=[], help="a line for the report's header (repeatable)")
    ap.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu", help="U-Net inference device")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    methods = parse_methods(args.methods, args.checkpoint)
    methods += [
        replace(m, label=f"{m.label}, max roughness {r:g} m", plausibility={"max_roughness_m": r})
        for r in args.max_roughness_m
        for m in methods
    ]
    for m in methods:
        m.device, m.threads = args.device, args.threads
    if not methods:
        print("no method to run")
        return 1
    datasets = {d.strip() for d in args.datasets.split(",")}
    cmd = "python bench/segment_real.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    head = {
        "command": cmd,
        "notes": args.note,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch threads {args.threads}, device {args.device}",
        "torch": torch.__version__,
        "methods": [
            {"label": m.label, "method": m.method}
            | ({"checkpoint": checkpoint_summary(m.checkpoint)} if m.checkpoint else {})
            | (
                {
                    "checkpoint": checkpoint_summary(default_checkpoint()),
                    "checkpoint_image_only": checkpoint_summary(default_checkpoint(image_only=True)),
                }
                if m.method == "unet" and m.checkpoint is None
                else {}
            )
            for m in methods
        ],
    }
    results: dict = {"meta": head}
    md = [
        "# Building segmentation on real data (issue 15)",
        "",
        f"- command: `{cmd}`",
        f"- date: {head['date']}; machine: {head['machine']}; torch {head['torch']}",
    ]
    for m in head["methods"]:
        c, ci = m.get("checkpoint"), m.get("checkpoint_image_only")
        desc = _checkpoint_text(c) if c else "nDSM height + roof smoothness, no network"
        if ci:
            desc = f"with an nDSM (LiDAR) {desc}; image only (tiles, SpaceNet) {_checkpoint_text(ci)}"
        md.append(f"- method {m['label']}: {desc}")
    md += [f"- note: {n}" for n in args.note] + [""]
    runners = {
        "lidar": lambda: run_lidar(methods, args.draws),
        "tiles": lambda: run_tiles(methods),
        "spacenet": lambda: run_spacenet(methods),
    }
    for key, fn in runners.items():
        if key in datasets:
            results[key], lines = fn()
            md += lines
    results["chain_masks"], lines = run_chain_masks(
        _pairs(args.chain_mask, "--chain-mask"),
        _pairs(args.chain_ortho, "--chain-ortho"),
        FIGURES / Path(args.out_name).name,
    )
    md += lines
    OUT.mkdir(exist_ok=True)
    (OUT / f"{args.out_name}.json").write_text(json.dumps(_finite(results), indent=2, default=str))
    (OUT / f"{args.out_name}.md").write_text("\n".join(md) + "\n")
    print(f"written {OUT / args.out_name}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
