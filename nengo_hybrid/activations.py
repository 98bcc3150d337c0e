"""Keras activations whose NengoDL neuron counterparts the neuron families know.

A Keras model trains fastest as a plain ``tf.keras`` model.  It can use ``"relu"``
(in any spelling) or `.SoftLIF` below; `nengo_hybrid.families.convert` then maps each to
the neuron type of the chosen family (rate, spiking or hybrid).
"""

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="nengo_hybrid")
class SoftLIF:
    r"""The SoftLIF rate curve as a Keras activation (``nengo_dl.SoftLIFRate``'s curve).

    .. math:: r(x) = \frac{A}{\tau_{ref} + \tau_{RC}\log(1 + 1/\rho(x - 1))},
              \quad \rho(u) = \sigma \log(1 + e^{u/\sigma})

    with the input ``x`` as the neuron's current (gain 1, bias 0), so the Keras layer
    computes exactly what ``nengo_dl.SoftLIFRate`` computes after conversion.

    Parameters
    ----------
    sigma : float
        Smoothing around the firing threshold.
    tau_rc, tau_ref : float
        Membrane and refractory time constants (s).
    amplitude : float
        Output scale: the activation is ``amplitude`` times the rate in Hz.
    """

    def __init__(self, sigma=1.0, tau_rc=0.02, tau_ref=0.002, amplitude=1.0):
        self.sigma = float(sigma)
        self.tau_rc = float(tau_rc)
        self.tau_ref = float(tau_ref)
        self.amplitude = float(amplitude)
        self.__name__ = "soft_lif"

    def __call__(self, x):
        x = (x - 1.0) / self.sigma
        # the same guarded formulation as NengoDL's SoftLIFRate builder, so that the
        # Keras model and its rate-family conversion agree to float precision
        valid = x > -20
        x_safe = tf.where(valid, x, tf.zeros_like(x))
        rho = tf.nn.softplus(x_safe) * self.sigma
        q = tf.where(valid, tf.math.log1p(tf.math.reciprocal(rho)), -x - tf.math.log(self.sigma))
        return self.amplitude / (self.tau_ref + self.tau_rc * q)

    def get_config(self):
        return dict(
            sigma=self.sigma, tau_rc=self.tau_rc, tau_ref=self.tau_ref, amplitude=self.amplitude
        )

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.get_config().items())
        return f"SoftLIF({args})"
