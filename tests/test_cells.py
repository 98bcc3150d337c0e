"""The grid machinery on its own (`nengo_hybrid.cells`): what each executor runs, what
it reads back, how a failing cell is reported while the others finish, and the table
step's refusal of an incomplete grid.  The jobs here are stand-ins for a training (they
write a record and may raise); the U-Net's real cells run in test_unet_experiment.py."""

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from nengo_hybrid.cells import Cell, GridIncomplete, Resources, limit_threads, run_cells

CELLS = [Cell(f"fold{fold}/{loss}", (("fold", fold), ("loss", loss))) for fold in (0, 1) for loss in ("bce", "dice")]


@dataclass(frozen=True)
class WriteRecordJob:
    """Writes ``cells/<name>/record.json`` (the cell's coordinates and the TensorFlow
    threads it ran on) and logs every attempt; the cells named in ``failing`` raise."""

    out_dir: str
    failing: tuple = ()

    def folder(self, cell):
        return Path(self.out_dir) / "cells" / cell.name

    def finished(self, cell):
        return (self.folder(cell) / "record.json").exists()

    def __call__(self, cell):
        import tensorflow as tf

        folder = self.folder(cell)
        if self.finished(cell):
            return json.loads((folder / "record.json").read_text())
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "attempts.log", "a") as log:
            log.write("attempt\n")
        if cell.name in self.failing:
            raise ValueError(f"no data for {cell.name}")
        record = {**dict(cell.coordinates), "threads": tf.config.threading.get_intra_op_parallelism_threads()}
        (folder / "record.json").write_text(json.dumps(record))
        return record


@pytest.fixture(autouse=True)
def started_tensorflow():
    """TensorFlow already running in this process, as in any test session: a local
    cell cannot then change this process's threads (and must not)."""
    import tensorflow as tf

    tf.constant(1.0) + 1.0  # noqa: B018


def attempts(tmp_path, name):
    path = tmp_path / "cells" / name / "attempts.log"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    # the test's jobs travel to the workers by value: the workers cannot import this file
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 * 2 ** 20,
             log_to_driver=False)
    yield ray
    ray.shutdown()


def test_local_runs_every_cell_in_order_and_reads_finished_ones_back(tmp_path):
    lines = []
    job = WriteRecordJob(str(tmp_path))
    result = run_cells(job, CELLS, out=lambda *a, **k: lines.append(a[0]))
    assert [r["fold"] for r in result.require(CELLS)] == [0, 0, 1, 1]
    assert [r["loss"] for r in result.require(CELLS)] == ["bce", "dice", "bce", "dice"]
    assert set(result.seconds) == {c.name for c in CELLS} and not result.failures
    assert lines[-1].startswith("[cells] 4/4 done, 0 running, 0 failed, 0 waiting")
    assert any("~" in line and "min left" in line for line in lines)

    again = run_cells(job, CELLS, out=lambda *a, **k: None)
    assert again.records == result.records and not again.seconds  # read back, nothing run
    assert all(attempts(tmp_path, c.name) == 1 for c in CELLS)


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_failing_cell_is_reported_by_name_while_the_others_finish(tmp_path, executor, request):
    if executor == "ray":
        request.getfixturevalue("local_ray")
    lines = []
    job = WriteRecordJob(str(tmp_path), failing=("fold0/dice",))
    result = run_cells(job, CELLS, executor, Resources(num_cpus=1, max_retries=1),
                       out=lambda *a, **k: lines.append(a[0]))
    assert sorted(result.records) == ["fold0/bce", "fold1/bce", "fold1/dice"]
    assert list(result.failures) == ["fold0/dice"]
    assert "ValueError: no data for fold0/dice" in result.failures["fold0/dice"]
    assert "in __call__" in result.failures["fold0/dice"]  # its traceback, down to the raise
    assert attempts(tmp_path, "fold0/dice") == 2  # retried once, then reported
    assert any("fold0/dice failed" in line for line in lines)
    # the cells ran on the threads their resources give them
    assert {r["threads"] for r in result.records.values()} <= {1, limit_threads_now()}

    with pytest.raises(GridIncomplete, match=r"1 of 4 cells not finished: fold0/dice(.|\n)*no data for fold0/dice"):
        result.require(CELLS)
    assert [r["loss"] + str(r["fold"]) for r in result.require(CELLS, partial=True)] == ["bce0", "bce1", "dice1"]


def limit_threads_now():
    """The intra-op threads of this (test) process, whose TensorFlow started long ago."""
    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads()


def test_ray_gives_the_local_records(tmp_path, local_ray):
    local = run_cells(WriteRecordJob(str(tmp_path / "local")), CELLS, "local", Resources(num_cpus=1),
                      out=lambda *a, **k: None)
    ray_result = run_cells(WriteRecordJob(str(tmp_path / "ray")), CELLS, "ray", Resources(num_cpus=1),
                           out=lambda *a, **k: None)
    # a Ray worker is a fresh process: its TensorFlow takes the cell's one thread
    assert all(r["threads"] == 1 for r in ray_result.records.values())
    assert {k: {**v, "threads": 1} for k, v in local.records.items()} == ray_result.records


@dataclass(frozen=True)
class SleepJob:
    """A cell that takes ``seconds`` of wall time."""

    seconds: float

    def finished(self, cell):
        return False

    def __call__(self, cell):
        import time

        time.sleep(self.seconds)
        return {"cell": cell.name}


def test_ray_times_each_cell_while_it_runs_not_while_it_waits(local_ray):
    # two CPUs a cell on a 2-CPU instance: one cell at a time, the other three queue; each
    # cell's time (which the progress estimate averages) is its own ~0.5 s, where timing
    # from submission would give ~0.5, 1, 1.5, 2 s
    result = run_cells(SleepJob(0.5), CELLS, "ray", Resources(num_cpus=2), out=lambda *a, **k: None)
    assert sorted(result.records) == sorted(c.name for c in CELLS)
    assert all(0.5 <= seconds < 0.9 for seconds in result.seconds.values()), result.seconds


def test_the_grid_refuses_duplicate_cells_and_unknown_executors(tmp_path):
    job = WriteRecordJob(str(tmp_path))
    with pytest.raises(ValueError, match="same name"):
        run_cells(job, CELLS + CELLS[:1])
    with pytest.raises(ValueError, match="executor 'slurm'"):
        run_cells(job, CELLS, "slurm")
    with pytest.raises(ValueError, match="--address is for the ray executor"):
        run_cells(job, CELLS, "local", address="auto")


def test_limit_threads_refuses_once_tensorflow_has_started():
    current = limit_threads_now()
    assert limit_threads(current)  # what it already has
    assert not limit_threads(current + 1)


def test_a_cell_reads_its_coordinates():
    cell = CELLS[3]
    assert (cell.name, cell["fold"], cell["loss"]) == ("fold1/dice", 1, "dice")
