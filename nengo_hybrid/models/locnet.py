"""LocNet: bounding-box regression by convolution and strided-convolution pooling.

Three pairs of (3x3 convolution, 3x3 convolution with stride 2 as the pooling — max
pooling has no spiking equivalent), then four dense layers, the last giving the four box
coordinates.  Plain ``tf.keras`` layers; the hidden nonlinearity is any Keras activation
(`nengo_hybrid.SoftLIF` for the paper's model), which the neuron families then swap.
"""

import tensorflow as tf


def build_locnet(input_shape=(96, 144, 3), activation="relu", filters=(8, 16, 32),
                 dense_units=(256, 64, 32), hidden_bias=0.0, seed=0, name="locnet"):
    """The LocNet Keras model.

    Parameters
    ----------
    input_shape : tuple
        ``(height, width, channels)`` of the images.
    activation
        Hidden nonlinearity (a Keras activation: ``"relu"``, `nengo_hybrid.SoftLIF`...).
    filters : tuple of 3 ints
        Channels of each (convolution, pooling convolution) pair.
    dense_units : tuple of 3 ints
        Units of the three hidden dense layers; the fourth dense layer has 4 (linear).
    hidden_bias : float
        Initial bias of every hidden unit.  LIF-type units only fire once their input
        current passes 1, so starting them at 1 keeps a freshly initialised network
        from being silent (and its SoftLIF gradients from vanishing).
    seed : int
        Seed of the weight initialisers.
    """
    init = tf.keras.initializers.GlorotUniform
    bias = tf.keras.initializers.Constant(hidden_bias)
    inputs = tf.keras.Input(input_shape, name="image")
    x = inputs
    k = 0
    for i, n in enumerate(filters):
        for stride, label in ((1, "conv"), (2, "pool")):
            x = tf.keras.layers.Conv2D(
                n, 3, strides=stride, padding="same", activation=activation,
                kernel_initializer=init(seed + k), bias_initializer=bias, name=f"{label}{i + 1}",
            )(x)
            k += 1
    x = tf.keras.layers.Flatten(name="flatten")(x)
    for i, n in enumerate(dense_units):
        x = tf.keras.layers.Dense(
            n, activation=activation, kernel_initializer=init(seed + k), bias_initializer=bias,
            name=f"dense{i + 1}",
        )(x)
        k += 1
    box = tf.keras.layers.Dense(4, kernel_initializer=init(seed + k), name="box")(x)
    return tf.keras.Model(inputs, box, name=name)
