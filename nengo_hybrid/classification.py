"""Image classification through the three stages: the data (CIFAR-10 where a data
directory holds it, else a real stand-in from Caltech-101), the input coding, accuracy,
the floor, and one cell (a coding and a seed) of a grid of runs.

A classifier's output is its logits; a spiking network's are the output layer's potential
averaged over the read-out window (`nengo_hybrid.stages.spiking_evaluation`), and the
prediction is their argmax in both.
"""

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import tensorflow as tf

from data_prep import caltech101, cifar10
from nengo_hybrid import codings, metrics
from nengo_hybrid.atomic import write_json
from nengo_hybrid.cells import Cell, FolderJob
from nengo_hybrid.experiment import finetuning_record, seed_everything
from nengo_hybrid.stages import run_stages

MODELS = ("ann", "converted", "fine_tuned")
FLOOR = "floor"
CIFAR10 = "CIFAR-10"
CALTECH_STAND_IN = "Caltech-101, 10 categories at 32x32 (CIFAR-10 stand-in)"


class Dataset(NamedTuple):
    """A classification set and the name the tables give it."""

    data: caltech101.ClassificationSet
    name: str


def load(data_dir, dataset="auto", size=(32, 32), test_fraction=0.2, seed=0, max_train=0, max_test=0):
    """The classification set an experiment runs on.

    Parameters
    ----------
    data_dir : path
        The data directory (`nengo_hybrid.paths.data_dir`).
    dataset : ``"auto"``, ``"cifar10"`` or ``"caltech101"``
        ``"auto"``: CIFAR-10 if ``data_dir/cifar10`` holds its binary version
        (``python -m data_prep.download cifar10``), else the stand-in.
    size, test_fraction, seed
        The stand-in's image size and stratified split
        (`data_prep.caltech101.load_categories`): the ten categories of
        `data_prep.caltech101.CLASSIFICATION_CATEGORIES`, RGB.
    max_train, max_test : int
        Keep at most this many training / test images, the same share of every class
        (seeded by ``seed``; 0 keeps them all): a CPU profile's cap, which CIFAR-10's
        50,000 + 10,000 images meet and the stand-in's ~1,900 do not.

    Raises
    ------
    data_prep.caltech101.DataError
        Naming the folder or file that is missing or bad.
    """
    if dataset not in ("auto", "cifar10", "caltech101"):
        raise ValueError(f"dataset {dataset!r}: expected auto, cifar10 or caltech101")
    cifar = Path(data_dir) / "cifar10"
    if dataset == "cifar10" or (dataset == "auto" and cifar.is_dir()):
        data, name = cifar10.load_cifar10(cifar), CIFAR10
    else:
        data, name = caltech101.load_categories(Path(data_dir) / "caltech101", size=size,
                                                test_fraction=test_fraction, seed=seed), CALTECH_STAND_IN
    train = _stratified_subset(data.y_train, max_train, seed)
    test = _stratified_subset(data.y_test, max_test, seed)
    return Dataset(replace(
        data, x_train=data.x_train[train], y_train=data.y_train[train], x_test=data.x_test[test],
        y_test=data.y_test[test],
        train_files=None if data.train_files is None else [data.train_files[i] for i in train],
        test_files=None if data.test_files is None else [data.test_files[i] for i in test]), name)


def _stratified_subset(labels, most, seed):
    """Sorted indices of at most ``most`` of ``labels``, the same share of each class."""
    if not most or most >= len(labels):
        return np.arange(len(labels))
    _, kept = caltech101.stratified_split(labels, test_fraction=most / len(labels), seed=seed)
    return kept


def one_hot(labels, n_classes):
    """``(n, n_classes)`` float32 targets of integer ``labels``."""
    return np.eye(n_classes, dtype=np.float32)[np.asarray(labels)]


def loss():
    """The task loss: softmax cross-entropy of the logits."""
    return tf.keras.losses.CategoricalCrossentropy(from_logits=True)


def scores(logits, labels):
    """Accuracy and class-balanced accuracy (`nengo_hybrid.metrics.balanced_accuracy`)
    of the argmax of ``logits`` ``(n, n_classes)``."""
    return _label_scores(np.asarray(logits).reshape(len(labels), -1).argmax(axis=1), labels)


def floor_scores(y_train, y_test):
    """What a model that ignores its input scores: the training set's most frequent
    class for every test image (balanced accuracy 1 / the number of test classes)."""
    majority = int(np.bincount(np.asarray(y_train)).argmax())
    return _label_scores(np.full(len(y_test), majority), y_test)


def _label_scores(predicted, labels):
    return {"accuracy": float(np.mean(predicted == np.asarray(labels))),
            "balanced_accuracy": metrics.balanced_accuracy(labels, predicted)}


def cell_config(config, coding, seed):
    """``config`` for one cell: its input coding (``intensity``) and every seed (the
    model's initialisation, the training draws and the Poisson trains) from ``seed``."""
    return replace(config, intensity=codings.INTENSITY[coding], seed=seed,
                   ann=replace(config.ann, seed=seed), finetune=replace(config.finetune, seed=seed))


def load_for(config, data_dir):
    """The classification set of ``config`` (its ``dataset``, ``size``, ``test_fraction``,
    ``max_train``, ``max_test``) from ``data_dir`` (`load`)."""
    return load(data_dir, config.dataset, config.size, config.test_fraction, max_train=config.max_train,
                max_test=config.max_test)


@dataclass(frozen=True)
class ClassificationJob(FolderJob):
    """One (coding, seed) cell of a grid of classifier runs (`run_cell`) from nothing but
    the cell and this job: the data set is read from ``data_dir`` once per process (a
    Ray worker reads it as the driver does), the cell written to
    ``out_dir/cells/<coding>/seed<seed>/`` and read back when finished and ``resume``."""

    config: Any
    make_model: Callable
    data_dir: str
    out_dir: str
    resume: bool = False

    def run_cell(self, cell, folder):
        key = (self.data_dir, repr(self.config))
        if key not in _LOADED:
            _LOADED.clear()
            _LOADED[key] = load_for(self.config, self.data_dir)
        return run_cell(folder, self.config, self.make_model, _LOADED[key], cell["coding"], cell["seed"], self.resume)


_LOADED = {}


def grid_cells(config):
    """Every coding of ``config.codings`` times every seed of ``config.seeds``, named
    ``<coding>/seed<seed>``, in the order the local executor runs them."""
    return [Cell(f"{coding}/seed{seed}", (("coding", coding), ("seed", seed)))
            for coding in config.codings for seed in config.seeds]


def run_cell(folder, config, make_model, dataset, coding, seed, resume=False):
    """One coding and seed: ANN, converted and fine-tuned SNN trained and scored on the
    test images, in ``folder``; a finished cell is read back when ``resume``.  Returns
    its scores (``scores.json``, with the stages' ``timings``)."""
    folder = Path(folder)
    if resume and (folder / "scores.json").exists():
        return json.loads((folder / "scores.json").read_text())
    config = cell_config(config, coding, seed)
    # seeded from the cell's own coordinates, never from the cells run before it
    seed_everything(seed)
    data = dataset.data
    x_train = codings.scale(data.x_train, coding)
    x_test = codings.scale(data.x_test, coding)
    n_classes = len(data.class_names)
    model = make_model(config, x_train.shape[1:], n_classes)
    results = run_stages(model, config, x_train, one_hot(data.y_train, n_classes), x_test, loss(), folder,
                         resume=resume)
    cell = {"coding": coding, "seed": seed, "dataset": dataset.name,
            "finetuning": finetuning_record(results), "timings": results["timings"],
            "thresholds": results["thresholds"],
            "models": {name: dict(scores(results["outputs"][name], data.y_test),
                                  firing_rate_hz=(results["rates"].get(name) or {}).get("network"))
                       for name in MODELS}}
    write_json(folder / "scores.json", cell)
    return cell
