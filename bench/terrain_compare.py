"""DTM extraction: sat2lod.terrain vs CNES Bulldozer (bulldozer-dtm 1.3.1), side by side, same DSMs, same machine.

Cases (each: DSM -> DTM, compared with a reference DTM):
  hill_boxes      synthetic 200 m scene: Gaussian hill (16 m) on a tilted plane + 25 flat boxes, 0.3 m noise
  ign_montpellier real IGN LiDAR HD tile (../shared/data/ign_lidarhd_montpellier_tiles): ref DSM -> ref DTM
  synth_city_sN   synthetic city (sat2lod.synth.generate_city, seed N): truth DSM -> truth DTM, and the same DSM
                  with stereo-like defects (0.5 m noise, 1 % pits/spikes, 2 % holes) ("_noisy")

Metrics on cells where the reference is valid: RMSE, NMAD, mean (bias), p95 |error|, and RMSE on "object" cells
(reference nDSM > 1 m: the terrain under buildings/trees) and on "ground" cells; wall time of the DTM call.
Bulldozer runs through its Python API (``dsm_to_dtm``) with the same max object size and 1 worker (ours is
single-threaded); it needs ``pip install bulldozer-dtm==1.3.1`` (we ran it from a venv with
``--system-site-packages``), otherwise its rows are skipped with the reason.

Usage:
  python bench/terrain_compare.py [--cities 11 12] [--city-size 400] [--out bench/results/terrain_compare]
Writes <out>.json and <out>.md.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rasterio.transform import from_origin
from scipy import ndimage

import sat2lod
from sat2lod.io.raster import read_raster, write_raster
from sat2lod.terrain import DTMParams, extract_dtm

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def hill_boxes(n: int = 400, res: float = 0.5, seed: int = 0, noise: float = 0.3):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n] * res
    c = n * res / 2
    dtm = 100 + 16 * np.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * (n * res / 4) ** 2)) + 0.02 * x
    dsm = dtm.copy()
    for _ in range(25):
        w, h = rng.uniform(8, 40, 2)
        x0, y0 = rng.uniform(0, n * res - 40, 2)
        m = (x >= x0) & (x < x0 + w) & (y >= y0) & (y < y0 + h)
        dsm[m] = np.maximum(dsm[m], dtm[m].min() + rng.uniform(4, 25))
    dsm = dsm + rng.normal(0, noise, dsm.shape)
    return dsm.astype(np.float32), dtm.astype(np.float32), res


def stereo_defects(dsm: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = dsm + rng.normal(0, 0.5, dsm.shape).astype(np.float32)
    spikes = rng.random(dsm.shape) < 0.01
    out[spikes] += rng.choice([-1, 1], spikes.sum()) * rng.uniform(3, 15, spikes.sum())
    holes = ndimage.binary_dilation(rng.random(dsm.shape) < 0.0005, iterations=4)
    out[holes] = np.nan
    return out.astype(np.float32)


def metrics(dtm: np.ndarray, ref: np.ndarray, dsm: np.ndarray) -> dict:
    ok = np.isfinite(ref) & np.isfinite(dtm)
    e = (dtm - ref)[ok]
    if e.size == 0:  # the method returned no valid cell
        nan = float("nan")
        return {
            "rmse": nan,
            "nmad": nan,
            "mean": nan,
            "p95_abs": nan,
            "rmse_objects": nan,
            "rmse_ground": nan,
            "coverage": 0.0,
            "object_fraction": nan,
        }
    obj = ((dsm - ref) > 1.0)[ok] & np.isfinite(dsm)[ok]

    def rmse(v):
        return float(np.sqrt(np.mean(v**2))) if v.size else float("nan")

    return {
        "rmse": rmse(e),
        "nmad": float(1.4826 * np.median(np.abs(e - np.median(e)))),
        "mean": float(e.mean()),
        "p95_abs": float(np.percentile(np.abs(e), 95)),
        "rmse_objects": rmse(e[obj]),
        "rmse_ground": rmse(e[~obj]),
        "coverage": float(ok.mean()),
        "object_fraction": float(obj.mean()),
    }


def run_ours(dsm: np.ndarray, res: float, max_obj: float, **kw) -> tuple[np.ndarray, float]:
    extract_dtm(dsm[:64, :64], res, DTMParams(max_object_size_m=8.0))  # JIT warm-up outside the timing
    t = time.perf_counter()
    out = extract_dtm(dsm, res, DTMParams(max_object_size_m=max_obj, **kw))
    return out, time.perf_counter() - t


def run_bulldozer(
    dsm: np.ndarray, res: float, max_obj: float, work: Path
) -> tuple[np.ndarray | None, float, str]:
    try:
        from bulldozer.pipeline.bulldozer_pipeline import dsm_to_dtm
    except ImportError as exc:
        return None, float("nan"), f"bulldozer-dtm not importable ({exc})"
    work.mkdir(parents=True, exist_ok=True)
    src = work / "dsm.tif"
    write_raster(
        src, np.nan_to_num(dsm, nan=-32768.0), from_origin(500000, 4800000, res, res), 32631, nodata=-32768.0
    )
    t = time.perf_counter()
    dsm_to_dtm(dsm_path=str(src), output_dir=str(work / "out"), max_object_size=max_obj, nb_max_workers=1)
    dt = time.perf_counter() - t
    r = read_raster(work / "out" / "dtm.tif", bands=1, masked_to_nan=True)
    return r.array.astype(np.float32), dt, "ok"


def cases(city_seeds: list[int], city_size: float, tmp: Path):
    dsm, dtm, res = hill_boxes()
    yield "hill_boxes", dsm, dtm, res, 40.0
    ign = SHARED / "ign_lidarhd_montpellier_tiles"
    if ign.is_dir():
        d = read_raster(
            ign / "ref_DSM_test_data_77055_627760_LA93_IGN69_50CM.tif", bands=1, masked_to_nan=True
        )
        t = read_raster(
            ign / "ref_DTM_test_data_77055_627760_LA93_IGN69_50CM.tif", bands=1, masked_to_nan=True
        )
        yield "ign_montpellier", d.array.astype(np.float32), t.array.astype(np.float32), 0.5, 40.0
    for s in city_seeds:
        try:
            from sat2lod.synth import generate_city
        except ImportError:
            print("sat2lod.synth not available: synthetic city cases skipped", file=sys.stderr)
            return
        city = tmp / f"city_{s}"
        generate_city(city, seed=s, size_m=city_size, n_views=2, gsd_m=0.5)
        d = read_raster(city / "truth" / "dsm.tif", bands=1, masked_to_nan=True).array.astype(np.float32)
        t = read_raster(city / "truth" / "dtm.tif", bands=1, masked_to_nan=True).array.astype(np.float32)
        yield f"synth_city_s{s}", d, t, 0.5, 64.0
        yield f"synth_city_s{s}_noisy", stereo_defects(d, s), t, 0.5, 64.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cities", type=int, nargs="*", default=[11])
    ap.add_argument("--city-size", type=float, default=400.0)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "terrain_compare"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        for name, dsm, ref, res, max_obj in cases(args.cities, args.city_size, tmp):
            base = {"case": name, "shape": list(dsm.shape), "case_max_object_m": max_obj}
            # each tool at its own default max object size, and both at the case's size
            for label, mo in (
                (f"sat2lod (default {DTMParams().max_object_size_m:g} m)", DTMParams().max_object_size_m),
                (f"sat2lod ({max_obj:g} m)", max_obj),
            ):
                ours, t_ours = run_ours(dsm, res, mo)
                rows.append({**base, "method": label, "seconds": t_ours, **metrics(ours, ref, dsm)})
            for label, mo in (
                ("bulldozer-dtm 1.3.1 (default 16 m)", 16.0),
                (f"bulldozer-dtm 1.3.1 ({max_obj:g} m)", max_obj),
            ):
                bd, t_bd, status = run_bulldozer(dsm, res, mo, tmp / f"bd_{name}_{mo:g}")
                if bd is not None and not np.isfinite(bd).any():
                    status = "ran, but no valid output cell (all nodata)"
                row = {**base, "method": label, "seconds": t_bd, "status": status}
                if bd is not None:
                    row.update(metrics(bd, ref, dsm))
                rows.append(row)
            rows.append(
                {**base, "method": "DSM as DTM (no filtering)", "seconds": 0.0, **metrics(dsm, ref, dsm)}
            )
            print(json.dumps(rows[-5:], default=float), flush=True)
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "sat2lod": sat2lod.__version__,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps({"env": env, "rows": rows}, indent=2, default=float) + "\n"
    )
    lines = [
        "# DTM extraction: sat2lod.terrain vs bulldozer-dtm 1.3.1",
        "",
        (
            f"`python bench/terrain_compare.py --cities {' '.join(map(str, args.cities))} --city-size {args.city_size}`"
            f" ({env['date_utc']}, {env['platform']}). Errors in metres vs the reference DTM; time = wall seconds "
            "of the DTM call (1 worker each, shared 2-core machine)."
        ),
        "",
        "| case | method | RMSE | NMAD | bias | p95 abs | RMSE under objects | RMSE ground | s | time / sat2lod default |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base_t = {r["case"]: r["seconds"] for r in rows if r["method"].startswith("sat2lod (default")}
    for r in rows:
        if "rmse" not in r or r.get("coverage") == 0.0:
            lines.append(f"| {r['case']} | {r['method']} | {r.get('status')} | | | | | | | |")
            continue
        ratio = r["seconds"] / base_t[r["case"]] if r["seconds"] and base_t[r["case"]] else math.nan
        lines.append(
            f"| {r['case']} | {r['method']} | {r['rmse']:.3f} | {r['nmad']:.3f} | {r['mean']:+.3f} | "
            f"{r['p95_abs']:.3f} | {r['rmse_objects']:.3f} | {r['rmse_ground']:.3f} | {r['seconds']:.2f} | "
            f"{ratio:.2f} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
