"""Figures: every declared figure is written (PNG + PDF + marker), with and without a reference."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from rasterio.transform import from_origin
from shapely.geometry import box

from sat2lod.figures import (
    FIGURES,
    _decimate,
    fig_accuracy_table,
    fig_hillshade,
    fig_lod2,
    fig_throughput,
    hillshade,
    lod2_preview,
    make_figures,
    read_benchmarks,
    sample_file,
    streamed_errors,
)
from sat2lod.io.cityjson import CityBuilding, city_model, write_cityjsonseq
from sat2lod.io.raster import read_raster, read_sampled, write_raster
from sat2lod.lod.solid import build_solid
from sat2lod.qualify.stats import ErrorAccumulator


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


def test_sampled_reads_equal_the_whole_array_decimated(tmp_path):
    """Block-wise sampling gives a[::step, ::step] of the whole band (blocks aligned to the step, ragged
    edges), for any block size; the ortho keeps its dtype and nodata values unmasked."""
    rng = np.random.default_rng(1)
    a = rng.normal(100, 10, (301, 257)).astype(np.float32)
    a[5:9, 100:140] = np.nan
    tr = from_origin(500000.0, 4800100.0, 0.5, 0.5)
    write_raster(tmp_path / "a.tif", a, tr, 32631, nodata=float("nan"), tags={"VERTICAL_DATUM": "e"})
    for max_px, block in [(40, 64), (40, 7), (1000, 64), (301, 50)]:
        got, head, step = read_sampled(tmp_path / "a.tif", max_px, block_px=block)
        assert step == max(1, int(np.ceil(301 / max_px)))
        np.testing.assert_array_equal(got, a[::step, ::step])
        assert head.shape == (301, 257)
    whole = _decimate(read_raster(tmp_path / "a.tif", masked_to_nan=True), 40)
    part = sample_file(tmp_path / "a.tif", 40)
    np.testing.assert_array_equal(whole.array, part.array)
    assert whole.extent == part.extent and whole.step == part.step and part.tags["VERTICAL_DATUM"] == "e"
    u = rng.integers(0, 4000, (2, 90, 70)).astype(np.uint16)
    write_raster(tmp_path / "o.tif", u, tr, 32631, nodata=0)
    o, _, step = read_sampled(tmp_path / "o.tif", 30, masked_to_nan=False, block_px=16)
    assert o.dtype == np.uint16 and step == 3
    np.testing.assert_array_equal(o, u[0, ::3, ::3])


def test_streamed_errors_equal_the_whole_grid_errors(tmp_path):
    """The histogram statistics and the error map of the streamed comparison are those of the whole error
    array (product on another grid: resampled per block, as rule qualify does)."""
    rng = np.random.default_rng(2)
    tr = from_origin(500000.0, 4800100.0, 0.5, 0.5)
    ref = (150 + rng.normal(0, 1, (200, 180))).astype(np.float32)
    dsm = ref + rng.normal(0.2, 0.6, ref.shape).astype(np.float32)
    dsm[50:60, 20:30] = np.nan
    write_raster(tmp_path / "ref.tif", ref, tr, 32631, nodata=float("nan"))
    write_raster(tmp_path / "dsm.tif", dsm, tr, 32631, nodata=float("nan"))
    acc, emap = streamed_errors(tmp_path / "dsm.tif", tmp_path / "ref.tif", 5.0, max_px=50, block_px=32)
    whole = ErrorAccumulator(thresholds=(5.0,))
    whole.add(dsm - ref)
    assert acc.n == whole.n == np.isfinite(dsm).sum()
    for k in ("median", "nmad", "le90"):
        assert acc.stats()[k] == whole.stats()[k]
    assert abs(acc.stats()["rmse"] - whole.stats()["rmse"]) < 1e-9
    assert emap is not None and emap.step == 4
    np.testing.assert_array_equal(emap.array, (dsm - ref)[::4, ::4])
    # a product on a shifted grid is resampled onto the reference blocks
    write_raster(
        tmp_path / "shift.tif", dsm, from_origin(500000.25, 4800100.0, 0.5, 0.5), 32631, nodata=float("nan")
    )
    acc2, _ = streamed_errors(tmp_path / "shift.tif", tmp_path / "ref.tif", 5.0, block_px=32)
    assert 0.9 * acc.n < acc2.n <= acc.n


def test_lod2_preview_reads_the_first_objects_of_the_sequence(tmp_path):
    blds = []
    for k in range(5):
        s_ = build_solid([box(10 * k, 0, 10 * k + 6, 5)], [(108.0 + k, 0.0, 0.0)], 100.0)
        blds.append(CityBuilding(f"b{k}", [(q.rings, q.semantic) for q in s_], "2.2", {}))
    doc = city_model(blds, 32631, "e", "t")
    write_cityjsonseq(tmp_path / "city.jsonl", doc)
    prev = lod2_preview(tmp_path / "city.jsonl", max_objects=3)
    assert list(prev["CityObjects"]) == list(doc["CityObjects"])[:3]
    assert prev["metadata"]["n_city_objects"] == len(doc["CityObjects"]) == 5

    def faces(d, oid):
        v = np.array(d["vertices"], float) * d["transform"]["scale"] + d["transform"]["translate"]
        return [
            v[ring].tolist()
            for surf in d["CityObjects"][oid]["geometry"][0]["boundaries"][0]
            for ring in surf
        ]

    for oid in prev["CityObjects"]:
        assert faces(prev, oid) == faces(doc, oid)
    fig = fig_lod2(prev)
    assert "(5 buildings" in fig.axes[0].get_title()
    plt.close(fig)
