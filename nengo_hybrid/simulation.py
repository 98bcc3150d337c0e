"""Building NengoDL simulators and running them over a data set of any size."""

import warnings

import nengo_dl
import numpy as np


def make_simulator(net, **kwargs):
    """``nengo_dl.Simulator(net, **kwargs)`` without the warnings that say nothing here."""
    kwargs.setdefault("progress_bar", False)
    with warnings.catch_warnings():
        # a CPU-only machine is a supported setup, not a problem to warn about
        warnings.filterwarnings("ignore", message="No GPU support detected")
        # nengo derives max rates and intercepts from the converter's gain and bias,
        # which it need not (and for some LIF gains cannot) do; they are unused
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="nengo.neurons")
        warnings.filterwarnings("ignore", message="Non-finite values detected in `max_rates`")
        return nengo_dl.Simulator(net, **kwargs)


def iterate_predictions(sim, inputs, chunk_batches=4):
    """Yield ``(start, outputs)`` over ``inputs`` in chunks of whole minibatches.

    NengoDL drops the examples that do not fill a last minibatch; here the last chunk
    is padded with copies of its final example and the copies are cut from the
    outputs, so every example is predicted exactly once.

    Parameters
    ----------
    sim : nengo_dl.Simulator
    inputs : dict of {nengo.Node: ndarray}
        Arrays of shape ``(n_examples, n_steps, size)``.
    chunk_batches : int
        Minibatches per ``sim.predict`` call (bounds the memory of probed outputs).

    Yields
    ------
    start : int
        Index of the chunk's first example.
    outputs : dict of {nengo.Probe: ndarray}
        Probed outputs of shape ``(n_chunk, n_steps, size)``.
    """
    n = len(next(iter(inputs.values())))
    chunk = sim.minibatch_size * chunk_batches
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        pad = (-(stop - start)) % sim.minibatch_size
        batch = {}
        for node, data in inputs.items():
            part = data[start:stop]
            if pad:
                part = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)])
            batch[node] = part
        outputs = sim.predict(batch, verbose=0)
        yield start, {probe: value[: stop - start] for probe, value in outputs.items()}


def predict(sim, inputs, probe, last_steps=None):
    """Predicted output of ``probe`` for every example, averaged over the last
    ``last_steps`` timesteps (all of them if None): shape ``(n_examples, size)``."""
    parts = []
    for _, outputs in iterate_predictions(sim, inputs):
        values = outputs[probe]
        if last_steps is not None:
            values = values[:, -last_steps:]
        parts.append(values.mean(axis=1))
    return np.concatenate(parts)


def single_neuron_layer(neuron_type, n_neurons, training=False, seed=0):
    """A network of ``n_neurons`` neurons (gain 1, bias 0) fed one current each.

    Returns ``(net, input_node, probe)``; ``training`` sets NengoDL's learning phase
    (what ``sim.fit`` runs) for every run of the network.
    """
    import nengo

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


def neuron_response(neuron_type, currents, n_steps, training=False, seed=0):
    """Output of one neuron per current (constant, or ``(n_steps, n)``) over
    ``n_steps`` timesteps: shape ``(n_steps, n)``."""
    currents = np.asarray(currents, dtype=np.float32)
    if currents.ndim == 1:
        currents = np.tile(currents, (n_steps, 1))
    net, node, probe = single_neuron_layer(neuron_type, currents.shape[1], training, seed)
    with make_simulator(net) as sim:
        sim.run_steps(n_steps, data={node: currents[None]})
        return sim.data[probe]


def neuron_gradient(neuron_type, currents, n_steps=1, seed=0):
    """Gradient of the summed training-mode output over ``n_steps`` timesteps with
    respect to each neuron's constant input current: shape ``(n,)``."""
    import tensorflow as tf

    currents = np.asarray(currents, dtype=np.float32)
    net, node, _ = single_neuron_layer(neuron_type, len(currents), True, seed)
    with make_simulator(net) as sim:
        inputs = sim._generate_inputs({node: np.tile(currents, (1, n_steps, 1))})
        current = tf.Variable(inputs[sim.get_name(node)])
        inputs[sim.get_name(node)] = current
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(sim.keras_model(inputs, training=True)[0])
        return tape.gradient(total, current).numpy()[0].sum(axis=0)
