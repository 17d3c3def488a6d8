"""Shared fixtures: paths to the real data beside the repo, and small synthetic scenes."""

from __future__ import annotations

from pathlib import Path

import pytest

from background import BackgroundRun

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repo; tests using it are skipped (with the reason) when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (expected ../shared/data beside the repo)")
    return SHARED_DATA


def shared_file(*parts: str) -> Path:
    """Path of a file under ../shared/data, or skip the test with a message naming it."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real test data file missing: {p}")
    return p


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: deterministic and fast on a 2-core machine (threads fight otherwise)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


_RUNS = pytest.StashKey[dict]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules holding a ``background`` test go last (their own order kept, so that module fixtures are
    made once): the rest of the suite then runs while their background runs go on, instead of waiting on them
    halfway through the session."""
    waits = {item.module.__name__ for item in items if item.get_closest_marker("background")}
    items.sort(key=lambda item: item.module.__name__ in waits)  # stable: the order within each group is kept


@pytest.fixture(scope="session", autouse=True)
def _background_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Start the run of every selected test marked ``background`` (tests/background.py) when the session starts."""
    runs: dict[str, BackgroundRun] = {}
    for item in request.session.items:
        marker = item.get_closest_marker("background")
        if marker is None or item.nodeid in runs:
            continue
        fn = getattr(item.module, marker.args[0])
        after = next(reversed(runs.values()), None)  # one after the other (tests/background.py says why)
        runs[item.nodeid] = BackgroundRun(item.name, fn, tmp_path_factory.mktemp(item.name[:40]), after)
    request.config.stash[_RUNS] = runs
    for run in runs.values():
        run.start()
    yield
    # a run whose test never joined it (test deselected by -x, interrupted) is left to its own timeouts


@pytest.fixture
def background_run(request: pytest.FixtureRequest):
    """What this test's background function returned (waits for it; raises what it raised)."""
    run = request.config.stash[_RUNS].get(request.node.nodeid)
    if run is None:
        pytest.fail(f"{request.node.nodeid} uses background_run without @pytest.mark.background")
    return run.outcome(timeout_s=1800)
