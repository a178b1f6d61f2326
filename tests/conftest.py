"""Suite-wide fixtures."""

from pathlib import Path

import pytest


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
