"""Figures: every declared figure is written (PNG + PDF + marker), with and without a reference."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from rasterio.transform import from_origin
from shapely.geometry import box

from sat2lod.figures import (
    FIGURES,
    fig_accuracy_table,
    fig_hillshade,
    fig_lod2,
    fig_throughput,
    hillshade,
    make_figures,
    read_benchmarks,
)
from sat2lod.io.cityjson import CityBuilding, city_model
from sat2lod.io.raster import read_raster, write_raster
from sat2lod.lod.solid import build_solid


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
    (bench / "demo.tsv").write_text("s\th:m:s\tmax_rss\tcpu_time\n12.5\t0:00:12\t100\t3.5\n")
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
    assert read_benchmarks(tmp_path / "benchmarks", "cpu_time") == {"dtm": 3.5}


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


def test_maps_show_full_coordinates(tmp_path):
    tr = from_origin(500000.0, 4800100.0, 1.0, 1.0)
    write_raster(tmp_path / "dsm.tif", np.full((60, 60), 150.0, np.float32), tr, 32631, nodata=float("nan"))
    fig = fig_hillshade(read_raster(tmp_path / "dsm.tif"))
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.yaxis.get_offset_text().get_text() == "" and ax.xaxis.get_offset_text().get_text() == ""
    labels = [t.get_text().replace(",", "") for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all(len(lab) == 7 and lab.startswith("4800") for lab in labels), (
        labels
    )  # full northings
    assert "EPSG:32631" in ax.get_xlabel() and "northing" in ax.get_ylabel()
    plt.close(fig)


def test_accuracy_table_cells_hold_their_text():
    acc = {
        "buildings": {"lod2": {"roof_type_accuracy": 0.9, "roof_type_recall": 0.8, "ridge_height_error": {}}}
    }
    fig = fig_accuracy_table(acc)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    table = fig.axes[0].tables[0]
    for cell in table.get_celld().values():
        text, box_ = cell.get_text().get_window_extent(renderer), cell.get_window_extent(renderer)
        assert box_.x0 <= text.x0 and text.x1 <= box_.x1, cell.get_text().get_text()
    plt.close(fig)


def test_lod2_rendering_has_scale_bar_and_north_arrow():
    s = build_solid([box(0, 0, 10, 5)], [(108.0, 0.0, 0.0)], 100.0)
    doc = city_model([CityBuilding("b1", [(q.rings, q.semantic) for q in s], "2.2", {})], 32631, "e", "t")
    fig = fig_lod2(doc)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "N" in texts and "2 m" in texts, texts  # a fifth of the 10 m span
    plt.close(fig)


def test_throughput_is_cpu_time_per_km2_without_one_off_rules():
    fig = fig_throughput({"stereo_tile": 40.0, "dtm": 4.0, "train_segmenter": 900.0}, 0.4)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["stereo_tile", "dtm"]
    assert [round(p.get_width()) for p in ax.patches] == [100, 10]  # CPU-s per km²
    assert "chain 110 CPU-s/km²" in ax.get_title() and "32.73 km² per CPU-hour" in ax.get_title()
    assert "train_segmenter 900 CPU-s" in ax.get_xlabel()
    plt.close(fig)
