"""An experiment's grid of independent cells, and the executors that run them.

The second paper's protocol is a grid of independent trainings (5 folds x 3 losses for
Table 1, x 2 input codings for Table 5, x seeds ...).  A **cell** is one of them: the
run's frozen configuration plus the cell's coordinates (``fold=0, loss="bce"``).
Running a cell is a pure function of that cell, a *job* (``job(cell)``) that

- seeds everything from the configuration and the cell's coordinates, never from the
  cells run before it in the same process,
- writes its own folder (``cells/<cell.name>/``: checkpoints, records, timings)
  atomically, and resumes from its checkpoints when it was killed,
- returns the cell's record (a JSON-able dict), which it also saved, so that a
  finished cell is read back instead of run again (``job.finished(cell)``).

Writing the table is a separate step that reads finished cells only (`require`).

Executors (`run_cells`):

- ``local`` (the default): one cell after another in this process;
- ``ray``: every unfinished cell as a Ray task (``ray.remote`` with the cell's
  `Resources`) on the Ray cluster at ``address``, or on a local instance started on
  this machine without one.  Failed tasks are retried ``max_retries`` times.

Either way a cell that fails is reported by name with its traceback while the other
cells finish, and TensorFlow runs each cell on ``num_cpus`` threads (intra- and
inter-op), so that parallel workers do not fight over cores and both executors do
the same arithmetic in the same order: same cells, same numbers.
"""

import json
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Cell:
    """One independent training of an experiment's grid.

    Parameters
    ----------
    name : str
        Its folder under the run's ``cells/`` (e.g. ``fold0/bce``), unique in the grid.
    coordinates : tuple of (str, value)
        Where it sits in the grid, e.g. ``(("fold", 0), ("loss", "bce"))``.
    """

    name: str
    coordinates: Tuple[Tuple[str, Any], ...] = ()

    def __getitem__(self, key):
        return dict(self.coordinates)[key]


@dataclass(frozen=True)
class Resources:
    """What one cell asks of the machine that runs it.

    Parameters
    ----------
    num_cpus : int
        Cores per cell (Ray's ``num_cpus``) and TensorFlow's intra- and inter-op
        threads while it runs; 0: every core of the machine running it (TensorFlow's
        own default, so a local run does exactly what it did before cells existed).
    num_gpus : float
        GPUs per cell (Ray's ``num_gpus``; Ray sets ``CUDA_VISIBLE_DEVICES`` for the
        task, and TensorFlow places the cell on its GPU).  Local cells use whatever
        GPU TensorFlow sees.
    max_retries : int
        How many times a failed cell is run again (from its checkpoints) before it is
        reported failed.
    """

    num_cpus: int = 0
    num_gpus: float = 0
    max_retries: int = 1

    def cpus(self):
        """The cores a cell gets: ``num_cpus``, or this machine's if 0."""
        return self.num_cpus or len(os.sched_getaffinity(0))


class FolderJob:
    """What every job of a grid shares (a base for frozen dataclasses with the fields
    ``out_dir`` and ``resume``): cell ``c`` lives in ``out_dir/cells/<c.name>/``, is
    finished once its record (the file ``record_name``) is there, and is then read back
    when the run resumes instead of run again.  A job defines ``run_cell(cell, folder)``,
    which returns the cell's record after writing it to ``folder / record_name``."""

    record_name = "scores.json"

    def folder(self, cell):
        return Path(self.out_dir) / "cells" / cell.name

    def finished(self, cell):
        return self.resume and (self.folder(cell) / self.record_name).exists()

    def __call__(self, cell):
        if self.finished(cell):
            return json.loads((self.folder(cell) / self.record_name).read_text())
        return self.run_cell(cell, self.folder(cell))


class GridIncomplete(RuntimeError):
    """Some cells of a grid are not finished (failed, or never run)."""


@dataclass
class GridResult:
    """What `run_cells` gives back: every finished cell's record by name, the
    traceback of every failed cell by name, and each cell's wall time (seconds, of
    the cells run in this invocation)."""

    records: Dict[str, dict] = field(default_factory=dict)
    failures: Dict[str, str] = field(default_factory=dict)
    seconds: Dict[str, float] = field(default_factory=dict)

    def require(self, cells, partial=False):
        """The records of ``cells`` in their order; a cell missing (failed, or never
        run) raises `GridIncomplete` naming it and its error, unless ``partial``, when
        the finished cells' records are returned alone."""
        missing = [cell.name for cell in cells if cell.name not in self.records]
        if missing and not partial:
            errors = "".join(f"\n--- {name} ---\n{self.failures[name].rstrip()}"
                             for name in missing if name in self.failures)
            raise GridIncomplete(f"{len(missing)} of {len(cells)} cells not finished: {', '.join(missing)} "
                                 f"(run again with --resume to finish them, or --partial for a table "
                                 f"marked partial){errors}")
        return [self.records[cell.name] for cell in cells if cell.name in self.records]


def limit_threads(num_cpus):
    """Run TensorFlow on ``num_cpus`` intra- and inter-op threads in this process.

    TensorFlow fixes its thread pools when it first runs an op: after that a request
    for other counts is refused (False, and the pools stay as they are); True if the
    pools have (or now will have) ``num_cpus`` threads."""
    import tensorflow as tf

    threading = tf.config.threading
    current = (threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads())
    # 0 is TensorFlow's default: as many threads as the process may use cores
    if current == (num_cpus, num_cpus) or (current == (0, 0) and num_cpus == len(os.sched_getaffinity(0))):
        return True
    try:
        threading.set_intra_op_parallelism_threads(num_cpus)
        threading.set_inter_op_parallelism_threads(num_cpus)
    except RuntimeError:  # "... cannot be modified after initialization"
        return False
    return True


def _run_one(job, cell, num_cpus):
    """A cell as a worker runs it: on ``num_cpus`` threads; returns its record and the
    seconds it ran (timed in the worker, so that a cell waiting in Ray's queue for a free
    worker is not counted as running)."""
    if not limit_threads(num_cpus):
        print(f"[cells] {cell.name}: TensorFlow already started with other thread counts; the cell "
              f"runs on those, not on {num_cpus}", file=sys.stderr, flush=True)
    start = time.time()
    record = job(cell)
    return record, time.time() - start


class Progress:
    """Prints cells done / running / failed / waiting with the time left, estimated
    from the mean wall time of the cells finished so far and the cells that run at
    once."""

    def __init__(self, total, parallel=1, out=print):
        self.total, self.parallel, self.out = total, max(1, parallel), out
        self.start = time.time()
        self.done = self.failed = 0
        self.durations = []

    def update(self, running, finished_seconds=None, failed=False):
        if failed:
            self.failed += 1
        elif finished_seconds is not None:
            self.done += 1
            self.durations.append(finished_seconds)
        waiting = self.total - self.done - self.failed - running
        left = ""
        if self.durations and running + waiting:
            mean = sum(self.durations) / len(self.durations)
            rounds = -(-(running + waiting) // self.parallel)
            left = f"; ~{rounds * mean / 60:.1f} min left"
        self.out(f"[cells] {self.done}/{self.total} done, {running} running, {self.failed} failed, "
                 f"{waiting} waiting ({(time.time() - self.start) / 60:.1f} min){left}", flush=True)


def run_cells(job, cells, executor="local", resources=Resources(), address=None, out=print):
    """Run every unfinished cell of ``cells`` with ``job`` on ``executor``.

    Parameters
    ----------
    job : callable
        ``job(cell)`` runs (or, finished, reads back) one cell and returns its record;
        ``job.finished(cell)`` says whether it is finished.  For Ray it must pickle
        (a module-level class or function; Ray's cloudpickle carries one defined in a
        script by value).
    cells : list of Cell
    executor : ``"local"`` or ``"ray"``
    resources : Resources
    address : str or None
        Ray only: the cluster to submit to (``ray start``'s address, or ``"auto"``);
        None starts a local Ray instance on this machine.
    out : callable
        Where progress lines go (``print``'s signature).

    Returns
    -------
    GridResult
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    names = [cell.name for cell in cells]
    if len(set(names)) != len(names):
        raise ValueError(f"cells with the same name (folder) in the grid: {names}")
    result = GridResult()
    pending = []
    for cell in cells:
        if job.finished(cell):
            result.records[cell.name] = job(cell)  # read back, not run
        else:
            pending.append(cell)
    if len(pending) < len(cells):
        out(f"[cells] {len(cells) - len(pending)} of {len(cells)} cells finished before: read back",
            flush=True)
    if pending:
        run = _run_local if executor == "local" else _run_ray
        run(job, pending, resources, address, result, out)
    return result


def _run_local(job, cells, resources, address, result, out):
    if address is not None:
        raise ValueError("--address is for the ray executor")
    progress = Progress(len(cells), 1, out)
    for cell in cells:
        progress.update(running=1)
        start = time.time()
        for attempt in range(resources.max_retries + 1):
            try:
                result.records[cell.name], _ = _run_one(job, cell, resources.cpus())
                result.failures.pop(cell.name, None)
                break
            except Exception:  # noqa: BLE001 (reported by name; the other cells go on)
                result.failures[cell.name] = traceback.format_exc()
                out(f"[cells] {cell.name} failed (attempt {attempt + 1} of {resources.max_retries + 1}):\n"
                    f"{result.failures[cell.name]}", flush=True)
        seconds = time.time() - start
        if cell.name in result.records:
            result.seconds[cell.name] = seconds
        progress.update(running=0, finished_seconds=seconds, failed=cell.name in result.failures)


def _run_ray(job, cells, resources, address, result, out):
    import ray

    if not ray.is_initialized():
        # no address: a local instance on this machine (never a cluster found by
        # chance); its object store is small, cells pass only their coordinates
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=True,
                 **({} if address else {"object_store_memory": 256 * 2 ** 20}))
    num_cpus = resources.cpus()
    task = ray.remote(num_cpus=num_cpus, num_gpus=resources.num_gpus, max_retries=resources.max_retries,
                      retry_exceptions=True)(_run_one)
    parallel = max(1, int(ray.cluster_resources().get("CPU", 1) // num_cpus))
    if resources.num_gpus:
        parallel = min(parallel, max(1, int(ray.cluster_resources().get("GPU", 0) // resources.num_gpus)))
    progress = Progress(len(cells), parallel, out)
    refs = {task.remote(job, cell, num_cpus): cell for cell in cells}
    progress.update(running=min(parallel, len(refs)))
    while refs:
        done, _ = ray.wait(list(refs), num_returns=1)
        for ref in done:
            cell = refs.pop(ref)
            seconds = None
            try:
                result.records[cell.name], seconds = ray.get(ref)
                result.seconds[cell.name] = seconds
            except Exception as error:  # noqa: BLE001 (the task's error, traceback included)
                # Ray's message holds the worker's traceback, coloured for a terminal
                result.failures[cell.name] = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
                out(f"[cells] {cell.name} failed after {resources.max_retries + 1} attempts:\n{error}",
                    flush=True)
            progress.update(running=min(parallel, len(refs)), finished_seconds=seconds,
                            failed=cell.name in result.failures)


def add_grid_arguments(parser):
    """The command-line options of an experiment whose run is a grid of cells:
    ``--executor``, ``--address``, ``--cpus-per-cell``, ``--gpus-per-cell``,
    ``--partial``."""
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: one cell after another (default); ray: every cell a Ray task")
    parser.add_argument("--address", default=None,
                        help="ray: the cluster's address (e.g. 'auto' or HOST:6379); default: a "
                             "local Ray instance on this machine")
    parser.add_argument("--cpus-per-cell", type=int, default=None,
                        help="cores (and TensorFlow threads) per cell (default: the profile's; 0: all)")
    parser.add_argument("--gpus-per-cell", type=float, default=None,
                        help="GPUs per cell for Ray (default: the profile's, 0)")
    parser.add_argument("--partial", action="store_true",
                        help="write the table from the finished cells even if some failed (marked partial)")
    return parser


@dataclass(frozen=True)
class GridOptions:
    """How a grid runs (not what it computes): the executor and its cluster, and
    whether a table may be written from some of the cells."""

    executor: str = "local"
    address: Optional[str] = None
    partial: bool = False

    @classmethod
    def from_args(cls, args):
        return cls(executor=getattr(args, "executor", "local"), address=getattr(args, "address", None),
                   partial=getattr(args, "partial", False))


def resources_from_args(resources, args):
    """``resources`` with the command line's ``--cpus-per-cell``/``--gpus-per-cell``."""
    from dataclasses import replace

    changes = {key: value for key, value in (("num_cpus", getattr(args, "cpus_per_cell", None)),
                                             ("num_gpus", getattr(args, "gpus_per_cell", None)))
               if value is not None}
    return replace(resources, **changes)


def run_from_args(run, config, out_dir, args, *positional, **keywords):
    """``run(config, *positional, out_dir, grid=..., **keywords)`` as a command line asks:
    ``config`` with the line's resources per cell (`resources_from_args`), the grid
    options of `add_grid_arguments`, and a grid left incomplete turned into one error
    naming the run's folder and the cells missing (`SystemExit`)."""
    from dataclasses import replace

    config = replace(config, resources=resources_from_args(config.resources, args))
    try:
        return run(config, *positional, out_dir, grid=GridOptions.from_args(args), **keywords)
    except GridIncomplete as error:
        raise SystemExit(f"{out_dir}: {error}") from None


Job = Callable[[Cell], dict]
