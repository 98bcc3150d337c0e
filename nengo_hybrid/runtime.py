"""A converted network at work: its simulators, its compiled losses, the data it is fed
(input coding over timesteps, one minibatch at a time) and its firing rates.

`nengo_hybrid.families.convert` builds a `ConvertedNetwork`; everything a training or
evaluation stage then does with it lives here.
"""

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import nengo
import nengo_dl
import numpy as np
import tensorflow as tf

from nengo_hybrid.atomic import replacing
from nengo_hybrid.encoding import RepeatedInput, get_encoding
from nengo_hybrid.metrics import LayerRates, firing_rates
from nengo_hybrid.regularization import FiringRateLoss, RateRegularization, dummy_targets
from nengo_hybrid.simulation import iterate_predictions, make_simulator

# A spike counter's synapse: H(z) = 1 / (z - 1), i.e. y[k] = sum_{j<k} x[j], the running
# sum of its input over the steps before this one.  A probe with it and keep_history off
# hands back one value per neuron, however many steps ran; a run of T + 1 steps reads
# the sum over the first T (COUNT_LAG).
RUNNING_SUM = nengo.LinearFilter([1], [1, -1], analog=False)
COUNT_LAG = 1
DEFAULT_DT = 0.001  # nengo_dl.Simulator's


class FirstSteps:
    """A gate that passes its input on a run's first ``n_steps`` timesteps and zero
    after: :math:`y_k = x_k` for :math:`k \\le N`, else :math:`0`, where step :math:`k`
    runs at time :math:`t = k\\,\\delta t`.  (A ``nengo_dl.TensorNode`` function.)

    A spike counter behind it sums the spikes of the first ``N`` steps however long
    the run is, so one run both reads an output late and measures the firing rates
    over an earlier read-out: the counts are the same numbers, since adding zeros
    changes no sum.
    """

    def __init__(self, n_steps, dt=DEFAULT_DT):
        self.n_steps = int(n_steps)
        # halfway between two steps, so that no rounding of k * dt decides
        self.limit = (self.n_steps + 0.5) * dt

    def __call__(self, t, x):
        return x * tf.cast(t < self.limit, x.dtype)


def _include(net, objects, wanted):
    """Add ``objects`` (probes or subnetworks made with ``add_to_container=False``) to
    ``net`` or take them out of it: they are built into a simulator only when in it."""
    for obj in objects:
        container = net.networks if isinstance(obj, nengo.Network) else net.probes
        if wanted and obj not in container:
            container.append(obj)
        elif not wanted and obj in container:
            container.remove(obj)


@dataclass
class ConvertedNetwork:
    """A Keras model converted into a NengoDL network of one neuron family.

    Attributes
    ----------
    converter : nengo_dl.Converter
        The converter (``.net``, ``.inputs``, ``.outputs``, ``.layers``).
    family : NeuronFamily
        The family the neurons belong to.
    layer_probes : dict of {str: nengo.Probe}
        A probe on the neurons of every Keras layer that became neurons, by layer name.
        They are part of a simulator only when it is built with ``layer_probes=True``
        (for firing rates and rate regularisation): every probe adds its layer's whole
        activity to each prediction.
    count_probes : dict of {str: nengo.Probe}
        A spike counter on the same neurons (`RUNNING_SUM`, last step only): part of a
        simulator built with ``spike_counts=True``, where they measure the firing rates
        at the cost of a few additions per neuron and step.
    first_steps_counters : dict of {(int, float): (nengo.Network, dict of {str: nengo.Probe})}
        By ``(N, dt)``: the counters of a run's first ``N`` steps only (each layer's
        neurons through a `FirstSteps` gate), in a subnetwork of their own; made when a
        simulator is first built with ``spike_counts=N``.
    """

    converter: nengo_dl.Converter
    family: object  # a nengo_hybrid.families.NeuronFamily (which imports this module)
    layer_probes: Dict[str, nengo.Probe] = field(default_factory=dict)
    count_probes: Dict[str, nengo.Probe] = field(default_factory=dict)
    first_steps_counters: Dict[tuple, tuple] = field(default_factory=dict)

    @property
    def net(self):
        return self.converter.net

    @property
    def input(self):
        return self.converter.inputs[self.converter.model.inputs[0]]

    @property
    def output(self):
        return self.converter.outputs[self.converter.model.outputs[0]]

    def neuron_types(self):
        """The neuron type of every converted layer, by layer name."""
        return {name: probe.target.ensemble.neuron_type for name, probe in self.layer_probes.items()}

    def amplitudes(self):
        return {name: float(nt.amplitude) for name, nt in self.neuron_types().items()}

    def simulator(self, minibatch_size=32, n_steps=None, layer_probes=False, progress_bar=False,
                  spike_counts=False, **kwargs):
        """A ``nengo_dl.Simulator`` set up for speed.

        ``n_steps`` fixes the number of timesteps and unrolls them into one graph
        (``unroll_simulation=n_steps, use_loop=False``): the fastest setting for
        training and for evaluating at one number of timesteps.  Without it, the
        simulator runs any number of timesteps in a loop.  ``layer_probes`` includes
        the probe on every layer (needed by rate regularisation); ``spike_counts`` the
        spike counters (the cheap way to `firing_rates`): ``True`` counts every step of
        a run, an int ``N`` only its first ``N`` steps (`FirstSteps`; read with `counts`).
        """
        first_steps = None if isinstance(spike_counts, bool) else int(spike_counts)
        if first_steps is not None:
            self._first_steps_counters(first_steps, kwargs.get("dt", DEFAULT_DT))
        _include(self.net, self.layer_probes.values(), layer_probes)
        _include(self.net, self.count_probes.values(), spike_counts is True)
        for (n, _), (counters, _) in self.first_steps_counters.items():
            _include(self.net, [counters], n == first_steps)
        use_loop = n_steps is None
        if not use_loop:
            kwargs.setdefault("unroll_simulation", n_steps)
        # use_loop is a network setting, read once when the simulator is built
        with self.net:
            nengo_dl.configure_settings(use_loop=use_loop)
        return make_simulator(
            self.net, minibatch_size=minibatch_size, progress_bar=progress_bar, **kwargs
        )

    def compile(self, sim, optimizer, loss, regularization: Optional[RateRegularization] = None,
                metrics=None):
        """``sim.compile`` with the task ``loss`` on the output probe and, given
        ``regularization``, a `FiringRateLoss` on every hidden layer."""
        losses = {self.output: loss}
        weights = {self.output: 1.0}
        if regularization is not None:
            self._require_layer_probes(sim, "rate regularisation")
            weights[self.output] = regularization.output_weight
            for name, probe in self.hidden_probes().items():
                losses[probe] = FiringRateLoss(
                    regularization.target_hz,
                    self.amplitudes()[name],
                    per=regularization.per,
                    name=f"rate_{name}",
                )
                weights[probe] = regularization.hidden_weight
        sim.compile(
            optimizer=optimizer,
            loss=losses,
            loss_weights=weights,
            metrics=None if metrics is None else {self.output: metrics},
        )

    def hidden_probes(self):
        """Layer probes excluding the output layer's own neurons."""
        out_target = self.output.target
        return {n: p for n, p in self.layer_probes.items() if p.target is not out_target}

    def inputs(self, x, n_steps=1, encoding=None, seed=0, example_ids=None):
        """Input dict for ``sim.fit``/``predict``: ``x`` coded over ``n_steps``
        timesteps by ``encoding`` (`nengo_hybrid.encoding`: ``"repeat"``, the default,
        shows each image at every step; ``"poisson"`` draws spike trains from ``seed``
        and each example's id, ``example_ids`` defaulting to ``0 .. len(x) - 1``)."""
        coded = get_encoding(encoding)(x, n_steps, seed=seed, example_ids=example_ids)
        return {self.input: coded}

    def targets(self, y, regularization: Optional[RateRegularization] = None, n_steps=1):
        """Target dict for ``sim.fit``: ``y`` on every timestep of the output, and the
        dummy targets the rate losses ignore."""
        y = np.asarray(y, dtype=np.float32).reshape((len(y), 1, -1))
        targets = {self.output: np.tile(y, (1, n_steps, 1))}
        if regularization is not None:
            for probe in self.hidden_probes().values():
                targets[probe] = dummy_targets(len(y))
        return targets

    def dataset(self, sim, x, y, regularization: Optional[RateRegularization] = None, n_steps=1,
                encoding=None, seed=0, example_ids=None):
        """``x``, ``y`` as a ``tf.data`` pipeline of ``sim``'s minibatches, in order.

        The same data as `inputs` and `targets`, but coded over the ``n_steps``
        timesteps one minibatch at a time: the repeated arrays of a whole data set
        were 6 GB for LocNet's 629 images at 60 timesteps, more than the network.
        ``encoding``, ``seed`` and ``example_ids`` as for `inputs` (an example's
        Poisson train depends on its id, not on its minibatch).  A last partial
        minibatch is dropped (NengoDL's minibatches are fixed).
        """
        encoding = get_encoding(encoding)
        inputs = {"n_steps": np.full((len(x), 1), n_steps, dtype=np.int32)}
        for node in sim.node_inputs:
            # a pipeline must feed every input node: the image, and the converter's
            # constant nodes (biases), whose value NengoDL would otherwise fill in
            if node is self.input:
                value = np.asarray(x, dtype=np.float32).reshape((len(x), 1, -1))
            elif isinstance(node.output, np.ndarray):
                value = np.tile(node.output.astype(np.float32).reshape((1, 1, -1)), (len(x), 1, 1))
            else:
                raise ValueError(f"cannot feed input node {node} (its output is not a constant)")
            inputs[sim.get_name(node)] = value
        targets = {sim.get_name(probe): value
                   for probe, value in self.targets(y, regularization, n_steps=1).items()}
        image = sim.get_name(self.input)
        ids = np.arange(len(x)) if example_ids is None else np.asarray(example_ids)
        repeated = ([name for name in inputs if name != "n_steps" and
                     (name != image or isinstance(encoding, RepeatedInput))],
                    [sim.get_name(self.output)])

        def code_image(values, batch_ids):
            coded = encoding(values[:, 0], n_steps, seed=seed, example_ids=batch_ids)
            return coded.astype(np.float32)

        def over_time(inputs, targets, batch_ids):
            for group, names in zip((inputs, targets), repeated):
                for name in names:
                    group[name] = tf.tile(group[name], [1, n_steps, 1])
            if not isinstance(encoding, RepeatedInput):
                coded = tf.numpy_function(code_image, [inputs[image], batch_ids], tf.float32)
                inputs[image] = tf.ensure_shape(coded, [None, n_steps, inputs[image].shape[-1]])
            return inputs, targets

        return (tf.data.Dataset.from_tensor_slices((inputs, targets, ids))
                .batch(sim.minibatch_size, drop_remainder=True)
                .map(over_time))

    def firing_rates(self, sim, x, n_steps, encoding=None, seed=0):
        """Average firing rate (Hz) of every layer and of the network over the first
        ``n_steps`` timesteps of inputs ``x`` coded by ``encoding`` (see `inputs`).

        With the spike counters in ``sim`` (``spike_counts=True``: a looped simulator,
        as the counters need ``n_steps + COUNT_LAG`` steps) they give the rates;
        otherwise the layer probes do, holding every layer's activity at every step.
        See `nengo_hybrid.metrics.LayerRates`.
        """
        if self.count_probes and self._has(sim, self.count_probes):
            rates = self.rate_meter(n_steps)
            for _, outputs in iterate_predictions(sim, self.inputs(x, n_steps + COUNT_LAG, encoding, seed)):
                rates.add(self.counts(outputs))
            return rates.result()
        self._require_layer_probes(sim, "firing rates")
        return firing_rates(sim, self.inputs(x, n_steps, encoding, seed), self.layer_probes,
                            self.amplitudes())

    def rate_meter(self, n_steps):
        """An empty `LayerRates` of this network's layers over ``n_steps`` timesteps."""
        return LayerRates(self.amplitudes(), {name: int(p.size_in) for name, p in self.count_probes.items()},
                          n_steps)

    def counts(self, outputs):
        """Each layer's output summed over all but the last step of a prediction run
        with ``spike_counts=True``, or over its first ``N`` steps with
        ``spike_counts=N`` (the counters' last values): ``{layer: (n, neurons)}``."""
        counters = [self.count_probes] + [probes for _, probes in self.first_steps_counters.values()]
        for probes in counters:
            if probes and all(probe in outputs for probe in probes.values()):
                return {name: outputs[probe][:, -1] for name, probe in probes.items()}
        raise ValueError("these outputs have no spike counters: build the simulator with "
                         "converted.simulator(..., spike_counts=True or a number of steps)")

    def _first_steps_counters(self, n_steps, dt):
        """The counters of the first ``n_steps`` steps (made once per ``(n_steps, dt)``)."""
        key = (n_steps, dt)
        if key not in self.first_steps_counters:
            gate, probes = FirstSteps(n_steps, dt), {}
            # a subnetwork: nengo seeds a network's connections and ensembles before its
            # subnetworks, so these objects leave every neuron's seed (its random initial
            # voltage) as it was, and the spikes are those of the same network without them
            counters = nengo.Network(label=f"counters of the first {n_steps} steps", add_to_container=False)
            with counters:
                for name, counter in self.count_probes.items():
                    neurons = counter.target
                    size = neurons.size_out
                    node = nengo_dl.TensorNode(gate, shape_in=(size,), shape_out=(size,), pass_time=True,
                                               label=f"{name}.first{n_steps}")
                    # transform=None: no weights, so the same parameters load with them
                    nengo.Connection(neurons, node, transform=None, synapse=None)
                    probes[name] = nengo.Probe(node, synapse=RUNNING_SUM, label=f"{name}.counts{n_steps}")
                    self.net.config[probes[name]].keep_history = False
            self.first_steps_counters[key] = (counters, probes)
        return self.first_steps_counters[key]

    @staticmethod
    def _has(sim, probes):
        return all(probe in sim.model.probes for probe in probes.values())

    def _require_layer_probes(self, sim, purpose):
        if not self._has(sim, self.layer_probes):
            raise ValueError(
                f"{purpose} need the layer probes: build the simulator with "
                f"converted.simulator(..., layer_probes=True)"
                + (" or spike_counts=True" if purpose == "firing rates" else "")
            )




def transfer_weights(source_sim, target_sim):
    """Copy every trained parameter of one simulator into another built from the same
    Keras model with any family (e.g. the ANN's weights into the hybrid SNN).

    Goes through NengoDL's own ``save_params``/``load_params``, which hold the
    connection weights and biases but not the neuron state (which differs by family).
    """
    src = [w.shape for w in source_sim.keras_model.weights]
    dst = [w.shape for w in target_sim.keras_model.weights]
    if src != dst:
        raise ValueError(
            f"the two networks have different parameters ({len(src)} arrays {src} vs "
            f"{len(dst)} arrays {dst}); were they converted from the same Keras model?"
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params"
        source_sim.save_params(path)
        target_sim.load_params(path)


def save_params(sim, path):
    """Every weight of ``sim`` (``sim.keras_model.weights``, in its order) saved as
    ``<path>.npz``, the file NengoDL's ``save_params`` writes and ``load_params`` reads,
    but uncompressed and atomically (`nengo_hybrid.atomic.replacing`).

    Trained weights hardly compress (zlib took ~0.25 s a file for LocNet's 1.8 M floats
    and saved 8 % of its 7.3 MB), and a training stage writes a checkpoint every epoch
    and the best weights whenever they improve.
    """
    values = tf.keras.backend.batch_get_value(list(sim.keras_model.weights))
    with replacing(Path(f"{path}.npz")) as tmp:
        with open(tmp, "wb") as file:  # an open file: np.savez would append ".npz" to a name
            np.savez(file, *values)


def load_params(sim, path):
    """NengoDL's ``sim.load_params(path)``, refusing with the file's name a file whose
    arrays do not fit ``sim``'s parameters (NengoDL would fail on the first misfit
    with TensorFlow's words, or load arrays of the same size into the wrong shape).

    Parameters saved before convolutions' channel biases became 1x1 kernels
    (`nengo_hybrid.converters.add_channel_biases`) hold them as ``(C, 1)`` arrays:
    such files belong to an older network layout and are refused here too.
    """
    file = Path(f"{path}.npz")
    if not file.exists():
        raise FileNotFoundError(f"{file}: no saved parameters there")
    expected = [tuple(w.shape) for w in sim.keras_model.weights]
    with np.load(file) as saved:
        shapes = [tuple(saved[f"arr_{i}"].shape) for i in range(len(saved.files))]
    if shapes != expected:
        where = next((i for i, (a, b) in enumerate(zip(shapes, expected)) if a != b),
                     min(len(shapes), len(expected)))
        raise ValueError(
            f"{file}: parameters of another network ({len(shapes)} arrays, this network has "
            f"{len(expected)}; array {where} is "
            f"{shapes[where] if where < len(shapes) else 'missing'} where this network has "
            f"{expected[where] if where < len(expected) else 'nothing'}). Was it saved from "
            "another model, or by a nengo-hybrid older than 1x1-kernel channel biases? "
            "Rerun the stage that wrote it (without --resume)."
        )
    sim.load_params(path)
