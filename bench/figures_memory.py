"""Benchmark: rule figures' function on growing areas (issue 16): peak RSS and CPU, streamed vs whole arrays.

The scenes are those of bench/qualify_memory.py (synthetic truth, 100 buildings per 0.36 km², written strip by
strip; products = truth + noise; an LOD1 model of the buildings as CityJSONSeq), the DSM also standing in for
the ortho. Each run is its own process under GNU time (bench/measure.py):

- streamed: ``sat2lod.figures.make_figures`` of this tree (rasters sampled block by block, errors streamed
  into running statistics, the LOD2 rendering read from the CityJSONSeq one line at a time);
- whole: the same function at ``--base`` (default: the commit before the change), which reads every raster
  whole and computes the errors on whole arrays; run without the LOD2 model (that version reads a whole
  CityJSON document, which these scenes do not write), so its figure understates that version's memory.

Usage: python bench/figures_memory.py [--sizes 600 1200 2400] [--base REV] [--name figures_memory]
Writes bench/results/<name>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from measure import REPO, run_measured
from qualify_memory import _scene

DEFAULT_BASE = "954c231"


def _code(d: Path, with_lod2: bool) -> str:
    lod2 = "d + '/lod1.jsonl'" if with_lod2 else "None"
    return (
        "from sat2lod.figures import FIGURES, make_figures; "
        f"d = {str(d)!r}; "
        "make_figures(d + '/dsm.tif', {n: d + f'/fig/{n}.png' for n in FIGURES}, d + '/fig/f.pdf', "
        "d + '/fig/done.txt', dtm=d + '/dtm.tif', ortho=d + '/dsm.tif', footprints=d + '/fp.gpkg', "
        f"lod2={lod2}, ref_dsm=d + '/ref_dsm.tif', ref_dtm=d + '/ref_dtm.tif', benchmarks=d + '/bench', dpi=60)"
    )


def _base_src(rev: str, dest: Path) -> Path:
    """``src/`` of commit ``rev`` extracted into ``dest``."""
    data = subprocess.run(["git", "archive", rev, "src"], cwd=REPO, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def _measured(cmd: list[str], src: Path | None) -> dict:
    if src is None:
        return run_measured(cmd)
    # run_measured puts this tree's src first on PYTHONPATH; the base variant's own src goes before it
    code = cmd[-1]
    return run_measured([*cmd[:-1], f"import sys; sys.path.insert(0, {str(src)!r}); " + code])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=float, nargs="+", default=[600.0, 1200.0, 2400.0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--base", default=DEFAULT_BASE, help="commit of the whole-array variant")
    ap.add_argument("--whole-max-m", type=float, default=2400.0, help="whole-array run only up to this side")
    ap.add_argument("--name", default="figures_memory")
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as base_tmp:
        base_src = _base_src(args.base, Path(base_tmp))
        for size in args.sizes:
            with tempfile.TemporaryDirectory() as tmp:
                d = Path(tmp)
                n_buildings = _scene(d, size, args.seed)
                (d / "bench").mkdir()
                (d / "fig").mkdir()
                streamed = _measured([sys.executable, "-c", _code(d, True)], None)
                whole = None
                if size <= args.whole_max_m:
                    whole = _measured([sys.executable, "-c", _code(d, False)], base_src)
            km2 = (size / 1000.0) ** 2
            row = {"size_m": size, "km2": km2, "buildings": n_buildings, "streamed": streamed, "whole": whole}
            runs.append(row)
            print(json.dumps(row), flush=True)
    res = {
        "command": "python bench/figures_memory.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "base": args.base,
        "runs": runs,
    }
    out = REPO / "bench" / "results" / args.name
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [
        "# Rule figures' function vs area: streamed vs whole arrays (issue 16)",
        "",
        f"- command: `{res['command']}`; {res['machine']}; peak RSS and CPU of each run by GNU time",
        (
            "- scenes of bench/qualify_memory.py (100 buildings per 0.36 km², 0.5 m grid; products = truth + noise; "
            "the DSM as ortho); streamed = sat2lod.figures.make_figures of this tree with the LOD1 CityJSONSeq "
            f"rendered; whole = make_figures at {args.base} (whole rasters, whole error arrays), without the LOD2 "
            "model (that version reads a whole CityJSON document)"
        ),
        "",
        "| side (m) | km² | buildings | streamed: peak RSS MB / CPU-s | whole: peak RSS MB / CPU-s |",
        "|---|---|---|---|---|",
    ]
    for r in runs:
        s, w = r["streamed"], r["whole"]
        wt = f"{w['peak_rss_mb']:.0f} / {w['cpu_s']:.1f}" if w else "not run"
        lines.append(
            f"| {r['size_m']:.0f} | {r['km2']:.2f} | {r['buildings']} | {s['peak_rss_mb']:.0f} / {s['cpu_s']:.1f} | {wt} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
