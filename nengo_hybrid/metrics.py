"""Measures of a network's output and activity."""

import numpy as np

from nengo_hybrid.simulation import iterate_predictions


def firing_rates(sim, inputs, layer_probes, amplitudes):
    r"""Average firing rate in Hz of every layer and of the whole network.

    A neuron's rate is its probed output divided by its amplitude, averaged over the
    timesteps (for spiking neurons: spikes per second).  A layer's rate is the mean over
    its neurons and the inputs; the network's is the mean over all neurons,

    .. math:: \bar r = \frac{\sum_l N_l \bar r_l}{\sum_l N_l},

    i.e. total spikes per neuron per second.

    Parameters
    ----------
    sim : nengo_dl.Simulator
    inputs : dict of {nengo.Node: ndarray}
        Inputs of shape ``(n_examples, n_steps, size)``.
    layer_probes : dict of {str: nengo.Probe}
        A probe on each layer's neurons.
    amplitudes : dict of {str: float}
        Each layer's neuron amplitude.

    Returns
    -------
    dict
        ``{"layers": {name: Hz}, "network": Hz, "neurons": {name: count}}``.
    """
    sums = {name: 0.0 for name in layer_probes}
    n_examples = 0
    # one minibatch at a time: every layer's whole activity comes back
    for _, outputs in iterate_predictions(sim, inputs, chunk_batches=1):
        n_examples += len(next(iter(outputs.values())))
        for name, probe in layer_probes.items():
            values = outputs[probe]
            # mean over time and neurons, summed over examples
            sums[name] += float(values.mean(axis=(1, 2)).sum()) / amplitudes[name]
    layers = {name: total / n_examples for name, total in sums.items()}
    sizes = {name: int(probe.size_in) for name, probe in layer_probes.items()}
    network = sum(layers[n] * sizes[n] for n in layers) / max(sum(sizes.values()), 1)
    return {"layers": layers, "network": network, "neurons": sizes}
