"""An experiment repeated over seeds (``--seeds N``): each seed a cell of a grid
(`nengo_hybrid.cells`), then one table of every model's mean and spread over the seeds.

A seed cell runs the whole experiment, unchanged, in ``cells/seed<s>/`` with every seed
of its configuration set to ``s`` (`nengo_hybrid.paths.with_seed`: the split, the
initial weights, the validation split, the epoch shuffles and the Poisson draws), where
the seeds are ``config.seed, config.seed + 1, ...``: the first cell is the run a single
seed would have made.  The summary table has, for each model (the floor included, whose
value moves with the split), each metric's mean over the seeds, its standard deviation
(:math:`\\sqrt{\\frac{1}{n}\\sum_s (x_s - \\bar x)^2}`), and the value of every seed.
"""

import json
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from nengo_hybrid import report
from nengo_hybrid.cells import (Cell, FolderJob, GridIncomplete, GridOptions, Resources, add_grid_arguments,
                                resources_from_args, run_cells)
from nengo_hybrid.experiment import ExperimentRun
from nengo_hybrid.paths import with_seed


@dataclass(frozen=True)
class SeedJob(FolderJob):
    """One seed of an experiment: ``run(config with the seed, *inputs, folder,
    resume=...)``, whose table (``<table>.json``, a list of records with ``model``) is
    the cell's record."""

    run: Callable
    config: Any
    inputs: tuple
    table: str
    out_dir: str
    resume: bool = False

    @property
    def record_name(self):
        return f"{self.table}.json"

    def run_cell(self, cell, folder):
        self.run(with_seed(self.config, cell["seed"]), *self.inputs, folder, resume=self.resume)
        return json.loads((folder / self.record_name).read_text())


def seed_cells(config, n_seeds):
    """``n_seeds`` cells ``seed<s>`` for ``s = config.seed, config.seed + 1, ...``."""
    if n_seeds < 1:
        raise ValueError(f"--seeds {n_seeds}: at least one seed")
    return [Cell(f"seed{config.seed + k}", (("seed", config.seed + k),)) for k in range(n_seeds)]


@dataclass(frozen=True)
class SeedsTable:
    """What an experiment's ``--seeds`` table shows: its name (the table file of a single
    run, e.g. ``"table1"``), the ``(key, header)`` metrics averaged over seeds, and the
    words under it."""

    table: str
    metrics: tuple
    caption: str


def run_seeds(run, config, inputs, out_dir, n_seeds, table, metrics, caption, resume=False, grid=GridOptions(),
              resources=Resources()):
    """Run the experiment ``run`` for ``n_seeds`` seeds as grid cells through ``grid``
    (`nengo_hybrid.cells.GridOptions`; each cell asking for ``resources``), then write ``<table>.{json,csv,md}`` in ``out_dir``: one row
    per model (in the first seed's order) with, for each ``(key, header)`` of
    ``metrics``, the mean over the seeds, ``<key>_std`` and ``<key>_per_seed``; every
    other key whose value all seeds share (e.g. the paper's number) is kept.  A missing
    seed raises `nengo_hybrid.cells.GridIncomplete` naming it, unless ``grid.partial``
    (the table of the seeds finished, marked partial); returns the rows."""
    run_record = ExperimentRun(config, out_dir, resume)
    cells = seed_cells(config, n_seeds)
    job = SeedJob(run, config, tuple(inputs), table, str(run_record.out_dir), resume)
    result = run_cells(job, cells, grid.executor, resources, grid.address)
    run_record.timings.update({f"{name}_s": seconds for name, seconds in result.seconds.items()})
    finished = [cell for cell in cells if cell.name in result.records]
    by_seed = dict(zip([cell["seed"] for cell in finished], result.require(cells, grid.partial)))
    rows = summarise(by_seed, [key for key, _ in metrics])
    columns = [("model", "model")] + [(key, key) for key in ("budget", "timesteps") if any(key in row for row in rows)]
    for key, header in metrics:
        columns += [(key, f"{header} (mean)"), (f"{key}_std", "± std")]
    columns += [(key, header) for key, header in (("paper_iou", "paper IoU"), ("paper_dice", "paper Dice"))
                if any(key in row for row in rows)]
    words = (f"Mean and standard deviation over {len(by_seed)} seeds ({', '.join(map(str, by_seed))}); each "
             f"seed's own run and table in cells/seed<s>/ (every seed of the configuration set to s: the "
             f"split, the initial weights, the validation split, the shuffles and the Poisson draws).\n\n"
             f"{caption}")
    missing = [cell.name for cell in cells if cell.name not in result.records]
    if missing:
        words = f"PARTIAL TABLE: {len(missing)} seeds missing ({', '.join(missing)}).\n\n{words}"
        for row in rows:
            row["partial"] = True
    report.write_table(run_record.out_dir, table, rows, columns, words)
    run_record.finish(table)
    return rows


def summarise(by_seed, metrics):
    """Rows of the seeds table from ``{seed: records}`` (each a list of dicts with
    ``model``, and ``budget`` where a model has several): per model and metric the mean, the std and the per-seed values (None
    where a model has no value, e.g. the ANN's firing rate); keys equal in every seed
    copied as they are."""
    seeds = list(by_seed)
    first = by_seed[seeds[0]]
    rows = []
    for record in first:
        # a model may have one record per budget (e.g. the CAE's long and short one)
        model, budget = record["model"], record.get("budget")
        mine = [next(r for r in by_seed[seed] if r["model"] == model and r.get("budget") == budget)
                for seed in seeds]
        row = {"model": model, "n_seeds": len(seeds), "seeds": seeds}
        for key, value in record.items():
            if key not in metrics and key != "model" and all(r.get(key) == value for r in mine):
                row[key] = value
        for key in metrics:
            values = [r.get(key) for r in mine]
            row[f"{key}_per_seed"] = values
            if any(v is None for v in values):
                row[key] = row[f"{key}_std"] = None
            else:
                row[key], row[f"{key}_std"] = float(np.mean(values)), float(np.std(values))
        rows.append(row)
    return rows


def add_arguments(parser):
    """``--seeds N`` and the grid's executor options (`nengo_hybrid.cells`) on an
    experiment's ``run`` command line."""
    parser.add_argument("--seeds", type=int, default=None,
                        help="repeat the run for N seeds (--seed, --seed + 1, ...), each a cell in "
                             "OUT/cells/seed<s>/, and write the table of mean ± std over them")
    return add_grid_arguments(parser)


def run_from_args(run, config, inputs, out_dir, args, spec):
    """The experiment ``run(config, *inputs, out_dir, resume=...)`` as the command line
    asks: once, or with ``--seeds N`` for N seeds through the grid's executor
    (`run_seeds`, the table of ``spec``, a `SeedsTable`); an incomplete grid becomes one
    error naming the folder and the seeds missing."""
    if not args.seeds:
        return run(config, *inputs, out_dir, resume=args.resume)
    try:
        return run_seeds(run, config, inputs, out_dir, args.seeds, spec.table, spec.metrics, spec.caption,
                         resume=args.resume, grid=GridOptions.from_args(args),
                         resources=resources_from_args(Resources(), args))
    except GridIncomplete as error:
        raise SystemExit(f"{out_dir}: {error}") from None
