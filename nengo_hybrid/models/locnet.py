"""LocNet: bounding-box regression by convolution and strided-convolution pooling.

Three pairs of (3x3 convolution, 3x3 convolution with stride 2 as the pooling — max
pooling has no spiking equivalent), then four dense layers, the last giving the four box
coordinates.  Plain ``tf.keras`` layers; the hidden nonlinearity is any Keras activation
(`nengo_hybrid.SoftLIF` for the paper's model), which the neuron families then swap.
"""

import tensorflow as tf


def build_locnet(input_shape=(96, 144, 3), activation="relu", filters=(8, 16, 32),
                 dense_units=(256, 64, 32), hidden_bias=0.0, seed=0, zero_output=False, init_scale=None,
                 dropout=0.0, name="locnet"):
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
    init_scale : float, optional
        Draw every hidden kernel from a truncated normal of variance
        ``init_scale / fan_in`` (He et al.'s with 2) instead of Glorot's uniform.  A
        LIF-type unit passes on only part of its input's spread (its slope is below one
        and it is flat under threshold), so with Glorot's weights the differences
        between images fade layer by layer: in LocNet's last hidden layer the spread of
        a unit's rate over images was 6 % of its mean, and the network could only
        predict one box for all.
    zero_output : bool
        Start the output layer's weights and bias at zero, so that the untrained
        network predicts 0 for every image: with standardised targets
        (`nengo_hybrid.targets`) that is the training mean box, the floor, and
        training learns each image's deviation from it.
    dropout : float
        Drop this fraction of the inputs of every hidden dense layer while training
        (a ``Dropout`` layer before each; the SNNs convert it to the identity): the
        dense layers hold nearly all of LocNet's weights, and a few hundred training
        images let them memorise.
    """
    if init_scale is None:
        init = tf.keras.initializers.GlorotUniform
    else:
        def init(seed):
            return tf.keras.initializers.VarianceScaling(init_scale, "fan_in", "truncated_normal", seed=seed)
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
        if dropout:
            x = tf.keras.layers.Dropout(dropout, seed=seed + 100 + i, name=f"dropout{i + 1}")(x)
        x = tf.keras.layers.Dense(
            n, activation=activation, kernel_initializer=init(seed + k), bias_initializer=bias,
            name=f"dense{i + 1}",
        )(x)
        k += 1
    box = tf.keras.layers.Dense(4, kernel_initializer="zeros" if zero_output else init(seed + k),
                                name="box")(x)
    return tf.keras.Model(inputs, box, name=name)
