"""Benchmark: LOD1 / LOD2 over the whole AOI vs per tile (issue 16): peak RSS and CPU of every job, and whether
the merged city models equal the untiled ones.

Inputs: finished runs of ``bench/scaling_chain.py`` (``--runs DIR ...``; each holds the products of one synthetic
city: footprints, DTM, nDSM, DSM, ortho and the tiling checkpoint of the demo configuration, 300 m tiles, 0.5 m).
For each run:
- untiled: ``run_lod1`` and ``run_lod2`` (with the ortho), one process each (the former rules lod1 and lod2);
- tiled: ``lod1_tile`` per tile + ``merge_city`` (rules lod1_tile, lod1); ``lod2_noise_tile`` per tile,
  ``lod2_scene``, ``lod2_tile`` per tile, ``merge_city`` (rules lod2_noise_tile, lod2_scene, lod2_tile, lod2);
each job a process of its own, measured by GNU time (``bench/measure.py``). Outputs go to a temporary folder.

Usage: python bench/lod_city_tiled.py --runs bench/out/scaling_chain/scaling_chain/600 ... [--name lod_city_tiled]
-> bench/results/<name>.json and .md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import REPO, run_measured


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _lit(v: object) -> str:
    """Python literal of an argument (paths as strings)."""
    if isinstance(v, Path):
        return repr(str(v))
    if isinstance(v, list):
        return "[" + ", ".join(_lit(x) for x in v) + "]"
    return repr(v)


def _call(fn: str, module: str, *args: object, **kw: object) -> dict:
    a = [_lit(x) for x in args] + [f"{n}={_lit(v)}" for n, v in kw.items()]
    return run_measured(_py(f"from {module} import {fn}; {fn}({', '.join(a)})"))


def _jobs(jobs: list[dict]) -> dict:
    return {
        "n": len(jobs),
        "peak_rss_mb_max": max(j["peak_rss_mb"] for j in jobs),
        "cpu_s_sum": round(sum(j["cpu_s"] for j in jobs), 2),
    }


def bench_run(run: Path) -> dict:
    """Untiled and tiled LOD1 / LOD2 on the products of one scaling_chain run."""
    aoi = next((run / "results" / "lod0").iterdir()).name
    r = run / "results"
    fp, tiles = r / "lod0" / aoi / "footprints.gpkg", r / "tiles" / aoi / "tiles.geojson"
    dtm, ndsm = r / "terrain" / aoi / "dtm.tif", r / "terrain" / aoi / "ndsm.tif"
    dsm, ortho = r / "mosaic" / aoi / "dsm.tif", r / "ortho" / aoi / "ortho.tif"
    ids = [f["properties"]["tile"] for f in json.loads(tiles.read_text())["features"]]
    pipe, tc = "sat2lod.lod.pipeline", "sat2lod.lod.tiled_city"
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        out: dict = {"aoi": aoi, "tiles": len(ids)}
        out["run_lod1"] = _call("run_lod1", pipe, fp, dtm, ndsm, d / "l1.json", title="T1")
        out["run_lod2"] = _call(
            "run_lod2", pipe, fp, dsm, dtm, d / "l2.json", d / "l2.obj", ortho=ortho, title="T2"
        )
        out["lod1_tile"] = _jobs(
            [_call("lod1_tile", tc, fp, dtm, ndsm, tiles, t, d / f"l1_{t}.jsonl") for t in ids]
        )
        parts1 = [d / f"l1_{t}.jsonl" for t in ids]
        out["lod1"] = _call("merge_city", tc, parts1, d / "m1.json", title="T1")
        out["lod2_noise_tile"] = _jobs(
            [_call("lod2_noise_tile", tc, fp, dsm, tiles, t, d / f"n_{t}.json") for t in ids]
        )
        noise = [d / f"n_{t}.json" for t in ids]
        out["lod2_scene"] = _call("lod2_scene", tc, noise, fp, dsm, dtm, d / "scene.json", ortho=ortho)
        out["lod2_tile"] = _jobs(
            [
                _call(
                    "lod2_tile",
                    tc,
                    fp,
                    dsm,
                    dtm,
                    tiles,
                    t,
                    d / "scene.json",
                    d / f"l2_{t}.jsonl",
                    ortho=ortho,
                )
                for t in ids
            ]
        )
        parts2 = [d / f"l2_{t}.jsonl" for t in ids]
        out["lod2"] = _call("merge_city", tc, parts2, d / "m2.json", obj=d / "m2.obj", title="T2")
        doc = json.loads((d / "l2.json").read_text())
        out["buildings_lod1"] = len(json.loads((d / "l1.json").read_text())["CityObjects"])
        out["buildings_lod2"] = len(doc["CityObjects"])
        out["lod1_identical"] = (d / "l1.json").read_bytes() == (d / "m1.json").read_bytes()
        out["lod2_identical"] = (d / "l2.json").read_bytes() == (d / "m2.json").read_bytes()
        out["obj_identical"] = (d / "l2.obj").read_bytes() == (d / "m2.obj").read_bytes()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=Path, nargs="+", required=True)
    ap.add_argument("--name", default="lod_city_tiled")
    args = ap.parse_args()
    rows = []
    for run in args.runs:
        rows.append(bench_run(run))
        print(json.dumps(rows[-1]), flush=True)
    res = {
        "command": "python bench/lod_city_tiled.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.0f}",
        "runs": rows,
    }
    out = REPO / "bench" / "results" / args.name
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [
        "# LOD1 / LOD2 over the whole AOI vs per tile (issue 16)",
        "",
        f"- command: `{res['command']}`; {res['machine']}; peak RSS and CPU of each job by GNU time",
        "- inputs: the products of bench/scaling_chain.py runs (demo configuration: 300 m tiles, 0.5 m)",
        "- per-tile rules: max peak RSS over the tiles' jobs / CPU summed over them",
        "",
        "| city | tiles | buildings | job | peak RSS MB | CPU-s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        for job in (
            "run_lod1",
            "lod1_tile",
            "lod1",
            "run_lod2",
            "lod2_noise_tile",
            "lod2_scene",
            "lod2_tile",
            "lod2",
        ):
            j = r[job]
            rss = j.get("peak_rss_mb_max", j.get("peak_rss_mb"))
            cpu = j.get("cpu_s_sum", j.get("cpu_s"))
            lines.append(
                f"| {r['aoi']} | {r['tiles']} | {r['buildings_lod2']} | {job} | {rss:.0f} | {cpu:.1f} |"
            )
    lines += [
        "",
        "Merged == untiled, byte for byte: "
        + "; ".join(
            f"{r['aoi']}: city.json lod1 {r['lod1_identical']}, lod2 {r['lod2_identical']}, obj {r['obj_identical']}"
            for r in rows
        ),
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
