"""Threshold balancing: every threshold is the largest per-step charge its layer receives
(found here by an independent numpy simulation of the same IF network), percentile and
scale do what they say, and balancing brings the converted network's output to its ANN's."""

import numpy as np
import pytest
import tensorflow as tf

import nengo_hybrid as nh
from nengo_hybrid.balancing import apply_thresholds, balance_thresholds
from nengo_hybrid.encoding import poisson

DT = 0.001
T = 40


def dense_model(seed=0):
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((6,))
    h1 = tf.keras.layers.Dense(8, activation="relu", use_bias=False, name="h1")(inp)
    h2 = tf.keras.layers.Dense(5, activation="relu", use_bias=False, name="h2")(h1)
    return tf.keras.Model(inp, tf.keras.layers.Dense(2, use_bias=False, name="out")(h2))


def calibration(n=12, seed=1):
    return np.random.RandomState(seed).uniform(0, 1, size=(n, 6)).astype(np.float32)


def numpy_charges(model, coded, thresholds, initial_potential=0.0):
    """Each hidden layer's per-step input charge J dt, running the IF equations in
    numpy with the given thresholds (spikes carrying their threshold, as balancing
    sets them) and membranes starting at ``initial_potential`` x threshold:
    ``{layer: (n, T, neurons)}``, and ``"out"``: the output at every step."""
    charges, signal = {}, coded  # (n, T, features): what the next layer receives
    for name in ("h1", "h2"):
        weights = model.get_layer(name).get_weights()[0]
        current = signal @ weights
        charges[name] = current * DT
        v = thresholds.get(name, 1.0)
        u = np.full(current.shape[::2], initial_potential * v, dtype=np.float64)
        spikes = np.zeros_like(current)
        for t in range(current.shape[1]):
            u = u + current[:, t] * DT
            fired = u >= v
            spikes[:, t] = fired * (v / DT)
            u = u - fired * v
        signal = spikes
    charges["out"] = signal @ model.get_layer("out").get_weights()[0]
    return charges


@pytest.mark.parametrize("encoding", ["repeat", "poisson"])
def test_each_threshold_is_the_largest_charge_its_layer_receives(encoding):
    model, x = dense_model(), calibration()
    converted = nh.convert(model, "if")
    thresholds = balance_thresholds(converted, x, T, encoding=encoding, seed=3, batch_size=4, log=None)
    assert list(thresholds) == ["h1", "h2"]  # hidden layers in order; the output has none

    coded = nh.encoding.get_encoding(encoding)(x, T, seed=3)
    if encoding == "poisson":
        np.testing.assert_array_equal(coded, poisson(x, T, seed=3))
    # layer by layer, with the earlier thresholds in place (h2's depends on h1's spikes)
    expected = {}
    for name in ("h1", "h2"):
        expected[name] = float(numpy_charges(model, coded, expected)[name].max())
    np.testing.assert_allclose([thresholds[n] for n in expected], list(expected.values()), rtol=1e-5)
    # the network now carries them: each spike worth its threshold
    for name, neuron_type in converted.neuron_types().items():
        assert neuron_type.threshold == pytest.approx(thresholds[name])
        assert neuron_type.amplitude == pytest.approx(thresholds[name])


def test_membranes_start_at_the_initial_potential():
    """With ``initial_potential`` f every membrane starts each example at f x its
    threshold: balancing then sees the charges, and the network gives the outputs, of
    the numpy IF network started there; and at f = 1/2 a layer's first spikes come
    sooner, so the output reaches the ANN's in fewer steps."""
    model, x = dense_model(), calibration()
    converted = nh.convert(model, "if")
    thresholds = balance_thresholds(converted, x, T, initial_potential=0.5, batch_size=4, log=None)
    expected = {}
    for name in ("h1", "h2"):
        expected[name] = float(numpy_charges(model, x[:, None].repeat(T, 1), expected, 0.5)[name].max())
    np.testing.assert_allclose([thresholds[n] for n in expected], list(expected.values()), rtol=1e-5)

    def outputs(f):
        net = apply_thresholds(nh.convert(model, "if"), thresholds, initial_potential=f)
        with net.simulator(4, n_steps=T) as sim:
            return sim.predict(net.inputs(x, T), verbose=0)[net.output]

    coded = x[:, None].repeat(T, 1)
    for f in (0.0, 0.5):
        np.testing.assert_allclose(outputs(f), numpy_charges(model, coded, thresholds, f)["out"],
                                   rtol=1e-4, atol=1e-5)
    # the first output arrives sooner from half-charged membranes
    first = {f: int(np.argmax(np.abs(outputs(f)).sum(axis=(0, 2)) > 0)) for f in (0.0, 0.5)}
    assert first[0.5] < first[0.0]
    with pytest.raises(ValueError, match="initial_potential"):
        apply_thresholds(nh.convert(model, "if"), thresholds, initial_potential=1.0)


def test_percentile_and_scale():
    model, x = dense_model(), calibration()
    full = balance_thresholds(nh.convert(model, "if"), x, T, log=None, batch_size=4)
    scaled = balance_thresholds(nh.convert(model, "if"), x, T, scale=0.7, log=None, batch_size=4)
    assert scaled["h1"] == pytest.approx(0.7 * full["h1"])
    # a lower percentile ignores the largest charges: h1's input is constant over time
    # ("repeat"), so its 90th percentile is that of W x over examples and neurons
    lower = balance_thresholds(nh.convert(model, "if"), x, T, percentile=90, log=None, batch_size=4)
    charges = np.sort((x @ model.get_layer("h1").get_weights()[0]).ravel() * DT)
    # the k largest of the n T charges are kept, k = ceil(10 % of n T): the threshold
    # is the smallest of them, the charge of rank n - ceil(k / T) among the n
    k = int(np.ceil(0.1 * len(charges) * T))
    assert lower["h1"] < full["h1"]
    np.testing.assert_allclose(lower["h1"], charges[len(charges) - int(np.ceil(k / T))], rtol=1e-5)


def test_balancing_brings_the_converted_network_to_its_ann():
    model = dense_model()
    x = calibration(n=32, seed=2)
    ann = model.predict(x, verbose=0)

    def error(converted):
        with converted.simulator(8, n_steps=T) as sim:
            out = sim.predict(converted.inputs(x, T), verbose=0)[converted.output].mean(axis=1)
        return np.abs(out - ann).mean() / np.abs(ann).mean()

    unbalanced = nh.convert(model, "if")
    balanced = nh.convert(model, "if")
    balance_thresholds(balanced, x[:16], T, log=None, batch_size=8)
    # at threshold 1 (and spikes of 1) the neurons need ~1/(J dt) steps per spike:
    # nothing reaches the output in 40 steps
    assert error(unbalanced) > 0.9
    assert error(balanced) < 0.25


def test_thresholds_need_integrate_and_fire_neurons():
    converted = nh.convert(dense_model(), "spiking")
    with pytest.raises(TypeError, match="IntegrateAndFire"):
        apply_thresholds(converted, {"h1": 0.5})
    with pytest.raises(KeyError, match="no layer"):
        apply_thresholds(nh.convert(dense_model(), "if"), {"nope": 0.5})
