"""Firing-rate regularisation toward a target rate, as a NengoDL probe loss.

The paper regularises every hidden layer toward 250 Hz with weight 0.01 and the output
loss with weight 1.  In NengoDL that is a probe on each layer's neurons, a loss on each
probe in ``Simulator.compile(loss=..., loss_weights=...)``, and a (dummy) target per
probe in ``Simulator.fit``.
"""

from dataclasses import dataclass

import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class RateRegularization:
    """Pull every hidden layer's firing rate toward ``target_hz``.

    Parameters
    ----------
    target_hz : float
        Target firing rate in Hz (the paper: 250).
    hidden_weight : float
        Loss weight of each hidden layer's rate loss (the paper: 0.01).
    output_weight : float
        Loss weight of the task loss on the output probe (the paper: 1).
    per : ``"neuron"`` or ``"layer"``
        Pull every neuron's rate to the target (NengoDL's own example, which the paper
        follows), or only each layer's mean rate (leaves neurons free to differ).
    """

    target_hz: float = 250.0
    hidden_weight: float = 0.01
    output_weight: float = 1.0
    per: str = "neuron"


class FiringRateLoss(tf.keras.losses.Loss):
    r"""Mean squared relative distance of each neuron's firing rate from a target rate.

    .. math:: L = \frac{1}{N}\sum_i \left(\frac{\bar y_i / A - r^*}{r^*}\right)^2

    where :math:`\bar y_i` is neuron *i*'s probed output averaged over the timesteps
    (for spiking neurons: the spike count per second times the amplitude :math:`A`), so
    :math:`\bar y_i / A` is its rate in Hz whatever ``scale_firing_rates`` did to the
    amplitude.  The error is relative to the target, so a silent neuron costs 1 whatever
    the target: measured in Hz², a LocNet's rate loss was ~10⁵ times its box loss, and
    with the paper's weight of 0.01 the ANN learned firing rates instead of boxes.  The
    target passed by Keras (``y_true``) is ignored: its shape need only
    be ``(batch, 1, 1)``, so no array the size of a layer's activity is ever built.

    Parameters
    ----------
    target_hz : float
        Target rate :math:`r^*` in Hz.
    amplitude : float
        The neurons' amplitude :math:`A`.
    per : ``"neuron"`` or ``"layer"``
        With ``"layer"`` the layer's mean rate replaces each :math:`\bar y_i / A`, so
        only the mean is pulled toward the target.
    """

    def __init__(self, target_hz, amplitude=1.0, per="neuron", name="firing_rate"):
        super().__init__(name=name)
        if per not in ("neuron", "layer"):
            raise ValueError(f"per must be 'neuron' or 'layer', not {per!r}")
        self.target_hz = float(target_hz)
        self.amplitude = float(amplitude)
        self.per = per

    def call(self, y_true, y_pred):
        rates = tf.reduce_mean(y_pred, axis=1) / self.amplitude
        if self.per == "layer":
            rates = tf.reduce_mean(rates, axis=-1, keepdims=True)
        return tf.reduce_mean(tf.square(rates / self.target_hz - 1.0), axis=-1)

    def get_config(self):
        return dict(
            super().get_config(), target_hz=self.target_hz, amplitude=self.amplitude, per=self.per
        )


def dummy_targets(n_examples):
    """The ``y`` a `FiringRateLoss` probe needs in ``Simulator.fit``: shape (n, 1, 1)."""
    return np.zeros((n_examples, 1, 1), dtype=np.float32)
