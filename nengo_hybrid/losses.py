"""Losses usable both by Keras and by ``nengo_dl.Simulator.compile``."""

import tensorflow as tf


class LastTimesteps(tf.keras.losses.Loss):
    """Apply ``loss`` to the last ``n_steps`` timesteps of a ``(batch, time, ...)`` output.

    A spiking network's output needs some timesteps to settle (every synapse low-pass
    filters its input); training it on the same final window its evaluation averages
    trains what is measured, not the transient.
    """

    def __init__(self, loss, n_steps, name=None):
        super().__init__(name=name or f"last_{n_steps}_steps")
        self.loss = tf.keras.losses.get(loss)
        self.n_steps = int(n_steps)

    def call(self, y_true, y_pred):
        return self.loss(y_true[:, -self.n_steps:], y_pred[:, -self.n_steps:])
