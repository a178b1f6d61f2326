"""Suite-wide fixtures."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_proposal_cache(tmp_path_factory):
    """Selective-search proposals go to a throw-away cache, never the user's ~/.cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("DETKIT_CACHE_DIR", str(tmp_path_factory.mktemp("proposal_cache")))
    yield
    patch.undo()
