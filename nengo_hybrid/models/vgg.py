r"""VGG-5: the small VGG classifier of Rathi et al. (2020) that the second paper uses to
compare binary and ternary spiking networks on CIFAR-10.

For the defaults and a 32 x 32 RGB image:

==========================  ==========================  ===============
layer                       operation                   output
==========================  ==========================  ===============
conv1                       3x3 Conv2D                  32x32x64
pool1, drop1                2x2 average /2, dropout     16x16x64
conv2, conv3                3x3 Conv2D, 3x3 Conv2D      16x16x128
pool2, drop2                2x2 average /2, dropout     8x8x128
flatten                     (no neurons)                8192
dense1, drop3               Dense, dropout              1024
dense2, drop4               Dense, dropout              1024
logits                      Dense, linear               10
==========================  ==========================  ===============

The dense widths scale with the input: by default each hidden dense layer has
:math:`n_{flat} / 8` units (1,024 for the 8,192 of a 32 x 32 input), Rathi et al.'s
ratio on CIFAR-10.  As in the U-Net (`nengo_hybrid.models.unet`), nothing has a bias (a
bias is a constant current that makes a spiking neuron fire without input), pooling is
"valid" average pooling (the pooling NengoDL converts) and dropout acts only while the
ANN trains (`nengo_hybrid.converters.ConvertDropout`).  The output is the classes'
logits: the prediction is their argmax, read in a spiking network from the output
layer's potential averaged over the timesteps.
"""

import tensorflow as tf

POOL = 2


def build_vgg5(input_shape=(32, 32, 3), n_classes=10, activation="relu", filters=(64, 128, 128),
               dense=None, dropout=0.2, seed=0, name="vgg5"):
    """The VGG-5 Keras model; its output is the ``n_classes`` logits.

    Parameters
    ----------
    input_shape : tuple
        ``(height, width, channels)``; height and width divisible by 4 (two poolings).
    n_classes : int
        Output units.
    activation
        Hidden nonlinearity (a Keras activation), which the neuron families swap.
    filters : (int, int, int)
        Channels of the three 3x3 convolutions (the first before the first pooling,
        the other two before the second).
    dense : (int, int) or None
        Units of the two hidden dense layers; None: each ``n_flat // 8``, where
        ``n_flat`` is the number of values after the second pooling.
    dropout : float
        Rate after each pooling and each hidden dense layer (the ANN's training only).
    seed : int
        Seed of the initialisers and dropout masks.
    """
    if len(filters) != 3:
        raise ValueError(f"VGG-5 has three convolutions: filters {tuple(filters)}")
    if input_shape[0] % POOL ** 2 or input_shape[1] % POOL ** 2:
        raise ValueError(f"input shape {tuple(input_shape)}: height and width must be divisible "
                         f"by {POOL ** 2} (two poolings of {POOL})")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    n_flat = (input_shape[0] // POOL ** 2) * (input_shape[1] // POOL ** 2) * filters[2]
    dense = tuple(dense) if dense is not None else (max(n_flat // 8, n_classes),) * 2
    seeds = iter(range(seed, seed + 100))

    def init(act):
        # He initialisation for the ReLU layers, Glorot for the linear output
        return (tf.keras.initializers.HeUniform if act else tf.keras.initializers.GlorotUniform)(next(seeds))

    def drop(x, layer_name):
        if not dropout:
            return x
        return tf.keras.layers.Dropout(dropout, seed=next(seeds), name=layer_name)(x)

    def conv(x, n, layer_name):
        return tf.keras.layers.Conv2D(n, 3, padding="same", activation=activation, use_bias=False,
                                      kernel_initializer=init(activation), name=layer_name)(x)

    def pool(x, layer_name):
        return tf.keras.layers.AveragePooling2D(POOL, padding="valid", name=layer_name)(x)

    inputs = tf.keras.Input(input_shape, name="image")
    x = drop(pool(conv(inputs, filters[0], "conv1"), "pool1"), "drop1")
    x = conv(x, filters[1], "conv2")
    x = drop(pool(conv(x, filters[2], "conv3"), "pool2"), "drop2")
    x = tf.keras.layers.Flatten(name="flatten")(x)
    for k, units in enumerate(dense):
        x = tf.keras.layers.Dense(units, activation=activation, use_bias=False,
                                  kernel_initializer=init(activation), name=f"dense{k + 1}")(x)
        x = drop(x, f"drop{k + 3}")
    outputs = tf.keras.layers.Dense(n_classes, use_bias=False, kernel_initializer=init(None),
                                    name="logits")(x)
    return tf.keras.Model(inputs, outputs, name=name)
