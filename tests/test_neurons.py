"""The hybrid neuron types: spikes forward (with memory), rate gradient backward,
and exactly their NengoDL parents in inference."""

import nengo
import numpy as np
import pytest

import nengo_hybrid as nh
from nengo_hybrid.simulation import neuron_gradient, neuron_response

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


def run(neuron_type, currents, n_steps, training, seed=3):
    return neuron_response(neuron_type, currents, n_steps, training, seed)


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


@pytest.mark.parametrize("kind", ["lif", "relu"])
@pytest.mark.parametrize("amplitude", [1.0, 0.01])
def test_backward_pass_is_the_rate_derivative(kind, amplitude):
    neuron_type = HYBRID_TYPES[kind](amplitude)
    # include currents below threshold and near it, where the SoftLIF curve bends
    currents = np.concatenate([[-1.0, 0.5, 0.99, 1.01], CURRENTS[kind]])
    grad = neuron_gradient(neuron_type, currents, n_steps=10)

    h = 1e-5
    finite_difference = (
        neuron_type.rate_curve(currents + h) - neuron_type.rate_curve(currents - h)
    ) / (2 * h)
    # every timestep's output gets d rate / dJ; the input of each step has its own
    # each of the 10 timesteps' outputs contributes d rate / dJ
    np.testing.assert_allclose(grad, 10 * finite_difference, rtol=1e-3, atol=1e-5 * amplitude)
    assert np.all(np.isfinite(grad))


def test_softlif_gradient_is_finite_far_below_threshold():
    currents = np.array([-1e4, -50.0, 0.0])
    grad = neuron_gradient(nh.HybridSoftLIF(sigma=0.02), currents)
    assert np.all(np.isfinite(grad)) and np.all(grad >= 0)


@pytest.mark.parametrize("kind", ["lif", "relu"])
@pytest.mark.parametrize("amplitude", [1.0, 0.05])
def test_inference_equals_parent_step_by_step(kind, amplitude):
    rng = np.random.RandomState(0)
    # a varying input, so that refractory periods and partial steps are exercised
    n_steps, n = 300, 20
    scale = 3.0 if kind == "lif" else 300.0
    currents = rng.uniform(0, scale, size=(n_steps, n))

    outputs = [
        neuron_response(neuron_type, currents, n_steps, training=False, seed=7)
        for neuron_type in (HYBRID_TYPES[kind](amplitude), PARENT_TYPES[kind](amplitude))
    ]
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
