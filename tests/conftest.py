import os

import pytest

from nengo_hybrid.paths import data_dir


@pytest.fixture(scope="session")
def data_root():
    """The real data directory; CI must have it, elsewhere its absence skips."""
    root = data_dir()
    if not (root / "caltech101").is_dir():
        message = (
            f"no data at {root.resolve()} (set NENGO_HYBRID_DATA, or run `make data`)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture(scope="session")
def msd_root(data_root):
    """The real Decathlon hippocampus folder under the data directory (skips, or fails
    in CI, without it)."""
    root = data_root / "msd_hippocampus"
    if not root.is_dir():
        message = f"no {root.resolve()} (run `make data`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root
