r"""CAE: a convolutional autoencoder that segments 2D slices.

A U-Net reduced as in the paper: ten convolutional layers, average pooling instead of
max pooling (which has no spiking equivalent), and no skip connections (a spiking
decoder would have to keep the encoder's spike trains in step with its own).

========================  ===========================  ====================
layer                     operation                    output (56x40 input)
========================  ===========================  ====================
conv1, pool1              3x3 Conv2D, 2x2 average /2   28x20x16
conv2, pool2              3x3 Conv2D, 2x2 average /2   14x10x32
conv3, pool3              3x3 Conv2D, 2x2 average /2   7x5x64
conv4, conv5              3x3 Conv2D (bottleneck)      7x5x128
up3, up2, up1             3x3 Conv2DTranspose, x2      14x10x64 ... 56x40x16
refine                    3x3 Conv2DTranspose          56x40x16
mask                      3x3 Conv2DTranspose, linear  56x40x1 (logits)
========================  ===========================  ====================

(the filter counts are ``filters=(16, 32, 64, 128)``).  Every hidden layer has the
``activation`` (ReLU in the paper), which the neuron families swap.

The output is the mask's **logits** :math:`z`; the probability of the structure at a
pixel is :math:`\sigma(z) = 1 / (1 + e^{-z})` (`mask_probabilities`).  The sigmoid is
not a layer because the network is converted into neurons: NengoDL would make a
sigmoid activation into ``nengo.Sigmoid`` neurons, which belong to no neuron family
(and do not spike), so `nengo_hybrid.convert` would refuse the model.  A linear output
converts into a plain ``nengo.Node`` in every family, the losses
(`nengo_hybrid.losses`, ``from_logits=True``) apply the sigmoid inside, and so does
prediction (for a spiking network: of the logits averaged over the final timesteps,
as `nengo_hybrid.simulation.predict` returns them).  Thresholding probabilities at 0.5
is thresholding logits at 0.
"""

import numpy as np
import tensorflow as tf
from scipy.special import expit

POOL = 2


def build_cae(input_shape=(56, 40, 1), activation="relu", filters=(16, 32, 64, 128),
              kernel_size=3, seed=0, name="cae"):
    """The CAE Keras model; its output is the mask's logits, shape ``(H, W, 1)``.

    Parameters
    ----------
    input_shape : tuple
        ``(height, width, channels)`` of the slices; height and width must be
        divisible by ``2 ** (len(filters) - 1)`` (8 for the default filters).
    activation
        Hidden nonlinearity (a Keras activation; ``"relu"`` in the paper).
    filters : tuple of ints
        Channels of each encoder level (convolution then 2x2 average pooling), the
        last entry being the bottleneck's two convolutions; the decoder mirrors the
        levels with stride-2 transposed convolutions.  ``2 * len(filters) + 2``
        convolutional layers in all: the paper's 10 for 4 entries.
    kernel_size : int
        Size of every kernel.
    seed : int
        Seed of the weight initialisers.
    """
    *levels, bottleneck = filters
    scale = POOL ** len(levels)
    if input_shape[0] % scale or input_shape[1] % scale:
        raise ValueError(
            f"input height and width {tuple(input_shape[:2])} must be divisible by "
            f"{scale} ({len(levels)} poolings of {POOL})"
        )
    k = 0

    def conv(layer, n, strides=1, act=activation, layer_name=None):
        nonlocal k
        k += 1
        # He initialisation keeps the ReLU layers' activity from shrinking layer by
        # layer (with Glorot's, the logits of ten layers barely depend on the image)
        init = tf.keras.initializers.HeUniform if act else tf.keras.initializers.GlorotUniform
        return layer(
            n, kernel_size, strides=strides, padding="same", activation=act,
            kernel_initializer=init(seed + k - 1), name=layer_name,
        )

    inputs = tf.keras.Input(input_shape, name="image")
    x = inputs
    for i, n in enumerate(levels):
        x = conv(tf.keras.layers.Conv2D, n, layer_name=f"conv{i + 1}")(x)
        # "valid": NengoDL converts only unpadded average pooling (a fixed
        # averaging convolution); divisible sizes make it lose nothing
        x = tf.keras.layers.AveragePooling2D(POOL, name=f"pool{i + 1}")(x)
    for j in (1, 2):
        x = conv(tf.keras.layers.Conv2D, bottleneck, layer_name=f"conv{len(levels) + j}")(x)
    for i in reversed(range(len(levels))):
        x = conv(tf.keras.layers.Conv2DTranspose, levels[i], strides=POOL,
                 layer_name=f"up{i + 1}")(x)
    x = conv(tf.keras.layers.Conv2DTranspose, levels[0], layer_name="refine")(x)
    logits = conv(tf.keras.layers.Conv2DTranspose, 1, act=None, layer_name="mask")(x)
    return tf.keras.Model(inputs, logits, name=name)


def mask_probabilities(logits):
    r"""The probability masks :math:`\sigma(z)` of the CAE's logits :math:`z` (numpy,
    any shape), without overflow for logits of either sign."""
    return expit(np.asarray(logits, dtype=np.float64))
