"""Gradient sums in a fixed order (`nengo_hybrid.gradients`)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from nengo_hybrid.gradients import FixedOrderAdam

USES = 7  # a weight used this many times (a timestep each, as in an unrolled simulation)


def _coefficients():
    # magnitudes spread over many orders, so that the order of the sum shows in its last bits
    rng = np.random.RandomState(3)
    return (rng.randn(USES, 64) * 10.0 ** rng.uniform(-4, 4, (USES, 64))).astype(np.float32)


def _gradient_graph(optimizer_kind):
    """Trace Keras-style: the loss sum_t <c_t, w> under a tape, gradients from the optimizer."""
    c = tf.constant(_coefficients())
    w = tf.Variable(tf.ones(64))
    optimizer = FixedOrderAdam(0.1) if optimizer_kind == "fixed" else tf.keras.optimizers.Adam(0.1)

    @tf.function
    def gradients():
        with tf.GradientTape() as tape:
            # a chain of two-input adds: the only wide sum is the tape's, over w's uses
            loss = tf.reduce_sum(c[0] * w)
            for t in range(1, USES):
                loss = loss + tf.reduce_sum(c[t] * w)
        return optimizer.compute_gradients(loss, [w], tape=tape)[0][0]

    graph = gradients.get_concrete_function().graph
    return gradients().numpy(), graph


def _widest_sum(graph):
    return max([len(op.inputs) for op in graph.get_operations() if op.type == "AddN"], default=0)


def test_fixed_order_sums_are_two_input_adds_of_the_same_gradient():
    fixed, fixed_graph = _gradient_graph("fixed")
    tape, tape_graph = _gradient_graph("tape")
    coefficients = _coefficients()
    # the tape adds the seven per-use gradients with one AddN; the fixed order with adds of two
    assert _widest_sum(tape_graph) == USES
    assert _widest_sum(fixed_graph) == 2
    # the same gradient (to float32 rounding), and exactly one fixed order's rounding:
    # the running sum over the uses in some order of theirs
    np.testing.assert_allclose(fixed, coefficients.sum(axis=0, dtype=np.float64), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(tape, fixed, rtol=1e-5, atol=1e-3)
    folds = []
    for order in (list(range(USES)), list(range(USES))[::-1]):
        total = coefficients[order[0]]
        for t in order[1:]:
            total = total + coefficients[t]
        folds.append(total)
    assert not np.array_equal(*folds)  # the order shows in these numbers
    assert any(np.array_equal(fixed, total) for total in folds)


def test_fixed_order_adam_refuses_eager_gradients():
    w = tf.Variable(1.0)
    with pytest.raises(ValueError, match="inside tf.function"):
        FixedOrderAdam(0.1).compute_gradients(lambda: w * 2.0, [w])


def test_fix_sum_order_turns_the_arithmetic_optimiser_off():
    # in a fresh process: the setting holds for the rest of the process it is made in
    code = textwrap.dedent("""
        import tensorflow as tf
        from nengo_hybrid.gradients import fix_sum_order, sum_order_fixed
        assert not sum_order_fixed()
        fix_sum_order()
        assert sum_order_fixed()
        assert tf.config.optimizer.get_experimental_options()["arithmetic_optimization"] is False
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fixed_sum_order_holds_for_its_block_only():
    # in a fresh process: the options are the process's
    code = textwrap.dedent("""
        import tensorflow as tf
        from nengo_hybrid.gradients import fix_sum_order, fixed_sum_order, sum_order_fixed
        options = tf.config.optimizer.get_experimental_options
        before = options()
        assert "arithmetic_optimization" not in before
        with fixed_sum_order():
            assert sum_order_fixed()
        assert options() == before  # unset again (TensorFlow's default), not set to on
        try:
            with fixed_sum_order():
                raise KeyError("inside")
        except KeyError:
            pass
        assert options() == before
        fix_sum_order()
        with fixed_sum_order():
            pass
        assert sum_order_fixed()  # a process-wide setting outlives the block
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_training_stage_with_fixed_order_sums_trains_as_adam_does_and_repeats(tmp_path):
    # in a fresh process, so that the last fit's process-wide setting stays in it
    code = textwrap.dedent("""
        import dataclasses, sys
        import numpy as np
        import tensorflow as tf
        import nengo_hybrid as nh
        from nengo_hybrid.gradients import FixedOrderAdam, fix_sum_order, sum_order_fixed
        from nengo_hybrid.losses import LastTimesteps
        from nengo_hybrid.stages import TrainSettings, train

        rng = np.random.RandomState(1)
        x = rng.uniform(-1, 1, size=(64, 6)).astype(np.float32)
        y = np.stack([x[:, 0] + x[:, 1], x[:, 2] * 0.5], axis=1).astype(np.float32)

        def fit(fixed, folder):
            tf.keras.utils.set_random_seed(0)
            inp = tf.keras.Input((6,))
            hidden = tf.keras.layers.Dense(16, activation=nh.SoftLIF(sigma=0.02, amplitude=0.01))(inp)
            converted = nh.convert(tf.keras.Model(inp, tf.keras.layers.Dense(2)(hidden)), "hybrid",
                                   synapse=0.005)
            # five timesteps: every weight is used five times, its gradient a sum of five
            settings = TrainSettings(0.01, epochs=2, batch_size=16, n_steps=5, fixed_order_sums=fixed)
            with converted.simulator(16, n_steps=5) as sim:
                train(converted, sim, x, y, LastTimesteps("mse", 2), settings, folder)
                assert isinstance(sim.keras_model.optimizer, FixedOrderAdam) == fixed
                return [w.copy() for w in sim.keras_model.get_weights()]

        tensorflows = fit(False, sys.argv[1] + "/adam")
        first = fit(True, sys.argv[1] + "/fixed1")
        assert not sum_order_fixed()  # the stage's setting ends with it
        second = fit(True, sys.argv[1] + "/fixed2")
        fix_sum_order()  # as benchmarks/determinism.py sets it: for the whole process
        process_wide = fit(True, sys.argv[1] + "/fixed3")
        for a, b, c, d in zip(first, second, process_wide, tensorflows):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c)
            np.testing.assert_allclose(a, d, rtol=1e-4, atol=1e-6)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, capture_output=True,
                          text=True)
    assert done.stdout.strip().endswith("ok")


def _train_settings(config, path=()):
    """Every `TrainSettings` in an experiment's configuration, with its field path."""
    import dataclasses

    from nengo_hybrid.stages import TrainSettings

    if isinstance(config, TrainSettings):
        yield ".".join(path), config
    elif dataclasses.is_dataclass(config):
        for field in dataclasses.fields(config):
            yield from _train_settings(getattr(config, field.name), path + (field.name,))


@pytest.mark.parametrize("experiment", ["locnet", "cae", "unet", "binary_ternary", "finetune_vs_direct"])
def test_every_profile_trains_through_time_with_its_sums_in_a_fixed_order(experiment):
    # in TensorFlow's order a spiking stage's weights differ between two runs of one seed
    # (docs/locnet_log.md, "Bit-reproducibility"); an ANN stage runs one timestep, so each
    # weight's gradient is one term and any order gives the same sum
    import importlib
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    profiles = importlib.import_module(experiment).PROFILES
    through_time = [(profile, path, settings) for profile, config in profiles.items()
                    for path, settings in _train_settings(config) if settings.n_steps != 1]
    assert {profile for profile, _, _ in through_time} == set(profiles)  # every profile has one
    assert [(profile, path) for profile, path, settings in through_time if not settings.fixed_order_sums] == []
