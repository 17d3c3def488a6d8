"""Workflow glue: the lines a run starts with (what will run, from what, roughly how long), log levels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sat2lod.config import load_config
from sat2lod.workflow import run_overview

REPO = Path(__file__).resolve().parents[1]


def test_demo_overview_names_the_run_and_its_time():
    cfg = load_config(REPO / "config" / "config.yaml")
    lines = run_overview(cfg, 2, "src/sat2lod/data/segmenter_default.pt", trains=False)
    assert len(lines) == 3
    assert "AOI 'demo' (0.36 km²)" in lines[0] and "synthetic city (600 m x 600 m, 3 views" in lines[0]
    assert "U-Net with src/sat2lod/data/segmenter_default.pt" in lines[1]
    assert lines[2].startswith("Expected: roughly 2 min with 2 cores")


def test_training_and_fewer_cores_take_longer():
    cfg = load_config(REPO / "config" / "config.yaml")
    quick = run_overview(cfg, 2, "m.pt", trains=False)[2]
    trains = run_overview(cfg, 2, "results/models/segmenter.pt", trains=True)
    assert "U-Net trained first (800 steps" in trains[1]
    assert trains[2].startswith("Expected: roughly 10 min with 2 cores") and quick != trains[2]
    assert run_overview(cfg, 1, "m.pt", trains=False)[2].startswith("Expected: roughly 3 min with 1 core ")


def test_cluster_runs_get_a_cpu_time_estimate():
    cfg = load_config(REPO / "config" / "config.yaml")
    lines = run_overview(cfg, None, "m.pt", trains=False)
    assert lines[2].startswith("Expected: roughly 3 min of CPU time over the cluster's jobs")


def test_local_images_without_bbox_give_a_rate_per_km2():
    cfg = load_config(REPO / "config" / "config.yaml")
    cfg["source"]["kind"] = "local"
    cfg["source"]["local"] = {"images": ["a.tif", "b.tif"]}
    cfg["aoi"]["bbox_lonlat"] = None
    lines = run_overview(cfg, 2, None, trains=False)
    assert "area set by the images" in lines[0] and "2 local images" in lines[0]
    assert "per km² of images" in lines[2]


def test_eodag_info_lines_are_hidden_unless_debugging():
    import logging

    from sat2lod.workflow import setup_logging

    eodag = logging.getLogger("eodag.api.core")
    try:
        setup_logging(None, logging.INFO)
        # "unknown collection X" / "Download url: ..." are INFO lines of EODAG: hidden, warnings kept
        assert not eodag.isEnabledFor(logging.INFO) and eodag.isEnabledFor(logging.WARNING)
        assert logging.getLogger("sat2lod").isEnabledFor(logging.INFO)
        setup_logging(None, logging.DEBUG)
        assert eodag.isEnabledFor(logging.DEBUG)
    finally:
        setup_logging(None, logging.WARNING)


def test_finetuning_on_user_footprints_is_announced():
    cfg = load_config(REPO / "tests" / "data" / "config_tiny.yaml")
    cfg["segmentation"]["labels"] = "osm_buildings.gpkg"
    lines = run_overview(cfg, 2, "results/models/segmenter.pt", trains=True)
    assert "fine-tuned on the footprints of osm_buildings.gpkg (100 steps)" in lines[1]


def test_cap_threads_caps_numba_imported_before_or_after():
    """A job's thread cap holds for numba whether the rule's module imported it before setup() or imports it
    later (setup does not import numba itself: rules without numba kernels skip its import), and never
    raises a cap the environment set lower."""
    code = (
        "import sys, os\n"
        "from sat2lod.workflow import cap_threads\n"
        "{before}"
        "cap_threads({threads})\n"
        "loaded = 'numba' in sys.modules\n"
        "import numba\n"
        "print(loaded, numba.get_num_threads())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    cases = [
        ("", 1, {}, "False 1"),
        ("import numba\n", 1, {}, "True 1"),
        ("", 1, {"NUMBA_NUM_THREADS": "1"}, "False 1"),
    ]
    cases.append(("", 2, {"NUMBA_NUM_THREADS": "1"}, "False 1"))  # a lower cap of the environment stays
    for before, threads, extra, expected in cases:
        out = subprocess.run(
            [sys.executable, "-c", code.format(before=before, threads=threads)],
            env={**env, **extra},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert out == expected, (before, threads, extra, out)


def test_tile_jobs_split_the_grid_in_order() -> None:
    from sat2lod.workflow import tile_jobs

    tiles = [f"t{r:04d}_{c:04d}" for r in range(3) for c in range(3)]
    jobs = tile_jobs(tiles, 4)
    # ceil(9 / 4) = 3 jobs of consecutive tiles, sizes within one of each other, the first ones larger
    assert list(jobs) == ["j0000", "j0001", "j0002"]
    assert [len(v) for v in jobs.values()] == [3, 3, 3]
    assert [t for v in jobs.values() for t in v] == tiles
    assert [len(v) for v in tile_jobs(tiles[:7], 3).values()] == [3, 2, 2]
    assert tile_jobs(tiles, 1) == {f"j{k:04d}": [t] for k, t in enumerate(tiles)}
    assert tile_jobs(tiles, 16) == {"j0000": tiles}
    assert tile_jobs([], 4) == {}
    with pytest.raises(ValueError, match="tiles_per_job must be >= 1"):
        tile_jobs(tiles, 0)
    with pytest.raises(ValueError, match="raise tiling.tiles_per_job"):
        tile_jobs([f"t{k:04d}_0000" for k in range(10_001)], 1)


def test_job_archives_round_trip(tmp_path: Path) -> None:
    """A job's tiles are packed into one deterministic tar; the merge side unpacks them in tile order, refuses a
    tile two archives hold or a missing file, and leaves nothing behind; a failed job leaves no archive."""
    import tarfile

    from sat2lod.workflow import tile_folders, unpacked_tiles

    def job(archive: Path, tiles: list[str]) -> None:
        for tile, folder in tile_folders(tiles, archive):
            (folder / "a.txt").write_text(f"a {tile}")
            (folder / "b.txt").write_text(f"b {tile}")

    job(tmp_path / "j0000.tar", ["t0000_0001", "t0000_0000"])
    job(tmp_path / "j0001.tar", ["t0001_0000"])
    with tarfile.open(tmp_path / "j0000.tar") as tar:
        assert tar.getnames() == [
            "t0000_0000/a.txt",
            "t0000_0000/b.txt",
            "t0000_0001/a.txt",
            "t0000_0001/b.txt",
        ]
        assert {(m.mtime, m.uid, m.uname) for m in tar.getmembers()} == {(0, 0, "")}
    first = (tmp_path / "j0000.tar").read_bytes()
    job(tmp_path / "j0000.tar", ["t0000_0000", "t0000_0001"])
    assert (tmp_path / "j0000.tar").read_bytes() == first  # the same files give the same bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j0000.tar", "j0001.tar"]  # no staging left

    archives = [str(tmp_path / "j0000.tar"), str(tmp_path / "j0001.tar")]
    with unpacked_tiles(archives, "b.txt", "a.txt") as (bs, as_):
        assert [Path(p).read_text() for p in as_] == ["a t0000_0000", "a t0000_0001", "a t0001_0000"]
        assert [Path(p).parent.name for p in bs] == ["t0000_0000", "t0000_0001", "t0001_0000"]
        unpacked = Path(as_[0]).parents[2]
    assert not unpacked.exists()
    with (
        pytest.raises(FileNotFoundError, match="also in"),
        unpacked_tiles([archives[0], archives[0]], "a.txt"),
    ):
        pass
    with pytest.raises(FileNotFoundError, match="no tile file"), unpacked_tiles(archives, "c.txt"):
        pass

    with pytest.raises(RuntimeError):  # a tile fails: no archive, no staging folder
        for tile, _ in tile_folders(["t0002_0000"], tmp_path / "j0002.tar"):
            raise RuntimeError(tile)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j0000.tar", "j0001.tar"]
