"""Atomic writes (`nengo_hybrid.atomic`): a target is either its old self or its complete
new self, never half, whether the writer finishes, raises or is killed."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from nengo_hybrid.atomic import replacing, save_array, write_json, write_text

REPO = Path(__file__).resolve().parents[1]


def listing(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def test_new_target_appears_only_when_the_block_ends(tmp_path):
    target = tmp_path / "table.csv"
    with replacing(target) as tmp:
        tmp.write_text("a,b\n1,2\n")
        # the writer's data is in the temporary file, the target does not exist yet
        assert not target.exists()
        assert tmp.read_text() == "a,b\n1,2\n"
        assert tmp.parent == target.parent and tmp != target
    assert target.read_text() == "a,b\n1,2\n"
    assert listing(tmp_path) == ["table.csv"]  # the temporary file became the target


def test_old_content_is_kept_while_the_new_one_is_written(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    with replacing(target) as tmp:
        tmp.write_text("new, half")
        assert target.read_text() == "old"
        with open(tmp, "a") as f:
            f.write(" and the rest")
        assert target.read_text() == "old"
    assert target.read_text() == "new, half and the rest"
    assert listing(tmp_path) == ["state.json"]


def test_a_writer_that_raises_leaves_the_old_content_and_no_temporary_file(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with replacing(target) as tmp:
            tmp.write_text("half of the new")
            assert tmp.exists()
            raise RuntimeError("disk on fire")
    assert target.read_text() == "old"
    assert listing(tmp_path) == ["state.json"]


def test_a_writer_that_raises_before_writing_anything_changes_nothing(tmp_path):
    # no temporary file was ever created: the cleanup must not fail on it
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(KeyError):
        with replacing(target):
            raise KeyError("x")
    assert target.read_text() == "old" and listing(tmp_path) == ["a.txt"]


def test_a_new_target_that_fails_never_appears(tmp_path):
    target = tmp_path / "new.txt"
    with pytest.raises(ValueError):
        with replacing(target) as tmp:
            tmp.write_text("partial")
            raise ValueError
    assert listing(tmp_path) == []


def test_the_folder_is_created(tmp_path):
    target = tmp_path / "deep" / "er" / "figure.png"
    with replacing(target) as tmp:
        assert tmp.parent.is_dir() and tmp.parent == target.parent
        tmp.write_bytes(b"\x89PNG")
    assert target.read_bytes() == b"\x89PNG"
    assert listing(target.parent) == ["figure.png"]


def test_a_given_suffix_ends_the_hidden_temporary_name(tmp_path):
    target = tmp_path / "masks" / "hippocampus_001.nii.gz"
    with replacing(target, suffix=".nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz")
        assert tmp.name.startswith(".")
        assert tmp.parent == target.parent
        assert tmp.name != target.name
        tmp.write_bytes(b"volume")
    assert target.read_bytes() == b"volume"
    assert listing(target.parent) == ["hippocampus_001.nii.gz"]


def test_by_default_the_temporary_name_keeps_the_last_suffix(tmp_path):
    target = tmp_path / "figure.png"
    with replacing(target) as tmp:
        assert tmp.name.startswith(".") and tmp.suffix == ".png"
        tmp.write_bytes(b"x")
    assert target.read_bytes() == b"x"


def test_write_json_round_trips_numpy_values_and_paths(tmp_path):
    data = {
        "f32": np.float32(0.5),
        "f64": np.float64(1 / 3),
        "i64": np.int64(-7),
        "u8": np.uint8(200),
        "yes": np.bool_(True),
        "no": np.bool_(False),
        "matrix": np.array([[1, 2], [3, 4]], dtype=np.int32),
        "floats": np.array([0.25, -1.5]),
        "path": Path("runs") / "cae" / "state.json",
        "nested": [np.int16(3), {"deeper": np.array([True, False])}],
        "plain": [1, "two", None, 2.5],
    }
    path = tmp_path / "out" / "record.json"
    write_json(path, data)
    loaded = json.loads(path.read_text())
    assert loaded == {
        "f32": 0.5,
        "f64": 1 / 3,
        "i64": -7,
        "u8": 200,
        "yes": True,
        "no": False,
        "matrix": [[1, 2], [3, 4]],
        "floats": [0.25, -1.5],
        "path": str(Path("runs") / "cae" / "state.json"),
        "nested": [3, {"deeper": [True, False]}],
        "plain": [1, "two", None, 2.5],
    }
    # the types survive, not only the values (True == 1 in Python)
    assert type(loaded["yes"]) is bool and type(loaded["i64"]) is int and type(loaded["f64"]) is float
    assert listing(path.parent) == ["record.json"]


@pytest.mark.parametrize("value, name", [({1, 2}, "set"), (object(), "object"),
                                         (np.complex128(1 + 2j), "complex128")])
def test_write_json_refuses_other_objects_naming_their_type(tmp_path, value, name):
    path = tmp_path / "record.json"
    path.write_text('{"old": 1}')
    with pytest.raises(TypeError, match=rf"\b{name}\b"):
        write_json(path, {"value": value})
    # nothing half-written replaces the old file
    assert json.loads(path.read_text()) == {"old": 1}
    assert listing(tmp_path) == ["record.json"]


@pytest.mark.parametrize("name", ["atlas.npy", "atlas.bin"])
def test_save_array_round_trips(tmp_path, name):
    array = np.random.RandomState(0).normal(size=(3, 4, 5)).astype(np.float32)
    path = tmp_path / "sub" / name
    save_array(path, array)
    loaded = np.load(path)
    assert loaded.dtype == np.float32 and loaded.shape == (3, 4, 5)
    np.testing.assert_array_equal(loaded, array)
    # written under exactly the given name (np.save adds no second ".npy")
    assert listing(path.parent) == [name]


def test_save_array_takes_lists(tmp_path):
    path = tmp_path / "a.npy"
    save_array(path, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(np.load(path), np.array([[1, 2], [3, 4]]))


def test_write_text_round_trips_and_replaces(tmp_path):
    path = tmp_path / "notes" / "README.md"
    text = "# Title\n\nünïcödé, tabs\tand\nlines\n"
    write_text(path, text)
    assert path.read_text() == text
    write_text(path, "shorter")
    assert path.read_text() == "shorter"  # replaced, not overwritten in place
    assert listing(path.parent) == ["README.md"]


def test_a_killed_writer_leaves_the_old_content(tmp_path):
    target = tmp_path / "state.json"
    old = json.dumps({"epoch": 3, "checkpoint": "epoch0003"})
    target.write_text(old)
    new = json.dumps({"epoch": 4, "checkpoint": "epoch0004", "history": list(range(100))})
    script = textwrap.dedent(f"""
        import importlib.util, os
        # the module alone, without the package's heavy imports (TensorFlow)
        spec = importlib.util.spec_from_file_location("atomic", {str(REPO / "nengo_hybrid" / "atomic.py")!r})
        atomic = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(atomic)
        replacing = atomic.replacing
        data = {new!r}
        with replacing({str(target)!r}) as tmp:
            with open(tmp, "w") as f:
                f.write(data[: len(data) // 2])
            print(tmp.name, flush=True)
            os._exit(1)
        print("never", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stderr
    tmp_name = done.stdout.strip()
    assert tmp_name and "never" not in done.stdout
    assert target.read_text() == old
    # a killed writer cannot clean up: its half file stays beside, hidden, never the target
    assert tmp_name.startswith(".") and tmp_name != target.name
    assert (tmp_path / tmp_name).read_text() == new[: len(new) // 2]
    assert set(listing(tmp_path)) == {"state.json", tmp_name}
