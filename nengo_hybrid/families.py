"""Neuron families: one Keras model, converted with rate, spiking or hybrid neurons.

A family says which NengoDL neuron type replaces each Keras nonlinearity:

=========  ==========================  =====================================
family     ReLU (any spelling)         `nengo_hybrid.SoftLIF` activation
=========  ==========================  =====================================
rate       ``nengo.RectifiedLinear``   ``nengo_dl.SoftLIFRate`` (the ANN)
spiking    ``SpikingRectifiedLinear``  ``nengo.LIF`` (the converted SNN)
hybrid     `.HybridSpikingRectifiedLinear`  `.HybridSoftLIF` (fine-tuning)
=========  ==========================  =====================================

`convert` is a thin layer over ``nengo_dl.Converter`` (``swap_activations``,
``scale_firing_rates``, ``synapse``).  It refuses to return a network in which any
layer silently kept another neuron type or fell back to a ``TensorNode``.
"""

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional

import nengo
import nengo_dl
import numpy as np
import tensorflow as tf

from nengo_hybrid.activations import SoftLIF
# registers the layer converters NengoDL lacks (Conv2DTranspose, tf.nn.relu)
from nengo_hybrid.converters import RELU_FUNCTIONS
from nengo_hybrid.metrics import firing_rates
from nengo_hybrid.neurons import HybridSoftLIF, HybridSpikingRectifiedLinear
from nengo_hybrid.simulation import make_simulator
from nengo_hybrid.regularization import FiringRateLoss, RateRegularization, dummy_targets


@dataclass(frozen=True)
class NeuronFamily:
    """How one family replaces each Keras nonlinearity.

    Parameters
    ----------
    name : str
        The name `convert` looks the family up by.
    relu : callable
        ``relu()`` returns the neuron type that replaces a ReLU.
    soft_lif : callable
        ``soft_lif(activation)`` returns the neuron type that replaces a
        `nengo_hybrid.SoftLIF` Keras activation (its ``sigma``, ``tau_rc``, ``tau_ref``
        and ``amplitude`` are there to be copied).
    spiking : bool
        Whether the family's neurons spike (and so need timesteps to be evaluated).
    """

    name: str
    relu: Callable[[], nengo.neurons.NeuronType]
    soft_lif: Callable[[SoftLIF], nengo.neurons.NeuronType]
    spiking: bool

    def neuron_types(self):
        """The exact neuron classes this family may build."""
        return {type(self.relu()), type(self.soft_lif(SoftLIF()))}


FAMILIES: Dict[str, NeuronFamily] = {}


def register_family(family):
    """Make ``family`` available to `convert` under ``family.name``."""
    if not isinstance(family, NeuronFamily):
        raise TypeError(f"expected a NeuronFamily, got {type(family).__name__}")
    FAMILIES[family.name] = family
    return family


def get_family(family):
    """Return the `NeuronFamily` named ``family`` (or ``family`` itself)."""
    if isinstance(family, NeuronFamily):
        return family
    try:
        return FAMILIES[family]
    except KeyError:
        raise KeyError(
            f"unknown neuron family {family!r}; registered: {sorted(FAMILIES)}"
        ) from None


register_family(
    NeuronFamily(
        "rate",
        relu=nengo.RectifiedLinear,
        soft_lif=lambda a: nengo_dl.SoftLIFRate(
            sigma=a.sigma, tau_rc=a.tau_rc, tau_ref=a.tau_ref, amplitude=a.amplitude
        ),
        spiking=False,
    )
)
register_family(
    NeuronFamily(
        "spiking",
        relu=nengo.SpikingRectifiedLinear,
        soft_lif=lambda a: nengo.LIF(tau_rc=a.tau_rc, tau_ref=a.tau_ref, amplitude=a.amplitude),
        spiking=True,
    )
)
register_family(
    NeuronFamily(
        "hybrid",
        relu=HybridSpikingRectifiedLinear,
        soft_lif=lambda a: HybridSoftLIF(
            sigma=a.sigma, tau_rc=a.tau_rc, tau_ref=a.tau_ref, amplitude=a.amplitude
        ),
        spiking=True,
    )
)


class ConversionError(TypeError):
    """A layer of the Keras model would not run with the family's neurons."""


def _activations_of(model):
    """Every activation object used by a layer of ``model`` (nested models included)."""
    found = []
    for layer in model.layers:
        if isinstance(layer, tf.keras.Model):
            found.extend(_activations_of(layer))
        if isinstance(layer, tf.keras.layers.ReLU):
            found.append(tf.nn.relu)  # NengoDL converts a ReLU layer through tf.nn.relu
        for attr in ("activation", "function"):
            value = getattr(layer, attr, None)
            if value is not None:
                found.append(value)
    return found


def _swap_map(model, family):
    swaps = {}
    for activation in _activations_of(model):
        if activation in RELU_FUNCTIONS:
            swaps[nengo.RectifiedLinear()] = family.relu()
        elif isinstance(activation, SoftLIF):
            swaps[activation] = family.soft_lif(activation)
    return swaps


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
    """

    converter: nengo_dl.Converter
    family: NeuronFamily
    layer_probes: Dict[str, nengo.Probe] = field(default_factory=dict)

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
                  **kwargs):
        """A ``nengo_dl.Simulator`` set up for speed.

        ``n_steps`` fixes the number of timesteps and unrolls them into one graph
        (``unroll_simulation=n_steps, use_loop=False``): the fastest setting for
        training and for evaluating at one number of timesteps.  Without it, the
        simulator runs any number of timesteps in a loop.  ``layer_probes`` includes
        the probe on every layer (needed by `firing_rates` and rate regularisation).
        """
        for probe in self.layer_probes.values():
            if layer_probes and probe not in self.net.probes:
                self.net.probes.append(probe)
            elif not layer_probes and probe in self.net.probes:
                self.net.probes.remove(probe)
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

    def inputs(self, x, n_steps=1):
        """Input dict for ``sim.fit``/``predict``: each image repeated for ``n_steps``."""
        x = np.asarray(x, dtype=np.float32).reshape((len(x), 1, -1))
        return {self.input: np.tile(x, (1, n_steps, 1))}

    def targets(self, y, regularization: Optional[RateRegularization] = None, n_steps=1):
        """Target dict for ``sim.fit``: ``y`` on every timestep of the output, and the
        dummy targets the rate losses ignore."""
        y = np.asarray(y, dtype=np.float32).reshape((len(y), 1, -1))
        targets = {self.output: np.tile(y, (1, n_steps, 1))}
        if regularization is not None:
            for probe in self.hidden_probes().values():
                targets[probe] = dummy_targets(len(y))
        return targets

    def dataset(self, sim, x, y, regularization: Optional[RateRegularization] = None, n_steps=1):
        """``x``, ``y`` as a ``tf.data`` pipeline of ``sim``'s minibatches, in order.

        The same data as `inputs` and `targets`, but each image is repeated over the
        ``n_steps`` timesteps one minibatch at a time: the repeated arrays of a whole
        data set were 6 GB for LocNet's 629 images at 60 timesteps, more than the
        network.  A last partial minibatch is dropped (NengoDL's minibatches are fixed).
        """
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
        repeated = [name for name in inputs if name != "n_steps"], [sim.get_name(self.output)]

        def repeat_over_time(inputs, targets):
            for group, names in zip((inputs, targets), repeated):
                for name in names:
                    group[name] = tf.tile(group[name], [1, n_steps, 1])
            return inputs, targets

        return (tf.data.Dataset.from_tensor_slices((inputs, targets))
                .batch(sim.minibatch_size, drop_remainder=True)
                .map(repeat_over_time))

    def firing_rates(self, sim, x, n_steps):
        """Average firing rate (Hz) of every layer and of the network over inputs ``x``.

        See `nengo_hybrid.metrics.firing_rates`.
        """
        self._require_layer_probes(sim, "firing rates")
        return firing_rates(sim, self.inputs(x, n_steps), self.layer_probes, self.amplitudes())

    def _require_layer_probes(self, sim, purpose):
        if any(probe not in sim.model.probes for probe in self.layer_probes.values()):
            raise ValueError(
                f"{purpose} need the layer probes: build the simulator with "
                f"converted.simulator(..., layer_probes=True)"
            )


def convert(model, family="rate", *, synapse=None, scale_firing_rates=None, seed=0,
            allow_tensor_nodes=False, **converter_kwargs):
    """Convert a Keras model into a NengoDL network of one neuron family.

    Parameters
    ----------
    model : tf.keras.Model
        The model; its weights become the network's starting weights.
    family : str or NeuronFamily
        ``"rate"``, ``"spiking"``, ``"hybrid"`` or a registered family.
    synapse : float or nengo.synapses.Synapse, optional
        Synaptic filter on the output of every neuron (``nengo_dl.Converter``).
    scale_firing_rates : float or dict, optional
        Multiplies each neuron's input by this and divides its output by it
        (``nengo_dl.Converter``).
    seed : int
        Seed of the network (the neurons' random initial voltages), so that the same
        seed gives the same spikes.
    allow_tensor_nodes : bool
        Allow layers that NengoDL can only run as a ``TensorNode``.  Off by default:
        such a layer would keep its Keras nonlinearity and never spike.

    Raises
    ------
    ConversionError
        If any converted layer does not use one of the family's neuron types.
    """
    family = get_family(family)
    converter = nengo_dl.Converter(
        model,
        swap_activations=_swap_map(model, family),
        scale_firing_rates=scale_firing_rates,
        synapse=synapse,
        allow_fallback=allow_tensor_nodes,
        **converter_kwargs,
    )
    _check_family(converter, family, allow_tensor_nodes)

    converted = ConvertedNetwork(converter, family)
    converter.net.seed = seed
    # names the task loss "output_loss" in Keras logs (unlabelled it would be "probe")
    converted.output.label = "output"
    with converter.net:
        nengo_dl.configure_settings(
            # the default planner merges every op into a few large signal arrays and
            # then spends most of each step scattering into them; one op at a time is
            # several times faster for convolutional nets (see benchmarks/neurons.py)
            planner=nengo_dl.graph_optimizer.noop_planner,
            # every example starts from the initial neuron state
            stateful=False,
        )
        seen = set()
        for layer in converter.model.layers:
            obj = _converted_object(converter, layer)
            # layers such as Flatten pass their input's neurons on unchanged
            if isinstance(obj, nengo.ensemble.Neurons) and obj.ensemble not in seen:
                seen.add(obj.ensemble)
                converted.layer_probes[layer.name] = nengo.Probe(
                    obj, label=f"{layer.name}.rates", add_to_container=False
                )
    return converted


def _converted_object(converter, layer):
    try:
        return converter.layers[layer]
    except (KeyError, AttributeError):
        # input layers and layers called more than once have no single object
        return None


def _check_family(converter, family, allow_tensor_nodes):
    allowed = family.neuron_types()
    wrong = [
        f"{ens.label}: {type(ens.neuron_type).__name__}"
        for ens in converter.net.all_ensembles
        if type(ens.neuron_type) not in allowed
    ]
    if wrong:
        raise ConversionError(
            f"family {family.name!r} allows only "
            f"{sorted(t.__name__ for t in allowed)}, but these layers got other neurons: "
            + "; ".join(wrong)
        )
    if not allow_tensor_nodes:
        tensor_nodes = [n.label for n in converter.net.all_nodes if isinstance(n, nengo_dl.TensorNode)]
        if tensor_nodes:
            raise ConversionError(
                f"layers left as TensorNodes (they would not use {family.name!r} neurons): "
                f"{tensor_nodes}"
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
