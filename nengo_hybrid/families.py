"""Neuron families: one Keras model, converted with rate, spiking, hybrid or
integrate-and-fire neurons.

A family maps each Keras activation to the NengoDL neuron type that replaces it:

=========  ===================================  =====================================
family     ReLU (any spelling)                  `nengo_hybrid.SoftLIF` activation
=========  ===================================  =====================================
rate       ``nengo.RectifiedLinear``            ``nengo_dl.SoftLIFRate`` (the ANN)
spiking    ``SpikingRectifiedLinear``           ``nengo.LIF`` (the converted SNN)
hybrid     `.HybridSpikingRectifiedLinear`      `.HybridSoftLIF` (fine-tuning)
if         `.IntegrateAndFire`                  – (surrogate-gradient BPTT)
=========  ===================================  =====================================

`convert` is a thin layer over ``nengo_dl.Converter`` (``swap_activations``,
``scale_firing_rates``, ``synapse``).  It refuses to return a network in which any
layer silently kept another neuron type or fell back to a ``TensorNode``.

``Dropout`` layers drop units only in the rate family (the ANN), while it trains; in
every spiking family they are the identity (`nengo_hybrid.converters.ConvertDropout`).
"""

from dataclasses import dataclass
from typing import Callable, Dict, Mapping

import nengo
import nengo_dl
import tensorflow as tf

from nengo_hybrid.activations import SoftLIF
# registers the layer converters NengoDL lacks (Conv2DTranspose, tf.nn.relu, Dropout)
from nengo_hybrid.converters import RELU_FUNCTIONS, DropoutNode, HybridConverter
from nengo_hybrid.neurons import HybridSoftLIF, HybridSpikingRectifiedLinear, IntegrateAndFire
from nengo_hybrid.runtime import RUNNING_SUM, ConvertedNetwork

# Keras activation functions by the name a family uses for them: every spelling of one
# function (tf.nn.relu, tf.keras.activations.relu, "relu") is one key
ACTIVATION_NAMES = {
    **{function: "relu" for function in RELU_FUNCTIONS},
    tf.nn.sigmoid: "sigmoid",
    tf.keras.activations.sigmoid: "sigmoid",
    tf.nn.tanh: "tanh",
    tf.keras.activations.tanh: "tanh",
}


@dataclass(frozen=True)
class NeuronFamily:
    """How one family replaces each Keras nonlinearity.

    Parameters
    ----------
    name : str
        The name `convert` looks the family up by.
    neurons : mapping
        ``{activation: factory}``: ``factory(keras_activation)`` returns the neuron
        type that replaces that activation.  A key is an activation's name
        (``"relu"`` for every ReLU spelling, ``"sigmoid"``, ``"tanh"``) or an
        activation class (e.g. `nengo_hybrid.SoftLIF`; its instance is passed to the
        factory, so its ``sigma``, ``tau_rc``, ... can be copied).  Activations the
        family does not name keep NengoDL's own conversion, which `convert` refuses.
    spiking : bool
        Whether the family's neurons spike (and so need timesteps to be evaluated).
    """

    name: str
    neurons: Mapping[object, Callable[[object], nengo.neurons.NeuronType]]
    spiking: bool

    def neuron_for(self, activation):
        """``(swap key, neuron type)`` for one Keras activation, or None if the family
        does not replace it.  The swap key is what ``nengo_dl.Converter``'s
        ``swap_activations`` must hold for that activation."""
        name = ACTIVATION_NAMES.get(activation)
        if name == "relu" and "relu" in self.neurons:
            # NengoDL maps every ReLU spelling to nengo.RectifiedLinear() first and then
            # applies the swaps again, so that one key catches them all
            return nengo.RectifiedLinear(), self.neurons["relu"](activation)
        if name is not None and name in self.neurons:
            return activation, self.neurons[name](activation)
        for key, factory in self.neurons.items():
            if isinstance(key, type) and isinstance(activation, key):
                return activation, factory(activation)
        return None


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


register_family(NeuronFamily("rate", {
    "relu": lambda _: nengo.RectifiedLinear(),
    SoftLIF: lambda a: nengo_dl.SoftLIFRate(sigma=a.sigma, tau_rc=a.tau_rc, tau_ref=a.tau_ref,
                                            amplitude=a.amplitude),
}, spiking=False))
register_family(NeuronFamily("spiking", {
    "relu": lambda _: nengo.SpikingRectifiedLinear(),
    SoftLIF: lambda a: nengo.LIF(tau_rc=a.tau_rc, tau_ref=a.tau_ref, amplitude=a.amplitude),
}, spiking=True))
register_family(NeuronFamily("hybrid", {
    "relu": lambda _: HybridSpikingRectifiedLinear(),
    SoftLIF: lambda a: HybridSoftLIF(sigma=a.sigma, tau_rc=a.tau_rc, tau_ref=a.tau_ref,
                                     amplitude=a.amplitude),
}, spiking=True))
# integrate-and-fire neurons at threshold 1; `nengo_hybrid.balancing` sets each layer's
register_family(NeuronFamily("if", {"relu": lambda _: IntegrateAndFire()}, spiking=True))


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
        found = family.neuron_for(activation)
        if found is not None:
            swaps[found[0]] = found[1]
    return swaps


def convert(model, family="rate", *, synapse=None, scale_firing_rates=None, seed=0,
            allow_tensor_nodes=False, fuse_with_xla=True, **converter_kwargs):
    """Convert a Keras model into a NengoDL network of one neuron family.

    Parameters
    ----------
    model : tf.keras.Model
        The model; its weights become the network's starting weights.
    family : str or NeuronFamily
        ``"rate"``, ``"spiking"``, ``"hybrid"``, ``"if"`` or a registered family.
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
        such a layer would keep its Keras nonlinearity and never spike.  (The
        ``TensorNode`` of a rate family's ``Dropout`` layer is always allowed.)
    fuse_with_xla : bool
        Train the hybrid neurons' step compiled with XLA (`.HybridBuilderMixin`), the
        fast path; False trains them with the unfused operations.  Other families
        ignore it.

    Raises
    ------
    ConversionError
        If any converted layer does not use one of the family's neuron types.
    """
    family = get_family(family)
    swaps = _swap_map(model, family)
    for neuron_type in swaps.values():
        if isinstance(neuron_type, (HybridSoftLIF, HybridSpikingRectifiedLinear)):
            # read by the builder (not a nengo parameter: it changes no maths)
            neuron_type.fuse_with_xla = bool(fuse_with_xla)
    # Dropout regularises the ANN's training (the rate family: active in sim.fit, the
    # identity in predict/evaluate) and is the identity in every SNN: a spike train
    # with dropped spikes is not the converted network, and a spiking family fine-tunes
    # or evaluates the network the ANN learned
    converter = HybridConverter(
        model,
        dropout=not family.spiking,
        swap_activations=swaps,
        scale_firing_rates=scale_firing_rates,
        synapse=synapse,
        allow_fallback=allow_tensor_nodes,
        **converter_kwargs,
    )
    _check_family(converter, family, swaps, allow_tensor_nodes)

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
            # the default, which makes keep_history a per-probe setting: the spike
            # counters below keep only their last step
            keep_history=True,
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
                converted.count_probes[layer.name] = counter = nengo.Probe(
                    obj, synapse=RUNNING_SUM, label=f"{layer.name}.counts", add_to_container=False
                )
                converter.net.config[counter].keep_history = False
    return converted


def _converted_object(converter, layer):
    try:
        return converter.layers[layer]
    except (KeyError, AttributeError):
        # input layers and layers called more than once have no single object
        return None


def _check_family(converter, family, swaps, allow_tensor_nodes):
    # every layer with neurons must have one of the types the family gave this model's
    # activations (a layer the family does not cover keeps NengoDL's own type)
    allowed = {type(neuron_type) for neuron_type in swaps.values()}
    wrong = [
        f"{ens.label}: {type(ens.neuron_type).__name__}"
        for ens in converter.net.all_ensembles
        if type(ens.neuron_type) not in allowed
    ]
    if wrong:
        raise ConversionError(
            f"family {family.name!r} gave this model only "
            f"{sorted(t.__name__ for t in allowed)}, but these layers got other neurons: "
            + "; ".join(wrong)
        )
    if not allow_tensor_nodes:
        # a DropoutNode is only made for a rate family (see convert) and has no neurons
        tensor_nodes = [
            n.label for n in converter.net.all_nodes
            if isinstance(n, nengo_dl.TensorNode) and type(n) is not DropoutNode
        ]
        if tensor_nodes:
            raise ConversionError(
                f"layers left as TensorNodes (they would not use {family.name!r} neurons): "
                f"{tensor_nodes}"
            )


