"""The frame every experiment script runs in: seeding and determinism, the run's
configuration, versions and split, the stages, timings, and the finished table.

An experiment script is a configuration and a few calls::

    run = ExperimentRun(config, out_dir, resume)
    with run.timed("load_s"):
        train, test = load(...)
    run.write("split.json", {...})
    results = run.stages(model, x_train, y_train, x_test, loss)
    ...  # score, write the table and figures
    run.finish("table2")
"""

import contextlib
import dataclasses
import json
import time
from pathlib import Path

import tensorflow as tf

from nengo_hybrid import report
from nengo_hybrid.atomic import write_json
from nengo_hybrid.stages import run_stages, write_run_config


def seed_everything(seed):
    """Seed Python, numpy and TensorFlow and make TensorFlow's kernels deterministic,
    so that the same seed gives the same numbers on a CPU."""
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


class ExperimentRun:
    """One run of an experiment in ``out_dir``.

    Creating it seeds everything from ``config.seed``, makes TensorFlow deterministic,
    and writes ``config.json`` (refusing, when resuming, a configuration that differs
    from the one the run was started with: `nengo_hybrid.stages.ResumeMismatch`) and
    ``versions.json``.  Stage timings gather in ``timings`` and `finish` writes them.

    Parameters
    ----------
    config : dataclass
        The run's frozen configuration; needs ``seed`` and what `run_stages` needs.
    out_dir : path
    resume : bool
        Continue from the checkpoints in ``out_dir``.
    """

    def __init__(self, config, out_dir, resume=False):
        self.start_time = time.time()
        self.config, self.out_dir, self.resume = config, Path(out_dir), resume
        self.timings = {}
        seed_everything(config.seed)
        write_run_config(self.out_dir, dataclasses.asdict(config), resume)
        self.write("versions.json", report.versions())

    def write(self, name, data):
        """Write ``data`` as JSON to ``out_dir/name`` (atomically)."""
        write_json(self.out_dir / name, data)

    @contextlib.contextmanager
    def timed(self, key):
        """Add the seconds the block takes to ``timings[key]``."""
        start = time.time()
        yield
        self.timings[key] = self.timings.get(key, 0.0) + time.time() - start

    def stages(self, model, x_train, y_train, x_test, task_loss, folder=None, prefix="", config=None,
               **kwargs):
        """`run_stages` under this run's configuration (or a cell's ``config``), in
        ``out_dir`` (or ``out_dir/folder``), resuming if the run resumes; its stage
        timings are added to ``timings`` (keys prefixed by ``prefix``)."""
        results = run_stages(model, config or self.config, x_train, y_train, x_test, task_loss,
                             self.out_dir / folder if folder else self.out_dir,
                             resume=self.resume, **kwargs)
        for key, seconds in results["timings"].items():
            self.timings[prefix + key] = self.timings.get(prefix + key, 0.0) + seconds
        return results

    def finish(self, table=None):
        """Write ``timings.json`` (with the total) and print the table ``table``.md.

        ``timings.json`` is written when a run finishes, so finding one when resuming
        means this invocation only read a finished run back (and re-evaluated it): the
        first run's timings, which say what the run cost, are kept, and this
        invocation's are appended to their ``"resumed"`` list."""
        self.timings["total_s"] = time.time() - self.start_time
        written = self.out_dir / "timings.json"
        if self.resume and written.exists():
            first = json.loads(written.read_text())
            self.write("timings.json", {**first, "resumed": first.get("resumed", []) + [self.timings]})
        else:
            self.write("timings.json", self.timings)
        if table is not None:
            print((self.out_dir / f"{table}.md").read_text())
        print(f"total {self.timings['total_s'] / 60:.1f} min; results in {self.out_dir}", flush=True)
        return self.timings


def finetuning_record(results):
    """The fine-tuned model's training columns of `run_stages` results: epochs run and
    the best epoch (0: no epoch beat the converted weights on validation)."""
    record = {"epochs": results.get("finetune_epochs"), "best_epoch": results.get("finetune_best_epoch")}
    return {key: value for key, value in record.items() if value is not None}


def describe_training(settings, held_out="whole subjects"):
    """A `TrainSettings` in words, for a table caption."""
    words = f"with Adam at {settings.learning_rate:g} for at most {settings.epochs} epochs"
    if getattr(settings, "plateau_patience", None):
        words += (f", the learning rate times {settings.plateau_factor:g} after "
                  f"{settings.plateau_patience} epochs without progress (ReduceLROnPlateau)")
    if getattr(settings, "cosine_decay", False):
        words += f", the learning rate annealed along half a cosine over the {settings.epochs} epochs"
    if settings.patience:
        watched = {"val_output_dice_error": "highest 2D Dice (all slices)",
                   "val_output_dice_error_on_target": "highest 2D Dice on the slices that show the target"
                   }.get(settings.monitor, "least loss")
        words += (f", keeping the epoch of {watched} on {settings.validation_fraction:.0%} of the "
                  f"training slices held out as {held_out} and stopping after {settings.patience} "
                  f"without progress")
    return words
