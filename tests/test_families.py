"""Swapping one Keras model across neuron families."""

import nengo
import nengo_dl
import numpy as np
import pytest
import tensorflow as tf

import nengo_hybrid as nh
from nengo_hybrid.runtime import COUNT_LAG

FAMILY_RELU = {"if": nh.IntegrateAndFire, 
    "rate": nengo.RectifiedLinear,
    "spiking": nengo.SpikingRectifiedLinear,
    "hybrid": nh.HybridSpikingRectifiedLinear,
}
FAMILY_LIF = {"rate": nengo_dl.SoftLIFRate, "spiking": nengo.LIF, "hybrid": nh.HybridSoftLIF}


def relu_model(spelling):
    """A small conv net whose hidden nonlinearity is ReLU spelled as ``spelling``."""
    inp = tf.keras.Input((8, 8, 1))
    if spelling == "conv_activation":
        x = tf.keras.layers.Conv2D(3, 3, activation="relu", name="hidden")(inp)
    else:
        x = tf.keras.layers.Conv2D(3, 3, name="conv")(inp)
        if spelling == "activation_layer":
            x = tf.keras.layers.Activation("relu", name="hidden")(x)
        elif spelling == "tf_nn_relu":
            x = tf.nn.relu(x)
        elif spelling == "lambda_tf_nn_relu":
            x = tf.keras.layers.Lambda(tf.nn.relu, name="hidden")(x)
        elif spelling == "relu_layer":
            x = tf.keras.layers.ReLU(name="hidden")(x)
    x = tf.keras.layers.Flatten()(x)
    if spelling == "dense_activation":
        x = tf.keras.layers.Dense(6, activation="relu", name="hidden_dense")(x)
    elif spelling == "dense_tf_nn_relu":
        x = tf.keras.layers.Dense(6, activation=tf.nn.relu, name="hidden_dense")(x)
    out = tf.keras.layers.Dense(2)(x)
    return tf.keras.Model(inp, out)


SPELLINGS = [
    "conv_activation",
    "activation_layer",
    "tf_nn_relu",
    "lambda_tf_nn_relu",
    "relu_layer",
    "dense_activation",
    "dense_tf_nn_relu",
]


@pytest.mark.parametrize("family", ["rate", "spiking", "hybrid", "if"])
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_relu_spelling_becomes_the_family_neuron(spelling, family):
    converted = nh.convert(relu_model(spelling), family)
    types = converted.neuron_types()
    # the conv layer (or the dense layer) became neurons; none remained a TensorNode
    assert len(types) >= 1
    assert all(type(t) is FAMILY_RELU[family] for t in types.values()), types
    assert not [n for n in converted.net.all_nodes if isinstance(n, nengo_dl.TensorNode)]


@pytest.mark.parametrize(
    "make_layer",
    [
        lambda x: tf.keras.layers.Activation("elu")(x),
        lambda x: tf.nn.elu(x),
        lambda x: tf.keras.layers.Lambda(lambda t: tf.maximum(t, 0.0))(x),
        lambda x: tf.keras.layers.Dense(6, activation="swish")(x),
    ],
)
def test_an_unconvertible_nonlinearity_fails_loudly(make_layer):
    inp = tf.keras.Input((5,))
    x = tf.keras.layers.Dense(6)(inp)
    out = tf.keras.layers.Dense(2)(make_layer(x))
    with pytest.raises(TypeError):
        nh.convert(tf.keras.Model(inp, out), "spiking")


def test_a_neuron_outside_the_family_fails_loudly():
    inp = tf.keras.Input((5,))
    x = tf.keras.layers.Dense(6, activation="relu")(inp)
    out = tf.keras.layers.Dense(2, activation="sigmoid")(x)  # becomes nengo.Sigmoid
    with pytest.raises(nh.ConversionError, match="Sigmoid"):
        nh.convert(tf.keras.Model(inp, out), "hybrid")


def soft_lif_model(seed=0):
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((6, 6, 1))
    x = tf.keras.layers.Conv2D(4, 3, activation=nh.SoftLIF(sigma=0.02, amplitude=0.01))(inp)
    x = tf.keras.layers.Flatten()(x)
    x = tf.keras.layers.Dense(10, activation="relu")(x)
    return tf.keras.Model(inp, tf.keras.layers.Dense(3)(x))


@pytest.mark.parametrize("family", ["rate", "spiking", "hybrid"])
def test_soft_lif_and_relu_map_to_the_family(family):
    converted = nh.convert(soft_lif_model(), family)
    types = list(converted.neuron_types().values())
    assert [type(t) for t in types] == [FAMILY_LIF[family], FAMILY_RELU[family]]
    lif = types[0]
    assert (lif.tau_rc, lif.tau_ref, lif.amplitude) == (0.02, 0.002, 0.01)
    if family != "spiking":
        assert lif.sigma == 0.02


def test_rate_family_computes_the_keras_function():
    model = soft_lif_model()
    images = np.random.RandomState(1).uniform(0, 3, size=(8, 6, 6, 1)).astype(np.float32)
    converted = nh.convert(model, "rate")
    with converted.simulator(minibatch_size=4, n_steps=1) as sim:
        nengo_out = nh.simulation.predict(sim, converted.inputs(images), converted.output)
    np.testing.assert_allclose(nengo_out, model.predict(images, verbose=0), rtol=1e-4, atol=1e-5)


def test_scale_firing_rates_and_synapse_are_applied():
    model = soft_lif_model()
    converted = nh.convert(model, "hybrid", scale_firing_rates=50, synapse=0.005)
    for ens in converted.net.all_ensembles:
        assert ens.gain.options[0] == 50
        assert np.isclose(ens.neuron_type.amplitude, (0.01 if isinstance(ens.neuron_type, nh.HybridSoftLIF) else 1) / 50)
    neuron_conns = [c for c in converted.net.all_connections if isinstance(c.pre_obj, nengo.ensemble.Neurons)]
    assert neuron_conns and all(c.synapse == nengo.Lowpass(0.005) for c in neuron_conns)


def test_a_user_family_can_be_registered():
    family = nh.NeuronFamily(
        "regular_spiking_test",
        {"relu": lambda _: nengo.RegularSpiking(nengo.RectifiedLinear()),
         nh.SoftLIF: lambda a: nengo.RegularSpiking(nengo.LIFRate(tau_rc=a.tau_rc, tau_ref=a.tau_ref))},
        spiking=True,
    )
    nh.register_family(family)
    try:
        converted = nh.convert(soft_lif_model(), "regular_spiking_test")
        assert all(type(t) is nengo.RegularSpiking for t in converted.neuron_types().values())
    finally:
        del nh.FAMILIES["regular_spiking_test"]
    with pytest.raises(KeyError, match="unknown neuron family"):
        nh.convert(soft_lif_model(), "regular_spiking_test")


def test_weights_trained_in_one_family_load_into_another():
    model = soft_lif_model()
    rng = np.random.RandomState(2)
    x = rng.uniform(0, 3, size=(16, 6, 6, 1)).astype(np.float32)
    y = rng.uniform(-1, 1, size=(16, 3)).astype(np.float32)

    rate = nh.convert(model, "rate")
    spiking = nh.convert(model, "spiking")
    with rate.simulator(minibatch_size=8, n_steps=1) as rate_sim:
        before = [w.copy() for w in rate_sim.keras_model.get_weights()]
        rate.compile(rate_sim, tf.optimizers.Adam(0.05), tf.losses.mse)
        rate_sim.fit(rate.inputs(x), rate.targets(y), epochs=3, verbose=0)
        trained = rate_sim.keras_model.get_weights()
        assert any(not np.allclose(a, b) for a, b in zip(before, trained))
        with spiking.simulator(minibatch_size=8, n_steps=1) as spiking_sim:
            nh.transfer_weights(rate_sim, spiking_sim)
            for a, b in zip(trained, spiking_sim.keras_model.get_weights()):
                np.testing.assert_array_equal(a, b)

    other = nh.convert(relu_model("conv_activation"), "spiking")
    with rate.simulator(minibatch_size=8, n_steps=1) as a, other.simulator(minibatch_size=8, n_steps=1) as b:
        with pytest.raises(ValueError, match="same Keras model"):
            nh.transfer_weights(a, b)


def test_firing_rates_match_the_lif_rate_curve():
    """One Dense layer with identity weights: each neuron gets one known current."""
    currents = np.array([1.5, 2.0, 4.0, 8.0], dtype=np.float32)
    inp = tf.keras.Input((4,))
    hidden = tf.keras.layers.Dense(4, activation=nh.SoftLIF(sigma=0.01), use_bias=False)
    out = tf.keras.layers.Dense(1)(hidden(inp))
    model = tf.keras.Model(inp, out)
    hidden.set_weights([np.eye(4, dtype=np.float32)])

    converted = nh.convert(model, "spiking", scale_firing_rates=2.0)
    x = np.tile(currents, (4, 1))
    with converted.simulator(minibatch_size=2, layer_probes=True) as sim:  # looped: 1000 steps
        rates = converted.firing_rates(sim, x, n_steps=1000)
    expected = nengo.LIF().rates(currents * 2.0, 1, 0)  # the scale multiplies the current
    assert rates["neurons"] == {hidden.name: 4}
    np.testing.assert_allclose(rates["layers"][hidden.name], expected.mean(), rtol=0.02)
    np.testing.assert_allclose(rates["network"], expected.mean(), rtol=0.02)


def test_spike_counters_give_the_rates_the_spikes_give():
    # every spike counted from the full history of a 30-step run, independently of the
    # counters (which hold one value per neuron and read the steps before their last)
    model = soft_lif_model(seed=2)
    x = np.random.RandomState(3).uniform(0, 3, size=(6, 6, 6, 1)).astype(np.float32)
    converted = nh.convert(model, "spiking", synapse=0.005, scale_firing_rates=20.0)
    n_steps, dt = 30, 0.001
    with converted.simulator(minibatch_size=3, layer_probes=True) as sim:
        history = sim.predict(converted.inputs(x, n_steps), verbose=0)
    with converted.simulator(minibatch_size=3, spike_counts=True) as sim:
        assert not any(p in sim.model.probes for p in converted.layer_probes.values())
        counted = converted.firing_rates(sim, x, n_steps)
    total = 0
    for name, probe in converted.layer_probes.items():
        spikes = np.rint(history[probe] * dt / converted.amplitudes()[name])
        total += spikes.sum()
        expected = spikes.sum(axis=1).mean() / (n_steps * dt)
        np.testing.assert_allclose(counted["layers"][name], expected, rtol=1e-6, err_msg=name)
    assert total > 100


def test_counters_of_the_first_steps_count_those_steps_in_a_longer_run():
    # counters of the first 12 steps in a 30-step run against the plain counters of a
    # 13-step run (the steps before their last): the same spikes (the gates change no
    # neuron's seed), added in the same order, so the same numbers; and not the 30
    # steps' counts
    model = soft_lif_model(seed=2)
    x = np.random.RandomState(3).uniform(0, 3, size=(6, 6, 6, 1)).astype(np.float32)
    converted = nh.convert(model, "spiking", synapse=0.005, scale_firing_rates=20.0)
    with converted.simulator(minibatch_size=3, spike_counts=True) as sim:
        first = converted.counts(sim.predict(converted.inputs(x, 12 + COUNT_LAG), verbose=0))
        every = converted.counts(sim.predict(converted.inputs(x, 30), verbose=0))
    with converted.simulator(minibatch_size=3, spike_counts=12) as sim:
        assert not any(p in sim.model.probes for p in converted.count_probes.values())
        gated = converted.counts(sim.predict(converted.inputs(x, 30), verbose=0))
    assert set(gated) == set(first) == set(converted.layer_probes)
    for name in first:
        np.testing.assert_array_equal(gated[name], first[name], err_msg=name)
    assert sum(c.sum() for c in every.values()) > sum(c.sum() for c in first.values()) > 0
    # the gates hold no weights: the same parameters load into either simulator
    with converted.simulator(minibatch_size=3, spike_counts=12) as sim:
        n_weights = len(sim.keras_model.weights)
    with converted.simulator(minibatch_size=3) as sim:
        assert len(sim.keras_model.weights) == n_weights


def test_rates_counted_beside_the_outputs_equal_a_second_pass(tmp_path):
    from types import SimpleNamespace

    from nengo_hybrid.stages import spiking_evaluation

    model = soft_lif_model(seed=4)
    x = np.random.RandomState(5).uniform(0, 3, size=(10, 6, 6, 1)).astype(np.float32)
    ann = nh.convert(model, "rate")
    with ann.simulator(minibatch_size=4, n_steps=1) as sim:
        sim.save_params(tmp_path / "ann")
    # the sweep runs past eval_steps: the rates over the first 20 steps are counted in
    # the outputs' own 30-step pass
    config = SimpleNamespace(synapse=0.005, scale_firing_rates=20.0, seed=0, eval_steps=20,
                             eval_window=5, steps_sweep=(10, 20, 30), eval_batch=4)
    beside = spiking_evaluation(model, config, tmp_path / "ann", x)
    # independently: the plain counters in a second pass over eval_steps
    converted = nh.convert(model, "spiking", synapse=0.005, scale_firing_rates=20.0, seed=0)
    with converted.simulator(minibatch_size=4, spike_counts=True) as sim:
        sim.load_params(tmp_path / "ann")
        second = converted.firing_rates(sim, x, config.eval_steps)
        whole = converted.firing_rates(sim, x, 30)
    assert beside["rates"]["network"] > 0
    assert beside["rates"]["network"] != whole["network"]
    for name, rate in second["layers"].items():
        np.testing.assert_allclose(beside["rates"]["layers"][name], rate, rtol=1e-9, err_msg=name)
    # and the outputs are those of a run that ends at eval_steps
    config.steps_sweep = (10, 20)
    short = spiking_evaluation(model, config, tmp_path / "ann", x)
    np.testing.assert_array_equal(beside["outputs"], short["outputs"])


def test_rate_regularization_pulls_layer_rates_to_the_target():
    model = soft_lif_model(seed=3)
    rng = np.random.RandomState(4)
    x = rng.uniform(0, 3, size=(32, 6, 6, 1)).astype(np.float32)
    y = rng.uniform(-1, 1, size=(32, 3)).astype(np.float32)
    target = 150.0
    regularization = nh.RateRegularization(target_hz=target, hidden_weight=1.0, per="layer")
    converted = nh.convert(model, "rate")
    with converted.simulator(minibatch_size=8, n_steps=1, layer_probes=True) as sim:
        lif_layer = next(n for n, t in converted.neuron_types().items() if isinstance(t, nengo_dl.SoftLIFRate))
        before = converted.firing_rates(sim, x, n_steps=1)["layers"][lif_layer]
        converted.compile(sim, tf.optimizers.Adam(0.01), tf.losses.mse, regularization=regularization)
        sim.fit(converted.inputs(x), converted.targets(y, regularization), epochs=40, verbose=0)
        after = converted.firing_rates(sim, x, n_steps=1)["layers"][lif_layer]
    assert abs(after - target) < 0.25 * abs(before - target), (before, after)


def test_firing_rate_loss_is_mean_squared_relative_rate_error():
    # two neurons at 0.5 and 1.5 output with amplitude 0.01 -> 50 Hz and 150 Hz
    y_pred = tf.constant([[[0.5, 1.5], [0.5, 1.5]]])
    per_neuron = nh.FiringRateLoss(100.0, amplitude=0.01)(None, y_pred)
    per_layer = nh.FiringRateLoss(100.0, amplitude=0.01, per="layer")(None, y_pred)
    np.testing.assert_allclose(per_neuron.numpy(), 0.5**2)
    np.testing.assert_allclose(per_layer.numpy(), 0.0, atol=1e-6)


def test_firing_rates_need_the_layer_probes():
    converted = nh.convert(soft_lif_model(), "spiking")
    with converted.simulator(minibatch_size=2, n_steps=2) as sim:
        assert not any(p in sim.model.probes for p in converted.layer_probes.values())
        with pytest.raises(ValueError, match=r"layer_probes=True\) or spike_counts=True"):
            converted.firing_rates(sim, np.zeros((2, 6, 6, 1)), n_steps=2)


def test_same_seed_same_spikes_other_seed_other_spikes():
    model = soft_lif_model()
    x = np.random.RandomState(5).uniform(0, 3, size=(4, 6, 6, 1)).astype(np.float32)

    def spikes(seed):
        converted = nh.convert(model, "hybrid", seed=seed, scale_firing_rates=20)
        with converted.simulator(minibatch_size=4, n_steps=20, layer_probes=True) as sim:
            out = sim.predict(converted.inputs(x, 20), verbose=0)
        return np.concatenate([out[p].ravel() for p in [converted.output, *converted.layer_probes.values()]])

    first = spikes(0)
    assert np.count_nonzero(first) > 100
    np.testing.assert_array_equal(first, spikes(0))
    assert not np.array_equal(first, spikes(1))  # the initial voltages differ


def test_a_family_for_another_activation_needs_no_package_edit():
    """A family registered for an activation the package never mentions (tanh) converts
    it; a family that does not name it refuses the model."""
    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((6,))
    hidden = tf.keras.layers.Dense(5, activation="tanh")(inp)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(2)(hidden))
    nh.register_family(nh.NeuronFamily(
        "regular_tanh_test", {"tanh": lambda _: nengo.RegularSpiking(nengo.Tanh(tau_ref=1))},
        spiking=True))
    try:
        types = nh.convert(model, "regular_tanh_test").neuron_types()
        assert [type(t) for t in types.values()] == [nengo.RegularSpiking]
        assert type(next(iter(types.values())).base_type) is nengo.Tanh
    finally:
        del nh.FAMILIES["regular_tanh_test"]
    with pytest.raises(nh.ConversionError, match="dense"):
        nh.convert(model, "if")


def test_the_if_family_converts_relu_to_integrate_and_fire():
    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((8, 8, 1))
    x = tf.keras.layers.Conv2D(4, 3, activation="relu", use_bias=False)(inp)
    x = tf.keras.layers.ReLU()(tf.keras.layers.Conv2D(4, 3, use_bias=False)(x))
    x = tf.keras.layers.Flatten()(x)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(3, use_bias=False)(x))
    converted = nh.convert(model, "if")
    types = list(converted.neuron_types().values())
    assert len(types) == 2 and all(type(t) is nh.IntegrateAndFire for t in types)
    assert all(t.threshold == 1 for t in types)
