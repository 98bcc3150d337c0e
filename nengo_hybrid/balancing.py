"""Threshold balancing: one firing threshold per layer of an integrate-and-fire network,
from the input the layer receives on a calibration set (Sengupta et al. 2019;
Rueckauer et al. 2017).

The converted network starts with every threshold at 1.  Then, layer by layer in
order, it runs on calibration examples (training data, coded as in training) for
``n_steps`` timesteps with the thresholds found so far in place; the layer's threshold
becomes the largest charge it receives in one timestep,

.. math:: v_l = s \\cdot P_p\\left(\\{J_{l,i,t}\\,dt\\}_{\\text{examples},\\,i,\\,t}\\right)

(:math:`P_p` the ``percentile``, 100 = the maximum; :math:`s` the ``scale``, Rathi et
al. 2020 use 0.7), so that the most strongly driven neuron fires about once per step.
The output layer gets none: it does not spike.

Each spike then carries its layer's threshold (`apply_thresholds` sets the amplitude to
:math:`A\\,v_l`): an IF neuron's mean output is :math:`A\\,v_l\\,J / v_l = A\\,J`, the
ANN's activation, whatever the threshold.  Every layer therefore keeps the ANN's scale,
and layers that meet again (a U-Net's concatenated skip connections) arrive in the
units the ANN's weights expect; with unit spikes (Sengupta's form) each path would be
divided by the product of the thresholds along it, a different factor for each path.

Every membrane starts each example at :math:`u_0 = f\,v_l` (``initial_potential`` :math:`f`,
default 0).  With :math:`f = 1/2` (Bu et al. 2022) a neuron driven at rate :math:`r` per
step fires its first spike after about :math:`1/(2r)` steps instead of :math:`1/r`, and its
spike count after :math:`t` steps is :math:`\lfloor r t + 1/2 \rfloor` (rounded) instead
of :math:`\lfloor r t \rfloor` (truncated): the expected conversion error of each layer
is zero instead of half a spike, which is what makes a deep network's output arrive
sooner.
"""

import math

import nengo
import numpy as np

from nengo_hybrid.neurons import IntegrateAndFire
from nengo_hybrid.runtime import load_params
from nengo_hybrid.simulation import iterate_predictions


def apply_thresholds(converted, thresholds, initial_potential=0.0):
    """Give each named layer of ``converted`` (an ``"if"`` network) its threshold.

    ``thresholds`` maps layer names (keys of ``converted.layer_probes``) to thresholds
    :math:`v`; the layer's neurons become ``IntegrateAndFire(threshold=v, amplitude=A
    v)`` with :math:`A` their amplitude at threshold 1 (so each spike carries the
    threshold, see the module docstring), their membranes starting every example at
    ``initial_potential`` :math:`\times v`.  Call before building a simulator.
    """
    if not 0 <= initial_potential < 1:
        raise ValueError(f"initial_potential is a fraction of the threshold in [0, 1), got "
                         f"{initial_potential}")
    for name, threshold in thresholds.items():
        if name not in converted.layer_probes:
            raise KeyError(f"no layer {name!r} with neurons; layers: {sorted(converted.layer_probes)}")
        ensemble = converted.layer_probes[name].target.ensemble
        neuron_type = ensemble.neuron_type
        if not isinstance(neuron_type, IntegrateAndFire):
            raise TypeError(f"layer {name!r} has {type(neuron_type).__name__} neurons, not "
                            f"IntegrateAndFire: convert the model with the 'if' family")
        unit_amplitude = neuron_type.amplitude / neuron_type.threshold
        ensemble.neuron_type = IntegrateAndFire(
            threshold=float(threshold), amplitude=float(unit_amplitude * threshold),
            surrogate_scale=neuron_type.surrogate_scale,
            initial_state={"voltage": nengo.dists.Choice([initial_potential * float(threshold)])})
    return converted


class _TopValues:
    """The ``k`` largest values seen so far (a percentile of a stream too large to
    hold: the charges of one layer over a calibration set)."""

    def __init__(self, k):
        self.k, self.values = k, np.empty(0, dtype=np.float32)

    def add(self, values):
        values = np.concatenate([self.values, values.ravel()])
        if len(values) > self.k:
            values = np.partition(values, len(values) - self.k)[-self.k:]
        self.values = values

    def smallest(self):
        return float(self.values.min())


def balance_thresholds(converted, x, n_steps, *, params=None, percentile=100.0, scale=1.0,
                       initial_potential=0.0, encoding=None, seed=0, batch_size=8, log=print):
    """Balance the thresholds of ``converted`` (an ``"if"`` network) layer by layer.

    Parameters
    ----------
    converted : ConvertedNetwork
        The converted network; its thresholds are set in place (`apply_thresholds`).
    x : ndarray
        Calibration examples (from the training data, never the test data).
    n_steps : int
        Timesteps each example runs for (the conversion's T).
    params : path, optional
        Parameters to load (``Simulator.save_params``; e.g. the trained ANN's) into
        every simulator; without them the Keras model's weights are used.
    percentile : float
        The percentile of the per-step charges that sets a threshold (100: the
        maximum; 99.9 ignores the rarest peaks).
    scale : float
        Multiplies every threshold (below 1 the neurons fire more readily).
    initial_potential : float
        Each membrane's start as a fraction of its threshold (`apply_thresholds`): the
        layers already balanced run with it, as the converted network will.
    encoding, seed
        The input coding and its seed (`nengo_hybrid.encoding`), as in training.
    batch_size : int
        Examples per run (memory: each returns a layer's input at every step).
    log : callable or None
        Progress lines.

    Returns
    -------
    dict of {str: float}
        Each hidden layer's threshold, in network order.
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    layers = list(converted.hidden_probes())
    apply_thresholds(converted, {name: 1.0 for name in layers}, initial_potential)
    thresholds = {}
    dt = 0.001
    for index, name in enumerate(layers):
        neurons = converted.layer_probes[name].target
        with converted.net:
            current = nengo.Probe(neurons, "input", label=f"{name}.input")
        try:
            total = len(x) * n_steps * neurons.size_in
            top = _TopValues(max(1, math.ceil(total * (1 - percentile / 100))))
            with converted.simulator(minibatch_size=batch_size) as sim:
                if params is not None:
                    load_params(sim, params)
                dt = sim.dt
                inputs = converted.inputs(x, n_steps, encoding, seed)
                for _, out in iterate_predictions(sim, inputs, chunk_batches=1):
                    top.add(out[current] * dt)
        finally:
            converted.net.probes.remove(current)
        charge = top.smallest()
        if charge <= 0:
            raise ValueError(
                f"layer {name!r} receives no positive input on the {len(x)} calibration "
                f"examples, so it never fires: no threshold can balance it")
        thresholds[name] = scale * charge
        apply_thresholds(converted, {name: thresholds[name]}, initial_potential)
        if log:
            log(f"[balance] {index + 1}/{len(layers)} {name}: threshold {thresholds[name]:.4g} "
                f"(= {scale:g} x the {percentile:g}th percentile of J·dt)")
    return thresholds
