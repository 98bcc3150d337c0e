"""Measures of a network's output and activity."""

from typing import NamedTuple

import numpy as np

from nengo_hybrid.simulation import iterate_predictions


class LayerRates:
    r"""Average firing rate in Hz of every layer and of the whole network, accumulated
    one minibatch at a time from each neuron's output summed over the timesteps.

    A neuron's rate is its output summed over the :math:`T` timesteps, divided by
    :math:`T` and by its amplitude (for spiking neurons: spikes per second).  A layer's
    rate :math:`\bar r_l` is the mean over its neurons and the inputs; the network's is
    the mean over all neurons,

    .. math:: \bar r = \frac{\sum_l N_l \bar r_l}{\sum_l N_l},

    i.e. total spikes per neuron per second.

    Parameters
    ----------
    amplitudes : dict of {str: float}
        Each layer's neuron amplitude.
    sizes : dict of {str: int}
        Each layer's number of neurons :math:`N_l`.
    n_steps : int
        The timesteps :math:`T` the sums run over.
    """

    def __init__(self, amplitudes, sizes, n_steps):
        self.amplitudes, self.sizes, self.n_steps = dict(amplitudes), dict(sizes), int(n_steps)
        self.sums = {name: 0.0 for name in self.sizes}
        self.n_examples = 0

    def add(self, summed):
        """Add a minibatch: ``{layer: (examples, neurons)}``, each neuron's output summed
        over the timesteps."""
        counts = {len(values) for values in summed.values()}
        if len(counts) != 1 or set(summed) != set(self.sums):
            raise ValueError(f"need every layer of {sorted(self.sums)} for the same examples, got "
                             f"{ {name: np.shape(v) for name, v in summed.items()} }")
        self.n_examples += counts.pop()
        for name, values in summed.items():
            # mean over neurons, summed over examples, in float64
            self.sums[name] += float(np.asarray(values, dtype=np.float64).mean(axis=1).sum())

    def result(self):
        """``{"layers": {name: Hz}, "network": Hz, "neurons": {name: count}}``."""
        if not self.n_examples:
            raise ValueError("no examples were added")
        layers = {name: total / self.n_examples / self.n_steps / self.amplitudes[name]
                  for name, total in self.sums.items()}
        network = sum(layers[n] * self.sizes[n] for n in layers) / max(sum(self.sizes.values()), 1)
        return {"layers": layers, "network": network, "neurons": dict(self.sizes)}


def firing_rates(sim, inputs, layer_probes, amplitudes):
    """`LayerRates` of ``sim`` run on ``inputs``, from probes that hold every layer's
    output at every timestep.

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
    n_steps = next(iter(inputs.values())).shape[1]
    rates = LayerRates(amplitudes, {name: int(p.size_in) for name, p in layer_probes.items()}, n_steps)
    # one minibatch at a time: every layer's whole activity comes back
    for _, outputs in iterate_predictions(sim, inputs, chunk_batches=1):
        rates.add({name: outputs[probe].sum(axis=1) for name, probe in layer_probes.items()})
    return rates.result()


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


def paired_difference(scores, baseline):
    r"""How far ``scores`` lie above ``baseline``, two models scored on the same examples:
    ``{"mean": float, "se": float}``.

    .. math:: d_i = s_i - b_i, \quad \bar d = \frac{1}{n} \sum_i d_i, \quad
              \mathrm{se} = \frac{\mathrm{std}_{n-1}(d)}{\sqrt{n}}

    Pairing removes what the examples share (an easy image is easy for both models), so
    the standard error of a difference is far smaller than either mean's own.
    """
    difference = np.asarray(scores, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    return {"mean": float(difference.mean()), "se": float(difference.std(ddof=1) / np.sqrt(len(difference)))}


def balanced_accuracy(y_true, y_pred):
    """Accuracy averaged over the classes: the mean of each true class's recall.

    On an imbalanced test set (the Caltech-101 stand-in has 140 airplanes and 16
    hawksbills) plain accuracy mostly measures the big classes; this weighs every class
    alike, and is 1/n_classes for a constant guess whatever the class sizes.

    Parameters
    ----------
    y_true, y_pred : array_like of int
        True and predicted labels, one per example.

    Returns
    -------
    float
        In [0, 1].  Only the classes present in ``y_true`` are averaged over (as
        ``sklearn.metrics.balanced_accuracy_score``); predicting a class that is absent
        from ``y_true`` counts as a miss of the true class.
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    if not len(y_true):
        raise ValueError("no labels to score")
    _, which = np.unique(y_true, return_inverse=True)
    hits = np.bincount(which, weights=(y_true == y_pred))
    return float(np.mean(hits / np.bincount(which)))


def _conv_transpose_stats(node):
    """Synapses of a ``Conv2DTranspose``: every input element reaches ``kh * kw * C_out``
    outputs, so input size x ``kh * kw * C_out`` (taps that land in the cropped border
    counted, as keras-spiking counts a Conv2D's padding taps).

    keras-spiking 0.3 has no entry for the layer and falls back to its parent Conv2D's,
    which reads the kernel as ``(kh, kw, C_in, C_out)``; a transposed convolution's is
    ``(kh, kw, C_out, C_in)``, so it counted output size x ``kh * kw * C_out``: twice
    the synapses of a stride-2 layer that halves its channels, a sixteenth of those of
    a 16-to-1 output layer.
    """
    import tensorflow as tf
    from keras_spiking.compat import node_layer

    layer = node_layer(node)
    input_size = int(np.prod(node.input_shapes[1:]))
    kh, kw, c_out, _ = layer.kernel.shape
    output_size = int(np.prod(node.output_shapes[1:]))
    linear = layer.activation in (None, tf.keras.activations.linear)
    return {"connections": input_size * int(kh * kw * c_out),
            "neurons": 0 if linear else output_size, "spiking": linear}


def _no_synapse_stats(node):
    """A layer that only routes spikes (``Concatenate``): no synapses, no neurons."""
    return {}


def layer_connections(model):
    """Synapses into each Keras layer (keras-spiking's ``ModelEnergy`` counts, with
    `_conv_transpose_stats` for ``Conv2DTranspose``), by layer name, in model order;
    layers without synapses are left out.

    Raises
    ------
    ValueError
        If a layer is called more than once in ``model`` (a shared layer): keras-spiking
        adds up the synapses of all its calls, which have different inputs.
    """
    import keras_spiking
    import tensorflow as tf

    _layer_graph(model)  # for the shared-layer check
    computers = keras_spiking.ModelEnergy.layer_stats_computers
    if tf.keras.layers.Conv2DTranspose not in computers:
        keras_spiking.ModelEnergy.register_layer(tf.keras.layers.Conv2DTranspose)(_conv_transpose_stats)
    # keras-spiking 0.3 knows Concatenate has no synapses but warns that it cannot
    # count it; a U-Net has one per decoder level
    if tf.keras.layers.Concatenate not in computers:
        keras_spiking.ModelEnergy.register_layer(tf.keras.layers.Concatenate)(_no_synapse_stats)
    energy = keras_spiking.ModelEnergy(model)
    return {
        layer.name: int(energy.layer_stats[layer]["connections"])
        for layer in model.layers
        if energy.layer_stats[layer].get("connections", 0) > 0
    }


def _layer_graph(model):
    """Every layer of ``model``'s functional graph with what feeds it, inputs first:
    ``{name: (layer, [(inbound_layer, elements), ...])}``, ``elements`` being the size
    of that inbound tensor per example; an input layer has no inbound.

    Raises
    ------
    ValueError
        If ``model`` has no functional graph, if a layer is called more than once in
        it (a shared layer) or if an inbound tensor's size is unknown.
    """
    nodes_by_depth = getattr(model, "_nodes_by_depth", None)
    if not nodes_by_depth:
        raise ValueError(
            f"model {model.name!r} has no functional graph: build it on tf.keras.Input "
            f"(a functional model, or a Sequential model starting with an Input)"
        )
    graph = {}
    # a node's inputs come from deeper nodes (depth counts from the outputs), so
    # deepest first visits every layer after the layers feeding it
    for depth in sorted(nodes_by_depth, reverse=True):
        for node in nodes_by_depth[depth]:
            layer = node.layer
            if layer.name in graph:
                raise ValueError(
                    f"layer {layer.name!r} is called more than once in model "
                    f"{model.name!r}: shared layers are not supported (each call has "
                    f"its own inputs and rates)"
                )
            inbound = []
            for source, _, _, tensor in node.iterate_inbound():
                shape = tuple(tensor.shape[1:])
                if any(d is None for d in shape):
                    raise ValueError(
                        f"the input of layer {layer.name!r} from {source.name!r} has "
                        f"shape {shape}: synaptic operations need fixed sizes"
                    )
                inbound.append((source, int(np.prod(shape, dtype=np.int64))))
            graph[layer.name] = (layer, inbound)
    return graph


def _sums_its_inputs(layer):
    """Whether each output element of ``layer`` is the sum (or difference) of one element
    of each input, so that every input's spikes reach it."""
    import tensorflow as tf

    return isinstance(layer, (tf.keras.layers.Add, tf.keras.layers.Subtract))


def input_spike_rate_hz(x, dt=0.001):
    r"""Spike rate (Hz) of inputs ``x`` under Poisson rate coding.

    Each input element :math:`x_i` emits, every timestep, a spike of sign
    :math:`\operatorname{sign}(x_i)` with probability :math:`|x_i|` (so
    :math:`|x_i| \le 1`), i.e. :math:`|x_i| / dt` spikes per second; over all the
    elements (and examples) of ``x`` the input's rate is

    .. math:: r_\mathrm{in} = \frac{\overline{|x|}}{dt},

    the expected value of the measured rate.  Pass it as ``input_rate_hz`` of
    `synaptic_operations`: the first layer's expected synaptic operations are then
    :math:`C_1 \, \overline{|x|} \, T`.

    Parameters
    ----------
    x : array_like
        The inputs, any shape, values in :math:`[-1, 1]`.
    dt : float
        Timestep in seconds.

    Returns
    -------
    float
        :math:`\overline{|x|} / dt`.

    Raises
    ------
    ValueError
        If ``x`` is empty or any :math:`|x_i| > 1` (not a spike probability).
    """
    magnitude = np.abs(np.asarray(x, dtype=np.float64))
    if magnitude.size == 0:
        raise ValueError("x is empty: no rate")
    if magnitude.max() > 1:
        raise ValueError(
            f"max |x| = {magnitude.max():g} > 1: Poisson rate coding needs |x| <= 1 "
            f"(a spike probability per timestep); scale the inputs first"
        )
    return float(magnitude.mean() / dt)


def synaptic_operations(model, layer_rates_hz, n_steps, dt=0.001, input_rate_hz=None):
    r"""Synaptic operations per inference of the spiking network, and the ANN's MACs.

    Every spike reaching a layer drives that layer's synapses.  Following the model's
    functional graph (skip connections, ``Concatenate``, ``Add``...), layer :math:`l`
    with :math:`C_l` synapses (keras-spiking's ``ModelEnergy`` counts, see
    `layer_connections`) fed by the tensors :math:`i` of :math:`s_i` elements each
    (per example) costs

    .. math:: \mathrm{SynOps}_l = C_l \, dt \, T \sum_i \frac{s_i}{\sum_j s_j}
              \, \rho_i, \qquad \mathrm{SynOps} = \sum_l \mathrm{SynOps}_l

    for :math:`T` timesteps: each input element has the same share of the synapses
    (true of a convolution's channels and a dense layer's units), so inbound
    :math:`i` drives the fraction :math:`s_i / \sum_j s_j` of them.  The rate
    :math:`\rho_k` a layer :math:`k` sends on is

    - its neurons' measured average rate (``layer_rates_hz``) if its output is neurons;
    - for an input layer, ``input_rate_hz`` if given, else :math:`1/dt`: its real
      values reach the next layer every timestep.  Under Poisson rate coding (each
      input element emits a :math:`\pm 1` spike per timestep with probability
      :math:`|x|`) pass ``input_rate_hz=np.mean(np.abs(x)) / dt``, i.e.
      `input_spike_rate_hz` ``(x, dt)``;
    - for ``Add`` and ``Subtract``, :math:`\sum_i \rho_i`: each output element
      receives the spikes of one element of every input (keras-spiking's rate of a
      tensor, the mean of :math:`|x|`, adds the same way for sparse spikes);
    - for any other layer (``Flatten``, pooling, ``Concatenate``, ``Dropout``,
      ``Reshape``, a linear ``Dense``/``Conv`` without neurons...) the size-weighted
      mean :math:`\sum_i s_i \rho_i / \sum_j s_j` of what it receives.

    For a chain (one inbound per layer) this is :math:`C_l \, r_{l-1} \, dt \, T`,
    :math:`r_{l-1}` the rate of the nearest neuron layer (or input) before :math:`l`.
    The ANN computes every synapse once: :math:`\mathrm{MACs} = \sum_l C_l`.

    Parameters
    ----------
    model : tf.keras.Model
        A functional (or ``Input``-built Sequential) model, each layer called once.
    layer_rates_hz : dict of {str: float}
        Average rate (Hz) of each layer whose output is neurons, by layer name.
    n_steps : int
        Timesteps :math:`T` per inference.
    dt : float
        Timestep in seconds.
    input_rate_hz : float, optional
        Rate of the input layer(s); :math:`1/dt` if None.

    Returns
    -------
    dict
        ``{"synaptic_ops": float, "ann_macs": int, "layers": {name: synops}}``.

    Raises
    ------
    ValueError
        If ``layer_rates_hz`` names a layer not in ``model``, or as `_layer_graph`.
    """
    graph = _layer_graph(model)
    unknown = sorted(set(layer_rates_hz) - set(graph))
    if unknown:
        raise ValueError(f"layer_rates_hz names layers not in model {model.name!r}: {unknown}")
    connections = layer_connections(model)
    received = {}  # size-weighted mean rate of each layer's inputs
    sent = {}  # the rate each layer passes on
    for name, (layer, inbound) in graph.items():
        if not inbound:
            sent[name] = 1.0 / dt if input_rate_hz is None else float(input_rate_hz)
            continue
        sizes = np.array([size for _, size in inbound], dtype=np.float64)
        rates = np.array([sent[source.name] for source, _ in inbound], dtype=np.float64)
        received[name] = float(sizes @ rates / sizes.sum())
        if name in layer_rates_hz:
            sent[name] = float(layer_rates_hz[name])
        elif _sums_its_inputs(layer):
            sent[name] = float(rates.sum())
        else:
            sent[name] = received[name]
    per_layer = {name: c * received[name] * dt * n_steps for name, c in connections.items()}
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


class SliceDice(NamedTuple):
    """Dice of every slice (`dice_2d`).

    Attributes
    ----------
    scores : ndarray of float
        Dice of each slice; NaN for a slice left out by the ``empty`` rule.
    has_target : ndarray of bool
        Whether each slice's ground truth has any foreground (for the hippocampus:
        the slices that show it).
    """

    scores: np.ndarray
    has_target: np.ndarray

    @property
    def on_target(self):
        """The scores of the slices whose ground truth has foreground."""
        return self.scores[self.has_target]


class SubjectDice(NamedTuple):
    """Dice of every subject's volume (`dice_3d`), subjects in order of appearance."""

    subjects: np.ndarray
    scores: np.ndarray


EMPTY_RULES = ("score", "exclude")


def _overlap_counts(pred_masks, true_masks, threshold):
    """Foreground pixels of each mask's intersection, prediction and ground truth;
    a pixel is foreground where its value exceeds ``threshold``."""
    pred = np.asarray(pred_masks)
    true = np.asarray(true_masks)
    # only the pixel count of a slice must agree (NengoDL outputs are flat)
    pred = pred.reshape(len(pred), -1) > threshold
    true = true.reshape(len(true), -1) > threshold
    if pred.shape != true.shape:
        raise ValueError(
            f"{pred.shape[0]} predicted masks of {pred.shape[1]} pixels, "
            f"{true.shape[0]} true masks of {true.shape[1]} pixels"
        )
    return (pred & true).sum(axis=1), pred.sum(axis=1), true.sum(axis=1)


def _dice_of_counts(overlap, n_pred, n_true, empty):
    if empty not in EMPTY_RULES:
        raise ValueError(f"empty must be one of {EMPTY_RULES}, got {empty!r}")
    has_target = n_true > 0
    # where the truth is empty the ratio is 0/n_pred or 0/0: the rule decides instead
    dice = 2 * overlap / np.where(has_target, n_pred + n_true, 1)
    if empty == "score":
        no_target = (n_pred == 0).astype(np.float64)
    else:
        no_target = np.nan
    return np.where(has_target, dice, no_target), has_target


def dice_2d(pred_masks, true_masks, empty="score", threshold=0.5):
    r"""Dice of every slice:

    .. math:: D = \frac{2 |P \cap T|}{|P| + |T|}

    for the foreground pixels :math:`P` of the prediction and :math:`T` of the ground
    truth.

    Parameters
    ----------
    pred_masks, true_masks : array_like
        ``(n_slices, ...)``: binary masks or probabilities, any shape per slice (e.g.
        ``(H, W)``, ``(H, W, 1)`` or NengoDL's flat ``(H * W,)``; the two may differ
        in shape, not in pixel count).  For logits pass ``threshold=0``.
    empty : ``"score"`` or ``"exclude"``
        The rule for a slice whose ground truth is empty (where :math:`D` is 0/0 or
        0): ``"score"`` gives it 1 if the prediction is empty too and 0 if it
        predicts any foreground (a false positive there is a full error);
        ``"exclude"`` gives it NaN, leaving it out of `mean_std`.
    threshold : float
        A pixel is foreground where its value exceeds it.

    Returns
    -------
    SliceDice
        ``scores`` per slice, ``has_target`` per slice and ``on_target``, the scores
        of the slices whose ground truth is not empty (the same under either rule).
    """
    counts = _overlap_counts(pred_masks, true_masks, threshold)
    return SliceDice(*_dice_of_counts(*counts, empty))


def dice_3d(pred_slices, true_slices, subject_ids, empty="score", threshold=0.5):
    r"""Dice of each subject's volume, its slices stacked again.

    :math:`D` (see `dice_2d`) over all the voxels of a subject: the intersection and
    the sizes are the sums over that subject's slices, so the order of the slices
    (and any other slices of the data set) does not matter.

    Parameters
    ----------
    pred_slices, true_slices : array_like
        ``(n_slices, ...)`` as for `dice_2d`.
    subject_ids : array_like
        ``(n_slices,)``: the subject each slice was cut from.
    empty, threshold
        As for `dice_2d` (``empty`` applies to a volume with no foreground at all).

    Returns
    -------
    SubjectDice
        ``subjects`` in order of first appearance and their ``scores``.
    """
    subject_ids = np.asarray(subject_ids)
    counts = _overlap_counts(pred_slices, true_slices, threshold)
    if subject_ids.shape != counts[0].shape:
        raise ValueError(f"{len(subject_ids)} subject ids for {len(counts[0])} slices")
    _, first, which = np.unique(subject_ids, return_index=True, return_inverse=True)
    per_subject = [np.bincount(which, weights=c, minlength=len(first)) for c in counts]
    order = np.argsort(first)
    scores, _ = _dice_of_counts(*(c[order] for c in per_subject), empty)
    return SubjectDice(subject_ids[np.sort(first)], scores)


def mean_std(scores, ddof=0):
    """Mean and standard deviation of ``scores``, NaNs (excluded slices) left out:
    ``{"mean": float, "std": float, "n": int}`` (NaN mean and std if none is left).

    ``ddof`` as for ``numpy.std``: 0, the spread of these scores themselves; 1, the
    estimate of the spread of the population they were drawn from.
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    if not len(values):
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(values.mean()), "std": float(values.std(ddof=ddof)), "n": len(values)}
