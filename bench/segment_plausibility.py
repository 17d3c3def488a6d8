"""A/B of the geometric plausibility filter of the building mask (sat2lod.segment.plausibility; issue 15):
the shipped U-Net's masks with ``segmentation.plausibility.enabled`` false (off) and true (on), everything else
at its default.

- **IGN LiDAR HD** (Montpellier, eastern France; as bench/segment_real.py: raw LiDAR nDSM and ``--draws``
  stereo-degraded ones): :func:`sat2lod.segment.image.segment_image` with the nDSM (walls measured on the nDSM:
  ``sat2lod segment`` has no DSM). Building IoU vs class 6, vegetation (classes 3-5) and raised non-building
  cells labelled building. Targets: IoU >= 0.85, vegetation <= 5 %.
- **Real Pléiades pairs** (``--chain NAME=WORKDIR``: a chain run's results/ortho, terrain/ndsm, mosaic/dsm of
  AOI NAME): rule segment's function (:func:`sat2lod.segment.predict.segment_from_files`, DSM given as in the
  rule) off and on; share of the valid scene labelled building (target <= 1 % on ventoux / reunion, scenes
  without or with few buildings), components rejected, and whether the "off" mask equals the chain's own
  building_mask.tif (same model, same code but the filter); also the filter with its walls on the nDSM (as
  ``sat2lod segment``, which has no DSM). Figures in bench/out (not committed).
- **Sensitivity** to ``min_wall_share``, from the wall shares of the unfiltered masks' components.
- **Synthetic demo** (``--demo WORKDIR``: a demo run's ortho, nDSM, DSM and synth truth): the same function off
  and on; pixel IoU, precision, recall vs the truth footprints, footprint F1 at IoU 0.5. The filter must not
  lose true buildings there.

Run:  python bench/segment_plausibility.py --chain reunion=/tmp/realchain2/reunion --chain ventoux=...
      --demo /tmp/demo_keep
Writes bench/results/segment_plausibility.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import shlex
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from sat2lod.segment.image import segment_image
from sat2lod.segment.metrics import instance_f1
from sat2lod.segment.plausibility import mask_components_evidence, plausibility_filter
from sat2lod.segment.shipped import default_checkpoint
from sat2lod.segment.train import iou

sys.path.insert(0, str(Path(__file__).parent))
from lidar_grid import DATASETS, RES
from segment_real import TARGETS, _figure, _finite, _pairs, degraded_ndsm, lidar_reference, lidar_scores

OUT = Path(__file__).parent / "results"
FIGURES = Path(__file__).parent / "out"  # git-ignored
VARIANTS = {"off": {"enabled": False}, "on": {"enabled": True}}


def evidence_rows(
    mask: np.ndarray, ndsm: np.ndarray, dsm: np.ndarray | None, truth: np.ndarray | None, where: str
) -> list[dict]:
    """Per component of an unfiltered mask: area, height, wall share, roughness, verdict of the filter, and the
    share of its cells that are building in ``truth`` (bool, or None when there is no truth)."""
    lab, table = mask_components_evidence(mask, ndsm, RES, dsm)
    rows = []
    for t in table:
        row = {
            "where": where,
            "area_m2": t["cells"] * RES**2,
            "height_m": _r(t["height_m"]),
            "wall_share": _r(t["wall_share"]),
            "roughness_m": _r(t["roughness_m"]),
            "verdict": t["verdict"],
        }
        if truth is not None:
            row["truth_share"] = _r(float(truth[lab == t["label"]].mean()))
        rows.append(row)
    return rows


def _r(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 3)


def evidence_md(rows: list[dict]) -> list[str]:
    """Margins: wall shares of the true buildings (truth share >= 0.5) and of the other components."""

    def w(r: dict) -> str:
        return "n/a" if r["wall_share"] is None else f"{r['wall_share']:.2f}"

    if rows and "truth_share" in rows[0]:
        true = sorted((r for r in rows if r["truth_share"] >= 0.5), key=lambda r: r["wall_share"] or 0.0)
        other = sorted((r for r in rows if r["truth_share"] < 0.5), key=lambda r: r["wall_share"] or 0.0)
        if not true:
            return ["No true building among the components.", ""]
        line = (
            f"Components of the unfiltered masks: {len(true)} true buildings (>= 50 % of their cells building), "
            f"wall share {w(true[0])}-{w(true[-1])} (lowest five: {', '.join(w(r) for r in true[:5])}), "
            f"{sum(r['verdict'] != 'kept' for r in true)} rejected; {len(other)} other components (trees, mixed)"
            + (
                f": wall share {', '.join(w(r) for r in other)}; {sum(r['verdict'] != 'kept' for r in other)} rejected."
                if other
                else "."
            )
        )
    else:
        rej = sorted((r for r in rows if r["verdict"] != "kept"), key=lambda r: -r["area_m2"])
        kept = sorted((r for r in rows if r["verdict"] == "kept"), key=lambda r: r["wall_share"] or 0.0)
        rej_txt = (
            "; ".join(f"{r['area_m2']:.0f} m², {r['height_m'] or float('nan'):.1f} m, {w(r)}" for r in rej)
            or "none"
        )
        line = f"Rejected components (area, height, wall share): {rej_txt}. Kept: {len(kept)}" + (
            f", wall share {w(kept[0])}-{w(kept[-1])}." if kept else "."
        )
    return [line, ""]


def _pct(v: float) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.1%}"


def run_lidar(draws: int, threads: int) -> tuple[dict, list[str]]:
    res: dict = {}
    md = [
        "## IGN LiDAR HD (segment_image with the nDSM)",
        "",
        (
            f"Targets: IoU >= {TARGETS['lidar_iou']}, vegetation labelled building <= {TARGETS['lidar_veg']:.0%}. "
            f"Degraded: mean over {draws} draws of the stereo defect model (seeds 0-{draws - 1}), as segment_real."
        ),
        "",
        (
            "| dataset | nDSM | filter | IoU | veg. as building | raised non-building as building | scene labelled "
            "building | components rejected |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    rows: list[dict] = []
    for name, (files, _) in DATASETS.items():
        if not files or not all(f.exists() for f in files):
            print(f"lidar {name}: skipped, LAZ files not found")
            continue
        r, s, ref, veg, raised = lidar_reference(files)
        ndsms = {
            "raw": [r["ndsm"]],
            "degraded": [degraded_ndsm(s["ortho"], r["ndsm"], k) for k in range(draws)],
        }
        res[name] = {}
        for v, ns in ndsms.items():
            for key, prm in VARIANTS.items():
                scores, rejected = [], []
                for n in ns:
                    _, m, info = segment_image(
                        s["ortho"],
                        n,
                        gsd_m=RES,
                        checkpoint=default_checkpoint(),
                        threads=threads,
                        plausibility=prm,
                    )
                    scores.append(lidar_scores(m, ref, veg, raised))
                    p = info["plausibility"]
                    rejected.append(p["rejected_walls"] + p["rejected_roughness"])
                    if key == "off":
                        rows += evidence_rows(
                            m, n, None, np.where(ref == 255, False, ref == 1), f"{name} {v}"
                        )
                with warnings.catch_warnings():  # eastern France has no vegetation class: NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    agg = {k: float(np.nanmean([sc[k] for sc in scores])) for k in scores[0]}
                agg["iou_per_draw"] = [round(sc["iou"], 4) for sc in scores]
                agg["components_rejected"] = rejected
                res[name].setdefault(v, {})[key] = agg
                md.append(
                    f"| {name} | {v} | {key} | {agg['iou']:.3f} | {_pct(agg['veg_as_building'])} | "
                    f"{_pct(agg['raised_as_building'])} | {_pct(agg['building_fraction'])} | "
                    f"{'-' if key == 'off' else sum(rejected)} |"
                )
                print(md[-1], flush=True)
    res["components_off"] = rows
    return res, md + [""] + evidence_md(rows)


def _segment_ab(workdir: Path, aoi: str, tmp: Path) -> dict[str, tuple[np.ndarray, dict]]:
    """Rule segment's function off and on: {variant: (mask, summary)}."""
    from sat2lod.io.raster import read_raster
    from sat2lod.segment.predict import segment_from_files

    r = workdir / "results"
    out = {}
    for key, prm in VARIANTS.items():
        mask = tmp / f"{aoi}_{key}.tif"
        summary = segment_from_files(
            r / "ortho" / aoi / "ortho.tif",
            r / "terrain" / aoi / "ndsm.tif",
            tmp / f"{aoi}_{key}_prob.tif",
            mask,
            dsm=r / "mosaic" / aoi / "dsm.tif",
            plausibility=prm,
        )
        out[key] = (read_raster(mask, bands=1).array, summary)
    return out


def _heights(workdir: Path, aoi: str) -> tuple[np.ndarray, np.ndarray]:
    """The chain run's nDSM and DSM (m, NaN nodata)."""
    from sat2lod.io.raster import read_raster

    r = workdir / "results"
    n = read_raster(r / "terrain" / aoi / "ndsm.tif", bands=1, masked_to_nan=True).array
    d = read_raster(r / "mosaic" / aoi / "dsm.tif", bands=1, masked_to_nan=True).array
    return n.astype(np.float32), d.astype(np.float32)


def run_chain(chains: dict[str, Path], tmp: Path) -> tuple[dict, list[str]]:
    from sat2lod.io.raster import read_raster

    res: dict = {}
    md = [
        "## Real Pléiades pairs: rule segment's function on the chain's ortho / nDSM / DSM",
        "",
        (
            f"Target: <= {TARGETS['chain_fraction']:.0%} of the scene labelled building (scenes with few buildings). "
            "`off` = the chain's mask (checked cell for cell against its building_mask.tif)."
        ),
        "",
        (
            "| scene | filter | labelled building | components | rejected (walls / roughness) | target met | "
            "off == chain mask | figure (bench/out) |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    lines: list[str] = []
    for aoi, wd in chains.items():
        chain_mask = wd / "results" / "segment" / aoi / "building_mask.tif"
        if not (wd / "results" / "ortho" / aoi / "ortho.tif").exists():
            print(f"chain {aoi}: skipped, no ortho under {wd}")
            continue
        ab = _segment_ab(wd, aoi, tmp)
        same = None
        if chain_mask.exists():
            same = bool(np.array_equal(read_raster(chain_mask, bands=1).array, ab["off"][0]))
        ndsm, dsm = _heights(wd, aoi)
        rows = evidence_rows(ab["off"][0], ndsm, dsm, None, aoi)
        # the filter with its walls on the nDSM, as sat2lod segment (no DSM) does: the DSM's worth
        ab["on, walls on the nDSM"] = plausibility_filter(ab["off"][0], ndsm, RES, None)
        res[aoi] = {"workdir": os.fspath(wd), "off_equals_chain_mask": same, "components_off": rows}
        lines += [f"{aoi}: " + evidence_md(rows)[0]]
        for key, (m, summary) in ab.items():
            valid = m != 255
            frac = float((m[valid] == 1).mean())
            p = summary.get("plausibility", summary)
            rej = "-" if key == "off" else f"{p['rejected_walls']} / {p['rejected_roughness']}"
            fig = FIGURES / f"segment_plausibility_{aoi}_{key.split(',')[0]}.png"
            if key in VARIANTS:
                FIGURES.mkdir(exist_ok=True)
                _figure(
                    m, wd / "results" / "ortho" / aoi / "ortho.tif", fig, f"{aoi} filter {key}: {frac:.2%}"
                )
            res[aoi][key] = {
                "building_fraction": frac,
                "plausibility": p,
                "figure": fig.name if key in VARIANTS else None,
            }
            res[aoi]["valid_area_m2"] = float(valid.sum()) * RES**2
            md.append(
                f"| {aoi} | {key} | {frac:.2%} | {p['components']} | "
                f"{rej} | "
                f"{'yes' if frac <= TARGETS['chain_fraction'] else 'no'} | {same if key == 'off' else ''} | {fig.name if key in VARIANTS else ''} |"
            )
            print(md[-1], flush=True)
    return res, md + [""] + [x for ln in lines for x in (ln, "")]


def run_demo(workdir: Path, tmp: Path) -> tuple[dict, list[str]]:
    from segment_eval import truth_ids

    from sat2lod.io.raster import read_raster
    from sat2lod.io.vector import read_vector

    a = "demo"
    ref = read_raster(workdir / "results" / "terrain" / a / "ndsm.tif", bands=1)
    ids = truth_ids(
        read_vector(workdir / "results" / "synth" / a / "truth" / "buildings.gpkg"),
        ref.transform,
        ref.shape,
        ref.crs,
    )
    ab = _segment_ab(workdir, a, tmp)
    rows = evidence_rows(ab["off"][0], *_heights(workdir, a), ids > 0, "demo")
    res: dict = {"workdir": os.fspath(workdir), "truth_buildings": int(ids.max()), "components_off": rows}
    md = [
        "## Synthetic demo: rule segment's function on a demo run's ortho / nDSM / DSM, vs the synthetic truth",
        "",
        (
            "| filter | pixel IoU | precision | recall | footprint F1 @ IoU 0.5 | predicted / true footprints | "
            "components rejected |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for key, (m, summary) in ab.items():
        valid = m != 255
        truth = (ids > 0).astype(np.uint8)
        truth[~valid] = 255
        pred = (m == 1) & valid
        t = (ids > 0) & valid
        f1 = instance_f1(
            pred.astype(np.uint8), np.where(valid, ids, 0), 0.5, int(10.0 / abs(ref.transform.a) ** 2)
        )
        p = summary["plausibility"]
        res[key] = {
            "iou": iou(m, truth),
            "precision": float((pred & t).sum() / max(pred.sum(), 1)),
            "recall": float((pred & t).sum() / max(t.sum(), 1)),
            **{f"footprint_{k}": v for k, v in f1.items()},
            "plausibility": p,
        }
        e = res[key]
        md.append(
            f"| {key} | {e['iou']:.3f} | {e['precision']:.3f} | {e['recall']:.3f} | {f1['f1']:.3f} | "
            f"{f1['n_pred']} / {f1['n_truth']} | {'-' if key == 'off' else p['rejected_walls'] + p['rejected_roughness']} |"
        )
        print(md[-1], flush=True)
    return res, md + [""] + evidence_md(rows)


def sensitivity(
    results: dict, shares: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
) -> tuple[dict, list[str]]:
    """What other ``min_wall_share`` values would do, from the components of the unfiltered masks (a component's
    verdict depends on its own wall share only; roughness has no limit by default)."""
    lidar = results.get("lidar", {}).get("components_off", [])
    demo = results.get("demo", {}).get("components_off", [])
    chains = {k: v for k, v in results.get("chain", {}).items() if "components_off" in v}
    res: dict = {}
    md = [
        "## Sensitivity to segmentation.plausibility.min_wall_share (from the unfiltered masks' components)",
        "",
        "| min_wall_share | LiDAR true buildings rejected (of) | LiDAR other components rejected (of) | "
        "demo true buildings rejected (of) | " + " | ".join(f"{k} labelled building" for k in chains) + " |",
        "|---|---|---|---|" + "---|" * len(chains),
    ]

    def low(rows: list[dict], t: float) -> list[dict]:
        return [r for r in rows if r["wall_share"] is not None and r["wall_share"] < t]

    for t in shares:
        lt = [r for r in lidar if r["truth_share"] >= 0.5]
        lo = [r for r in lidar if r["truth_share"] < 0.5]
        dt = [r for r in demo if r["truth_share"] >= 0.5]
        e = {
            "lidar_true_rejected": len(low(lt, t)),
            "lidar_other_rejected": len(low(lo, t)),
            "demo_true_rejected": len(low(dt, t)),
        }
        cells = []
        for k, c in chains.items():
            kept = sum(r["area_m2"] for r in c["components_off"]) - sum(
                r["area_m2"] for r in low(c["components_off"], t)
            )
            e[f"{k}_fraction"] = kept / c["valid_area_m2"]
            cells.append(f"{e[f'{k}_fraction']:.2%}")
        res[str(t)] = e
        md.append(
            f"| {t}{' (default)' if t == 0.5 else ''} | {e['lidar_true_rejected']} ({len(lt)}) | "
            f"{e['lidar_other_rejected']} ({len(lo)}) | {e['demo_true_rejected']} ({len(dt)}) | "
            + " | ".join(cells)
            + " |"
        )
    return res, md + [""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=5, help="stereo-degradation draws per LiDAR dataset")
    ap.add_argument("--no-lidar", action="store_true", help="skip the IGN LiDAR HD datasets")
    ap.add_argument("--chain", action="append", default=[], help="NAME=WORKDIR of a chain run on a real pair")
    ap.add_argument("--demo", type=Path, help="WORKDIR of a demo run (synthetic truth)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--note", action="append", default=[], help="a line for the report's header (repeatable)")
    ap.add_argument("--out-name", default="segment_plausibility", help="base name of the results files")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    from sat2lod.schema import defaults

    cmd = "python bench/segment_plausibility.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    head = {
        "command": cmd,
        "notes": args.note,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}",
        "plausibility_defaults": defaults("segmentation", "plausibility"),
    }
    results: dict = {"meta": head}
    md = [
        "# Plausibility filter of the building mask: A/B (issue 15)",
        "",
        f"- command: `{cmd}`",
        f"- date: {head['date']}; machine: {head['machine']}",
        (
            f"- filter `on` = segmentation.plausibility defaults: `{json.dumps(head['plausibility_defaults'])}`; "
            "`off` = enabled false; model: the shipped default (v2); everything else at its default"
        ),
    ]
    md += [f"- note: {n}" for n in args.note] + [""]
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_lidar:
            results["lidar"], lines = run_lidar(args.draws, args.threads)
            md += lines
        if args.chain:
            results["chain"], lines = run_chain(_pairs(args.chain, "--chain"), Path(tmp))
            md += lines
        if args.demo:
            results["demo"], lines = run_demo(args.demo, Path(tmp))
            md += lines
    results["sensitivity"], lines = sensitivity(results)
    md += lines
    OUT.mkdir(exist_ok=True)
    (OUT / f"{args.out_name}.json").write_text(json.dumps(_finite(results), indent=2, default=str) + "\n")
    (OUT / f"{args.out_name}.md").write_text("\n".join(md) + "\n")
    print(f"written {OUT / args.out_name}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
