"""Metrics: IoU, synaptic operations."""

import numpy as np
import pytest
import tensorflow as tf

from nengo_hybrid.metrics import (box_iou, input_spike_rate_hz, layer_connections, paired_difference,
                                  synaptic_operations)


def test_iou_of_known_boxes():
    target = np.array([[0.0, 0.0, 0.5, 0.5]] * 4)
    predicted = np.array([
        [0.0, 0.0, 0.5, 0.5],  # identical
        [0.25, 0.0, 0.75, 0.5],  # half overlaps: 1/8 / (3/8)
        [0.6, 0.6, 0.9, 0.9],  # disjoint
        [0.3, 0.3, 0.2, 0.2],  # inverted: no area
    ])
    np.testing.assert_allclose(box_iou(predicted, target), [1.0, 1 / 3, 0.0, 0.0])


def test_synaptic_operations_count_spikes_times_fan_out():
    inp = tf.keras.Input((4,))
    hidden = tf.keras.layers.Dense(3, activation="relu", name="hidden")(inp)
    out = tf.keras.layers.Dense(2, name="out")(hidden)
    model = tf.keras.Model(inp, out)
    ops = synaptic_operations(model, {"hidden": 100.0}, n_steps=10, dt=0.001, input_rate_hz=1000.0)
    # into hidden: 4*3 synapses, driven every step; into out: 3*2 synapses at 100 Hz
    assert ops["ann_macs"] == 12 + 6
    np.testing.assert_allclose(ops["layers"]["hidden"], 12 * 1000 * 0.001 * 10)
    np.testing.assert_allclose(ops["layers"]["out"], 6 * 100 * 0.001 * 10)
    np.testing.assert_allclose(ops["synaptic_ops"], 120 + 6)


def test_last_timesteps_loss_ignores_the_transient():
    from nengo_hybrid.losses import LastTimesteps

    y_true = np.ones((2, 5, 3), dtype=np.float32)
    y_pred = np.ones((2, 5, 3), dtype=np.float32)
    y_pred[:, :3] = 10.0  # a transient the loss must not see
    assert float(LastTimesteps("mse", 2)(y_true, y_pred)) == 0.0
    y_pred[:, -2:] = [[0.0], [2.0]]  # spike noise about the right mean costs nothing
    assert float(LastTimesteps("mse", 2)(y_true, y_pred)) == 0.0
    y_pred[:, -1] = 4.0  # window mean 2: squared error 1
    np.testing.assert_allclose(float(LastTimesteps("mse", 2)(y_true, y_pred)), 1.0)


def test_transposed_convolutions_count_each_input_times_its_fan_out():
    # keras-spiking 0.3 reads a Conv2DTranspose kernel as a Conv2D's and would count
    # output size x kh x kw x C_out = 8*8*3 * 3*3*3 here
    inp = tf.keras.Input((4, 4, 2))
    up = tf.keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", activation="relu", name="up")(inp)
    out = tf.keras.layers.Conv2DTranspose(1, 3, padding="same", name="out")(up)
    model = tf.keras.Model(inp, out)
    ops = synaptic_operations(model, {"up": 10.0}, n_steps=1, dt=0.001, input_rate_hz=1000.0)
    # every input element reaches kh * kw * C_out outputs
    assert ops["ann_macs"] == 4 * 4 * 2 * 3 * 3 * 3 + 8 * 8 * 3 * 3 * 3 * 1
    np.testing.assert_allclose(ops["layers"]["out"], 8 * 8 * 3 * 9 * 10.0 * 0.001)


# --- synaptic operations over the functional graph -------------------------------------

def _chain_synops(model, feeders, rates, input_rate, n_steps, dt):
    """SynOps of a chain: each layer's synapses times the rate of the layer that feeds it
    (``feeders[name]``, None for the input), dt and T."""
    connections = layer_connections(model)
    assert set(connections) == set(feeders)
    return {
        name: c * (input_rate if feeders[name] is None else rates[feeders[name]]) * dt * n_steps
        for name, c in connections.items()
    }


def test_concatenated_skip_connection_drives_each_share_of_synapses_at_its_own_rate():
    inp = tf.keras.Input((8, 8, 1))
    a = tf.keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="a")(inp)
    b = tf.keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="b")(a)
    cat = tf.keras.layers.Concatenate(name="cat")([a, b])
    out = tf.keras.layers.Conv2D(1, 3, padding="same", name="out")(cat)
    model = tf.keras.Model(inp, out)
    ops = synaptic_operations(model, {"a": 10.0, "b": 50.0}, n_steps=10, dt=0.001)
    # synapses = output size x kh*kw*C_in: a 8*8*2 * 3*3*1 = 1152, b 8*8*3 * 3*3*2 = 3456,
    # out 8*8*1 * 3*3*(2+3) = 2880; dt * T = 0.01
    assert ops["ann_macs"] == 1152 + 3456 + 2880
    # out: 2 of its 5 input channels (8*8*2 of 8*8*5 elements) come from a at 10 Hz,
    # 3 from b at 50 Hz: 2880 * (0.4 * 10 + 0.6 * 50) * 0.01 = 2880 * 34 * 0.01
    expected = {"a": 1152 * 1000 * 0.01, "b": 3456 * 10 * 0.01, "out": 2880 * 34 * 0.01}
    assert set(ops["layers"]) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(ops["layers"][name], value, err_msg=name)
    np.testing.assert_allclose(ops["synaptic_ops"], sum(expected.values()))
    # the chain rule fed out with b's 50 Hz alone (b precedes it in model.layers)
    assert not np.isclose(ops["layers"]["out"], 2880 * 50 * 0.01)


def test_residual_add_passes_on_the_spikes_of_both_branches():
    inp = tf.keras.Input((8, 8, 2))
    a = tf.keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="a")(inp)
    b = tf.keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="b")(a)
    total = tf.keras.layers.Add(name="add")([a, b])
    out = tf.keras.layers.Conv2D(1, 3, padding="same", name="out")(total)
    model = tf.keras.Model(inp, out)
    ops = synaptic_operations(model, {"a": 10.0, "b": 50.0}, n_steps=10, dt=0.001, input_rate_hz=200.0)
    # synapses: a and b 8*8*2 * 3*3*2 = 2304 each, out 8*8*1 * 3*3*2 = 1152
    # every element of a + b carries the spikes of both: 10 + 50 = 60 Hz into out
    expected = {"a": 2304 * 200 * 0.01, "b": 2304 * 10 * 0.01, "out": 1152 * 60 * 0.01}
    for name, value in expected.items():
        np.testing.assert_allclose(ops["layers"][name], value, err_msg=name)
    # neither b's rate alone (the chain rule) nor the mean of the branches (half the
    # spikes) is what reaches out
    assert not np.isclose(ops["layers"]["out"], 1152 * 50 * 0.01)
    assert not np.isclose(ops["layers"]["out"], 1152 * 30 * 0.01)


def test_chain_models_keep_the_chain_formula():
    from nengo_hybrid.models.cae import build_cae
    from nengo_hybrid.models.locnet import build_locnet

    dt, n_steps = 0.002, 7
    locnet = build_locnet(input_shape=(12, 16, 3), filters=(2, 3, 4), dense_units=(8, 6, 5))
    feeders = {"conv1": None, "pool1": "conv1", "conv2": "pool1", "pool2": "conv2",
               "conv3": "pool2", "pool3": "conv3", "dense1": "pool3",  # through flatten
               "dense2": "dense1", "dense3": "dense2", "box": "dense3"}
    rates = {name: 3.0 + 11.0 * i for i, name in enumerate(n for n in feeders if n != "box")}
    ops = synaptic_operations(locnet, rates, n_steps, dt=dt, input_rate_hz=250.0)
    expected = _chain_synops(locnet, feeders, rates, 250.0, n_steps, dt)
    assert ops["layers"].keys() == expected.keys()
    np.testing.assert_allclose(list(ops["layers"].values()), list(expected.values()))
    # one count by hand: conv1 has 12*16*2 outputs of 3*3*3 synapses, fed at 250 Hz
    np.testing.assert_allclose(ops["layers"]["conv1"], 12 * 16 * 2 * 27 * 250.0 * dt * n_steps)

    cae = build_cae(input_shape=(8, 12, 1), filters=(2, 3, 4))
    feeders = {"conv1": None, "conv2": "conv1", "conv3": "conv2", "conv4": "conv3",  # pools between
               "up2": "conv4", "up1": "up2", "refine": "up1", "mask": "refine"}
    rates = {name: 4.0 + 9.0 * i for i, name in enumerate(n for n in feeders if n != "mask")}
    ops = synaptic_operations(cae, rates, n_steps, dt=dt)
    expected = _chain_synops(cae, feeders, rates, 1 / dt, n_steps, dt)
    assert ops["layers"].keys() == expected.keys()
    np.testing.assert_allclose(list(ops["layers"].values()), list(expected.values()))
    np.testing.assert_allclose(ops["synaptic_ops"], sum(expected.values()))


def test_input_rate_drives_the_first_layer_and_poisson_inputs_spike_at_mean_abs_x():
    inp = tf.keras.Input((4,))
    hidden = tf.keras.layers.Dense(3, activation="relu", name="hidden")(inp)
    model = tf.keras.Model(inp, hidden)
    default = synaptic_operations(model, {"hidden": 5.0}, n_steps=10, dt=0.001)
    np.testing.assert_allclose(default["layers"]["hidden"], 12 * 1000 * 0.01)  # real values: 1/dt

    x = np.array([[0.5, -0.25, 0.0, 1.0], [-0.1, 0.2, 0.3, -0.4]])
    rate = input_spike_rate_hz(x, dt=0.001)
    np.testing.assert_allclose(rate, np.mean(np.abs(x)) / 0.001)  # 0.34375 / dt
    np.testing.assert_allclose(rate, 343.75)
    poisson = synaptic_operations(model, {"hidden": 5.0}, n_steps=10, dt=0.001, input_rate_hz=rate)
    np.testing.assert_allclose(poisson["layers"]["hidden"], 12 * 343.75 * 0.01)

    # the expectation holds for sampled spikes: each element spikes with probability
    # |x| per step and every spike drives its 3 synapses
    rng = np.random.default_rng(0)
    n_steps = 4000
    spikes = rng.random((n_steps,) + x.shape) < np.abs(x)
    sampled = spikes.sum() * 3 / len(x)  # per example
    expected = synaptic_operations(model, {}, n_steps, dt=0.001, input_rate_hz=rate)["layers"]["hidden"]
    np.testing.assert_allclose(sampled, expected, rtol=0.02)

    with pytest.raises(ValueError, match="<= 1"):
        input_spike_rate_hz([0.5, 1.5])


def test_shared_layers_and_unknown_rates_are_refused():
    inp = tf.keras.Input((4,))
    shared = tf.keras.layers.Dense(4, activation="relu", name="shared")
    model = tf.keras.Model(inp, shared(shared(inp)))
    with pytest.raises(ValueError, match="more than once"):
        synaptic_operations(model, {"shared": 10.0}, n_steps=1)
    chain = tf.keras.Model(inp, tf.keras.layers.Dense(2, name="d")(inp))
    with pytest.raises(ValueError, match="not in model"):
        synaptic_operations(chain, {"typo": 10.0}, n_steps=1)


def test_paired_difference_is_the_mean_difference_and_its_standard_error():
    # differences 1 and 3: mean 2, sample std sqrt(2), standard error sqrt(2) / sqrt(2) = 1
    out = paired_difference([0.9, 0.8], [-0.1, -2.2])
    assert out["mean"] == pytest.approx(2.0) and out["se"] == pytest.approx(1.0)
    # what both models share per example cancels: a per-example offset common to both
    # leaves the standard error unchanged, while the unpaired spread grows with it
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    shared = rng.normal(scale=10, size=50)
    assert paired_difference(a + shared, b + shared)["se"] == pytest.approx(paired_difference(a, b)["se"])
    assert paired_difference(a + shared, b + shared)["se"] < np.std(a + shared, ddof=1) / np.sqrt(50) / 5
