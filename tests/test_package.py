"""Package-level behaviour: quiet imports, the data directory setting, the CPU a result records."""

import os
import re
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


def test_results_record_the_cpu_as_lscpu_names_it_and_the_onednn_setting():
    from nengo_hybrid.report import cpu, describe_cpu, versions

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    recorded = versions()["cpu"]
    assert recorded == cpu()
    assert recorded["model"] == fields["Model name"]
    assert recorded["family"] == fields["CPU family"] and recorded["model_number"] == fields["Model"]
    assert recorded["cores"] == int(fields["CPU(s)"])
    assert recorded["avx512_vnni"] == ("avx512_vnni" in fields.get("Flags", "").split())
    assert recorded["stepping"] == fields.get("Stepping")
    # each cache's size per instance, as lscpu totals it ("1 MiB (2 instances)")
    for level in ("L1d", "L2", "L3"):
        said = re.fullmatch(r"([\d.]+) (KiB|MiB|GiB)(?: \((\d+) instances?\))?", fields.get(f"{level} cache", ""))
        if said and level in recorded["caches"]:
            total_kib = float(said[1]) * {"KiB": 1, "MiB": 1024, "GiB": 1024 ** 2}[said[2]]
            assert int(recorded["caches"][level].rstrip("K")) == total_kib / int(said[3] or 1), level
    # importing the package sets oneDNN's switch (on, unless the user said otherwise)
    assert recorded["onednn"] == os.environ["TF_ENABLE_ONEDNN_OPTS"]
    assert recorded["onednn_primitive_cache"] == os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "default")
    assert describe_cpu(recorded).startswith(f"{fields['Model name']} (family {fields['CPU family']}, model ")



def test_the_onednn_kernel_cache_setting_is_the_users_and_is_recorded():
    # the package leaves oneDNN's kernel cache as the user has it, and a run records it
    code = ("import os, nengo_hybrid; from nengo_hybrid.report import cpu; "
            "print(os.environ.get('ONEDNN_PRIMITIVE_CACHE_CAPACITY', '-'), cpu()['onednn_primitive_cache'])")
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    unset = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert unset.returncode == 0, unset.stderr
    assert unset.stdout.split() == ["-", "default"]
    mine = run_python(code, ONEDNN_PRIMITIVE_CACHE_CAPACITY="0")
    assert mine.stdout.split() == ["0", "0"], mine.stderr
