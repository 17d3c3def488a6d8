"""Geometric plausibility filter of the building mask (sat2lod.segment.plausibility)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import from_origin

from sat2lod.io.raster import read_raster, write_raster
from sat2lod.segment.plausibility import PlausibilityParams, component_evidence, plausibility_filter
from sat2lod.segment.predict import segment_from_files

RES = 0.5
N = 120  # 60 m scenes


def _box(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros((N, N), bool)
    m[r0:r1, c0:c1] = True
    return m


def _mask(b: np.ndarray) -> np.ndarray:
    return b.astype(np.uint8)


def _hillside_crag() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A slope rising northwards (row 0 is north) at 60 %, and a terrace along it: flat-topped, flush with the
    hillside on its uphill (north) side, 6 m above the slope at its downhill edge, 50 m long; the segmenter took
    20 m of it for a building (the component). The DTM follows the slope, so in the nDSM the terrace stands like
    a block; only the DSM shows the hillside above it."""
    y_m = (N - 1 - np.arange(N))[:, None] * RES * np.ones((1, N))
    ground = 0.6 * y_m
    dsm = ground.copy()
    dsm[40:60, 10:110] = ground[40, 40]  # the terrace's top: the hillside's height at its uphill edge
    return _box(40, 60, 40, 80), dsm.astype(np.float32), (dsm - ground).astype(np.float32)


def test_box_building_on_flat_ground_kept() -> None:
    b = _box(40, 60, 40, 80)
    ndsm = np.where(b, 6.0, 0.0).astype(np.float32)
    out, s = plausibility_filter(_mask(b), ndsm, RES, ndsm + 100.0)
    assert np.array_equal(out, _mask(b))
    assert s["components"] == 1 and s["rejected_walls"] == 0 and s["cells_after"] == b.sum()
    ev = component_evidence(b, ndsm.astype(float), None, RES, PlausibilityParams())
    assert ev["height_m"] == pytest.approx(6.0) and ev["wall_share"] == pytest.approx(1.0)


def test_crag_on_slope_rejected_by_its_walls() -> None:
    crag, dsm, ndsm = _hillside_crag()
    out, s = plausibility_filter(_mask(crag), ndsm, RES, dsm)
    assert not (out == 1).any() and s["rejected_walls"] == 1
    ev = component_evidence(crag, ndsm.astype(float), dsm.astype(float), RES, PlausibilityParams())
    assert ev["wall_share"] < 0.5 < ev["height_m"]
    # the component's own heights, as a block on flat ground, make a building
    block = np.where(crag, ndsm, 0.0).astype(np.float32)
    flat, _ = plausibility_filter(_mask(crag), block, RES, block)
    assert np.array_equal(flat, _mask(crag))


def test_rough_canopy_rejected() -> None:
    rng = np.random.default_rng(0)
    crown = _box(45, 65, 45, 65)
    ndsm = np.where(crown, 8.0 + rng.uniform(-2.0, 2.0, (N, N)), 0.0).astype(np.float32)
    out, s = plausibility_filter(_mask(crown), ndsm, RES, None, {"max_roughness_m": 0.5})
    assert not (out == 1).any() and s["rejected_roughness"] == 1
    # no roughness limit by default (see the schema): an isolated crown has walls
    kept, _ = plausibility_filter(_mask(crown), ndsm, RES)
    assert np.array_equal(kept, _mask(crown))
    # a patch of a continuous canopy has no walls: the trees around it stand as high
    forest = (8.0 + rng.uniform(-2.0, 2.0, (N, N))).astype(np.float32)
    out, s = plausibility_filter(_mask(crown), forest, RES)
    assert not (out == 1).any() and s["rejected_walls"] == 1


def test_only_the_implausible_component_goes_and_nodata_stays() -> None:
    crag, dsm, ndsm = _hillside_crag()
    house = _box(90, 100, 10, 20)
    ground = dsm - ndsm
    dsm = np.where(house, ground + 5.0, dsm).astype(np.float32)
    ndsm = np.where(house, 5.0, ndsm).astype(np.float32)
    m = _mask(crag | house)
    m[:, -5:] = 255
    out, s = plausibility_filter(m, ndsm, RES, dsm)
    assert np.array_equal(out == 1, house) and (out[:, -5:] == 255).all()
    assert (s["components"], s["rejected_walls"]) == (2, 1)
    assert m[50, 50] == 1, "the input mask is not modified"


def test_empty_mask() -> None:
    m = np.zeros((N, N), np.uint8)
    m[:3] = 255
    out, s = plausibility_filter(m, np.zeros((N, N), np.float32), RES)
    assert np.array_equal(out, m) and s["components"] == 0 and s["cells_after"] == 0


def test_nan_ndsm_keeps_components_without_evidence() -> None:
    b = _box(40, 60, 40, 80)
    all_nan = np.full((N, N), np.nan, np.float32)
    out, _ = plausibility_filter(_mask(b), all_nan, RES)
    assert np.array_equal(out, _mask(b))
    # heights on the component, none around it: no wall evidence either way, kept
    only_inside = np.where(b, 6.0, np.nan).astype(np.float32)
    out, _ = plausibility_filter(_mask(b), only_inside, RES)
    assert np.array_equal(out, _mask(b))
    # holes in the nDSM of a building do not make it implausible
    holed = np.where(b, 6.0, 0.0).astype(np.float32)
    holed[::3, ::4] = np.nan
    out, _ = plausibility_filter(_mask(b), holed, RES)
    assert np.array_equal(out, _mask(b))
    # no nDSM at all (image-only segmentation): unchanged
    out, s = plausibility_filter(_mask(b), None, RES)
    assert np.array_equal(out, _mask(b)) and s["rejected_walls"] == 0


def test_disabled_and_bad_parameters() -> None:
    crag, dsm, ndsm = _hillside_crag()
    out, _ = plausibility_filter(_mask(crag), ndsm, RES, dsm, {"enabled": False})
    assert np.array_equal(out, _mask(crag))
    with pytest.raises(ValueError, match="ring_m"):
        plausibility_filter(_mask(crag), ndsm, RES, dsm, {"ring_m": [4.0, 1.5]})
    with pytest.raises(ValueError, match="differ in shape"):
        plausibility_filter(_mask(crag), ndsm[:-1], RES, dsm)
    with pytest.raises(TypeError):
        plausibility_filter(_mask(crag), ndsm, RES, dsm, {"ring": [1, 2]})


def test_local_a_crop_with_the_halo_gives_the_same_answer() -> None:
    """A component's verdict depends on the component and ring_m[1] + roof_radius_m around it only (tiles with a
    halo that wide, as the per-tile segmentation cuts them, agree with the whole grid)."""
    crag, dsm, ndsm = _hillside_crag()
    house = _box(90, 100, 10, 20)
    dsm = np.where(house, dsm + 5.0, dsm).astype(np.float32)
    ndsm = np.where(house, 5.0, ndsm).astype(np.float32)
    m = _mask(crag | house)
    whole, _ = plausibility_filter(m, ndsm, RES, dsm)
    prm = PlausibilityParams()
    halo = int(np.ceil((prm.ring_m[1] + prm.roof_radius_m) / RES)) + 1
    r0, r1, c0, c1 = 40 - halo, 60 + halo, 40 - halo, 80 + halo
    crop, _ = plausibility_filter(m[r0:r1, c0:c1], ndsm[r0:r1, c0:c1], RES, dsm[r0:r1, c0:c1])
    assert np.array_equal(crop, whole[r0:r1, c0:c1])


def test_rule_segment_removes_the_terrace_with_the_dsm(tmp_path: Path) -> None:
    """Rule segment's function (ndsm_threshold, no network): the terrace goes when the DSM is given, the house
    stays; the mask's tags say so; off keeps both; a DSM on another grid is an error naming the file."""
    crag, dsm, _ = _hillside_crag()
    house = _box(90, 100, 10, 30)
    dsm = np.where(house, dsm + 5.0, dsm).astype(np.float32)
    # the nDSM of a DTM that missed the terrace where the segmenter took it (so ndsm_threshold takes it too)
    ndsm = np.where(crag, 6.0, np.where(house, 5.0, 0.0)).astype(np.float32)
    tr = from_origin(500000.0, 4800000.0, RES, RES)
    paths = {}
    for name, a in (("ortho", np.full((N, N), 500.0, np.float32)), ("ndsm", ndsm), ("dsm", dsm)):
        paths[name] = tmp_path / f"{name}.tif"
        write_raster(paths[name], a, tr, 32631, nodata=float("nan"))
    kw = {"method": "ndsm_threshold", "min_height_m": 2.0, "max_roughness_m": 3.0}
    out = {}
    for key, prm in (("on", {}), ("off", {"enabled": False})):
        mask = tmp_path / f"mask_{key}.tif"
        s = segment_from_files(
            paths["ortho"], paths["ndsm"], tmp_path / "p.tif", mask, dsm=paths["dsm"], plausibility=prm, **kw
        )
        out[key] = read_raster(mask)
        assert s["plausibility"]["components"] == 2
        rejected = s["plausibility"]["rejected_walls"] + s["plausibility"]["rejected_roughness"]
        assert rejected == (1 if key == "on" else 0)
    on, off = out["on"].array, out["off"].array
    assert off[50, 60] == 1 and off[95, 20] == 1
    assert on[50, 60] == 0 and on[95, 20] == 1
    assert out["on"].tags["PLAUSIBILITY"] == "on"
    assert out["off"].tags["PLAUSIBILITY"] == "off"
    write_raster(
        tmp_path / "dsm_bad.tif", dsm, from_origin(500001.0, 4800000.0, RES, RES), 32631, nodata=float("nan")
    )
    with pytest.raises(Exception, match="dsm_bad.tif"):
        segment_from_files(
            paths["ortho"],
            paths["ndsm"],
            tmp_path / "p.tif",
            tmp_path / "m.tif",
            dsm=tmp_path / "dsm_bad.tif",
            **kw,
        )


def test_cli_no_plausibility(tmp_path: Path) -> None:
    """``sat2lod segment --ndsm``: the filter by default (walls on the nDSM), ``--no-plausibility`` keeps all."""
    from sat2lod.cli import main

    # a slope the DTM missed: the nDSM rises evenly from 0 to 10 m eastwards, smooth, no wall anywhere
    ramp = np.repeat(np.linspace(0.0, 10.0, N, dtype=np.float32)[None, :], N, axis=0)
    tr = from_origin(500000.0, 4800000.0, RES, RES)
    write_raster(tmp_path / "img.tif", np.full((N, N), 500.0, np.float32), tr, 32631, nodata=float("nan"))
    write_raster(tmp_path / "ndsm.tif", ramp, tr, 32631, nodata=float("nan"))
    fractions = {}
    for flag in ([], ["--no-plausibility"]):
        out = tmp_path / f"m{len(flag)}.tif"
        args = ["segment", "--image", str(tmp_path / "img.tif"), "--ndsm", str(tmp_path / "ndsm.tif")]
        assert main([*args, "--method", "ndsm_threshold", "--out", str(out), *flag]) == 0
        fractions[bool(flag)] = float((read_raster(out).array == 1).mean())
    assert fractions[True] > 0.4 and fractions[False] == 0.0


def test_cli_max_roughness_drops_a_rough_component(tmp_path: Path) -> None:
    """``sat2lod segment --ndsm --max-roughness-m M``: a canopy-rough component with walls all round goes, the
    smooth roof beside it stays; without the option both stay."""
    from sat2lod.cli import build_parser, main
    from sat2lod.schema import defaults

    assert (
        build_parser().parse_args(["segment", "--image", "i", "--out", "m"]).max_roughness_m
        == (defaults("segmentation", "plausibility")["max_roughness_m"])
    )
    ndsm = np.zeros((N, N), np.float32)
    ndsm[_box(20, 60, 20, 60)] = 8.0  # a flat roof
    crown = _box(20, 60, 80, 120)
    ndsm[crown] = (8.0 + np.random.default_rng(0).normal(0.0, 1.5, (N, N)))[crown]
    tr = from_origin(500000.0, 4800000.0, RES, RES)
    write_raster(tmp_path / "img.tif", np.full((N, N), 500.0, np.float32), tr, 32631, nodata=float("nan"))
    write_raster(tmp_path / "ndsm.tif", ndsm, tr, 32631, nodata=float("nan"))
    kept = {}
    for flag in ([], ["--max-roughness-m", "0.5"]):
        out = tmp_path / f"m{len(flag)}.tif"
        args = ["segment", "--image", str(tmp_path / "img.tif"), "--ndsm", str(tmp_path / "ndsm.tif")]
        assert main([*args, "--method", "ndsm_threshold", "--out", str(out), *flag]) == 0
        m = read_raster(out).array == 1
        kept[bool(flag)] = (bool(m[40, 40]), bool(m[40, 100]))
    assert kept[False] == (True, True) and kept[True] == (True, False)
