"""Issue-6 metrics of the LOD stages on the synthetic demo city, from truth-derived inputs.

The stereo/segmentation stages are replaced by controlled degradations of the exact truth so that the
LOD0/LOD1/LOD2 stages are measured on their own (the end-to-end demo numbers come from rule qualify):

- ``exact``: truth building mask, truth DSM/DTM/nDSM (0.5 m);
- ``stereo-like``: DSM = truth blurred (Gaussian, sigma 1 px) + spatially correlated noise (RMS 0.3 m),
  mask boundary pixels flipped with probability 0.3, DTM = truth + 0.1 m noise.

Each case runs the file-level entry points (run_lod0, run_lod1, run_lod2, sat2lod.qualify.qualify) like the
rules do, with the config section the rules pass taken from the schema's defaults (``lod_section``), then
reports the targets of issue 6 (C-IoU >= 0.80, PoLiS <= 1 m, N-ratio <= 1.2, LOD1 height RMSE <= 1 m like for
like, beside the errors against the mean roof height and the ridge, roof-type accuracy >= 90 %),
ridge height error, shared walls, and the wall time of each stage.

Run:  python bench/lod_metrics.py [--seed 7]
Writes bench/results/lod_metrics.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from lod_common import city_truth

from sat2lod.io.raster import write_raster
from sat2lod.io.vector import write_vector
from sat2lod.lod.pipeline import run_lod0, run_lod1, run_lod2
from sat2lod.qualify import qualify
from sat2lod.schema import defaults

OUT = Path(__file__).parent / "results"


def lod_section() -> dict:
    """Config section ``lod`` of a default config (the schema's defaults), which rules/lod.smk passes whole to
    run_lod0 / run_lod1 / run_lod2: the bench runs what a default config runs (no ortho here: the ortho-cue
    parameters have no effect without one)."""
    return defaults("lod")


def degrade(c: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(0, 1, c["dsm"].shape), 1.5)
    noise *= 0.3 / noise.std()
    dsm = ndimage.gaussian_filter(c["dsm"].astype(float), 1.0) + noise
    dtm = c["dtm"] + rng.normal(0, 0.1, c["dtm"].shape)
    m = c["mask"].astype(bool)
    edge = m ^ ndimage.binary_erosion(m) | (ndimage.binary_dilation(m) & ~m)
    flip = edge & (rng.random(m.shape) < 0.3)
    mask = np.where(flip, ~m, m).astype(np.uint8)
    return {"dsm": dsm.astype(np.float32), "dtm": dtm.astype(np.float32), "mask": mask}


def run_case(name: str, c: dict, inputs: dict, work: Path) -> dict:
    tr, crs = c["transform"], 32631
    tags = {"VERTICAL_DATUM": "WGS84 ellipsoid (synthetic)"}
    d = work / name
    write_raster(d / "mask.tif", inputs["mask"], tr, crs, nodata=255)
    write_raster(d / "dsm.tif", inputs["dsm"], tr, crs, nodata=float("nan"), tags=tags)
    write_raster(d / "dtm.tif", inputs["dtm"], tr, crs, nodata=float("nan"), tags=tags)
    write_raster(d / "ndsm.tif", inputs["dsm"] - inputs["dtm"], tr, crs, nodata=float("nan"), tags=tags)
    times = {}
    lod = lod_section()
    t = time.perf_counter()
    run_lod0(d / "mask.tif", d / "ndsm.tif", d / "fp.gpkg", d / "fp.fgb", lod=lod)
    times["lod0"] = time.perf_counter() - t
    t = time.perf_counter()
    run_lod1(
        d / "fp.gpkg",
        d / "dtm.tif",
        d / "ndsm.tif",
        d / "lod1.json",
        cityjsonseq=d / "lod1.jsonl",
        lod=lod,
    )
    times["lod1"] = time.perf_counter() - t
    t = time.perf_counter()
    run_lod2(
        d / "fp.gpkg",
        d / "dsm.tif",
        d / "dtm.tif",
        d / "lod2.json",
        d / "lod2.obj",
        cityjsonseq=d / "lod2.jsonl",
        lod=lod,
    )
    times["lod2"] = time.perf_counter() - t
    t = time.perf_counter()
    res = qualify(
        d / "dsm.tif",
        d / "dtm.tif",
        d / "fp.gpkg",
        d / "lod1.json",
        d / "lod2.json",
        ref_dsm=work / "ref_dsm.tif",
        ref_dtm=work / "ref_dtm.tif",
        ref_classes=work / "classes.tif",
        ref_buildings=work / "buildings.gpkg",
        out_json=d / "accuracy.json",
        out_md=d / "accuracy.md",
    )
    times["qualify"] = time.perf_counter() - t
    out = json.loads((d / "accuracy.json").read_text())
    out["seconds"] = {k: round(v, 2) for k, v in times.items()}
    out["accuracy_md"] = (d / "accuracy.md").read_text()
    del res
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    c = city_truth(seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tr = c["transform"]
        write_raster(work / "ref_dsm.tif", c["dsm"], tr, 32631, nodata=float("nan"))
        write_raster(work / "ref_dtm.tif", c["dtm"], tr, 32631, nodata=float("nan"))
        write_raster(work / "classes.tif", c["classes"], tr, 32631, nodata=255)
        rows = [
            {
                "id": b.id,
                "height": b.ridge,
                "eave_height": b.eave,
                "ridge_height": b.ridge,
                "roof_type": b.roof_type,
                "ground_height": b.ground,
                "kind": b.kind,
                "geometry": b.footprint,
            }
            for b in c["buildings"]
        ]
        write_vector(work / "buildings.gpkg", gpd.GeoDataFrame(rows, crs=32631), layer="buildings")
        cases = {
            "exact": {"dsm": c["dsm"], "dtm": c["dtm"], "mask": c["mask"]},
            "stereo-like": degrade(c, args.seed),
        }
        results = {name: run_case(name, c, inp, work) for name, inp in cases.items()}
    md = [
        f"# LOD stages on the synthetic demo city (seed {args.seed}, 600 m, {len(c['buildings'])} buildings)",
        "",
        "Inputs derived from the exact truth (see the module docstring); metrics from sat2lod.qualify.",
        "",
        (
            "| case | matched | C-IoU | PoLiS (m) | N-ratio | Hausdorff (m) | CE90 (m) | walls kept | LOD1 height RMSE (m): "
            "like for like / vs mean roof / vs ridge | roof-type acc. | ridge RMSE (m) | DSM class (NVA) | lod0/lod1/lod2 (s) |"
        ),
        "|" + "---|" * 13,
    ]
    for name, r in results.items():
        b = r["buildings"]
        f = b["footprints"]
        s = r["seconds"]
        md.append(
            f"| {name} | {f['n_matched']}/{f['n_ref']} | {f['ciou_mean']:.3f} | {f['polis_mean_m']:.3f} | "
            f"{f['n_ratio']:.3f} | {f['hausdorff_mean_m']:.3f} | {f['ce90_m']:.3f} | "
            f"{b['shared_walls']['kept_shared']} ({b['shared_walls']['pairs']} pairs) | "
            f"{b['lod1']['height_error']['rmse']:.3f} / {b['lod1']['height_error_vs_mean_roof']['rmse']:.3f} / "
            f"{b['lod1']['height_error_vs_ridge']['rmse']:.3f} | {b['lod2']['roof_type_accuracy']:.3f} | "
            f"{b['lod2']['ridge_height_error']['rmse']:.3f} | {r['dsm']['nva']['class']} | "
            f"{s['lod0']}/{s['lod1']}/{s['lod2']} |"
        )
    md += [
        "",
        (
            "LOD1 reference heights: like for like = the block's own rule (90th percentile of the nDSM over the "
            "footprint shrunk by 0.5 m) applied to the truth nDSM inside the truth footprint (the target is "
            "checked on it); vs mean roof = mean truth nDSM there; vs ridge = the truth's ridge height."
        ),
        "",
        "Targets per case:",
        "",
    ]
    for name, r in results.items():
        md.append(
            f"- {name}: "
            + ", ".join(
                f"{k} {v['value']} ({v['target']}: {'met' if v['met'] else 'NOT met'})"
                for k, v in r["targets"].items()
            )
        )
    (OUT / "lod_metrics.json").write_text(
        json.dumps(
            {k: {kk: vv for kk, vv in v.items() if kk != "accuracy_md"} for k, v in results.items()}, indent=2
        )
    )
    (OUT / "lod_metrics.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
