"""Figures: every declared figure is written (PNG + PDF + marker), with and without a reference."""

from __future__ import annotations

import numpy as np
from rasterio.transform import from_origin

from sat2lod.figures import FIGURES, hillshade, make_figures, read_benchmarks
from sat2lod.io.raster import write_raster


def test_hillshade_lights_the_sun_facing_slope():
    x = np.tile(np.arange(50, dtype=float), (50, 1))
    east_up = hillshade(x, 1.0)  # rises to the east: faces west, lit by a NW sun
    west_up = hillshade(x[:, ::-1], 1.0)
    assert np.nanmean(east_up) > np.nanmean(west_up)


def test_make_figures_writes_every_figure(tmp_path):
    tr = from_origin(500000.0, 4800100.0, 1.0, 1.0)
    dsm = np.full((60, 60), 150.0, np.float32)
    dsm[10:30, 10:40] = 160.0
    write_raster(
        tmp_path / "dsm.tif", dsm, tr, 32631, nodata=float("nan"), tags={"VERTICAL_DATUM": "ellipsoid"}
    )
    write_raster(tmp_path / "ref.tif", dsm + 0.5, tr, 32631, nodata=float("nan"))
    bench = tmp_path / "benchmarks" / "dtm"
    bench.mkdir(parents=True)
    (bench / "demo.tsv").write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t100\n")
    pngs = {n: tmp_path / "fig" / f"{n}.png" for n in FIGURES}
    written = make_figures(
        tmp_path / "dsm.tif",
        pngs,
        tmp_path / "fig" / "figures.pdf",
        tmp_path / "fig" / "done.txt",
        ref_dsm=tmp_path / "ref.tif",
        benchmarks=tmp_path / "benchmarks",
        dpi=60,
    )
    assert len(written) == len(FIGURES) + 1
    for p in written:
        assert p.exists() and p.stat().st_size > 1000
    assert (tmp_path / "fig" / "figures.pdf").read_bytes()[:4] == b"%PDF"
    assert (tmp_path / "fig" / "done.txt").read_text().splitlines() == [str(p) for p in written]
    assert read_benchmarks(tmp_path / "benchmarks") == {"dtm": 12.5}


def test_read_benchmarks_from_the_declared_files(tmp_path):
    """Rule figures passes its declared benchmark inputs: only those count (not another AOI's files)."""
    rows = "s\th:m:s\tmax_rss\n{}\t0:00:01\t100\n"
    files = {
        "benchmarks/dtm/a.tsv": 2.0,
        "benchmarks/stereo_tile/a/t0000_0000.tsv": 3.0,
        "benchmarks/stereo_tile/a/t0000_0001.tsv": 4.0,
        "benchmarks/dtm/b.tsv": 100.0,  # another AOI: not declared, not read
    }
    for rel, s in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rows.format(s))
    declared = [tmp_path / rel for rel in list(files)[:3]]
    assert read_benchmarks(declared) == {"dtm": 2.0, "stereo_tile": 7.0}
    assert read_benchmarks(tmp_path / "benchmarks") == {"dtm": 102.0, "stereo_tile": 7.0}
