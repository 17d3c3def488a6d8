"""Paper figures (matplotlib, Agg backend): DSM hillshade, error map and histogram, ortho with footprints,
LOD2 rendering, accuracy table, throughput chart (CPU time per km² per stage); PNGs plus one multi-page PDF.

Rasters are shown decimated to at most ``max_px`` pixels a side (every ``step``-th cell; display only); map
axes are in metres of the product CRS. :func:`make_figures` reads the products as a whole-scene job must:
rasters sampled block by block (:func:`sat2lod.io.raster.read_sampled`), the height errors streamed over
blocks of the reference grid into running statistics (:class:`sat2lod.qualify.stats.ErrorAccumulator`: the
histogram, RMSE and NMAD of every cell), the LOD2 rendering's buildings read one CityJSONSeq line at a time:
its memory is bounded by the figures' pixels and one block, not by the area.
"""

from __future__ import annotations

import glob
import itertools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: figures are files
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from mpl_toolkits.mplot3d.art3d import Poly3DCollection
from rasterio.transform import array_bounds

from sat2lod.io.jsonio import write_text
from sat2lod.io.raster import (
    Raster,
    RasterHeader,
    atomic_path,
    open_windows,
    read_sampled,
    sample_step,
    sampled_blocks,
)
from sat2lod.qualify.stats import ErrorAccumulator
from sat2lod.schema import defaults

_FIGURES = defaults("figures")  # defaults of config section figures

log = logging.getLogger(__name__)
#: longest side (px) of the raster maps of :func:`make_figures` (display only)
MAP_MAX_PX = 1500
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class FigureParams:
    """Parameters of rule ``figures``: config section ``figures``, one field per key, defaults from the schema
    (see config/schema.yaml); the rule passes the whole section.

    Attributes:
        dpi: resolution of the PNG figures (dots per inch).
        error_range_m: colour / histogram range of the height error figures: +- this (m).
    """

    dpi: int = _FIGURES["dpi"]
    error_range_m: float = _FIGURES["error_range_m"]


#: figure name -> title; the rule declares one PNG per name
FIGURES = {
    "dsm_hillshade": "DSM (hillshade)",
    "error_map": "DSM error map",
    "error_histogram": "DSM / DTM error histograms",
    "ortho_footprints": "Ortho with LOD0 footprints",
    "lod2_rendering": "LOD2 city model",
    "accuracy_table": "Accuracy summary",
    "throughput": "Throughput per step",
}


def hillshade(
    z: np.ndarray, res: float, azimuth_deg: float = 315.0, altitude_deg: float = 45.0
) -> np.ndarray:
    """Hillshade in [0, 1] of a height grid (m) with cell size ``res`` (m); NaN stays NaN."""
    gy, gx = np.gradient(np.where(np.isfinite(z), z, np.nanmedian(z)), res)
    slope = np.arctan(np.hypot(gx, gy))
    aspect = np.arctan2(-gx, gy)
    az, alt = np.radians(azimuth_deg), np.radians(altitude_deg)
    hs = np.sin(alt) * np.cos(slope) + np.cos(alt) * np.sin(slope) * np.cos(az - aspect)
    return np.where(np.isfinite(z), np.clip(hs, 0, 1), np.nan)


@dataclass(frozen=True)
class Sampled:
    """Every ``step``-th cell of one band of a raster, for display.

    Attributes:
        array: (ceil(H / step), ceil(W / step)) the sampled cells (rows and columns 0, step, 2 step, ...).
        extent: [left, right, bottom, top] of the whole raster (m, its CRS): matplotlib's ``extent``.
        step: sampling step (cells).
        res: cell size of the whole raster (m).
        crs: the raster's CRS (None: unknown).
        tags: the raster's dataset tags (``VERTICAL_DATUM``...).
    """

    array: np.ndarray
    extent: list[float]
    step: int
    res: float
    crs: Any = None
    tags: dict[str, str] = field(default_factory=dict)


def _decimate(r: Raster, max_px: int) -> Sampled:
    """:class:`Sampled` of an in-memory raster (its first band)."""
    a = r.array if r.array.ndim == 2 else r.array[0]
    step = sample_step(a.shape, max_px)
    left, bottom, right, top = r.bounds
    return Sampled(
        a[::step, ::step], [left, right, bottom, top], step, abs(r.transform.a), r.crs, dict(r.tags)
    )


def _sampled_of(a: np.ndarray, head: RasterHeader, step: int) -> Sampled:
    """:class:`Sampled` of the cells ``a`` sampled every ``step`` from a grid with header ``head``."""
    left, bottom, right, top = array_bounds(head.shape[0], head.shape[1], head.transform)
    return Sampled(a, [left, right, bottom, top], step, abs(head.transform.a), head.crs, dict(head.tags))


def sample_file(path: PathLike, max_px: int, masked_to_nan: bool = True) -> Sampled:
    """:class:`Sampled` of the first band of a raster file, read block by block (the same cells as
    :func:`_decimate` of the whole file)."""
    return _sampled_of(*read_sampled(path, max_px, 1, masked_to_nan))


def _as_sampled(r: Raster | Sampled, max_px: int) -> Sampled:
    return r if isinstance(r, Sampled) else _decimate(r, max_px)


def streamed_errors(
    product: PathLike, reference: PathLike, vmax: float, max_px: int | None = None, block_px: int = 1024
) -> tuple[ErrorAccumulator, Sampled | None]:
    """Height errors ``product - reference`` (m) on the reference grid, streamed over blocks of it (the product
    resampled onto each block as rule qualify does: :func:`sat2lod.qualify.streamed.on_grid_window`): their
    running statistics (1 mm histogram; the share beyond ``vmax`` exact) and, with ``max_px``, the error map
    sampled every ``step``-th cell (:class:`Sampled` on the reference grid; None without ``max_px``)."""
    from sat2lod.qualify.streamed import on_grid_window

    acc = ErrorAccumulator(thresholds=(float(vmax),))
    with open_windows(reference) as r, open_windows(product) as p:
        h, w = r.header.shape
        step = sample_step((h, w), max_px) if max_px else 1
        emap = np.full((-(-h // step), -(-w // step)), np.nan, np.float32) if max_px else None
        for win, slot in sampled_blocks((h, w), step, block_px):
            e = on_grid_window(p, r.header, win) - r.read(win).array
            acc.add(e)
            if emap is not None:
                emap[slot] = e[::step, ::step]
        head = r.header
    return acc, (_sampled_of(emap, head, step) if emap is not None else None)


def lod2_preview(path: PathLike, max_objects: int = 400) -> dict[str, Any]:
    """The first ``max_objects`` city objects of a CityJSONSeq (``city.jsonl``) as one CityJSON document (the
    header's transform, those objects, their vertices), read one line at a time; ``metadata.n_city_objects``
    = the file's total count (every line is parsed, none kept)."""
    from sat2lod.io.cityjson import read_seq_header, seq_lines

    header = read_seq_header(path)
    doc: dict[str, Any] = {"transform": header["transform"], "CityObjects": {}, "vertices": []}
    total = 0
    for feat in itertools.islice(seq_lines(path), 1, None):  # the features, after the header
        objs = feat.get("CityObjects", {})
        total += len(objs)
        if len(doc["CityObjects"]) >= max_objects:
            continue
        off = len(doc["vertices"])
        doc["vertices"].extend(feat.get("vertices", []))
        for oid, o in objs.items():
            if len(doc["CityObjects"]) >= max_objects:
                break
            o = dict(o)
            o["geometry"] = [
                {**g, "boundaries": _shift_indices(g["boundaries"], off)} for g in o.get("geometry", [])
            ]
            doc["CityObjects"][oid] = o
    doc["metadata"] = {"n_city_objects": total}
    return doc


def _lod2_document(path: PathLike, max_objects: int = 400) -> dict[str, Any]:
    """The LOD2 model to render: :func:`lod2_preview` of a CityJSONSeq (``.jsonl``, streamed), or a whole
    CityJSON document (``.json``: small models, tests)."""
    if Path(path).suffix == ".jsonl":
        return lod2_preview(path, max_objects)
    from sat2lod.io.cityjson import read_cityjson

    return read_cityjson(path)


def _shift_indices(x: Any, off: int) -> Any:
    """Nested vertex indices plus ``off``."""
    return [_shift_indices(i, off) for i in x] if isinstance(x, list) else x + off


def _map_axes(ax: plt.Axes, crs: Any = None) -> None:
    """Label a map's axes with its CRS and write full coordinates (matplotlib would show northings as
    offsets from "1e6")."""
    epsg = crs.to_epsg() if crs is not None else None
    where = f"m, EPSG:{epsg}" if epsg else "m"
    ax.set_xlabel(f"easting ({where})")
    ax.set_ylabel(f"northing ({where})")
    ax.ticklabel_format(axis="both", style="plain", useOffset=False)
    ax.tick_params(axis="x", labelrotation=30)


def _nice_length(span: float) -> float:
    """A round length (1, 2 or 5 x 10^k) near a fifth of ``span``, for a scale bar."""
    target = max(span / 5.0, 1e-9)
    k = 10 ** np.floor(np.log10(target))
    return float(min((m * k for m in (1, 2, 5, 10)), key=lambda v: abs(v - target)))


def _scale_bar_north_3d(ax: Any, lo: np.ndarray, hi: np.ndarray) -> None:
    """Scale bar (along x, at ground level, front corner) and north arrow (grid north, +y) in a 3-D view."""
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        return
    span = hi - lo
    length = _nice_length(float(span[0]))
    x0, y0, z0 = lo[0] + 0.05 * span[0], lo[1] - 0.08 * span[1], lo[2]
    ax.plot([x0, x0 + length], [y0, y0], [z0, z0], color="k", lw=3, solid_capstyle="butt")
    ax.text(x0 + length / 2, y0 - 0.04 * span[1], z0, f"{length:g} m", ha="center", va="top", fontsize=9)
    xn, yn, dy = hi[0] - 0.02 * span[0], lo[1] - 0.08 * span[1], 0.18 * span[1]
    ax.quiver(xn, yn, z0, 0, dy, 0, color="k", arrow_length_ratio=0.35, lw=1.5)
    ax.text(xn, yn + dy * 1.15, z0, "N", ha="center", va="bottom", fontsize=11, fontweight="bold")


def _no_data_figure(title: str, why: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", wrap=True, transform=ax.transAxes)
    return fig


def fig_hillshade(dsm: Raster | Sampled, max_px: int = 1500) -> plt.Figure:
    d = _as_sampled(dsm, max_px)
    z, ext = d.array.astype(float), d.extent
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(hillshade(z, d.res * d.step), cmap="gray", extent=ext, vmin=0, vmax=1)
    im = ax.imshow(z, cmap="terrain", alpha=0.45, extent=ext)
    fig.colorbar(im, ax=ax, label=f"height (m, {d.tags.get('VERTICAL_DATUM', 'datum unknown')})", shrink=0.8)
    ax.set_title(FIGURES["dsm_hillshade"])
    _map_axes(ax, d.crs)
    return fig


def fig_error_map(err: np.ndarray | None, ext: list[float], vmax: float, crs: Any = None) -> plt.Figure:
    if err is None:
        return _no_data_figure(
            FIGURES["error_map"], "no reference DSM configured (config qualify.reference_dsm)"
        )
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(err, cmap="RdBu_r", vmin=-vmax, vmax=vmax, extent=ext)
    fig.colorbar(im, ax=ax, label="DSM - reference (m)", shrink=0.8)
    ax.set_title(FIGURES["error_map"])
    _map_axes(ax, crs)
    return fig


def fig_error_hist(errors: dict[str, ErrorAccumulator], vmax: float) -> plt.Figure:
    """Histogram (density, clipped to +- ``vmax``) of each error set, from the running statistics of its
    streamed comparison (:func:`streamed_errors`: the 1 mm histogram; thresholds holding ``vmax``)."""
    if not errors:
        return _no_data_figure(FIGURES["error_histogram"], "no reference DSM/DTM configured")
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(-vmax, vmax, 121)
    for name, e in errors.items():
        if e.n == 0:
            continue
        st = e.stats()
        centres = (e.keys + 0.5) * e.bin_m
        counts, _ = np.histogram(np.clip(centres, -vmax, vmax), bins=bins, weights=e.counts)
        ax.stairs(
            counts / (counts.sum() * np.diff(bins)),
            bins,
            lw=1.5,
            label=(
                f"{name}: RMSE {st['rmse']:.2f} m, NMAD {st['nmad']:.2f} m, |e| > {vmax:g} m: "
                f"{100 * st[f'above_{float(vmax):g}m']:.1f} %"
            ),
        )
    ax.set_xlabel("error (m), clipped to the axis")
    ax.set_ylabel("density")
    ax.set_title(FIGURES["error_histogram"])
    ax.legend(fontsize=8)
    return fig


def fig_ortho_footprints(
    ortho: Raster | Sampled | None, footprints: Any, reference: Any, max_px: int = 1500
) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 6))
    if ortho is not None:
        o = _as_sampled(ortho, max_px)
        a, ext = o.array.astype(float), o.extent
        lo, hi = np.nanpercentile(a, [1, 99]) if np.isfinite(a).any() else (0, 1)
        ax.imshow(a, cmap="gray", vmin=lo, vmax=hi, extent=ext)
    if reference is not None and len(reference):
        reference.boundary.plot(ax=ax, color="yellow", lw=0.8, label="reference")
    if footprints is not None and len(footprints):
        footprints.boundary.plot(ax=ax, color="red", lw=0.8, label="LOD0")
    none = footprints is not None and not len(footprints)
    ax.set_title(FIGURES["ortho_footprints"] + (" (no building found)" if none else ""))
    _map_axes(ax, ortho.crs if ortho is not None else getattr(footprints, "crs", None))
    handles = [h for h in ax.get_legend_handles_labels()[0]]
    if handles:
        ax.legend(loc="lower right", fontsize=8)
    return fig


#: smallest side (m) of the LOD2 rendering's box
MIN_SPAN_M = 1.0
_SEM_COLOURS = {"RoofSurface": "#c0504d", "WallSurface": "#d9d9d9", "GroundSurface": "#7f7f7f"}


def fig_lod2(doc: dict[str, Any], max_buildings: int = 400) -> plt.Figure:
    """Perspective rendering of the LOD2 solids (roofs red, walls grey), ground faces omitted.

    The axes span the drawn faces, each side at least ``MIN_SPAN_M`` (a single flat roof or wall has no
    extent along some axis, which matplotlib's 3-D projection turns into NaN limits).
    """
    if not doc.get("CityObjects"):
        return _no_data_figure(FIGURES["lod2_rendering"], "no building in the LOD2 model")
    v = np.array(doc["vertices"], float).reshape(-1, 3) * np.array(doc["transform"]["scale"])
    polys, cols = [], []
    for k, (_, o) in enumerate(doc["CityObjects"].items()):
        if k >= max_buildings:
            break
        for g in o.get("geometry", [])[:1]:
            sems = g["semantics"]["surfaces"]
            for surf, val in zip(g["boundaries"][0], g["semantics"]["values"][0]):
                t = sems[val]["type"]
                if t == "GroundSurface" or not np.isfinite(v[surf[0]]).all():
                    continue
                polys.append(v[surf[0]])
                cols.append(_SEM_COLOURS.get(t, "#aaaaaa"))
    if not polys:
        return _no_data_figure(FIGURES["lod2_rendering"], "no roof or wall surface in the LOD2 model")
    fig = plt.figure(figsize=(8, 6))
    ax = fig.add_subplot(projection="3d")
    # autolim=False: the limits are set below from the faces. matplotlib's own autoscaling (3.10+) runs on its
    # padded face array, whose padding (faces with fewer vertices than the largest) is uninitialised
    # (np.empty): it failed once with "Axis limits cannot be NaN or Inf" on the scaling bench's 1.2 km city,
    # and not on a rerun of the same files
    ax.add_collection3d(
        Poly3DCollection(polys, facecolors=cols, edgecolors="k", linewidths=0.1), autolim=False
    )
    pts = np.vstack(polys)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = np.maximum(hi - lo, MIN_SPAN_M)
    lo = (lo + hi - span) / 2
    hi = lo + span
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_zlim(lo[2], hi[2])
    ax.set_box_aspect((span[0], span[1], span[2] * 2))  # heights x2 for legibility
    ax.view_init(elev=35, azim=-60)
    ax.set_axis_off()
    n = doc.get("metadata", {}).get("n_city_objects", len(doc["CityObjects"]))
    ax.set_title(FIGURES["lod2_rendering"] + f" ({n} buildings, heights x2)")
    _scale_bar_north_3d(ax, lo, hi)
    return fig


def _acc_rows(acc: dict[str, Any]) -> list[tuple[str, str]]:
    def f(x: Any, nd: int = 3) -> str:
        return "–" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))

    rows: list[tuple[str, str]] = []
    pr = acc.get("products", {})
    if "footprints" in pr:
        frac = pr.get("footprint_area_fraction")
        pct = "–" if frac is None else f"{100 * frac:.2f}"
        area = f(pr.get("footprint_area_m2"), 1)
        rows.append(("LOD0 footprints (area, % of scene)", f"{pr['footprints']} ({area} m², {pct} %)"))
    for key in ("lod1", "lod2"):
        if f"{key}_buildings" in pr:
            rows.append((f"{key.upper()} buildings", str(pr[f"{key}_buildings"])))
    if pr.get("note"):
        rows.append(("note", pr["note"]))
    for key in ("dsm", "dtm"):
        if key in acc:
            a = acc[key]["all"]
            nva = acc[key].get("nva", {})
            rows += [
                (
                    f"{key.upper()} RMSE / NMAD / LE90 (m)",
                    f"{f(a.get('rmse'))} / {f(a.get('nmad'))} / {f(a.get('le90'))}",
                ),
                (f"{key.upper()} completeness", f(acc[key].get("completeness"))),
                (
                    f"{key.upper()} ASPRS Ed.2 vertical class (NVA)",
                    f"{nva.get('class')} (RMSE_V {f(nva.get('rmse_v_cm'), 1)} cm)",
                ),
            ]
    b = acc.get("buildings", {})
    if "footprints" in b:
        fp = b["footprints"]
        rows += [
            ("Footprints matched / ref", f"{fp['n_matched']} / {fp['n_ref']}"),
            ("IoU / C-IoU", f"{f(fp.get('iou_mean'))} / {f(fp.get('ciou_mean'))}"),
            ("PoLiS / Hausdorff (m)", f"{f(fp.get('polis_mean_m'))} / {f(fp.get('hausdorff_mean_m'))}"),
            ("N-ratio", f(fp.get("n_ratio"))),
            (
                "CE90 (m), ASPRS horizontal class",
                f"{f(fp.get('ce90_m'))}, {fp.get('horizontal_class', {}).get('class')}",
            ),
        ]
    if "lod1" in b:
        rows.append(("LOD1 height RMSE, like for like (m)", f(b["lod1"]["height_error"].get("rmse"))))
        if "height_error_vs_ridge" in b["lod1"]:
            rows.append(("LOD1 height RMSE vs ridge (m)", f(b["lod1"]["height_error_vs_ridge"].get("rmse"))))
    if "lod2" in b:
        rows += [
            (
                "LOD2 roof-type accuracy (matched / all reference)",
                f"{f(b['lod2'].get('roof_type_accuracy'))} / {f(b['lod2'].get('roof_type_recall'))}",
            ),
            ("LOD2 ridge height RMSE (m)", f(b["lod2"]["ridge_height_error"].get("rmse"))),
        ]
    return rows


def fig_accuracy_table(acc: dict[str, Any]) -> plt.Figure:
    rows = _acc_rows(acc)
    if not rows:
        return _no_data_figure(FIGURES["accuracy_table"], "no reference: nothing was qualified")
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1))
    ax.set_axis_off()
    tab = ax.table(
        cellText=[[k, v] for k, v in rows],
        colLabels=["metric", "value"],
        loc="center",
        cellLoc="left",
        colWidths=[0.55, 0.45],
    )
    tab.auto_set_font_size(False)
    tab.set_fontsize(9)
    tab.auto_set_column_width([0, 1])  # widths from the text: no label cut at the cell edge
    tab.scale(1, 1.3)
    ax.set_title(FIGURES["accuracy_table"])
    return fig


def read_benchmarks(benchmarks: PathLike | Sequence[PathLike], column: str = "s") -> dict[str, float]:
    """Per rule, the sum over its jobs of one column of the Snakemake benchmark files
    ``.../benchmarks/<rule>/**.tsv``: the given files (what rule figures declares as inputs), or every
    ``<rule>/**.tsv`` under a directory. ``column``: ``s`` (wall time, s) or ``cpu_time`` (CPU time of the
    job's processes and threads, s). A file without that column is ignored with a warning."""
    import pandas as pd

    if isinstance(benchmarks, (str, os.PathLike)):
        root = Path(benchmarks)
        paths = [
            Path(p) for p in sorted(glob.glob(os.path.join(str(root), "*", "**", "*.tsv"), recursive=True))
        ]
        rules = [p.relative_to(root).parts[0] for p in paths]
    else:
        paths = [Path(p) for p in benchmarks]
        rules = [_rule_of(p) for p in paths]
    out: dict[str, float] = {}
    for path, rule in zip(paths, rules):
        try:
            s = pd.read_csv(path, sep="\t")[column]
        except (KeyError, ValueError, pd.errors.ParserError):
            log.warning("%s: not a Snakemake benchmark file with a %r column, ignored", path, column)
            continue
        out[rule] = out.get(rule, 0.0) + float(s.sum())
    return out


def _rule_of(path: Path) -> str:
    """Rule of a benchmark file ``.../benchmarks/<rule>/...``: the folder after ``benchmarks``, else the file's
    top folder."""
    parts = path.parts
    if "benchmarks" in parts[:-1]:
        return parts[len(parts) - 1 - parts[::-1].index("benchmarks") + 1]
    return parts[0] if len(parts) > 1 else path.stem


#: rules that are not processing of the AOI: the demo's synthetic input and the one-off model training
NOT_PROCESSING = ("synth_city", "train_segmenter")


def fig_throughput(cpu_s: dict[str, float], area_km2: float | None) -> plt.Figure:
    """Speed of each stage as CPU time per km² of AOI (sum over its jobs, from the benchmarks' cpu_time):
    unlike wall time it does not grow with the machine's load or shrink with its cores. The rules of
    :data:`NOT_PROCESSING` are left out of the bars and the total, and named with their CPU time."""
    stages = {n: v for n, v in cpu_s.items() if n not in NOT_PROCESSING}
    if not stages or not area_km2:
        return _no_data_figure(
            FIGURES["throughput"], "no benchmark with cpu_time found (benchmarks/<rule>/*.tsv) or no area"
        )
    names = sorted(stages, key=stages.get, reverse=True)  # type: ignore[arg-type]
    per_km2 = [stages[n] / area_km2 for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.8))
    bars = ax.barh(names, per_km2, color="#4f81bd")
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in per_km2], padding=3, fontsize=8)
    ax.invert_yaxis()
    left_out = [f"{n} {cpu_s[n]:,.0f} CPU-s" for n in NOT_PROCESSING if n in cpu_s]
    note = f"\nnot shown (demo input, one-off training): {', '.join(left_out)}" if left_out else ""
    ax.set_xlabel(f"CPU time per km² of AOI (CPU-s/km², summed over jobs; lower is faster){note}")
    ax.margins(x=0.15)
    chain = sum(per_km2)
    rate = f", {3600.0 / chain:.2f} km² per CPU-hour" if chain > 0 else ""
    ax.set_title(f"{FIGURES['throughput']}: chain {chain:,.0f} CPU-s/km²{rate}", fontsize=11)
    return fig


def make_figures(
    dsm: PathLike,
    out_pngs: dict[str, PathLike],
    out_pdf: PathLike,
    done: PathLike,
    *,
    dtm: PathLike | None = None,
    ortho: PathLike | None = None,
    footprints: PathLike | None = None,
    lod2: PathLike | None = None,
    accuracy: PathLike | None = None,
    ref_dsm: PathLike | None = None,
    ref_dtm: PathLike | None = None,
    ref_buildings: PathLike | None = None,
    benchmarks: PathLike | Sequence[PathLike] = "benchmarks",
    **params: Any,
) -> list[Path]:
    """Render every figure of :data:`FIGURES` to ``out_pngs[name]``, all of them into ``out_pdf``, and write
    the ``done`` marker listing the files. Missing optional inputs give a figure that says what is missing.

    ``params``: fields of :class:`FigureParams` (config section ``figures``); an unknown name is an error.
    """
    from sat2lod.io.vector import read_vector
    from sat2lod.qualify import read_accuracy

    prm = FigureParams(**params)
    missing = set(FIGURES) - set(out_pngs)
    if missing:
        raise ValueError(f"make_figures: no output path for {sorted(missing)}")
    d = sample_file(dsm, MAP_MAX_PX)
    figs: dict[str, plt.Figure] = {"dsm_hillshade": fig_hillshade(d)}
    errors: dict[str, ErrorAccumulator] = {}
    err_map: Sampled | None = None
    if ref_dsm:
        errors["DSM"], err_map = streamed_errors(dsm, ref_dsm, prm.error_range_m, MAP_MAX_PX)
    if ref_dtm and dtm:
        errors["DTM"], _ = streamed_errors(dtm, ref_dtm, prm.error_range_m)
    figs["error_map"] = fig_error_map(
        err_map.array if err_map else None,
        err_map.extent if err_map else [0, 1, 0, 1],
        prm.error_range_m,
        err_map.crs if err_map else None,
    )
    figs["error_histogram"] = fig_error_hist(errors, prm.error_range_m)
    figs["ortho_footprints"] = fig_ortho_footprints(
        sample_file(ortho, MAP_MAX_PX, masked_to_nan=False) if ortho else None,
        read_vector(footprints) if footprints else None,
        read_vector(ref_buildings) if ref_buildings else None,
    )
    figs["lod2_rendering"] = (
        fig_lod2(_lod2_document(lod2))
        if lod2
        else _no_data_figure(FIGURES["lod2_rendering"], "no LOD2 model")
    )
    figs["accuracy_table"] = fig_accuracy_table(read_accuracy(accuracy) if accuracy else {})
    left, right, bottom, top = d.extent
    area_km2 = (right - left) * (top - bottom) / 1e6
    figs["throughput"] = fig_throughput(read_benchmarks(benchmarks, "cpu_time"), area_km2)
    written: list[Path] = []
    for name, fig in figs.items():
        p = Path(out_pngs[name])
        with atomic_path(p) as tmp:
            fig.savefig(tmp, dpi=prm.dpi, bbox_inches="tight", format="png")
        written.append(p)
    # no creation date in the PDF: the same products give the same file (but for the measured times it plots)
    with atomic_path(out_pdf) as tmp, PdfPages(tmp, metadata={"CreationDate": None}) as pdf:
        for fig in figs.values():
            pdf.savefig(fig, bbox_inches="tight")
    written.append(Path(out_pdf))
    for fig in figs.values():
        plt.close(fig)
    write_text(done, "".join(f"{p}\n" for p in written))
    log.info("%d figures -> %s", len(written), Path(done).parent)
    return written
