"""Suite-wide fixtures."""

import os
from pathlib import Path

import pytest


def pytest_configure(config):
    """Under pytest-xdist (``-n N``) each worker gets its share of the cores as torch threads: N workers
    each at torch's default (every core) would oversubscribe the machine N times over."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(autouse=True, scope="session")
def _private_proposal_cache(tmp_path_factory):
    """Selective-search proposals go to a throw-away cache, never the user's ~/.cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("DETKIT_CACHE_DIR", str(tmp_path_factory.mktemp("proposal_cache")))
    yield
    patch.undo()


@pytest.fixture(autouse=True, scope="session")
def _never_download():
    """No test reaches the network: a weights file not on disk is an offline error, as on our machines.
    Download tests lift this and serve files from a ``file://`` mirror (tests/test_download.py)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("DETKIT_OFFLINE", "1")
    patch.delenv("DETKIT_WEIGHTS_MIRROR", raising=False)
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _cpu_threads_restored():
    """A command sets its process's CPU threads (``--threads``, else detkit's default): the tests after it
    get the suite's count back, so no test's speed depends on which command ran before it."""
    import cv2
    import torch

    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    yield
    if torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
    if cv2.getNumThreads() != cv2_threads:
        cv2.setNumThreads(cv2_threads)


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data():
    """``shared_data("bccd", "BCCD")``: a path under ../shared/data, or skip the test when it is absent
    (a fresh checkout has no shared/ folder)."""

    def locate(*parts: str) -> Path:
        path = SHARED_DATA.joinpath(*parts)
        if not path.exists():
            pytest.skip(f"{path} not present")
        return path

    return locate
