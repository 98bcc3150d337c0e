"""The stages every experiment runs: train the ANN (the rate family), convert it
(NengoDL's spiking neurons, or integrate-and-fire neurons with balanced thresholds),
fine-tune the converted SNN (hybrid neurons, or surrogate-gradient training through
time), evaluate.  Families, input coding and balancing are configuration
(`SpikingSettings`); one `train` serves every training stage.

Training is ``Simulator.fit``, one epoch per call so that each epoch's shuffle is seeded
by the epoch number: a run resumed from its checkpoint (model, optimizer, early-stopping
state) continues exactly where the killed one stopped.  Checkpoints are written by a
Keras callback after every epoch, atomically (new files, then a renamed state file).
"""

import contextlib
import functools
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import tensorflow as tf

from nengo_hybrid.atomic import json_default, write_json
from nengo_hybrid.balancing import apply_thresholds, balance_thresholds
from nengo_hybrid.encoding import draw_seed
from nengo_hybrid.families import convert, get_family
from nengo_hybrid.gradients import FixedOrderAdam, fixed_sum_order
from nengo_hybrid.history import START_SCORES
from nengo_hybrid.losses import LastTimesteps, ReadoutWindows, SliceDiceError
from nengo_hybrid.metrics import input_spike_rate_hz
from nengo_hybrid.regularization import RateRegularization
from nengo_hybrid.runtime import COUNT_LAG, load_params, save_params
from nengo_hybrid.simulation import iterate_predictions, predict


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
        Part of the training examples held out for early stopping (whole groups of
        examples if `train` is given groups; see `validation_split`).
    seed : int
        Seeds the validation split and every epoch's shuffle.
    examples_per_epoch : int or None
        Train each epoch on this many of the (shuffled) training examples, a new draw
        every epoch; None: all of them.  For stages whose full pass is too slow.
    monitor : str
        The validation quantity early stopping watches: by default the task loss alone
        (``val_output_loss``), since the total also holds the firing-rate terms; a
        network with no other loss logs only ``val_loss``, used then.  A measure of
        `MONITORED_METRICS` (``val_output_dice_error``: one minus the 2D Dice of the
        thresholded masks; ``val_output_dice_error_on_target``: the same over the masks
        that show the target, see `SliceDiceError`) is computed on the output beside the loss, read as the
        loss reads it, and watched instead.
    plateau_patience : int or None
        Reduce the learning rate on a plateau (PyTorch's and Keras' ReduceLROnPlateau):
        after this many epochs in which the monitored loss (the validation one, else
        the training loss) has not fallen below its best by 1e-4, the rate is
        multiplied by ``plateau_factor``, never below ``plateau_min_lr``.  The
        schedule's state is part of the checkpoint, so a resumed run follows it
        exactly.  None: a constant rate.
    plateau_factor, plateau_min_lr : float
        See ``plateau_patience``.
    cosine_decay : bool
        Anneal the learning rate over the stage's ``epochs`` along half a cosine: epoch
        :math:`e` (from 0) trains at :math:`\\eta_e = \\eta_0 (1 + \\cos(\\pi e / E)) / 2`
        with :math:`\\eta_0` = ``learning_rate`` and :math:`E` = ``epochs``, whatever the
        validation loss does (so early stopping may end the stage before the rate is
        small).  A function of the epoch alone: a resumed run follows it exactly.  Not
        combined with ``plateau_patience``.
    rate_terms : bool
        Whether the run's firing-rate regularisation (if it has one) joins this stage's
        loss.  Off, the stage builds no per-timestep layer probes: a spiking stage
        trains faster and uses less memory.
    fixed_order_sums : bool
        Add each weight's per-timestep gradients in a fixed order
        (`nengo_hybrid.gradients.FixedOrderAdam`, with Grappler's arithmetic optimiser off
        while the stage trains): TensorFlow's own sums follow the scheduler, so a stage
        can differ in its last bits from one run to the next.  On in LocNet's and the
        CAE's fine-tuning stages; off by default, since turning it on moves a table
        (the second paper's experiments still train in TensorFlow's order).
    """

    learning_rate: float
    epochs: int
    batch_size: int = 32
    n_steps: int = 1
    patience: Optional[int] = None
    validation_fraction: float = 0.1
    seed: int = 0
    examples_per_epoch: Optional[int] = None
    monitor: str = "val_output_loss"
    plateau_patience: Optional[int] = None
    plateau_factor: float = 0.1
    plateau_min_lr: float = 1e-6
    cosine_decay: bool = False
    rate_terms: bool = True
    fixed_order_sums: bool = False
    weight_decay: float = 0.0

    def __post_init__(self):
        if self.cosine_decay and self.plateau_patience:
            raise ValueError("TrainSettings: cosine_decay and plateau_patience are two schedules for one "
                             "learning rate; set one of them")


# validation measures that early stopping can watch beside the losses (by the name
# Keras logs them under, ``val_output_<name>``; lower is better)
MONITORED_METRICS = {"dice_error": SliceDiceError,
                     "dice_error_on_target": functools.partial(SliceDiceError, on_target=True)}


def is_connection_weight(variable):
    """Whether a trainable ``variable`` holds a connection's weights (at least two of its
    dimensions longer than 1), not biases, gains or per-channel scales."""
    return sum(size > 1 for size in variable.shape) >= 2


def monitored_metrics(monitor, loss):
    """The output metrics ``monitor`` needs compiled (None if it names a loss): the
    measure read from the output as ``loss`` reads it (over its last timesteps if
    ``loss`` is `LastTimesteps`)."""
    name = monitor[len("val_output_"):] if monitor.startswith("val_output_") else monitor
    if name not in MONITORED_METRICS:
        return None
    metric = MONITORED_METRICS[name]()
    if isinstance(loss, LastTimesteps):
        metric = LastTimesteps(metric, loss.n_steps, name=name)
    return [metric]


def _batches(n, batch_size):
    return n - n % batch_size


class EpochCheckpoint(tf.keras.callbacks.Callback):
    """Saves parameters and optimizer after every epoch, then the state that points to
    them.

    Parameters go through `nengo_hybrid.runtime.save_params` (every weight, in the
    simulator's order), the optimizer through a TensorFlow checkpoint.  The state file is replaced
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
        save_params(self.sim, self.directory / folder / "params")
        self.optimizer_checkpoint.write(str(self.directory / folder / "optimizer"))
        self.state["checkpoint"] = folder
        write_json(self.directory / "state.json", self.state)
        if previous and previous != folder:
            shutil.rmtree(self.directory / previous, ignore_errors=True)


def _restore(sim, optimizer_checkpoint, folder):
    load_params(sim, folder / "params")
    optimizer_checkpoint.read(str(folder / "optimizer")).assert_existing_objects_matched()


def train(converted, sim, x, y, loss, settings: TrainSettings, run_dir, *,
          regularization: Optional[RateRegularization] = None, augment=None, resume=False,
          label="train", groups=None, encoding=None, after_epoch=None):
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
    augment : callable, optional
        ``augment(x, y, rng) -> (x, y)`` draws each epoch's training examples anew
        (e.g. `nengo_hybrid.augment.BoxAugmentation`) from a generator seeded by the
        epoch, so a resumed run sees the same examples; validation is never augmented.
    resume : bool
        Continue from the last checkpoint in ``run_dir`` if there is one.  A checkpoint
        trained with other ``settings`` (or another validation split) is refused with
        `ResumeMismatch`.
    label : str
        Name shown in the progress lines.
    groups : array_like, optional
        One id per example (e.g. the subject of each slice): early stopping then holds
        out whole groups (see `validation_split`), so that no group is on both sides.
    encoding : str, optional
        Input coding over the timesteps (`nengo_hybrid.encoding`; default: the input
        at every step).  Poisson trains are drawn anew every epoch from the seed and
        the epoch (the same on resume); validation always sees the same draw.
    after_epoch : callable, optional
        ``after_epoch(epoch, sim)`` after every epoch (numbered from 1) once its
        checkpoint is written, outside ``sim.fit``, so it may run ``sim.predict``
        (e.g. to score the network at chosen points of training).

    Returns
    -------
    dict
        The training history (per-epoch losses; with validation data also
        ``history[START_SCORES]``, the validation values of the starting weights, epoch 0)
        and the epoch training stopped at; with
        ``groups`` also ``validation_groups``, the held-out ids as str.
    """
    run_dir = Path(run_dir)
    val_idx, train_idx = validation_split(len(x), settings, groups)
    n_val = len(val_idx)

    state = {"epoch": 0, "history": {}, "best": None, "wait": 0, "settings": asdict(settings)}
    if groups is not None:
        state["validation_groups"] = sorted({str(g) for g in np.asarray(groups)[val_idx]})
    state_path = run_dir / "state.json"
    resuming = resume and state_path.exists()
    if resuming:
        try:
            saved = json.loads(state_path.read_text())
        except ValueError as error:  # truncated or overwritten: written atomically, never by us
            raise ValueError(f"{state_path}: cannot resume from this checkpoint state, it is not the JSON "
                             f"a training writes ({error}); delete {run_dir} to train this stage "
                             f"again") from None
        # refused before anything is restored or trained: continuing one run's
        # optimizer and early-stopping state under other settings (or validating on
        # other examples) would give numbers that belong to no configuration
        differences = _differences(
            {"settings": saved["settings"], "validation_groups": saved.get("validation_groups")},
            {"settings": state["settings"], "validation_groups": state.get("validation_groups")})
        if differences:
            raise ResumeMismatch(
                f"cannot resume {run_dir}: its checkpoint was trained differently "
                f"({_describe(differences)}); run without --resume to start over, or "
                f"with the original settings")
        state = saved

    def data(index, rng=None, draw=0):
        xs, ys = x[index], y[index]
        if rng is not None and augment is not None:
            xs, ys = augment(xs, ys, rng)
        return converted.dataset(sim, xs, ys, regularization, settings.n_steps, encoding=encoding,
                                 seed=draw_seed(settings.seed, draw), example_ids=index)

    validation = data(val_idx) if n_val else None

    # a fixed order needs Grappler's arithmetic optimiser off while this stage's functions
    # run, and only then: later stages are optimised as in a process that never trained
    with fixed_sum_order() if settings.fixed_order_sums else contextlib.nullcontext():
        adam = FixedOrderAdam if settings.fixed_order_sums else tf.optimizers.Adam
        optimizer = adam(settings.learning_rate, weight_decay=settings.weight_decay or None)
        if settings.weight_decay:
            optimizer.exclude_from_weight_decay(var_list=[
                variable for variable in sim.keras_model.trainable_variables if not is_connection_weight(variable)])
        converted.compile(sim, optimizer, loss, regularization=regularization,
                          metrics=monitored_metrics(settings.monitor, loss))
        # the optimizer's slots exist before a checkpoint is read into them
        optimizer.build(sim.keras_model.trainable_variables)
        optimizer_checkpoint = tf.train.Checkpoint(optimizer=optimizer)

        if resuming:
            _restore(sim, optimizer_checkpoint, run_dir / state["checkpoint"])
            print(f"[{label}] resumed after epoch {state['epoch']}", flush=True)
        elif run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        saver = EpochCheckpoint(run_dir, sim, optimizer_checkpoint, state)
        stopper = _EarlyStoppingState(state, run_dir, sim, settings.monitor)
        schedule = _PlateauSchedule(state, optimizer, settings)
        if n_val and state["epoch"] == 0:
            # the starting weights are the first candidate: fine-tuning that never beats
            # them on validation returns them, not its least bad epoch
            scores = {f"val_{key}": float(value) for key, value in sim.evaluate(validation, verbose=0).items()}
            stopper.consider(scores, epoch=-1)
            # kept as the history's epoch 0: the value every epoch must beat (for fine-tuning,
            # the converted network's), drawn at the start of the validation curves
            state["start_scores"] = scores

        verbose = 1 if sys.stdout.isatty() else 2
        while state["epoch"] < settings.epochs and not _stopped(state, settings):
            epoch = state["epoch"]
            print(f"[{label}] epoch {epoch + 1}/{settings.epochs}", flush=True)
            epoch_rng = np.random.RandomState(settings.seed + 1 + epoch)
            shuffled = epoch_rng.permutation(train_idx)[:settings.examples_per_epoch]
            shuffled = shuffled[:_batches(len(shuffled), settings.batch_size)]
            sim.fit(
                data(shuffled, epoch_rng, draw=epoch + 1), epochs=epoch + 1,
                initial_epoch=epoch, shuffle=False, validation_data=validation,
                callbacks=[stopper, schedule, saver],
                verbose=verbose,
            )
            if after_epoch is not None:
                after_epoch(state["epoch"], sim)
        if settings.patience and (run_dir / "best.npz").exists():
            load_params(sim, run_dir / "best")  # restore the best epoch's weights
    history = dict(state["history"])
    if "start_scores" in state:
        history[START_SCORES] = state["start_scores"]
    result = {"history": history, "epochs": state["epoch"], "best_epoch": state.get("best_epoch")}
    if groups is not None:
        result["validation_groups"] = state["validation_groups"]
    return result


def validation_split(n, settings: TrainSettings, groups=None):
    """The examples early stopping validates on and the ones training uses.

    Without ``groups``: a seeded random ``validation_fraction`` of the ``n`` examples,
    rounded to whole minibatches.  With ``groups`` (one id per example): whole groups
    in a seeded random order until at least ``validation_fraction`` of the examples
    (and at least one minibatch) are held out, then cut to whole minibatches; the
    examples cut are used by neither side, since training on them would put their
    group on both.  No validation without ``settings.patience``.

    Parameters
    ----------
    n : int
        Number of examples.
    settings : TrainSettings
        ``patience``, ``validation_fraction``, ``batch_size`` and ``seed`` are used.
    groups : array_like, optional
        ``n`` group ids.

    Returns
    -------
    val_idx, train_idx : ndarray
        Example indices, each a whole number of minibatches (``val_idx`` may be empty).
    """
    batch_size = settings.batch_size
    rng = np.random.RandomState(settings.seed)
    if groups is None or not settings.patience:
        # the split of runs made before groups existed: their results stay reproducible
        order = rng.permutation(n)
        n_val = 0
        if settings.patience:
            # whole minibatches, at least one
            batches = max(1, int(round(settings.validation_fraction * n / batch_size)))
            n_val = batches * batch_size
        val_idx, train_idx = order[:n_val], order[n_val:]
        return val_idx, train_idx[:_batches(len(train_idx), batch_size)]

    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups needs one id per example ({n}), not shape {groups.shape}")
    names = np.unique(groups)
    wanted = max(settings.validation_fraction * n, batch_size)
    held_out = np.zeros(n, dtype=bool)
    for name in names[rng.permutation(len(names))]:
        if held_out.sum() >= wanted:
            break
        held_out |= groups == name
    if held_out.sum() < wanted or held_out.all():
        raise ValueError(f"cannot hold out {settings.validation_fraction:.0%} of {n} examples "
                         f"(at least a minibatch of {batch_size}) as whole groups and keep "
                         f"some for training: {len(names)} groups")
    # shuffled before cutting, so the examples lost to whole minibatches are a random few
    val_idx = rng.permutation(np.flatnonzero(held_out))
    train_idx = rng.permutation(np.flatnonzero(~held_out))
    return (val_idx[:_batches(len(val_idx), batch_size)],
            train_idx[:_batches(len(train_idx), batch_size)])


class ResumeMismatch(ValueError):
    """A run asked to resume from a checkpoint made with another configuration."""


def write_run_config(out_dir, config_dict, resume):
    """Write ``out_dir/config.json``; when resuming, first check that it is unchanged.

    Parameters
    ----------
    out_dir : path
    config_dict : dict
        The run's configuration (``dataclasses.asdict(config)``).
    resume : bool
        The run continues from checkpoints in ``out_dir``.

    Raises
    ------
    ResumeMismatch
        ``resume`` and an existing ``config.json`` differ from ``config_dict``; the
        message lists each differing key as a dotted path (``hybrid.learning_rate``).
    """
    path = Path(out_dir) / "config.json"
    if resume and path.exists():
        differences = _differences(json.loads(path.read_text()), config_dict)
        if differences:
            raise ResumeMismatch(
                f"cannot resume: {path} was written by another configuration "
                f"({_describe(differences)}); run without --resume to start over, or "
                f"with the original settings")
    write_json(path, config_dict)


# settings added after runs were already checkpointed, with the value that trains as those
# runs did: a record written before a setting existed resumes under that value
ADDED_SETTINGS = {"cosine_decay": False, "fixed_order_sums": False, "weight_decay": 0.0, "erase": 0.0}


def _differences(old, new, prefix=""):
    """``[(dotted key, old value, new value)]`` where ``old`` and ``new`` differ, compared
    as JSON stores them (tuples become lists, numpy numbers plain ones).  A key of
    `ADDED_SETTINGS` missing from ``old`` is no difference where ``new`` holds its
    as-before value."""
    old, new = _as_json(old), _as_json(new)
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [(prefix, old, new)]
    missing = "<missing>"
    found = []
    for key in list(old) + [key for key in new if key not in old]:
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in old and key in ADDED_SETTINGS and new[key] == ADDED_SETTINGS[key]:
            continue
        if key not in old or key not in new:
            found.append((path, old.get(key, missing), new.get(key, missing)))
        else:
            found.extend(_differences(old[key], new[key], path))
    return found


def _as_json(value):
    return json.loads(json.dumps(value, default=json_default))


def _describe(differences):
    return "; ".join(f"{key}: {old!r} before, {new!r} now" for key, old, new in differences)


def _stopped(state, settings):
    return settings.patience is not None and state["wait"] >= settings.patience


class _EarlyStoppingState(tf.keras.callbacks.Callback):
    """Early stopping on the validation loss whose state lives in the checkpoint, so a
    resumed run stops where an uninterrupted one would (runs before `EpochCheckpoint`)."""

    def __init__(self, state, run_dir, sim, monitor):
        super().__init__()
        self.state, self.run_dir, self.sim, self.monitor = state, Path(run_dir), sim, monitor

    def on_epoch_end(self, epoch, logs=None):
        if self.consider(logs or {}, epoch) is False:
            self.state["wait"] += 1

    def consider(self, logs, epoch):
        """Keep the weights if ``logs`` hold the best monitored value so far; None if
        they hold no validation value."""
        val = logs.get(self.monitor)
        if val is None:
            if "val_loss" not in logs:
                return None  # no validation data
            if self.monitor != "val_output_loss":
                raise KeyError(f"early stopping watches {self.monitor!r}, which training does not "
                               f"log (it logs {', '.join(sorted(logs))})")
            val = logs["val_loss"]
        if self.state["best"] is not None and val >= self.state["best"]:
            return False
        self.state.update(best=float(val), wait=0, best_epoch=epoch + 1)
        save_params(self.sim, self.run_dir / "best")
        return True


def cosine_rate(initial, epoch, epochs):
    """The learning rate of epoch ``epoch`` (from 0) of ``epochs`` under cosine annealing:
    ``initial * (1 + cos(pi * epoch / epochs)) / 2``."""
    return float(initial * 0.5 * (1.0 + np.cos(np.pi * epoch / epochs)))


class _PlateauSchedule(tf.keras.callbacks.Callback):
    """The stage's learning-rate schedule: ReduceLROnPlateau whose state (rate, best loss,
    epochs waited) lives in the checkpoint's state, so that a resumed run continues the
    same schedule (runs before `EpochCheckpoint`), or with ``settings.cosine_decay`` the
    rate `cosine_rate` gives each epoch.  The rate is set before every epoch from the
    state."""

    MIN_DELTA = 1e-4

    def __init__(self, state, optimizer, settings):
        super().__init__()
        self.state, self.optimizer, self.settings = state, optimizer, settings
        self.state.setdefault("learning_rate", float(settings.learning_rate))

    def on_epoch_begin(self, epoch, logs=None):
        if self.settings.cosine_decay:
            self.state["learning_rate"] = cosine_rate(self.settings.learning_rate, epoch, self.settings.epochs)
        self.optimizer.learning_rate.assign(self.state["learning_rate"])

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.state["history"].setdefault("learning_rate", []).append(self.state["learning_rate"])
        if not self.settings.plateau_patience:
            return
        value = logs.get(self.settings.monitor, logs.get("val_loss", logs.get("loss")))
        best = self.state.get("plateau_best")
        if best is None or value < best - self.MIN_DELTA:
            self.state.update(plateau_best=float(value), plateau_wait=0)
            return
        self.state["plateau_wait"] = self.state.get("plateau_wait", 0) + 1
        if self.state["plateau_wait"] >= self.settings.plateau_patience:
            self.state["learning_rate"] = max(self.state["learning_rate"] * self.settings.plateau_factor,
                                              self.settings.plateau_min_lr)
            self.state["plateau_wait"] = 0
            print(f"learning rate reduced to {self.state['learning_rate']:g}", flush=True)


@dataclass(frozen=True)
class Balancing:
    """Threshold balancing of the converted SNN (`nengo_hybrid.balancing`).

    Parameters
    ----------
    examples : int
        Calibration examples, a seeded draw from the training split.
    percentile : float
        The percentile of each layer's per-step input charge that sets its threshold
        (100: the maximum).
    scale : float
        Multiplies every threshold (Rathi et al. 2020: 0.7).
    batch_size : int
        Calibration examples per simulator run.
    initial_potential : float
        Every membrane's potential at the start of an example, as a fraction of its
        threshold (0: the paper; Bu et al. 2022: 0.5, which halves the latency of
        each layer, see `nengo_hybrid.balancing`), in the converted and the
        fine-tuned SNN alike.
    """

    examples: int = 64
    percentile: float = 100.0
    scale: float = 1.0
    batch_size: int = 8
    initial_potential: float = 0.0


@dataclass(frozen=True)
class SpikingSettings:
    """Which neurons the spiking models use, what they see, and what they are called.

    The defaults are the first paper's pipeline (NengoDL's spiking neurons, hybrid
    fine-tuning, the image shown at every step); the second paper's is
    ``SpikingSettings(converted_family="if", finetuned_family="if",
    finetuned_name="fine-tuned", encoding="poisson", balancing=Balancing())``.

    Parameters
    ----------
    converted_family : str
        Family of the converted SNN and of every spiking evaluation (``"spiking"``;
        ``"if"``: integrate-and-fire).
    finetuned_family : str
        Family the converted SNN is fine-tuned in (``"hybrid"``: spikes forward, rate
        gradient back; ``"if"``: surrogate-gradient backpropagation through time).
    finetuned_name : str
        The fine-tuned model's name in results, files and tables.
    encoding : str
        Input coding of every spiking model (`nengo_hybrid.encoding`).
    balancing : Balancing or None
        Balance the converted SNN's thresholds (integrate-and-fire families only).
    fuse_with_xla : bool
        Train the hybrid family's step compiled with XLA (the fast path; see
        `nengo_hybrid.convert`); recorded with the run's configuration.
    """

    converted_family: str = "spiking"
    finetuned_family: str = "hybrid"
    finetuned_name: str = "hybrid"
    encoding: str = "repeat"
    balancing: Optional[Balancing] = None
    fuse_with_xla: bool = True


# the second paper's three stages: integrate-and-fire neurons fed Poisson spikes, converted
# and then fine-tuned through time (surrogate gradient) in that same family; an experiment
# adds its threshold balancing (``dataclasses.replace(THREE_STAGE_IF, balancing=...)``)
THREE_STAGE_IF = SpikingSettings(converted_family="if", finetuned_family="if", finetuned_name="fine_tuned",
                                 encoding="poisson")


def spiking_settings(config):
    """``config.spiking``, or the first paper's defaults for a config without it."""
    return getattr(config, "spiking", None) or SpikingSettings()


def network(model, config, family, thresholds=None):
    """``model`` converted to ``family`` with the config's synapse (spiking families
    only), firing-rate scale and seed, and the balanced ``thresholds`` if any."""
    spiking = get_family(family).spiking
    converted = convert(model, family, synapse=config.synapse if spiking else None,
                        scale_firing_rates=config.scale_firing_rates, seed=config.seed,
                        fuse_with_xla=spiking_settings(config).fuse_with_xla)
    if thresholds:
        balancing = spiking_settings(config).balancing
        apply_thresholds(converted, thresholds, balancing.initial_potential if balancing else 0.0)
    return converted


def predict_output(converted, sim, x, n_steps, last_steps=None):
    """The network's output for every example, averaged over its last timesteps."""
    return predict(sim, converted.inputs(x, n_steps), converted.output, last_steps=last_steps)


def spiking_evaluation(model, config, params, x, thresholds=None, with_rates=True):
    """Run the converted SNN's family with ``params`` (and ``thresholds``) on ``x``.

    The output is read as its mean over the ``config.eval_window`` timesteps that end at
    ``config.eval_steps`` and, for the timestep sweep, at every ``t`` of
    ``config.steps_sweep``; firing rates are measured over ``config.eval_steps``.  The
    input is coded as `spiking_settings` says, seeded by ``config.seed`` and each
    example's index in ``x``.

    ``config`` needs ``synapse``, ``scale_firing_rates``, ``seed``, ``eval_steps``,
    ``eval_window``, ``steps_sweep`` and ``eval_batch``; an optional ``rate_examples``
    measures the rates on the first that many examples only.

    The rates come from spike counters on every layer that count the first
    ``eval_steps`` steps only (``spike_counts=eval_steps``), in the same pass as the
    outputs however far the sweep reads them, when the rates are wanted on every example;
    otherwise (``rate_examples``) in a second pass over ``eval_steps``.
    Without ``with_rates`` no rates are measured (``rates`` None).

    Returns
    -------
    dict
        ``outputs`` (n, d) at ``eval_steps``, ``sweep`` {t: (n, d)}, ``rates`` (see
        `ConvertedNetwork.firing_rates`).
    """
    settings = spiking_settings(config)
    converted = network(model, config, settings.converted_family, thresholds)
    marks = sorted(set(config.steps_sweep) | {config.eval_steps})
    windows = {t: [] for t in marks}
    rate_examples = getattr(config, "rate_examples", None)
    # counted beside the outputs when the rates are wanted on every example
    every_example = rate_examples is None or rate_examples >= len(x)
    count_here = with_rates and every_example
    rates = converted.rate_meter(config.eval_steps) if count_here else None
    # the counters read the steps before their last: at least one step more
    n_steps = max(marks[-1], config.eval_steps + COUNT_LAG) if count_here else marks[-1]
    # no probes that keep every layer's activity here, or every layer over hundreds of
    # steps would fill the memory; and a few minibatches at a time, since the inputs
    # repeated over the timesteps are that many copies of the data
    chunk = 4 * config.eval_batch
    with converted.simulator(minibatch_size=config.eval_batch,
                             spike_counts=config.eval_steps if count_here else False) as sim:
        load_params(sim, params)
        for start in range(0, len(x), chunk):
            part = x[start:start + chunk]
            inputs = converted.inputs(part, n_steps, settings.encoding, config.seed,
                                      example_ids=np.arange(start, start + len(part)))
            for _, out in iterate_predictions(sim, inputs):
                series = out[converted.output]
                for t in marks:
                    windows[t].append(series[:, max(0, t - config.eval_window):t].mean(axis=1))
                if count_here:
                    rates.add(converted.counts(out))
    sweep = {t: np.concatenate(parts) for t, parts in windows.items()}
    if count_here:
        rates = rates.result()
    elif with_rates:
        # the rates are wanted on fewer examples
        with converted.simulator(minibatch_size=config.eval_batch, spike_counts=True) as sim:
            load_params(sim, params)
            rates = converted.firing_rates(sim, x[:rate_examples], config.eval_steps, settings.encoding,
                                           config.seed)
    return {"outputs": sweep[config.eval_steps], "sweep": sweep, "rates": rates}


def ann_outputs(model, config, params, x):
    """The ANN's (rate family, one timestep) output on ``x`` with ``params``."""
    ann = network(model, config, "rate")
    with ann.simulator(config.eval_batch, n_steps=1) as sim:
        load_params(sim, params)
        return predict_output(ann, sim, x, 1)


def balance_stage(model, config, params, x_train, out_dir, resume=False):
    """The converted SNN's thresholds (`nengo_hybrid.balancing`), or None without
    ``config.spiking.balancing``.

    Calibrates on a seeded draw of ``balancing.examples`` training examples, coded as
    in training, for ``config.eval_steps`` timesteps, and writes them with their
    settings to ``out_dir/thresholds.json``; ``resume`` reads a file written under the
    same settings instead of balancing again.
    """
    settings = spiking_settings(config)
    if settings.balancing is None:
        return None
    path = Path(out_dir) / "thresholds.json"
    record = {"balancing": asdict(settings.balancing), "n_steps": config.eval_steps,
              "encoding": settings.encoding, "seed": config.seed}
    if resume and path.exists():
        saved = json.loads(path.read_text())
        if {key: saved.get(key) for key in record} == json.loads(json.dumps(record)):
            return saved["thresholds"]
    calibration = np.random.RandomState(config.seed).permutation(len(x_train))
    calibration = x_train[np.sort(calibration[:settings.balancing.examples])]
    converted = network(model, config, settings.converted_family)
    thresholds = balance_thresholds(
        converted, calibration, config.eval_steps, params=params,
        percentile=settings.balancing.percentile, scale=settings.balancing.scale,
        initial_potential=settings.balancing.initial_potential, encoding=settings.encoding,
        seed=config.seed, batch_size=settings.balancing.batch_size)
    write_json(path, dict(record, thresholds=thresholds))
    return thresholds


def load_thresholds(run_dir):
    """The balanced thresholds a run saved, or None if it balanced none."""
    path = Path(run_dir) / "thresholds.json"
    return json.loads(path.read_text())["thresholds"] if path.exists() else None


def ann_stage(model, config, x_train, y_train, task_loss, out_dir, *, regularization=None, augment=None,
              resume=False, groups=None):
    """Stage 1 of `run_stages`: the rate family of ``model`` trained under
    ``config.ann`` with ``task_loss`` (+ ``regularization``), checkpoints in
    ``out_dir/checkpoints/ann``, the parameters saved as ``out_dir/ann.npz``.  Returns
    `train`'s result (history, epochs, best epoch)."""
    out_dir = Path(out_dir)
    ann = network(model, config, "rate")
    with ann.simulator(config.ann.batch_size, n_steps=1, layer_probes=regularization is not None) as sim:
        result = train(ann, sim, x_train, y_train, task_loss, config.ann, out_dir / "checkpoints" / "ann",
                       regularization=regularization, augment=augment, resume=resume, label="ann",
                       groups=groups)
        save_params(sim, out_dir / "ann")
    return result


def run_stages(model, config, x_train, y_train, x_test, task_loss, out_dir, *,
               regularization=None, augment=None, resume=False, groups=None, trained_ann=None):
    """The paper's three models from one Keras ``model``: train the ANN, convert it,
    fine-tune the converted SNN, and evaluate all three on ``x_test``.

    1. ANN: the rate family trained with ``task_loss`` (+ ``regularization``) under
       ``config.ann``; parameters saved as ``out_dir/ann.npz``.  Either training stage
       leaves the rate terms out if its settings say so (``TrainSettings.rate_terms``).
    2. converted SNN: ``config.spiking.converted_family`` with the ANN's parameters
       and, if ``config.spiking.balancing``, balanced thresholds
       (``out_dir/thresholds.json``).
    3. fine-tuned SNN (named ``config.spiking.finetuned_name``, "hybrid" by default):
       ``config.spiking.finetuned_family`` from the ANN's parameters and the same
       thresholds, trained under ``config.finetune`` on the output's mean over its
       last ``config.eval_window`` timesteps (`finetuning_loss`);
       saved as ``out_dir/<name>.npz``.

    Every spiking model sees the input coded by ``config.spiking.encoding``.  Every
    training stage checkpoints every epoch under ``out_dir/checkpoints`` and continues
    from there with ``resume``; ``groups`` (one id per training example, e.g. its
    subject) makes early stopping validate on whole groups.  ``trained_ann`` (the path of
    another run's ``ann`` parameters) skips stage 1 and starts from that ANN: the same
    ANN converted and fine-tuned for another timestep budget.  ``config`` needs ``ann``,
    ``finetune`` (`TrainSettings`), optionally ``spiking`` (`SpikingSettings`), and
    what `spiking_evaluation` needs.

    Returns
    -------
    dict
        ``outputs`` {"ann", "converted", name: (n_test, d)}, ``sweeps``
        {"converted", name: {t: (n_test, d)}}, ``rates`` {"converted", name},
        ``histories`` {"ann", name}, ``timings`` (seconds per stage),
        ``finetune_epochs`` and ``finetune_best_epoch`` (0: the converted weights were
        kept), ``thresholds`` (None unless balanced) and ``input_rate_hz`` (the test
        input's spike rate under Poisson coding, else None).
    """
    out_dir = Path(out_dir)
    settings = spiking_settings(config)
    name = settings.finetuned_name
    timings, histories = {}, {}

    def stage_regularization(stage_settings):
        return regularization if stage_settings.rate_terms else None

    ann_params = out_dir / "ann" if trained_ann is None else Path(trained_ann)
    if trained_ann is None:
        start = time.time()
        histories["ann"] = ann_stage(model, config, x_train, y_train, task_loss, out_dir,
                                     regularization=stage_regularization(config.ann), augment=augment,
                                     resume=resume, groups=groups)["history"]
        timings["ann_s"] = time.time() - start
    ann_out = ann_outputs(model, config, ann_params, x_test)

    start = time.time()
    thresholds = balance_stage(model, config, ann_params, x_train, out_dir, resume)
    if thresholds is not None:
        timings["balance_s"] = time.time() - start
    start = time.time()
    converted = spiking_evaluation(model, config, ann_params, x_test, thresholds)
    timings["converted_eval_s"] = time.time() - start

    start = time.time()
    tuning = network(model, config, settings.finetuned_family, thresholds)
    tuning_regularization = stage_regularization(config.finetune)
    with tuning.simulator(config.finetune.batch_size, n_steps=config.finetune.n_steps,
                          layer_probes=tuning_regularization is not None) as sim:
        load_params(sim, ann_params)
        result = train(tuning, sim, x_train, y_train, finetuning_loss(config, task_loss),
                       config.finetune, out_dir / "checkpoints" / name,
                       regularization=tuning_regularization, augment=augment, resume=resume,
                       label=name, groups=groups, encoding=settings.encoding)
        histories[name] = result["history"]
        save_params(sim, out_dir / name)
    timings[f"{name}_s"] = time.time() - start

    start = time.time()
    tuned = spiking_evaluation(model, config, out_dir / name, x_test, thresholds)
    timings[f"{name}_eval_s"] = time.time() - start
    return {
        "outputs": {"ann": ann_out, "converted": converted["outputs"], name: tuned["outputs"]},
        "sweeps": {"converted": converted["sweep"], name: tuned["sweep"]},
        "rates": {"converted": converted["rates"], name: tuned["rates"]},
        "histories": histories,
        "timings": timings,
        "finetune_epochs": result["epochs"],
        # 0: fine-tuning never beat the converted weights on validation; they were kept
        "finetune_best_epoch": result["best_epoch"],
        "thresholds": thresholds,
        "input_rate_hz": input_rate_hz(config, x_test),
    }


def finetuning_loss(config, task_loss):
    """The fine-tuned SNN's loss: ``task_loss`` on the output's mean over its last
    ``config.eval_window`` timesteps (where the spiking models are read) or, if the
    config names ``finetune_window_ends``, averaged over windows of that length ending
    at each of them (`ReadoutWindows`: an output that holds once settled)."""
    ends = getattr(config, "finetune_window_ends", None)
    if ends:
        return ReadoutWindows(task_loss, config.eval_window, ends)
    return LastTimesteps(task_loss, config.eval_window)


def input_rate_hz(config, x):
    """The spike rate of the coded input ``x`` (Poisson: mean |x| / dt), or None when
    the input sends its values every step."""
    if spiking_settings(config).encoding != "poisson":
        return None
    return input_spike_rate_hz(x)


def evaluate_stages(model, config, run_dir, x, with_rates=True, trained_ann=None):
    """The three models of a finished `run_stages` in ``run_dir`` evaluated on ``x``
    (same keys as `run_stages`, without histories and timings; ``finetune_epochs`` and
    ``finetune_best_epoch`` None if the run's checkpoints are not there; without
    ``with_rates`` the spiking models' ``rates`` are None and their counting is
    saved).  ``trained_ann``: the ANN parameters the run started from, if not its own."""
    run_dir = Path(run_dir)
    ann_params = run_dir / "ann" if trained_ann is None else Path(trained_ann)
    name = spiking_settings(config).finetuned_name
    thresholds = load_thresholds(run_dir)
    converted = spiking_evaluation(model, config, ann_params, x, thresholds, with_rates=with_rates)
    tuned = spiking_evaluation(model, config, run_dir / name, x, thresholds, with_rates=with_rates)
    # how fine-tuning went, from its checkpoint's state (absent if the run was copied
    # without its checkpoints)
    state_path = run_dir / "checkpoints" / name / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    return {
        "finetune_epochs": state.get("epoch"),
        "finetune_best_epoch": state.get("best_epoch"),
        "outputs": {"ann": ann_outputs(model, config, ann_params, x),
                    "converted": converted["outputs"], name: tuned["outputs"]},
        "sweeps": {"converted": converted["sweep"], name: tuned["sweep"]},
        "rates": {"converted": converted["rates"], name: tuned["rates"]},
        "thresholds": thresholds,
        "input_rate_hz": input_rate_hz(config, x),
    }
