"""The integrate-and-fire neuron (`IntegrateAndFire`) and its surrogate-gradient BPTT.

Forward: the step-by-step spikes against ``nengo.SpikingRectifiedLinear`` (the same
neuron below one spike per step), its saturation above it, threshold scaling, negative
input, and the NengoDL builder against nengo's numpy ``step``.  Backward: the gradient
of a small converted network against an independent plain-TensorFlow loop of the same
equations, the flow of gradient through the membrane across timesteps, zero gradient
far below threshold, and ``heaviside_with_surrogate`` against its formula.
"""

import nengo
import nengo_dl
import numpy as np
import pytest
import tensorflow as tf
from nengo.exceptions import ValidationError

import nengo_hybrid as nh
from nengo_hybrid.neurons import heaviside_with_surrogate
from nengo_hybrid.simulation import (
    make_simulator,
    neuron_gradient,
    neuron_response,
    single_neuron_layer,
)

DT = 0.001
GAMMA = 0.3  # the default surrogate_scale


def same_start(neuron_type_class, **kwargs):
    """A neuron type whose membrane starts at 0 (nengo's own types start at random)."""
    return neuron_type_class(initial_state={"voltage": nengo.dists.Choice([0])}, **kwargs)


def run_float64(neuron_type, currents):
    """Output of one neuron per column of ``currents`` ``(n_steps, n)`` in NengoDL at
    float64: far from the rounding at which two orders of the same sums could put a
    membrane on different sides of the threshold."""
    currents = np.asarray(currents, dtype=np.float64)
    net, node, probe = single_neuron_layer(neuron_type, currents.shape[1])
    with net:
        nengo_dl.configure_settings(dtype="float64")
    with make_simulator(net) as sim:
        sim.run_steps(len(currents), data={node: currents[None]})
        return sim.data[probe]


def numpy_membranes(currents, threshold):
    """The pre-reset membrane ``u'`` of every step (float64), from the equations."""
    u = np.zeros(currents.shape[1])
    before_reset = []
    for J in currents:
        u = u + J * DT
        before_reset.append(u.copy())
        u = u - threshold * (u >= threshold)
    return np.array(before_reset)


# ---------------------------------------------------------------- forward pass


def test_below_one_spike_per_step_it_spikes_exactly_like_spiking_relu():
    rng = np.random.RandomState(0)
    n_steps = 300
    constant = np.tile([0.0, 1.0, 50.0, 123.4, 333.0, 500.0, 899.0], (n_steps, 1))
    varying = rng.uniform(0, 900, size=(n_steps, 20))  # J dt < 1 on every step
    currents = np.concatenate([constant, varying], axis=1)

    if_out = neuron_response(nh.IntegrateAndFire(), currents, n_steps)
    relu_out = neuron_response(same_start(nengo.SpikingRectifiedLinear), currents, n_steps)

    assert np.count_nonzero(relu_out) > 1000
    # below one spike per step floor(u) and H(u - 1) agree, and so do the resets
    np.testing.assert_array_equal(if_out, relu_out)


def test_above_one_spike_per_step_it_saturates_while_spiking_relu_does_not():
    rng = np.random.RandomState(1)
    n_steps = 50
    currents = rng.uniform(1000, 5000, size=(n_steps, 10))  # J dt in [1, 5)

    if_out = neuron_response(nh.IntegrateAndFire(), currents, n_steps)
    relu_out = neuron_response(same_start(nengo.SpikingRectifiedLinear), currents, n_steps)

    # at most one spike per step, and with u' >= 1 on every step, exactly one (of
    # height 1 / dt computed in float32)
    np.testing.assert_allclose(if_out, 1 / DT, rtol=1e-6)
    assert np.any(relu_out > 1.5 / DT)


@pytest.mark.parametrize("threshold, amplitude", [(0.37, 1.0), (2.5, 0.05)])
def test_threshold_v_spikes_like_threshold_one_with_input_divided_by_v(threshold, amplitude):
    rng = np.random.RandomState(2)
    n_steps = 200
    # negative currents too, and up to about one spike per step
    currents = rng.uniform(-300, 900, size=(n_steps, 20)) * threshold
    # the test compares two roundings of the same membrane: none may sit on the threshold
    u = numpy_membranes(currents / threshold, 1.0)
    assert np.abs(u - 1).min() > 1e-9

    scaled = run_float64(nh.IntegrateAndFire(threshold=threshold, amplitude=amplitude), currents)
    unit = run_float64(
        nh.IntegrateAndFire(threshold=1.0, amplitude=amplitude), currents / threshold
    )

    assert np.count_nonzero(unit) > 500
    np.testing.assert_array_equal(scaled, unit)
    # a spike is amplitude / dt high, whatever the threshold
    assert set(np.unique(scaled)) == {0.0, amplitude / DT}


def test_negative_input_lowers_the_membrane_and_delays_the_next_spike():
    n_steps = 20
    currents = np.full((n_steps, 3), 100.0)
    currents[0] = 650.0  # u = 0.65 after step 0 in both neurons
    currents[1:3, 0] = -200.0  # neuron 0: u = 0.25 after step 2
    currents[1:3, 1] = 0.0  # neuron 1: u stays 0.65
    currents[:, 2] = -np.array([1.0, 100.0, 1000.0, 5.0] * 5)  # only negative input

    out = neuron_response(nh.IntegrateAndFire(), currents, n_steps)
    first_spike = [np.flatnonzero(out[:, k])[0] for k in range(2)]

    # from step 3 on, +0.1 a step: 0.25 + 0.1 k reaches 1 at k = 8, 0.65 + 0.1 k at k = 4
    assert first_spike == [3 + 8 - 1, 3 + 4 - 1]
    assert not np.any(out[:, 2])
    # spiking ReLU clips negative currents, so for it the negative phase is a pause
    relu = neuron_response(same_start(nengo.SpikingRectifiedLinear), currents, n_steps)
    assert np.flatnonzero(relu[:, 0])[0] == 3 + 4 - 1


@pytest.mark.parametrize("threshold, amplitude", [(1.0, 1.0), (0.7, 0.3)])
def test_nengo_dl_builder_equals_nengos_numpy_step(threshold, amplitude):
    rng = np.random.RandomState(3)
    n_steps, n = 100, 20
    # negative currents, and some above one spike per step (the membrane then grows)
    currents = rng.uniform(-500, 1500, size=(n_steps, n))
    neuron_type = nh.IntegrateAndFire(threshold=threshold, amplitude=amplitude)

    # nengo's reference simulator (float64) steps IntegrateAndFire.step
    net, node, probe = single_neuron_layer(neuron_type, n)
    node.output = lambda t: currents[int(round(t / DT)) - 1]
    with nengo.Simulator(net, dt=DT, progress_bar=False) as sim:
        sim.run_steps(n_steps)
        reference = sim.data[probe]

    built = run_float64(neuron_type, currents)
    assert np.count_nonzero(reference) > 200
    np.testing.assert_array_equal(built, reference)


def test_rates_are_amplitude_times_rectified_current_over_threshold():
    neuron_type = nh.IntegrateAndFire(threshold=0.4, amplitude=0.25)
    x = np.linspace(-2, 2, 9)
    gain, bias = np.array([1.0, 300.0]), np.array([0.0, 50.0])
    J = gain * x[:, None] + bias
    np.testing.assert_allclose(
        neuron_type.rates(x, gain, bias), 0.25 * np.maximum(J, 0) / 0.4, rtol=1e-12
    )


def test_mean_output_below_saturation_is_the_rate():
    neuron_type = nh.IntegrateAndFire(threshold=0.5, amplitude=0.1)
    currents = np.array([-20.0, 0.0, 7.0, 40.0, 130.0, 480.0])
    n_steps = 1000
    out = neuron_response(neuron_type, currents, n_steps)
    rate = neuron_type.rates(np.zeros((1, len(currents))), np.ones(len(currents)), currents)[0]
    # spike count = floor(J t / v) (float32 rounding may lose the last one): within one
    # spike of the rate over the run
    one_spike = 0.1 / DT / n_steps
    np.testing.assert_allclose(out.mean(axis=0), rate, atol=1.01 * one_spike)
    assert rate[-1] > 50


@pytest.mark.parametrize("kwargs", [{"threshold": 0}, {"threshold": -1.0}, {"amplitude": 0},
                                    {"surrogate_scale": -0.1}])
def test_invalid_parameters_raise_validation_error(kwargs):
    with pytest.raises(ValidationError):
        nh.IntegrateAndFire(**kwargs)


# ---------------------------------------------------------------- surrogate gradient


@pytest.mark.parametrize("threshold", [1.0, 2.5])
def test_heaviside_gradient_is_the_triangular_surrogate(threshold):
    u = np.concatenate([np.linspace(-1, 2 * threshold + 1, 41), [0, threshold, 2 * threshold]])
    membrane = tf.Variable(u)
    with tf.GradientTape() as tape:
        spikes = heaviside_with_surrogate(membrane - threshold, threshold, GAMMA)
        total = tf.reduce_sum(spikes)
    grad = tape.gradient(total, membrane).numpy()

    np.testing.assert_array_equal(spikes.numpy(), (u >= threshold).astype(float))
    expected = GAMMA / threshold * np.maximum(0, 1 - np.abs(u - threshold) / threshold)
    np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-15)
    # zero outside the support (0, 2v), largest at the threshold
    assert np.all(grad[(u <= 0) | (u >= 2 * threshold)] == 0)
    assert grad.max() == pytest.approx(GAMMA / threshold)


def test_neurons_far_below_threshold_get_exactly_zero_gradient():
    # u' <= 0 on every step: outside the surrogate's support (0, 2v)
    below = [-1000.0, -5.0, -0.01, 0.0]
    grad = neuron_gradient(nh.IntegrateAndFire(), below + [300.0], n_steps=20)
    np.testing.assert_array_equal(grad[:4], 0.0)
    # whereas a neuron that charges up does learn
    assert grad[4] > 0


# ---------------------------------------------------------------- BPTT in a network

T, BATCH, THRESHOLD = 30, 2, 0.5


def reference_outputs(x, w1, w2, threshold, stop_membrane=False, stop_reset=True):
    """The IF layer as a plain TensorFlow loop over time, with its own surrogate.

    ``stop_membrane`` cuts the gradient between timesteps (no BPTT) and
    ``stop_reset=False`` lets it flow through the reset: the two wrong variants the
    network's gradient must differ from.
    """

    @tf.custom_gradient
    def heaviside(over):
        def grad(upstream):
            return upstream * (GAMMA / threshold) * tf.maximum(
                tf.zeros_like(over), 1 - tf.abs(over) / threshold
            )

        return tf.cast(over >= 0, over.dtype), grad

    u = tf.zeros((x.shape[0], w1.shape[1]), dtype=x.dtype)
    outputs, membranes = [], []
    for t in range(x.shape[1]):
        u = u + tf.matmul(x[:, t], w1) * DT
        membranes.append(u)
        spikes = heaviside(u - threshold)
        outputs.append(tf.matmul(spikes / DT, w2))  # synapse None: this step's spikes
        u = u - threshold * (tf.stop_gradient(spikes) if stop_reset else spikes)
        if stop_membrane:
            u = tf.stop_gradient(u)
    return tf.stack(outputs, axis=1), tf.stack(membranes, axis=1)


def reference_gradient(x, w1, w2, target, **kwargs):
    x = tf.Variable(x)
    with tf.GradientTape() as tape:
        y, membranes = reference_outputs(x, w1, w2, THRESHOLD, **kwargs)
        total = target(y)
    return y.numpy(), tape.gradient(total, x).numpy(), membranes.numpy()


@pytest.fixture(scope="module")
def if_network():
    """Input(5) -> Dense(7, relu) -> Dense(3) converted to IF neurons at THRESHOLD.

    Weights give currents of about +-150 (u grows ~0.15 a step), so that most neurons
    spike every few steps and most membranes lie within the surrogate's support; some
    currents are negative.  float64, so that the network and the loop sum the same
    currents in different orders without a membrane changing side of the threshold.
    """
    rng = np.random.default_rng(0)
    inp = tf.keras.Input(5)
    hidden = tf.keras.layers.Dense(7, activation="relu", use_bias=False, name="hidden")(inp)
    out = tf.keras.layers.Dense(3, use_bias=False, name="out")(hidden)
    model = tf.keras.Model(inp, out)
    model.get_layer("hidden").set_weights([rng.normal(60, 100, size=(5, 7))])
    model.get_layer("out").set_weights([rng.normal(0, 1, size=(7, 3))])

    converted = nh.convert(model, "if")
    ensemble = converted.layer_probes["hidden"].target.ensemble
    ensemble.neuron_type = nh.IntegrateAndFire(threshold=THRESHOLD)
    with converted.net:
        nengo_dl.configure_settings(dtype="float64")
    x = rng.uniform(0, 1, size=(BATCH, T, 5))
    with converted.simulator(minibatch_size=BATCH, n_steps=T) as sim:
        yield {
            "sim": sim,
            "converted": converted,
            "x": x,
            # the weights as the Keras model holds them (x @ kernel)
            "w1": model.get_layer("hidden").kernel.numpy().astype(np.float64),
            "w2": model.get_layer("out").kernel.numpy().astype(np.float64),
        }


def network_gradient(network, target):
    """Training-mode output of the network and the gradient of ``target(output)`` with
    respect to the whole input sequence."""
    sim, converted = network["sim"], network["converted"]
    inputs = sim._generate_inputs({converted.input: network["x"]})
    name = sim.get_name(converted.input)
    x = tf.Variable(inputs[name])
    inputs[name] = x
    with tf.GradientTape() as tape:
        outputs = sim.keras_model(inputs, training=True)
        y = outputs[sim.model.probes.index(converted.output)]
        total = target(y)
    return y.numpy(), tape.gradient(total, x).numpy()


def test_bptt_gradient_equals_a_plain_tensorflow_loop(if_network):
    net = if_network
    y, grad = network_gradient(net, tf.reduce_sum)
    ref_y, ref_grad, membranes = reference_gradient(net["x"], net["w1"], net["w2"], tf.reduce_sum)

    # the forward pass first: the same spikes through the same weights
    np.testing.assert_allclose(y, ref_y, rtol=1e-10, atol=1e-8)
    # not vacuous: many spikes, many membranes where the surrogate is non-zero
    spiked = membranes >= THRESHOLD
    assert 0.1 < spiked.mean() < 0.9
    assert ((membranes > 0) & (membranes < 2 * THRESHOLD)).mean() > 0.4
    assert np.count_nonzero(grad) > 0.8 * grad.size

    np.testing.assert_allclose(grad, ref_grad, rtol=1e-6, atol=1e-9)
    # and the comparison tells the wrong gradients apart
    for wrong in ({"stop_membrane": True}, {"stop_reset": False}):
        _, wrong_grad, _ = reference_gradient(
            net["x"], net["w1"], net["w2"], tf.reduce_sum, **wrong
        )
        assert not np.allclose(grad, wrong_grad, rtol=1e-3), wrong


def test_last_output_has_gradient_with_respect_to_first_input(if_network):
    net = if_network

    def last_step(y):
        return tf.reduce_sum(y[:, -1])

    _, grad = network_gradient(net, last_step)
    _, ref_grad, _ = reference_gradient(net["x"], net["w1"], net["w2"], last_step)
    _, cut_grad, _ = reference_gradient(
        net["x"], net["w1"], net["w2"], last_step, stop_membrane=True
    )

    # the first input reaches the last output only through the membrane
    assert np.count_nonzero(grad[:, 0]) > 0.8 * grad[:, 0].size
    np.testing.assert_array_equal(cut_grad[:, :-1], 0.0)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-6, atol=1e-9)
