"""Metrics: IoU, synaptic operations."""

import numpy as np
import tensorflow as tf

from nengo_hybrid.metrics import box_iou, synaptic_operations


def test_iou_of_known_boxes():
    target = np.array([[0.0, 0.0, 0.5, 0.5]] * 4)
    predicted = np.array([
        [0.0, 0.0, 0.5, 0.5],  # identical
        [0.25, 0.0, 0.75, 0.5],  # half overlaps: 1/8 / (3/8)
        [0.6, 0.6, 0.9, 0.9],  # disjoint
        [0.3, 0.3, 0.2, 0.2],  # inverted: no area
    ])
    np.testing.assert_allclose(box_iou(predicted, target), [1.0, 1 / 3, 0.0, 0.0])


def test_synaptic_operations_count_spikes_times_fan_out():
    inp = tf.keras.Input((4,))
    hidden = tf.keras.layers.Dense(3, activation="relu", name="hidden")(inp)
    out = tf.keras.layers.Dense(2, name="out")(hidden)
    model = tf.keras.Model(inp, out)
    ops = synaptic_operations(model, {"hidden": 100.0}, n_steps=10, dt=0.001, input_rate_hz=1000.0)
    # into hidden: 4*3 synapses, driven every step; into out: 3*2 synapses at 100 Hz
    assert ops["ann_macs"] == 12 + 6
    np.testing.assert_allclose(ops["layers"]["hidden"], 12 * 1000 * 0.001 * 10)
    np.testing.assert_allclose(ops["layers"]["out"], 6 * 100 * 0.001 * 10)
    np.testing.assert_allclose(ops["synaptic_ops"], 120 + 6)


def test_last_timesteps_loss_ignores_the_transient():
    from nengo_hybrid.losses import LastTimesteps

    y_true = np.ones((2, 5, 3), dtype=np.float32)
    y_pred = np.ones((2, 5, 3), dtype=np.float32)
    y_pred[:, :3] = 10.0  # a transient the loss must not see
    assert float(LastTimesteps("mse", 2)(y_true, y_pred)) == 0.0
    y_pred[:, -2:] = [[0.0], [2.0]]  # spike noise about the right mean costs nothing
    assert float(LastTimesteps("mse", 2)(y_true, y_pred)) == 0.0
    y_pred[:, -1] = 4.0  # window mean 2: squared error 1
    np.testing.assert_allclose(float(LastTimesteps("mse", 2)(y_true, y_pred)), 1.0)


def test_transposed_convolutions_count_each_input_times_its_fan_out():
    # keras-spiking 0.3 reads a Conv2DTranspose kernel as a Conv2D's and would count
    # output size x kh x kw x C_out = 8*8*3 * 3*3*3 here
    inp = tf.keras.Input((4, 4, 2))
    up = tf.keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", activation="relu", name="up")(inp)
    out = tf.keras.layers.Conv2DTranspose(1, 3, padding="same", name="out")(up)
    model = tf.keras.Model(inp, out)
    ops = synaptic_operations(model, {"up": 10.0}, n_steps=1, dt=0.001, input_rate_hz=1000.0)
    # every input element reaches kh * kw * C_out outputs
    assert ops["ann_macs"] == 4 * 4 * 2 * 3 * 3 * 3 + 8 * 8 * 3 * 3 * 3 * 1
    np.testing.assert_allclose(ops["layers"]["out"], 8 * 8 * 3 * 9 * 10.0 * 0.001)
