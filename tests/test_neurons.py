"""The hybrid neuron types: spikes forward (with memory), rate gradient backward,
and exactly their NengoDL parents in inference."""

import nengo
import nengo_dl
import numpy as np
import pytest
import tensorflow as tf

import nengo_hybrid as nh

DT = 0.001
# currents that give 40-400 Hz for both types, so that 1 s holds enough spikes for 2 %
CURRENTS = {
    "lif": np.array([1.2, 1.5, 2.0, 5.0, 10.0]),
    "relu": np.array([40.0, 75.0, 150.0, 250.0, 400.0]),
}
HYBRID_TYPES = {
    "lif": lambda amplitude: nh.HybridSoftLIF(sigma=0.02, amplitude=amplitude),
    "relu": lambda amplitude: nh.HybridSpikingRectifiedLinear(amplitude=amplitude),
}
PARENT_TYPES = {
    "lif": lambda amplitude: nengo.LIF(amplitude=amplitude),
    "relu": lambda amplitude: nengo.SpikingRectifiedLinear(amplitude=amplitude),
}


def single_layer(neuron_type, n_neurons, training, seed=3):
    """input node -> neurons (gain 1, bias 0) -> probe"""
    with nengo.Network(seed=seed) as net:
        nengo_dl.configure_settings(learning_phase=training)
        node = nengo.Node(np.zeros(n_neurons))
        ens = nengo.Ensemble(
            n_neurons,
            1,
            neuron_type=neuron_type,
            gain=nengo.dists.Choice([1]),
            bias=nengo.dists.Choice([0]),
        )
        nengo.Connection(node, ens.neurons, synapse=None)
        probe = nengo.Probe(ens.neurons)
    return net, node, probe


def run(neuron_type, currents, n_steps, training, seed=3):
    net, node, probe = single_layer(neuron_type, len(currents), training, seed)
    with nengo_dl.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(n_steps, data={node: np.tile(currents, (1, n_steps, 1))})
        return sim.data[probe]


@pytest.mark.parametrize("kind", ["lif", "relu"])
@pytest.mark.parametrize("amplitude", [1.0, 0.01])
def test_training_forward_pass_is_a_spike_train_at_the_rate(kind, amplitude):
    neuron_type = HYBRID_TYPES[kind](amplitude)
    currents = CURRENTS[kind]
    out = run(neuron_type, currents, n_steps=1000, training=True)

    spike_counts = out / (amplitude / DT)
    assert np.allclose(spike_counts, np.round(spike_counts), atol=1e-4)
    assert np.any(spike_counts > 0)
    # one second of spikes averages to the rate curve: impossible unless the voltage
    # (and refractory time) is carried from step to step during training
    np.testing.assert_allclose(out.mean(axis=0), neuron_type.rate_curve(currents), rtol=0.02)


@pytest.mark.parametrize("kind", ["lif", "relu"])
def test_nengo_dl_parents_do_not_spike_in_training(kind):
    """What the hybrid types fix: NengoDL's own spiking types emit rates in training."""
    out = run(PARENT_TYPES[kind](1.0), CURRENTS[kind], n_steps=5, training=True)
    counts = out / (1.0 / DT)
    assert not np.allclose(counts, np.round(counts), atol=1e-4)


def gradient_of_summed_output(neuron_type, currents, n_steps=10):
    net, node, probe = single_layer(neuron_type, len(currents), training=True)
    with nengo_dl.Simulator(net, progress_bar=False) as sim:
        inputs = sim._generate_inputs({node: np.tile(currents, (1, n_steps, 1))})
        x = tf.Variable(inputs[sim.get_name(node)].astype(np.float32))
        inputs[sim.get_name(node)] = x
        with tf.GradientTape() as tape:
            outputs = sim.keras_model(inputs, training=True)
            total = tf.reduce_sum(outputs[0])
        return tape.gradient(total, x).numpy()[0]


@pytest.mark.parametrize("kind", ["lif", "relu"])
@pytest.mark.parametrize("amplitude", [1.0, 0.01])
def test_backward_pass_is_the_rate_derivative(kind, amplitude):
    neuron_type = HYBRID_TYPES[kind](amplitude)
    # include currents below threshold and near it, where the SoftLIF curve bends
    currents = np.concatenate([[-1.0, 0.5, 0.99, 1.01], CURRENTS[kind]])
    grad = gradient_of_summed_output(neuron_type, currents)

    h = 1e-5
    finite_difference = (
        neuron_type.rate_curve(currents + h) - neuron_type.rate_curve(currents - h)
    ) / (2 * h)
    # every timestep's output gets d rate / dJ; the input of each step has its own
    np.testing.assert_allclose(grad, np.tile(finite_difference, (10, 1)), rtol=1e-3, atol=1e-6 * amplitude)
    assert np.all(np.isfinite(grad))


def test_softlif_gradient_is_finite_far_below_threshold():
    currents = np.array([-1e4, -50.0, 0.0])
    grad = gradient_of_summed_output(nh.HybridSoftLIF(sigma=0.02), currents, n_steps=1)
    assert np.all(np.isfinite(grad)) and np.all(grad >= 0)


@pytest.mark.parametrize("kind", ["lif", "relu"])
@pytest.mark.parametrize("amplitude", [1.0, 0.05])
def test_inference_equals_parent_step_by_step(kind, amplitude):
    rng = np.random.RandomState(0)
    # a varying input, so that refractory periods and partial steps are exercised
    n_steps, n = 300, 20
    scale = 3.0 if kind == "lif" else 300.0
    currents = rng.uniform(0, scale, size=(1, n_steps, n))

    outputs = []
    for neuron_type in (HYBRID_TYPES[kind](amplitude), PARENT_TYPES[kind](amplitude)):
        net, node, probe = single_layer(neuron_type, n, training=False, seed=7)
        with nengo_dl.Simulator(net, progress_bar=False) as sim:
            sim.run_steps(n_steps, data={node: currents})
            outputs.append(sim.data[probe])
    hybrid, parent = outputs
    assert np.count_nonzero(parent) > 100
    np.testing.assert_array_equal(hybrid, parent)


def test_sigma_is_a_validated_parameter():
    assert nh.HybridSoftLIF(sigma=0.005).sigma == 0.005
    with pytest.raises(Exception, match="sigma"):
        nh.HybridSoftLIF(sigma=0)


def test_builders_are_registered_in_nengo_dl():
    from nengo_dl.neuron_builders import LIFBuilder, SimNeuronsBuilder, SpikingRectifiedLinearBuilder

    impl = SimNeuronsBuilder.TF_NEURON_IMPL
    assert issubclass(impl[nh.HybridSoftLIF], LIFBuilder)
    assert issubclass(impl[nh.HybridSpikingRectifiedLinear], SpikingRectifiedLinearBuilder)
    # the parents keep their own builders
    assert impl[nengo.LIF] is LIFBuilder
