import os

import pytest

from nengo_hybrid.paths import data_dir


def skip_or_fail(message):
    """Missing data: CI must have it (fail); elsewhere the test is skipped."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def data_root():
    """The real data directory; CI must have it, elsewhere its absence skips."""
    root = data_dir()
    if not (root / "caltech101").is_dir():
        skip_or_fail(f"no data at {root.resolve()} (set NENGO_HYBRID_DATA, or run `make data`)")
    return root


@pytest.fixture(scope="session")
def msd_root(data_root):
    """The real Decathlon hippocampus folder under the data directory (skips, or fails
    in CI, without it)."""
    root = data_root / "msd_hippocampus"
    if not root.is_dir():
        skip_or_fail(f"no {root.resolve()} (run `make data`)")
    return root


def run_experiment(script, *args, timeout=1500):
    """Run ``experiments/<script>`` with ``args`` in a subprocess from the project root;
    fail with the end of its stderr unless it succeeds."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "experiments" / script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="session")
def unet_quick_run(msd_root, tmp_path_factory):
    """One quick-profile U-Net run on the real hippocampus volumes (trained once per
    test session: the U-Net's tests and the sweeps that read a trained run share it)."""
    out = tmp_path_factory.mktemp("unet") / "run"
    run_experiment("unet.py", "run", "--profile", "quick", "--out", out, "--data", msd_root.parent)
    return out
