"""The stages every experiment runs: train (the ANN, in the rate family), convert,
fine-tune (the hybrid family), evaluate.  One `train` serves both training stages.

Training is ``Simulator.fit``, one epoch per call so that each epoch's shuffle is seeded
by the epoch number: a run resumed from its checkpoint (model, optimizer, early-stopping
state) continues exactly where the killed one stopped.  Checkpoints are written by a
Keras callback after every epoch, atomically (new files, then a renamed state file).
"""

import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import tensorflow as tf

from nengo_hybrid.regularization import RateRegularization
from nengo_hybrid.simulation import predict


@dataclass(frozen=True)
class TrainSettings:
    """How one training stage runs.

    Parameters
    ----------
    learning_rate : float
        Adam's learning rate.
    epochs : int
        Most epochs to train.
    batch_size : int
        Minibatch size (the simulator's).
    n_steps : int
        Timesteps each example is presented for (1 for the rate family).
    patience : int or None
        Early stopping: stop after this many epochs without a better validation loss
        and keep the best weights.  None trains all ``epochs``.
    validation_fraction : float
        Part of the training examples held out for early stopping.
    seed : int
        Seeds the validation split and every epoch's shuffle.
    """

    learning_rate: float
    epochs: int
    batch_size: int = 32
    n_steps: int = 1
    patience: Optional[int] = None
    validation_fraction: float = 0.1
    seed: int = 0


def write_json(path, data):
    """Write JSON atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, default=_json_default)
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _batches(n, batch_size):
    return n - n % batch_size


class EpochCheckpoint(tf.keras.callbacks.Callback):
    """Saves parameters and optimizer after every epoch, then the state that points to
    them.

    Parameters go through NengoDL's ``save_params`` (every weight, in the simulator's
    order), the optimizer through a TensorFlow checkpoint.  The state file is replaced
    last, so a run killed at any moment leaves a state naming a complete checkpoint.
    """

    def __init__(self, directory, sim, optimizer_checkpoint, state):
        super().__init__()
        self.directory = Path(directory)
        self.sim = sim
        self.optimizer_checkpoint = optimizer_checkpoint
        self.state = state  # updated in place by the training loop

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.state["history"].setdefault(key, []).append(float(value))
        self.state["epoch"] = epoch + 1
        previous = self.state.get("checkpoint")
        folder = f"epoch{epoch + 1:04d}"
        (self.directory / folder).mkdir(parents=True, exist_ok=True)
        self.sim.save_params(self.directory / folder / "params")
        self.optimizer_checkpoint.write(str(self.directory / folder / "optimizer"))
        self.state["checkpoint"] = folder
        write_json(self.directory / "state.json", self.state)
        if previous and previous != folder:
            shutil.rmtree(self.directory / previous, ignore_errors=True)


def _restore(sim, optimizer_checkpoint, folder):
    sim.load_params(folder / "params")
    optimizer_checkpoint.read(str(folder / "optimizer")).assert_existing_objects_matched()


def train(converted, sim, x, y, loss, settings: TrainSettings, run_dir, *,
          regularization: Optional[RateRegularization] = None, resume=False, label="train"):
    """Train ``sim`` (built from ``converted``) on ``x``, ``y`` with checkpoints.

    Parameters
    ----------
    converted : ConvertedNetwork
    sim : nengo_dl.Simulator
        Built by ``converted.simulator(settings.batch_size, settings.n_steps, ...)``.
    x, y : ndarray
        Training examples and targets.
    loss : callable
        The task loss on the output.
    settings : TrainSettings
    run_dir : path
        Where this stage keeps its checkpoints and history.
    regularization : RateRegularization, optional
        Firing-rate regularisation (needs ``layer_probes=True`` on the simulator).
    resume : bool
        Continue from the last checkpoint in ``run_dir`` if there is one.
    label : str
        Name shown in the progress lines.

    Returns
    -------
    dict
        The training history (per-epoch losses) and the epoch training stopped at.
    """
    run_dir = Path(run_dir)
    rng = np.random.RandomState(settings.seed)
    order = rng.permutation(len(x))
    n_val = 0
    if settings.patience:
        # whole minibatches, at least one
        batches = max(1, int(round(settings.validation_fraction * len(x) / settings.batch_size)))
        n_val = batches * settings.batch_size
    val_idx, train_idx = order[:n_val], order[n_val:]
    train_idx = train_idx[: _batches(len(train_idx), settings.batch_size)]

    def data(index):
        # built per epoch from the chosen examples only: the inputs repeated over the
        # timesteps are n_steps times the data set, so one copy at a time
        return (converted.inputs(x[index], settings.n_steps),
                converted.targets(y[index], regularization, settings.n_steps))

    validation = data(val_idx) if n_val else None

    optimizer = tf.optimizers.Adam(settings.learning_rate)
    converted.compile(sim, optimizer, loss, regularization=regularization)
    # the optimizer's slots exist before a checkpoint is read into them
    optimizer.build(sim.keras_model.trainable_variables)
    optimizer_checkpoint = tf.train.Checkpoint(optimizer=optimizer)

    state = {"epoch": 0, "history": {}, "best": None, "wait": 0, "settings": asdict(settings)}
    state_path = run_dir / "state.json"
    if resume and state_path.exists():
        state = json.loads(state_path.read_text())
        _restore(sim, optimizer_checkpoint, run_dir / state["checkpoint"])
        print(f"[{label}] resumed after epoch {state['epoch']}", flush=True)
    elif run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    saver = EpochCheckpoint(run_dir, sim, optimizer_checkpoint, state)

    verbose = 1 if sys.stdout.isatty() else 2
    while state["epoch"] < settings.epochs and not _stopped(state, settings):
        epoch = state["epoch"]
        print(f"[{label}] epoch {epoch + 1}/{settings.epochs}", flush=True)
        shuffled = np.random.RandomState(settings.seed + 1 + epoch).permutation(train_idx)
        sim.fit(
            *data(shuffled), epochs=epoch + 1,
            initial_epoch=epoch, shuffle=False, validation_data=validation,
            callbacks=[_EarlyStoppingState(state, run_dir, sim), saver], verbose=verbose,
        )
    if settings.patience and (run_dir / "best.npz").exists():
        sim.load_params(run_dir / "best")  # restore the best epoch's weights
    return {"history": state["history"], "epochs": state["epoch"], "best_epoch": state.get("best_epoch")}


def _stopped(state, settings):
    return settings.patience is not None and state["wait"] >= settings.patience


class _EarlyStoppingState(tf.keras.callbacks.Callback):
    """Early stopping on the validation loss whose state lives in the checkpoint, so a
    resumed run stops where an uninterrupted one would (runs before `EpochCheckpoint`)."""

    def __init__(self, state, run_dir, sim):
        super().__init__()
        self.state, self.run_dir, self.sim = state, Path(run_dir), sim

    def on_epoch_end(self, epoch, logs=None):
        val = (logs or {}).get("val_loss")
        if val is None:
            return
        if self.state["best"] is None or val < self.state["best"]:
            self.state.update(best=float(val), wait=0, best_epoch=epoch + 1)
            self.sim.save_params(self.run_dir / "best.tmp")
            os.replace(self.run_dir / "best.tmp.npz", self.run_dir / "best.npz")
        else:
            self.state["wait"] += 1


def predict_output(converted, sim, x, n_steps, last_steps=None):
    """The network's output for every example, averaged over its last timesteps."""
    return predict(sim, converted.inputs(x, n_steps), converted.output, last_steps=last_steps)
