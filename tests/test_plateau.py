"""ReduceLROnPlateau in the training stage (`nengo_hybrid.stages._PlateauSchedule`): the
rate it sets before each epoch, the rate history it records, its state surviving a
checkpoint, and its effect in `train`."""

import copy
import json

import numpy as np
import pytest
import tensorflow as tf

import nengo_hybrid as nh
from nengo_hybrid.stages import TrainSettings, _PlateauSchedule, train


def drive(schedule, optimizer, losses, key="val_output_loss", first_epoch=0):
    """Run the callback over epochs whose monitored loss is ``losses``; the optimizer's
    rate at each epoch's start."""
    seen = []
    for i, value in enumerate(losses):
        epoch = first_epoch + i
        schedule.on_epoch_begin(epoch)
        seen.append(float(optimizer.learning_rate.numpy()))
        logs = value if isinstance(value, dict) else {key: value}
        schedule.on_epoch_end(epoch, dict(logs))
    return seen


def settings(**kw):
    return TrainSettings(**dict(dict(learning_rate=0.1, epochs=20), **kw))


LOSSES = [1.0, 0.9, 0.95, 0.96, 0.97, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1]
# derived by hand (patience 2, factor 0.5, min 0.02):
#  e0 1.0 best;  e1 0.9 better;  e2 wait 1;  e3 wait 2 -> 0.05 (wait 0);  e4 wait 1;
#  e5 0.5 better (wait 0);  e6 wait 1;  e7 wait 2 -> 0.025;  e8 wait 1;
#  e9 wait 2 -> max(0.0125, 0.02) = 0.02;  e10 wait 1;  e11 wait 2 -> max(0.01, 0.02) = 0.02
EXPECTED = [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02]
EXPECTED_NEXT = 0.02
PLATEAU = dict(plateau_patience=2, plateau_factor=0.5, plateau_min_lr=0.02)


def test_the_rate_follows_the_plateau_rule():
    state = {"history": {}}
    optimizer = tf.keras.optimizers.Adam(0.1)
    schedule = _PlateauSchedule(state, optimizer, settings(**PLATEAU))
    seen = drive(schedule, optimizer, LOSSES)
    # the rate each epoch trained with, recorded and actually set on the optimizer
    assert state["history"]["learning_rate"] == pytest.approx(EXPECTED, rel=1e-12)
    assert seen == pytest.approx(EXPECTED, rel=1e-6)  # float32 variable
    assert state["learning_rate"] == pytest.approx(EXPECTED_NEXT)
    assert min(state["history"]["learning_rate"]) >= 0.02
    assert state["plateau_best"] == 0.5


def test_the_first_eight_epochs_of_the_briefs_sequence():
    losses = [1.0, 0.9, 0.95, 0.96, 0.97, 0.5, 0.6, 0.7]
    state = {"history": {}}
    optimizer = tf.keras.optimizers.Adam(0.1)
    seen = drive(_PlateauSchedule(state, optimizer, settings(**PLATEAU)), optimizer, losses)
    assert seen == pytest.approx([0.1] * 4 + [0.05] * 4, rel=1e-6)
    assert state["history"]["learning_rate"] == pytest.approx([0.1] * 4 + [0.05] * 4)
    # reduced again after the eighth epoch: the next epoch would train at 0.025
    assert state["learning_rate"] == pytest.approx(0.025)


def test_an_improvement_must_beat_the_best_by_min_delta():
    # patience 1: every epoch that is not an improvement halves the rate
    losses = [1.0, 0.99995, 0.9998, 0.99975, 0.5]
    # e0 best 1.0;  e1 0.99995 is not below 0.9999 -> 0.05;  e2 0.9998 < 0.9999 better;
    # e3 0.99975 not below 0.9997 -> 0.025;  e4 better
    state = {"history": {}}
    optimizer = tf.keras.optimizers.Adam(0.1)
    schedule = _PlateauSchedule(state, optimizer, settings(plateau_patience=1, plateau_factor=0.5))
    seen = drive(schedule, optimizer, losses)
    assert state["history"]["learning_rate"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    assert seen == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025], rel=1e-6)
    assert state["learning_rate"] == pytest.approx(0.025)


def test_the_best_is_not_reset_by_a_reduction():
    # after a reduction the wait starts over, but against the old best: 0.95 never beats 0.9
    losses = [0.9, 0.95, 0.95, 0.95, 0.95, 0.95]
    state = {"history": {}}
    optimizer = tf.keras.optimizers.Adam(0.1)
    drive(_PlateauSchedule(state, optimizer, settings(plateau_patience=2, plateau_factor=0.5,
                                                      plateau_min_lr=0.0)), optimizer, losses)
    # e1 wait 1; e2 wait 2 -> 0.05; e3 wait 1; e4 wait 2 -> 0.025; e5 wait 1
    assert state["history"]["learning_rate"] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025])
    assert state["learning_rate"] == pytest.approx(0.025)


def test_without_plateau_patience_the_rate_is_constant():
    state = {"history": {}}
    optimizer = tf.keras.optimizers.Adam(0.1)
    schedule = _PlateauSchedule(state, optimizer, settings(plateau_patience=None, plateau_factor=0.5))
    seen = drive(schedule, optimizer, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert state["history"]["learning_rate"] == [0.1] * 6
    assert seen == pytest.approx([0.1] * 6, rel=1e-6)
    assert state["learning_rate"] == 0.1


def test_the_rate_is_set_from_the_state_not_left_on_the_optimizer():
    """Whatever the optimizer holds, each epoch starts at the schedule's rate."""
    state = {"history": {}}
    optimizer = tf.keras.optimizers.Adam(0.1)
    schedule = _PlateauSchedule(state, optimizer, settings(plateau_patience=1, plateau_factor=0.5))
    optimizer.learning_rate.assign(3.0)
    schedule.on_epoch_begin(0)
    assert float(optimizer.learning_rate.numpy()) == pytest.approx(0.1)


def test_the_monitored_loss_is_the_validation_task_loss_first():
    def run(logs):
        state = {"history": {}}
        optimizer = tf.keras.optimizers.Adam(0.1)
        drive(_PlateauSchedule(state, optimizer, settings(plateau_patience=1, plateau_factor=0.5)),
              optimizer, logs)
        return state["history"]["learning_rate"] + [state["learning_rate"]]

    falling, rising = [3.0, 2.0, 1.0], [1.0, 2.0, 3.0]
    # the task loss on validation rises while the others fall: it decides
    logs = [{"val_output_loss": r, "val_loss": f, "loss": f} for f, r in zip(falling, rising)]
    assert run(logs) == pytest.approx([0.1, 0.1, 0.05, 0.025])
    # without it, the total validation loss decides, then the training loss
    logs = [{"val_loss": r, "loss": f} for f, r in zip(falling, rising)]
    assert run(logs) == pytest.approx([0.1, 0.1, 0.05, 0.025])
    logs = [{"loss": r} for r in rising]
    assert run(logs) == pytest.approx([0.1, 0.1, 0.05, 0.025])
    logs = [{"loss": f} for f in falling]
    assert run(logs) == pytest.approx([0.1, 0.1, 0.1, 0.1])


def test_early_stopping_state_beside_it_does_not_interfere():
    state = {"history": {}, "best": 0.0, "wait": 7, "epoch": 0}
    optimizer = tf.keras.optimizers.Adam(0.1)
    drive(_PlateauSchedule(state, optimizer, settings(**PLATEAU)), optimizer, LOSSES)
    assert state["history"]["learning_rate"] == pytest.approx(EXPECTED)
    assert state["best"] == 0.0 and state["wait"] == 7


@pytest.mark.parametrize("stop", [1, 3, 4, 7, 9, 11])
def test_a_resumed_schedule_continues_the_same_sequence(stop):
    full_state = {"history": {}}
    full_optimizer = tf.keras.optimizers.Adam(0.1)
    full_seen = drive(_PlateauSchedule(full_state, full_optimizer, settings(**PLATEAU)),
                      full_optimizer, LOSSES)

    state = {"history": {}}
    optimizer = tf.keras.optimizers.Adam(0.1)
    first = drive(_PlateauSchedule(state, optimizer, settings(**PLATEAU)), optimizer, LOSSES[:stop])
    # the checkpoint's state as written and read back
    saved = json.loads(json.dumps(state))
    # a new process: a new optimizer at the settings' rate, the state from the file
    resumed_optimizer = tf.keras.optimizers.Adam(0.1)
    resumed = _PlateauSchedule(saved, resumed_optimizer, settings(**PLATEAU))
    second = drive(resumed, resumed_optimizer, LOSSES[stop:], first_epoch=stop)

    assert first + second == pytest.approx(full_seen, rel=1e-6)
    assert saved["history"]["learning_rate"] == pytest.approx(full_state["history"]["learning_rate"])
    assert saved["learning_rate"] == pytest.approx(full_state["learning_rate"])
    assert {k: v for k, v in saved.items() if k != "history"} == pytest.approx(
        {k: v for k, v in full_state.items() if k != "history"})


# ----------------------------------------------------------------------------- end to end

def tiny_model(seed=0):
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((3,))
    hidden = tf.keras.layers.Dense(4, activation=tf.nn.relu)(inp)
    return tf.keras.Model(inp, tf.keras.layers.Dense(1)(hidden))


def tiny_data(n=64, seed=1):
    rng = np.random.RandomState(seed)
    x = rng.uniform(-1, 1, size=(n, 3)).astype(np.float32)
    # mostly noise: the loss soon stops improving and the rate gets reduced
    y = (0.3 * x[:, :1] + rng.normal(0, 1, size=(n, 1))).astype(np.float32)
    return x, y


E2E = TrainSettings(learning_rate=0.05, epochs=6, batch_size=16, patience=None, plateau_patience=1,
                    plateau_factor=0.5)


def replay(losses, lr, factor, min_lr=1e-6):
    """The rates a patience-1 schedule trains with, given each epoch's loss."""
    rates, best = [], None
    for value in losses:
        rates.append(lr)
        if best is None or value < best - 1e-4:
            best = value
        else:
            lr = max(lr * factor, min_lr)
    return rates, lr


def run_training(run_dir, augment=None, resume=False):
    x, y = tiny_data()
    converted = nh.convert(tiny_model(), "rate")
    with converted.simulator(E2E.batch_size, n_steps=1) as sim:
        result = train(converted, sim, x, y, "mse", E2E, run_dir, augment=augment, resume=resume)
        final_rate = float(sim.keras_model.optimizer.learning_rate.numpy())
    return result, final_rate


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return run_training(tmp_path_factory.mktemp("plateau") / "run")


def test_training_records_the_rate_of_every_epoch(trained):
    result, final_rate = trained
    history = result["history"]
    rates, losses = history["learning_rate"], history["loss"]
    assert result["epochs"] == 6
    assert len(rates) == len(losses) == 6
    assert rates[0] == 0.05
    for previous, current in zip(rates, rates[1:]):
        assert current <= previous
        assert current == previous or current == pytest.approx(previous / 2, rel=1e-12)
    # a reduction happened iff some epoch's training loss failed to improve by 1e-4
    best, stalled = losses[0], False
    for value in losses[1:-1]:  # the last epoch's verdict only affects a seventh epoch
        if value < best - 1e-4:
            best = value
        else:
            stalled = True
    assert (rates[-1] < 0.05) == stalled
    # exactly the rule replayed on the recorded losses
    expected, _ = replay(losses, 0.05, 0.5)
    assert rates == pytest.approx(expected, rel=1e-12)
    # the optimizer trained with the recorded rate
    assert final_rate == pytest.approx(rates[-1], rel=1e-6)


def test_this_data_does_reach_a_plateau(trained):
    """Guards the test above against a run that never exercises a reduction."""
    rates = trained[0]["history"]["learning_rate"]
    assert rates[-1] < rates[0]


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("stop", [4, 6])
def test_an_interrupted_run_resumes_the_same_schedule(tmp_path, trained, stop):
    """Killed as epoch ``stop`` starts (the augmentation runs first thing in an epoch),
    then resumed: the same rates and losses as the uninterrupted run (with this data, a
    stop at 4 needs the saved best loss to reduce after epoch 5, a stop at 6 the saved
    rate reduced after epoch 5)."""
    calls = []

    def interrupt(xs, ys, rng):
        calls.append(1)
        if len(calls) == stop:
            raise Interrupted
        return xs, ys

    with pytest.raises(Interrupted):
        run_training(tmp_path / "run", augment=interrupt)
    saved = json.loads((tmp_path / "run" / "state.json").read_text())
    assert saved["epoch"] == stop - 1 and len(saved["history"]["learning_rate"]) == stop - 1

    resumed, final_rate = run_training(tmp_path / "run", augment=lambda xs, ys, rng: (xs, ys),
                                       resume=True)
    full = trained[0]["history"]
    assert resumed["epochs"] == 6
    np.testing.assert_allclose(resumed["history"]["loss"], full["loss"], rtol=1e-5)
    assert resumed["history"]["learning_rate"] == pytest.approx(full["learning_rate"], rel=1e-12)
    assert final_rate == pytest.approx(full["learning_rate"][-1], rel=1e-6)


# ----------------------------------------------------------------------------- cosine decay

def test_cosine_decay_sets_half_a_cosine_over_the_epochs_whatever_the_loss():
    state = {"history": {}}
    optimizer = tf.keras.optimizers.Adam(0.1)
    schedule = _PlateauSchedule(state, optimizer, settings(epochs=4, cosine_decay=True))
    seen = drive(schedule, optimizer, [1.0, 2.0, 0.5, 3.0])
    # by hand: 0.1 * (1 + cos(pi e / 4)) / 2 for e = 0..3
    expected = [0.1, 0.05 * (1 + 2 ** -0.5), 0.05, 0.05 * (1 - 2 ** -0.5)]
    assert state["history"]["learning_rate"] == pytest.approx(expected, rel=1e-12)
    assert seen == pytest.approx(expected, rel=1e-6)


def test_a_resumed_cosine_schedule_continues_where_it_stopped():
    state = {"history": {}}
    optimizer = tf.keras.optimizers.Adam(0.1)
    drive(_PlateauSchedule(state, optimizer, settings(epochs=6, cosine_decay=True)), optimizer, [1.0] * 2)
    saved = json.loads(json.dumps(state))
    fresh = tf.keras.optimizers.Adam(0.1)  # a new process starts at the settings' rate
    seen = drive(_PlateauSchedule(saved, fresh, settings(epochs=6, cosine_decay=True)), fresh, [1.0] * 4,
                 first_epoch=2)
    assert seen == pytest.approx([0.05 * (1 + np.cos(np.pi * e / 6)) for e in range(2, 6)], rel=1e-6)


def test_cosine_decay_and_a_plateau_schedule_are_refused_together():
    with pytest.raises(ValueError, match="cosine_decay and plateau_patience"):
        settings(cosine_decay=True, plateau_patience=2)
