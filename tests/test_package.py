"""Package-level behaviour: quiet imports, the data directory setting."""

import os
import subprocess
import sys
from pathlib import Path

from nengo_hybrid.paths import DATA_ENV, data_dir

SNIPPET = "import nengo_hybrid, tensorflow as tf; tf.keras.Sequential(); print(float(tf.reduce_sum(tf.ones(3))))"


def run_python(code, **env):
    full_env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=300)


def test_tensorflow_log_noise_is_off_by_default_and_can_be_turned_on():
    quiet = run_python(SNIPPET)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip() == "3.0"
    assert "tensorflow/" not in quiet.stderr, quiet.stderr

    loud = run_python(SNIPPET, TF_CPP_MIN_LOG_LEVEL="0")
    assert loud.returncode == 0
    assert "tensorflow/" in loud.stderr


def test_data_dir_flag_beats_environment_beats_default(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert data_dir() == Path("data")
    monkeypatch.setenv(DATA_ENV, "/somewhere/else")
    assert data_dir() == Path("/somewhere/else")
    assert data_dir("/from/flag") == Path("/from/flag")
