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


def box_iou(predicted, target):
    r"""Intersection over union of boxes ``(top, left, bottom, right)``, row by row.

    .. math:: \mathrm{IoU} = \frac{|P \cap T|}{|P| + |T| - |P \cap T|}

    A predicted box with no area (bottom <= top or right <= left) scores 0.
    """
    p = np.asarray(predicted, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    height = np.clip(np.minimum(p[:, 2], t[:, 2]) - np.maximum(p[:, 0], t[:, 0]), 0, None)
    width = np.clip(np.minimum(p[:, 3], t[:, 3]) - np.maximum(p[:, 1], t[:, 1]), 0, None)
    inter = height * width
    area_p = np.clip(p[:, 2] - p[:, 0], 0, None) * np.clip(p[:, 3] - p[:, 1], 0, None)
    area_t = (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1])
    union = area_p + area_t - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def layer_connections(model):
    """Synapses into each Keras layer (keras-spiking's ``ModelEnergy`` counts), by
    layer name, in model order; layers without synapses are left out."""
    import keras_spiking

    energy = keras_spiking.ModelEnergy(model)
    return {
        layer.name: int(energy.layer_stats[layer]["connections"])
        for layer in model.layers
        if energy.layer_stats[layer].get("connections", 0) > 0
    }


def synaptic_operations(model, layer_rates_hz, n_steps, dt=0.001, input_rate_hz=None):
    r"""Synaptic operations per inference of the spiking network, and the ANN's MACs.

    Every spike of a layer's neurons drives the synapses of the next layer:

    .. math:: \mathrm{SynOps} = \sum_l C_l \, r_{l-1} \, dt \, T

    with :math:`C_l` the synapses into layer :math:`l` (keras-spiking's ``ModelEnergy``
    counts), :math:`r_{l-1}` the average rate of the layer feeding it (measured in the
    NengoDL simulation), and :math:`T` timesteps.  The input layer is not spiking: its
    real values reach the first layer every timestep (rate :math:`1/dt`) unless
    ``input_rate_hz`` says otherwise.  The ANN computes every synapse once:
    :math:`\mathrm{MACs} = \sum_l C_l`.

    Returns
    -------
    dict
        ``{"synaptic_ops": float, "ann_macs": int, "layers": {name: synops}}``.
    """
    connections = layer_connections(model)
    rates = {}
    previous = 1.0 / dt if input_rate_hz is None else input_rate_hz
    for layer in model.layers[1:]:
        rates[layer.name] = previous  # the rate of this layer's input
        if layer.name in layer_rates_hz:
            previous = layer_rates_hz[layer.name]
    per_layer = {name: c * rates[name] * dt * n_steps for name, c in connections.items()}
    return {
        "synaptic_ops": float(sum(per_layer.values())),
        "ann_macs": int(sum(connections.values())),
        "layers": per_layer,
    }


def energy_per_inference(synops, ann_macs, n_neurons, n_steps, spiking_device="loihi",
                         ann_device="gpu"):
    """Joules per inference from keras-spiking's device table (``ModelEnergy.devices``):
    the SNN's synaptic operations and neuron updates on a spiking device, the ANN's MACs
    and neuron updates on a conventional one (each synop/MAC one operation)."""
    import keras_spiking

    devices = keras_spiking.ModelEnergy.devices
    snn, ann = devices[spiking_device], devices[ann_device]
    return {
        f"snn_{spiking_device}_j": synops * snn["energy_per_synop"] + n_neurons * n_steps * snn["energy_per_neuron"],
        f"ann_{ann_device}_j": ann_macs * ann["energy_per_synop"] + n_neurons * ann["energy_per_neuron"],
    }
