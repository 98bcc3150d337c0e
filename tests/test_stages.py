"""The training stage: early stopping that keeps the best weights, the starting ones
included, and per-epoch augmentation that a seed repeats."""

import json

import numpy as np
import tensorflow as tf

import nengo_hybrid as nh
from nengo_hybrid.stages import TrainSettings, train


def regression(seed=0):
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((6,))
    hidden = tf.keras.layers.Dense(16, activation=nh.SoftLIF(sigma=0.02, amplitude=0.01))(inp)
    return tf.keras.Model(inp, tf.keras.layers.Dense(2)(hidden))


def examples(n=64, seed=1):
    rng = np.random.RandomState(seed)
    x = rng.uniform(-1, 1, size=(n, 6)).astype(np.float32)
    return x, np.stack([x[:, 0] + x[:, 1], x[:, 2] * 0.5], axis=1).astype(np.float32)


def weights(sim):
    return [w.copy() for w in sim.keras_model.get_weights()]


def test_fine_tuning_that_never_helps_returns_the_starting_weights(tmp_path):
    x, y = examples()
    converted = nh.convert(regression(), "rate")
    # a learning rate that wrecks the network in its first step
    settings = TrainSettings(learning_rate=50.0, epochs=3, batch_size=16, patience=5)
    with converted.simulator(16, n_steps=1) as sim:
        start = weights(sim)
        result = train(converted, sim, x, y, "mse", settings, tmp_path / "run")
        assert result["best_epoch"] == 0 and result["epochs"] == 3
        for before, after in zip(start, weights(sim)):
            np.testing.assert_array_equal(before, after)


def test_training_that_helps_keeps_its_best_epoch(tmp_path):
    x, y = examples()
    converted = nh.convert(regression(), "rate")
    settings = TrainSettings(learning_rate=0.01, epochs=4, batch_size=16, patience=5)
    with converted.simulator(16, n_steps=1) as sim:
        result = train(converted, sim, x, y, "mse", settings, tmp_path / "run")
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert result["best_epoch"] >= 1
    # the kept epoch has the lowest validation loss of all
    assert state["best"] == min(state["history"]["val_loss"])


def test_each_epoch_draws_its_augmentation_from_the_seed(tmp_path):
    x, y = examples(n=32)
    seen = []

    def augment(xs, ys, rng):
        seen.append(rng.uniform())
        return xs, ys

    for run in ("a", "b"):
        converted = nh.convert(regression(), "rate")
        with converted.simulator(16, n_steps=1) as sim:
            train(converted, sim, x, y, "mse", TrainSettings(0.01, epochs=2, batch_size=16),
                  tmp_path / run, augment=augment)
    assert len(seen) == 4 and seen[:2] == seen[2:] and seen[0] != seen[1]
