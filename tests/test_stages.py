"""The training stage: early stopping that keeps the best weights, the starting ones
included, and per-epoch augmentation that a seed repeats."""

import argparse
import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

import nengo_hybrid as nh
from nengo_hybrid.losses import BinaryCrossEntropy
from nengo_hybrid.metrics import dice_2d
from nengo_hybrid.paths import config_with_overrides, experiment_parser, resolve_run
from nengo_hybrid.stages import (ResumeMismatch, TrainSettings, train, validation_split,
                                 write_run_config)


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


def test_weight_decay_shrinks_connection_weights_only(tmp_path):
    """One step from the same weights with and without decoupled weight decay: the
    gradient step is the same, so a connection weight differs by exactly
    -learning_rate x weight_decay x its starting value, and a bias not at all."""
    x, y = examples(n=16)
    trained = {}
    for decay in (0.0, 0.5):
        converted = nh.convert(regression(), "rate")
        settings = TrainSettings(learning_rate=0.01, epochs=1, batch_size=16, validation_fraction=0.0,
                                 weight_decay=decay)
        with converted.simulator(16, n_steps=1) as sim:
            start = weights(sim)
            train(converted, sim, x, y, "mse", settings, tmp_path / f"decay{decay}")
            trained[decay] = weights(sim)
    decayed = 0
    for before, plain, with_decay in zip(start, trained[0.0], trained[0.5]):
        assert not np.array_equal(before, plain)  # the step moved every parameter
        if sum(size > 1 for size in before.shape) >= 2:
            np.testing.assert_allclose(with_decay - plain, -0.01 * 0.5 * before, rtol=1e-4, atol=1e-7)
            decayed += 1
        else:
            np.testing.assert_array_equal(with_decay, plain)
    assert decayed == 2  # both dense layers' kernels


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
    # the history's epoch 0 (drawn first in training_curves.png) is the starting weights'
    # validation loss: the Keras network's squared error on the held-out examples
    val_idx, _ = validation_split(len(x), settings)
    expected = np.mean((regression().predict(x[val_idx], verbose=0) - y[val_idx]) ** 2)
    np.testing.assert_allclose(result["history"]["start"]["val_loss"], expected, rtol=1e-5)
    assert all(loss > expected for loss in result["history"]["val_loss"])  # why epoch 0 was kept


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


@pytest.mark.parametrize("monitor", ["val_output_dice_error", "val_output_dice_error_on_target"])
def test_early_stopping_can_watch_the_validation_dice(tmp_path, monitor):
    rng = np.random.RandomState(1)
    x = rng.uniform(-1, 1, size=(64, 6)).astype(np.float32)
    masks = (x[:, :1] + rng.uniform(-1, 1, size=(64, 8)) > 0).astype(np.float32)
    masks[::3] = 0  # a third of the masks show no target
    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((6,))
    hidden = tf.keras.layers.Dense(16, activation=nh.SoftLIF(sigma=0.02, amplitude=0.01))(inp)
    converted = nh.convert(tf.keras.Model(inp, tf.keras.layers.Dense(8)(hidden)), "rate")
    settings = TrainSettings(learning_rate=0.02, epochs=4, batch_size=16, patience=5,
                             monitor=monitor)
    with converted.simulator(16, n_steps=1) as sim:
        train(converted, sim, x, masks, BinaryCrossEntropy(), settings, tmp_path / "run")
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    errors = state["history"][monitor]
    assert state["best"] == pytest.approx(min([state["best"]] + errors))
    # the kept weights score that error on the validation examples, by the table's Dice
    val_idx, _ = validation_split(len(x), settings)
    with converted.simulator(16, n_steps=1) as sim:
        sim.load_params(tmp_path / "run" / "best")
        out = sim.predict({converted.input: x[val_idx][:, None]})[converted.output][:, -1]
    if monitor.endswith("on_target"):  # the share on target x (1 - their mean Dice)
        dice = dice_2d(out, masks[val_idx], threshold=0.0).on_target
        expected = len(dice) / len(val_idx) * (1 - dice.mean())
    else:
        expected = 1 - dice_2d(out, masks[val_idx], threshold=0.0).scores.mean()
    assert expected == pytest.approx(state["best"], abs=1e-6)


def test_early_stopping_refuses_a_measure_training_does_not_log(tmp_path):
    x, y = examples()
    converted = nh.convert(regression(), "rate")
    settings = TrainSettings(learning_rate=0.01, epochs=1, batch_size=16, patience=5,
                             monitor="val_output_accuracy_typo")
    with converted.simulator(16, n_steps=1) as sim, pytest.raises(KeyError, match="accuracy_typo"):
        train(converted, sim, x, y, "mse", settings, tmp_path / "run")


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


def old_split(n, settings):
    """The validation split as `train` drew it before groups existed."""
    order = np.random.RandomState(settings.seed).permutation(n)
    n_val = 0
    if settings.patience:
        batches = max(1, int(round(settings.validation_fraction * n / settings.batch_size)))
        n_val = batches * settings.batch_size
    train_idx = order[n_val:]
    return order[:n_val], train_idx[:len(train_idx) - len(train_idx) % settings.batch_size]


def test_without_groups_the_split_is_the_one_earlier_runs_used():
    for n, settings in [(64, TrainSettings(0.01, 1, batch_size=16, patience=5)),
                        (1000, TrainSettings(0.01, 1, batch_size=32, patience=3, seed=4,
                                             validation_fraction=0.15)),
                        (50, TrainSettings(0.01, 1, batch_size=8))]:
        for new, old in zip(validation_split(n, settings), old_split(n, settings)):
            np.testing.assert_array_equal(new, old)


def subject_groups(n_subjects=23, seed=2):
    """Subject ids of slices, subjects of unequal sizes, in subject order like a scan."""
    sizes = np.random.RandomState(seed).randint(5, 30, size=n_subjects)
    return np.repeat([f"sub{i:02d}" for i in range(n_subjects)], sizes)


def test_validation_holds_out_whole_groups_from_the_seed():
    groups = subject_groups()
    n = len(groups)
    # a seed whose held-out groups are no whole number of minibatches: some are cut
    settings = TrainSettings(0.01, 1, batch_size=8, patience=2, validation_fraction=0.2, seed=4)
    val_idx, train_idx = validation_split(n, settings, groups)
    held = set(groups[val_idx])
    assert held and not held & set(groups[train_idx])
    assert len(val_idx) % 8 == 0 and len(train_idx) % 8 == 0
    assert len(set(val_idx)) == len(val_idx) and not set(val_idx) & set(train_idx)
    # enough groups for the fraction, the cut to minibatches less than one of them
    held_examples = np.isin(groups, list(held)).sum()
    assert held_examples >= 0.2 * n and 0 < held_examples - len(val_idx) < 8
    # and no more groups than it takes: without the last one the fraction was not reached
    assert held_examples - np.unique(groups, return_counts=True)[1].max() < 0.2 * n
    # every example of the other groups trains, but for the cut to minibatches
    assert n - held_examples - len(train_idx) < 8
    again = validation_split(n, settings, groups)
    np.testing.assert_array_equal(again[0], val_idx)
    np.testing.assert_array_equal(again[1], train_idx)
    other = validation_split(n, TrainSettings(0.01, 1, batch_size=8, patience=2,
                                              validation_fraction=0.2, seed=5), groups)
    assert set(groups[other[0]]) != held


def test_train_records_the_validation_groups(tmp_path):
    x, y = examples()
    groups = np.repeat(np.arange(8), 8)  # eight subjects of eight slices
    settings = TrainSettings(0.01, epochs=1, batch_size=16, patience=2, validation_fraction=0.25)
    converted = nh.convert(regression(), "rate")
    with converted.simulator(16, n_steps=1) as sim:
        result = train(converted, sim, x, y, "mse", settings, tmp_path / "run", groups=groups)
    val_idx, _ = validation_split(len(x), settings, groups)
    expected = sorted(str(g) for g in set(groups[val_idx]))
    assert len(expected) == 2 and result["validation_groups"] == expected
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["validation_groups"] == expected


def test_resume_continues_only_with_the_same_settings(tmp_path, capsys):
    x, y = examples()
    settings = TrainSettings(0.01, epochs=2, batch_size=16, patience=5)
    converted = nh.convert(regression(), "rate")
    with converted.simulator(16, n_steps=1) as sim:
        train(converted, sim, x, y, "mse", settings, tmp_path / "run")
        result = train(converted, sim, x, y, "mse", settings, tmp_path / "run", resume=True)
        assert result["epochs"] == 2 and "resumed after epoch 2" in capsys.readouterr().out
        changed = dataclasses.replace(settings, learning_rate=0.02)
        with pytest.raises(ResumeMismatch, match="learning_rate") as refused:
            train(converted, sim, x, y, "mse", changed, tmp_path / "run", resume=True)
    message = str(refused.value)
    assert str(tmp_path / "run") in message and "0.01" in message and "0.02" in message
    assert "batch_size" not in message
    # the refused run left the checkpoint alone
    assert json.loads((tmp_path / "run" / "state.json").read_text())["epoch"] == 2


def test_a_resumed_run_refuses_a_changed_configuration(tmp_path):
    config = {"seed": 0, "filters": (8, 16), "hybrid": {"learning_rate": 0.01, "epochs": 3}}
    write_run_config(tmp_path, config, resume=False)
    # the same configuration, its tuple now a list in the file
    write_run_config(tmp_path, config, resume=True)
    changed = {**config, "hybrid": {"learning_rate": 0.001, "epochs": 3}}
    with pytest.raises(ResumeMismatch, match=r"hybrid\.learning_rate") as refused:
        write_run_config(tmp_path, changed, resume=True)
    assert "config.json" in str(refused.value) and "epochs" not in str(refused.value)
    assert json.loads((tmp_path / "config.json").read_text())["hybrid"]["learning_rate"] == 0.01
    write_run_config(tmp_path, changed, resume=False)  # a new run starts over
    assert json.loads((tmp_path / "config.json").read_text())["hybrid"]["learning_rate"] == 0.001


@pytest.mark.parametrize("added", ["cosine_decay", "fixed_order_sums", "weight_decay"])
def test_a_run_checkpointed_before_a_setting_existed_resumes(tmp_path, added):
    """A configuration written before a `TrainSettings` field (``cosine_decay``,
    ``fixed_order_sums``, ``weight_decay``) existed has no such key: it resumes under
    False or 0 (how it trained), and is refused under another value."""
    before = dataclasses.asdict(TrainSettings(0.01, epochs=3))
    del before[added]
    write_run_config(tmp_path, {"seed": 0, "ann": before}, resume=False)
    write_run_config(tmp_path, {"seed": 0, "ann": dataclasses.asdict(TrainSettings(0.01, epochs=3))}, resume=True)
    write_run_config(tmp_path, {"seed": 0, "ann": before}, resume=False)
    with pytest.raises(ResumeMismatch, match=rf"ann\.{added}"):
        write_run_config(tmp_path, {"seed": 0, "ann": dataclasses.asdict(TrainSettings(0.01, epochs=3,
                                                                                    **{added: True}))},
                         resume=True)


def test_a_locnet_run_checkpointed_before_random_erasing_existed_resumes(tmp_path):
    """LocNet's ``erase`` (2026-12-08) is missing from older runs' configurations: they
    trained without erasing, so they resume under 0 and are refused under another value."""
    import importlib
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    config = importlib.import_module("locnet").PROFILES["paper"]
    before = dataclasses.asdict(config)
    del before["erase"]
    write_run_config(tmp_path, before, resume=False)
    write_run_config(tmp_path, dataclasses.asdict(config), resume=True)
    write_run_config(tmp_path, before, resume=False)
    with pytest.raises(ResumeMismatch, match=r"erase: '<missing>' before, 0\.2 now"):
        write_run_config(tmp_path, dataclasses.asdict(dataclasses.replace(config, erase=0.2)), resume=True)


@dataclasses.dataclass(frozen=True)
class TwoStageConfig:
    ann: TrainSettings
    hybrid: TrainSettings
    seed: int = 0
    name: str = "two"


def test_seed_option_seeds_every_training_stage():
    profiles = {"paper": TwoStageConfig(TrainSettings(0.01, 5), TrainSettings(0.001, 3, seed=1))}
    config, _ = resolve_run(argparse.Namespace(profile="paper", seed=7, out=None), "two", profiles)
    assert config.seed == config.ann.seed == config.hybrid.seed == 7
    assert config.hybrid.learning_rate == 0.001 and config.name == "two"
    config, _ = resolve_run(argparse.Namespace(profile="paper", seed=None, out=None), "two", profiles)
    assert config == profiles["paper"]


def test_set_option_overrides_the_profile_before_the_seed_and_names_a_wrong_field():
    profiles = {"paper": TwoStageConfig(TrainSettings(0.01, 5), TrainSettings(0.001, 3, seed=1))}
    parser, _, _ = experiment_parser("doc", "two", profiles)
    args = parser.parse_args(["run", "--set", "hybrid.epochs=1", "name='other'", "--seed", "4"])
    config, out = resolve_run(args, "two", profiles)
    assert config.hybrid == TrainSettings(0.001, 1, seed=4) and config.ann == TrainSettings(0.01, 5, seed=4)
    assert config.name == "other" and config.seed == 4 and out == "results/two"
    # --seed is applied after --set: an override of a stage's seed does not outlive it
    args = parser.parse_args(["run", "--set", "hybrid.seed=9", "--seed", "4"])
    assert resolve_run(args, "two", profiles)[0].hybrid.seed == 4
    assert resolve_run(parser.parse_args(["run", "--set", "hybrid.seed=9"]), "two", profiles)[0].hybrid.seed == 9
    # without --set the profile is untouched
    assert resolve_run(parser.parse_args(["run"]), "two", profiles)[0] == profiles["paper"]
    with pytest.raises(SystemExit, match="--set: .*no field 'hybrid.epoch'"):
        resolve_run(parser.parse_args(["run", "--set", "hybrid.epoch=1"]), "two", profiles)


def test_overrides_set_top_level_and_nested_fields_and_name_what_is_wrong():
    base = TwoStageConfig(TrainSettings(0.01, 5), TrainSettings(0.001, 3, seed=1))
    assert config_with_overrides(base, "base") == base
    changed = config_with_overrides(base, "name='other' hybrid.learning_rate=0.0003 ann.epochs=7")
    assert changed.name == "other" and changed.seed == 0
    assert changed.hybrid == dataclasses.replace(base.hybrid, learning_rate=0.0003)
    assert changed.ann == dataclasses.replace(base.ann, epochs=7)
    assert base.hybrid.learning_rate == 0.001  # frozen: the base is untouched
    for wrong, says in [("hybrid.rate=1", "no field 'hybrid.rate'"), ("seeds=2", "no field 'seeds'"),
                        ("seed.x=1", "no field 'seed.x'"), ("seed", "not field=value"),
                        ("name=other", "not a Python literal")]:
        with pytest.raises(ValueError, match=says):
            config_with_overrides(base, wrong)
