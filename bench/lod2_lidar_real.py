"""LOD0 + LOD2 on real roofs: IGN LiDAR HD point clouds as the DSM.

Two real datasets of ../shared/data: ``montpellier`` (six 50 m tiles over a built-up area of Montpellier, touching
buildings and complex roofs; ign_lidarhd_montpellier_tiles) and ``eastern_france`` (a 100 m x 62 m village
subset with the BD TOPO footprints; ign_lidarhd_bdtopo_buildings).

The LiDAR gives real roof shapes (pitched, hipped, cross-gabled, dormers) with a DSM far better than stereo,
so the LOD stages are measured on real buildings on their own:

- DSM: highest return per 0.5 m cell (every class but noise), empty cells filled from the nearest cell;
  DTM: ground returns (class 2) interpolated linearly (nearest beyond their hull); nDSM = DSM - DTM;
- building mask: cells holding a building return (class 6, validated by IGN), closed by one cell;
- run_lod0 (mask + nDSM) and run_lod2 (DSM, DTM) as the rules run them, heights IGN69 (NGF altitudes);
- reference: the building returns themselves, the highest of each 0.5 m cell where that is a building
  return (class 6; lower returns hit walls or pass under eaves). For every LOD2 building, each such return
  inside its footprint shrunk by 0.5 m (off the walls) is compared with the roof surface above it (the
  CityJSON RoofSurface polygon it falls in): residual = LiDAR z - model z. Reported per roof type: buildings, RMSE and
  NMAD pooled over the returns, share within 0.5 m, and the same against the LOD1 block (one height) as a
  peer; footprints against the BD TOPO polygons where given (an approximate reference: database offsets,
  overhangs).

The DSM and the reference come from the same returns: this measures how faithfully the LOD2 model represents
real roof surfaces (model fidelity; the 0.5 m gridding and the modelling are the only error sources), not the
accuracy of a DSM; the stereo chain's accuracy is measured by rule qualify and bench/stereo_accuracy.py.

Run:  python bench/lod2_lidar_real.py     (pip install -e .[bench]; needs ../shared/data)
Writes bench/results/lod2_lidar_real.json and .md.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from sat2lod.io.raster import write_raster
from sat2lod.lod.metrics import match
from sat2lod.lod.pipeline import run_lod0, run_lod1, run_lod2

sys.path.insert(0, str(Path(__file__).parent))
from lidar_grid import DATA, DATASETS, EPSG, RES, rasters, read_points, top_building_returns

OUT = Path(__file__).parent / "results"


def roof_surfaces(doc: dict) -> dict[str, list[tuple[shapely.Polygon, np.ndarray]]]:
    """Per building id: (2D polygon, plane (a, b, c) with z = a + b x + c y) of each RoofSurface."""
    v = np.asarray(doc["vertices"], float) * doc["transform"]["scale"] + doc["transform"]["translate"]
    out: dict[str, list] = {}
    for oid, o in doc["CityObjects"].items():
        g = o["geometry"][0]
        sem = g["semantics"]
        for surf, val in zip(g["boundaries"][0], sem["values"][0]):
            if sem["surfaces"][val]["type"] != "RoofSurface":
                continue
            ring = v[surf[0]]
            a = np.column_stack([np.ones(len(ring)), ring[:, 0], ring[:, 1]])
            plane = np.linalg.lstsq(a, ring[:, 2], rcond=None)[0]
            poly = shapely.Polygon(ring[:, :2], [v[r][:, :2] for r in surf[1:]])
            out.setdefault(oid, []).append((shapely.make_valid(poly), plane))
    return out


def residuals(doc_lod2: dict, doc_lod1: dict, fp: gpd.GeoDataFrame, pts: dict) -> list[dict]:
    """Per building: the roof surface returns (:func:`top_building_returns`) inside the footprint (shrunk
    0.5 m) minus the LOD2 roof and the LOD1 block top."""
    roofs = roof_surfaces(doc_lod2)
    bx, by, bz = top_building_returns(pts)
    rows = []
    for fid, geom in zip(fp["id"], fp.geometry):
        oid = f"b{int(fid)}"
        if oid not in roofs or oid not in doc_lod1["CityObjects"]:
            continue
        inside = shapely.contains_xy(geom.buffer(-0.5), bx, by)
        if inside.sum() < 20:
            continue
        px, py, pz = bx[inside], by[inside], bz[inside]
        zm = np.full(len(pz), np.nan)
        for poly, (a, bb, cc) in roofs[oid]:
            sel = np.isnan(zm) & shapely.contains_xy(poly.buffer(1e-6), px, py)
            zm[sel] = a + bb * px[sel] + cc * py[sel]
        ok = np.isfinite(zm)
        attrs1 = doc_lod1["CityObjects"][oid]["attributes"]
        top1 = attrs1["ground_height"] + attrs1["height"]
        rows.append(
            {
                "id": oid,
                "roof_type": doc_lod2["CityObjects"][oid]["attributes"]["roof_type"],
                "area_m2": round(geom.area, 1),
                "n": int(ok.sum()),
                "r2": (pz[ok] - zm[ok]).tolist(),
                "r1": (pz - top1).tolist(),
            }
        )
    return rows


def stats(r: np.ndarray) -> dict:
    r = np.asarray(r, float)
    if len(r) == 0:
        return {"rmse": float("nan"), "nmad": float("nan"), "within_0.5m": float("nan")}
    return {
        "rmse": round(float(np.sqrt(np.mean(r**2))), 3),
        "nmad": round(float(1.4826 * np.median(np.abs(r - np.median(r)))), 3),
        "within_0.5m": round(float(np.mean(np.abs(r) <= 0.5)), 3),
    }


def run_dataset(name: str, files: list[Path], ref_path: Path | None) -> tuple[dict, list[str]]:
    pts = read_points(files)
    r = rasters(pts)
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for k in ("dsm", "dtm", "ndsm"):
            write_raster(d / f"{k}.tif", r[k], r["transform"], EPSG, nodata=float("nan"))
        write_raster(d / "mask.tif", r["mask"], r["transform"], EPSG, nodata=255)
        t0 = time.perf_counter()
        # min_edge_m 1.5 m: LiDAR masks are clean (the schema's 2.5 m is tuned for stereo masks and says
        # 1-1.5 m for LiDAR); the recorded results were measured with it
        fp = run_lod0(d / "mask.tif", d / "ndsm.tif", d / "fp.gpkg", lod={"min_edge_m": 1.5})
        times["lod0"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        lod1 = run_lod1(d / "fp.gpkg", d / "dtm.tif", d / "ndsm.tif", d / "lod1.json")
        times["lod1"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        lod2 = run_lod2(d / "fp.gpkg", d / "dsm.tif", d / "dtm.tif", d / "lod2.json")
        times["lod2"] = time.perf_counter() - t0
    rows = residuals(lod2, lod1, fp, pts)
    res = {
        "files": [f.name for f in files],
        "returns": len(pts["z"]),
        "grid": [int(v) for v in r["dsm"].shape],
        "footprints": len(fp),
        "seconds": {k: round(v, 2) for k, v in times.items()},
    }
    ref_txt = ""
    if ref_path is not None:
        ref = gpd.read_file(ref_path).to_crs(EPSG)
        ext = shapely.box(pts["x"].min(), pts["y"].min(), pts["x"].max(), pts["y"].max())
        ref = ref[ref.geometry.within(ext)]
        pairs = match(list(fp.geometry), [shapely.force_2d(g) for g in ref.geometry])
        res |= {
            "bdtopo_within_extent": len(ref),
            "bdtopo_matched": len(pairs),
            "bdtopo_iou_mean": round(float(np.mean([p[2] for p in pairs])), 3) if pairs else None,
        }
        ref_txt = (
            f"; {len(pairs)} of the {len(ref)} BD TOPO polygons inside the LiDAR extent matched (IoU >= 0.5), "
            f"mean IoU {res['bdtopo_iou_mean']} (BD TOPO is an approximate reference)"
        )
    types = sorted({row["roof_type"] for row in rows})
    table = []
    for t in types + ["all"]:
        sel = [row for row in rows if t in ("all", row["roof_type"])]
        r2 = np.concatenate([row["r2"] for row in sel]) if sel else np.array([])
        r1 = np.concatenate([row["r1"] for row in sel]) if sel else np.array([])
        per = [stats(row["r2"])["rmse"] for row in sel]
        table.append(
            {
                "roof_type": t,
                "buildings": len(sel),
                "returns": len(r2),
                "lod2": stats(r2),
                "lod1": stats(r1),
                "median_building_rmse_lod2": round(float(np.median(per)), 3) if per else None,
            }
        )
    res |= {
        "table": table,
        "buildings": [
            {k: v for k, v in row.items() if k not in ("r2", "r1")} | {"rmse_lod2": stats(row["r2"])["rmse"]}
            for row in rows
        ],
    }
    md = [
        f"## {name}",
        "",
        (
            f"{len(files)} LAZ file(s), {res['returns']} returns, grid {res['grid'][0]} x {res['grid'][1]} at {RES} m. "
            f"run_lod0 on the class-6 mask: {res['footprints']} footprints{ref_txt}. Times: lod0 {res['seconds']['lod0']} s, "
            f"lod1 {res['seconds']['lod1']} s, lod2 {res['seconds']['lod2']} s."
        ),
        "",
        (
            "| roof type | buildings | returns | LOD2 RMSE (m) | LOD2 NMAD (m) | LOD2 within 0.5 m | median building RMSE (m) "
            "| LOD1 RMSE (m) | LOD1 NMAD (m) | LOD1 within 0.5 m |"
        ),
        "|" + "---|" * 10,
    ]
    for row in table:
        a, b = row["lod2"], row["lod1"]
        md.append(
            f"| {row['roof_type']} | {row['buildings']} | {row['returns']} | {a['rmse']} | {a['nmad']} | "
            f"{a['within_0.5m']} | {row['median_building_rmse_lod2']} | {b['rmse']} | {b['nmad']} | "
            f"{b['within_0.5m']} |"
        )
    return res, md + [""]


def main() -> None:
    OUT.mkdir(exist_ok=True)
    results, md = (
        {},
        [
            "# LOD0 + LOD2 on real roofs: IGN LiDAR HD as the DSM",
            "",
            (
                "Lambert-93, IGN69 heights. Residuals = LiDAR roof returns (highest return of each 0.5 m cell, "
                "class 6) inside each footprint shrunk by 0.5 m minus the model surface above them; the LOD1 block (one height per building) "
                "is the peer."
            ),
            "",
        ],
    )
    for name, (files, ref) in DATASETS.items():
        if not files or not all(f.exists() for f in files):
            print(
                f"{name}: skipped, LAZ files not found under {DATA} (../shared/data is not beside the repository)"
            )
            continue
        results[name], lines = run_dataset(name, files, ref)
        md += lines
    if not results:
        return
    (OUT / "lod2_lidar_real.json").write_text(json.dumps(results, indent=2))
    (OUT / "lod2_lidar_real.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    sys.exit(main())
