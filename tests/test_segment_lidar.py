"""LiDAR training samples (sat2lod.segment.lidar_samples) and the default model's LiDAR data (issue 15)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

laspy = pytest.importorskip("laspy", reason="laspy is in the bench/test extras")

from sat2lod.io.lidar import LidarReadError, read_points
from sat2lod.segment.features import NDSM_SCALE_M
from sat2lod.segment.lidar_samples import lidar_sample, surface_cell_m

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ign_lidarhd_more"


def write_cloud(path: Path, density: float, seed: int = 0) -> None:
    """A 60 m x 40 m scene: sloping ground (class 2), a 20 m x 12 m flat-roofed building 9 m high (class 6) at
    x 10..30, y 10..22, and a round tree crown of radius 5 m, 7 m high (class 5) centred at x 45, y 25;
    ``density`` returns per m², uniform positions."""
    rng = np.random.default_rng(seed)
    n = int(60 * 40 * density)
    x, y = rng.uniform(0, 60, n), rng.uniform(0, 40, n)
    ground = 100.0 + 0.05 * x
    z, c = ground.copy(), np.full(n, 2, np.uint8)
    bld = (x > 10) & (x < 30) & (y > 10) & (y < 22)
    tree = (x - 45) ** 2 + (y - 25) ** 2 < 25
    z[bld], c[bld] = ground[bld] + 9.0, 6
    z[tree], c[tree] = ground[tree] + 7.0 - 0.1 * ((x[tree] - 45) ** 2 + (y[tree] - 25) ** 2), 5
    header = laspy.LasHeader(point_format=1, version="1.2")
    header.offsets = [0.0, 0.0, 0.0]
    header.scales = [0.01, 0.01, 0.01]
    las = laspy.LasData(header)
    las.x, las.y, las.z = x + 500_000.0, y + 6_000_000.0, z
    las.classification = c
    las.intensity = np.where(c == 6, 200, 100).astype(np.uint16)
    las.write(path)


def test_surface_cell() -> None:
    assert surface_cell_m(50.0, 0.5) == 0.5  # full density: the output grid
    assert surface_cell_m(3.0, 0.5) == 0.5
    assert surface_cell_m(0.3, 0.5) == 2.0  # decimated LiDAR HD tiles: ~1.2 returns per 2 m cell
    assert surface_cell_m(0.1, 0.5) == 4.0


@pytest.mark.parametrize("density", [20.0, 0.3])
def test_lidar_sample_labels_and_heights(tmp_path: Path, density: float) -> None:
    f = tmp_path / "scene.las"
    write_cloud(f, density)
    s = lidar_sample(f, res=0.5)
    assert s.x.shape == (3, 80, 120) and s.y.shape == (80, 120)
    assert s.cell_m == surface_cell_m(density, 0.5)
    rows, cols = np.mgrid[0:80, 0:120]
    xc, yc = (cols + 0.5) * 0.5, 40 - (rows + 0.5) * 0.5
    inside = (xc > 13) & (xc < 27) & (yc > 13) & (yc < 19)  # well inside the building
    crown = (xc - 45) ** 2 + (yc - 25) ** 2 < 9
    far = (xc > 34) & (xc < 38) & (yc < 10)  # open ground
    # cells without a return (dense cloud: ~1 %) are ignored, every other one has its class
    for region, label in ((inside, 1), (crown, 0), (far, 0)):
        assert np.isin(s.y[region], (label, 255)).all() and (s.y[region] == label).mean() > 0.95
    # materials of the highest returns (sat2lod.synth.scene codes: building 1, vegetation 2, ground 0)
    assert s.materials.shape == s.y.shape and s.materials.dtype == np.uint8
    for region, code in ((inside, 1), (crown, 2), (far, 0)):
        assert (s.materials[region] == code).mean() > 0.95
    ndsm_m = s.x[1] * NDSM_SCALE_M
    assert abs(np.median(ndsm_m[inside]) - 9.0) < 0.3  # terrain removed (the ground slopes 3 m across)
    assert np.median(ndsm_m[far]) < 0.3
    if density < 1:
        # the coarse grid's building edge is known to one cell: a band around it is ignored
        edge = (np.abs(xc - 10) < 0.5) & (yc > 12) & (yc < 20)
        assert (s.y[edge] == 255).all()
    else:
        assert (s.y == 255).mean() < 0.01  # a few empty cells at most


def test_lidar_sample_needs_ground(tmp_path: Path) -> None:
    f = tmp_path / "roofs.las"
    write_cloud(f, 5.0)
    las = laspy.read(f)
    las.classification = np.full(len(las.points), 6, np.uint8)
    las.write(f)
    with pytest.raises(ValueError, match="no ground return"):
        lidar_sample(f)


def test_read_points_errors(tmp_path: Path) -> None:
    with pytest.raises(LidarReadError, match="not found"):
        read_points([tmp_path / "missing.laz"])
    bad = tmp_path / "bad.laz"
    bad.write_bytes(b"LASF" + b"\0" * 50)
    with pytest.raises(LidarReadError, match="bad.laz"):
        read_points([bad])


@pytest.mark.parametrize("constant", [True, False])
def test_read_points_constant_colour_is_no_colour(tmp_path: Path, constant: bool) -> None:
    """A cloud whose points all carry one colour (IGN's pacasam test clouds: 65280 everywhere) has no usable
    colour: the ortho of its samples is the intensity, not a blank image."""
    f = tmp_path / "rgb.las"
    write_cloud(f, 2.0)
    src = laspy.read(f)
    las = laspy.LasData(laspy.LasHeader(point_format=3, version="1.2"))
    las.header.offsets, las.header.scales = src.header.offsets, src.header.scales
    las.x, las.y, las.z = src.x, src.y, src.z
    las.classification, las.intensity = src.classification, src.intensity
    colour = np.full(len(src.points), 65280, np.uint16)
    if not constant:
        colour = np.where(np.asarray(src.classification) == 6, 30000, 65280).astype(np.uint16)
    las.red, las.green, las.blue = colour, colour, colour
    las.write(f)
    assert ("rgb" in read_points([f])) is not constant
    s = lidar_sample(f)
    ok = s.y != 255
    # either way the ortho tells the roof from the ground (intensity 200 vs 100, or colour 30000 vs 65280)
    assert abs(np.median(s.x[0][ok & (s.y == 1)]) - np.median(s.x[0][ok & (s.y == 0)])) > 0.5


def test_default_model_lidar_files_present_and_unchanged() -> None:
    """The recipe's LiDAR files are the ones of ../shared/data (checked by sha256 when rebuilding); none of the
    clouds the benches evaluate on is among them."""
    from sat2lod.segment.default_model import LIDAR_FILES, lidar_training_samples

    if not DATA.is_dir():
        pytest.skip(f"{DATA} absent: the shared real data is not beside the repository")
    assert not any("myria3d" in f or "montpellier" in f or "870000_6618000" in f for f in LIDAR_FILES)
    assert all((DATA / f).is_file() for f in LIDAR_FILES)
    with pytest.raises(FileNotFoundError, match="--lidar-dir"):
        lidar_training_samples(DATA.parent / "no_such_folder")


def test_lidar_sample_real_crop() -> None:
    """A full-density IGN LiDAR HD crop with buildings and trees (pdal-ign-plugin/bat.laz)."""
    f = DATA / "pdal-ign-plugin" / "bat.laz"
    if not f.is_file():
        pytest.skip(f"{f} absent: the shared real data is not beside the repository")
    s = lidar_sample(f)
    pts = read_points([f])
    assert s.cell_m == 0.5 and s.x.shape[1:] == s.y.shape
    # the label follows the highest return's class: some building, more not-building (trees, ground)
    assert 0.05 < (s.y == 1).mean() < 0.4 and (s.y == 0).mean() > 0.4
    assert (pts["c"] == 6).any()
