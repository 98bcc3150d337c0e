r"""U-Net: the paper's modified U-Net that segments 2D slices.

A U-Net (encoder, bottleneck, decoder with skip connections) modified so that every
layer converts into neurons of any family (`nengo_hybrid.convert`): average pooling
instead of max pooling (which has no spiking equivalent), no biases (a bias is a
constant current that makes a spiking neuron fire without input), no batch
normalisation (its statistics would have to be folded into weights and biases), and
dropout that regularises only the ANN's training (`nengo_hybrid.converters.ConvertDropout`:
the identity in every spiking family).

For ``filters=(16, 32, 64)`` (the default) and a 56x40 sagittal slice:

======================================  ============================  ==================
layer                                   operation                     output
======================================  ============================  ==================
enc1_conv1, enc1_conv2                  3x3 Conv2D, 3x3 Conv2D        56x40x16
pool1, drop1                            2x2 average /2, dropout       28x20x16
enc2_conv1, enc2_conv2                  3x3 Conv2D, 3x3 Conv2D        28x20x32
pool2, drop2                            2x2 average /2, dropout       14x10x32
bottleneck_conv1, bottleneck_conv2      3x3 Conv2D, 3x3 Conv2D        14x10x64
bottleneck_drop                         dropout                       14x10x64
up2                                     2x2 Conv2DTranspose, x2       28x20x32
skip2                                   Concatenate(up2, enc2_conv2)  28x20x64
dec2_conv1, dec2_conv2                  3x3 Conv2D, 3x3 Conv2D        28x20x32
up1                                     2x2 Conv2DTranspose, x2       56x40x16
skip1                                   Concatenate(up1, enc1_conv2)  56x40x32
dec1_conv1, dec1_conv2                  3x3 Conv2D, 3x3 Conv2D        56x40x16
mask                                    1x1 Conv2D, linear            56x40x1 (logits)
======================================  ============================  ==================

Every convolution (transposed ones included) has ``use_bias=False``; every hidden one
has the ``activation`` (ReLU in the paper), which the neuron families swap.  The
dropout layers are left out when ``dropout=0``.

Depth and widths for 56 x 40 slices: ``filters=(16, 32, 64)``, i.e. 56x40x16 ->
28x20x32 -> a 14x10x64 bottleneck.  Two poolings keep the "valid" average pooling
(the only average pooling NengoDL converts) exact on 56x40: both sizes stay divisible
by 2 at every level.  40 / 8 = 5 would allow a third pooling, but the planning
measurements of a three-level 16/32/64 net were already ~26-35 ms per timestep
(forward, batch 26, 2 CPU cores), and the spiking networks run tens of timesteps per
image; doubling the widths to 32/64/128 costs ~3x that.

The output is the mask's **logits** :math:`z`, as for the CAE
(`nengo_hybrid.models.cae`): the probability of the structure at a pixel is
:math:`p = \sigma(z) = 1 / (1 + e^{-z})` (`mask_probabilities`), applied by the
losses (``from_logits=True``) and at prediction, not by a layer (a sigmoid layer would
become ``nengo.Sigmoid`` neurons, which belong to no family).  Since :math:`\sigma` is
increasing and :math:`\sigma(0) = 0.5`, thresholding probabilities at 0.5 is
thresholding logits at 0.
"""

import tensorflow as tf

from nengo_hybrid.models.cae import POOL, mask_probabilities  # noqa: F401 (re-exported)

UP_KERNEL = 2  # a stride-2 transposed convolution whose taps do not overlap


def build_unet(input_shape=(56, 40, 1), activation="relu", filters=(16, 32, 64),
               kernel_size=3, dropout=0.2, seed=0, name="unet"):
    """The U-Net Keras model; its output is the mask's logits, shape ``(H, W, 1)``.

    Parameters
    ----------
    input_shape : tuple
        ``(height, width, channels)`` of the slices; height and width must be
        divisible by ``2 ** (len(filters) - 1)`` (4 for the default filters).
    activation
        Hidden nonlinearity (a Keras activation; ``"relu"`` in the paper).
    filters : tuple of ints
        Channels of each encoder level (two convolutions then 2x2 average pooling),
        the last entry being the bottleneck's two convolutions; the decoder mirrors
        the levels (a stride-2 transposed convolution, the skip connection from the
        level's second encoder convolution, two convolutions).
    kernel_size : int
        Size of the encoder, bottleneck and decoder kernels (the upsampling kernels
        are 2x2 and the output's 1x1).
    dropout : float
        Dropout rate after each pooling and after the bottleneck; 0 leaves the
        dropout layers out.  Active only while the ANN (the ``"rate"`` family)
        trains: the identity at inference and in every spiking family.
    seed : int
        Seed of the weight initialisers and of the dropout masks.
    """
    *levels, bottleneck = filters
    if not levels:
        raise ValueError(f"filters {tuple(filters)} need at least one level and a bottleneck")
    scale = POOL ** len(levels)
    if input_shape[0] % scale or input_shape[1] % scale:
        raise ValueError(
            f"input shape {tuple(input_shape)}: height and width {tuple(input_shape[:2])} "
            f"must be divisible by {scale} ({len(levels)} poolings of {POOL})"
        )
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    k = 0

    def conv(layer, n, layer_name, size=kernel_size, strides=1, act=activation):
        nonlocal k
        k += 1
        # He initialisation keeps the ReLU layers' activity from shrinking layer by
        # layer; each layer has its own seed
        init = tf.keras.initializers.HeUniform if act else tf.keras.initializers.GlorotUniform
        return layer(
            n, size, strides=strides, padding="same", activation=act, use_bias=False,
            kernel_initializer=init(seed + k - 1), name=layer_name,
        )

    n_drops = 0

    def drop(x, layer_name):
        nonlocal n_drops
        if not dropout:
            return x
        n_drops += 1
        return tf.keras.layers.Dropout(dropout, seed=seed + n_drops - 1, name=layer_name)(x)

    inputs = tf.keras.Input(input_shape, name="image")
    x = inputs
    skips = []
    for i, n in enumerate(levels):
        x = conv(tf.keras.layers.Conv2D, n, f"enc{i + 1}_conv1")(x)
        x = conv(tf.keras.layers.Conv2D, n, f"enc{i + 1}_conv2")(x)
        skips.append(x)
        # "valid": NengoDL converts only unpadded average pooling (a fixed
        # averaging convolution); divisible sizes make it lose nothing
        x = tf.keras.layers.AveragePooling2D(POOL, padding="valid", name=f"pool{i + 1}")(x)
        x = drop(x, f"drop{i + 1}")
    x = conv(tf.keras.layers.Conv2D, bottleneck, "bottleneck_conv1")(x)
    x = conv(tf.keras.layers.Conv2D, bottleneck, "bottleneck_conv2")(x)
    x = drop(x, "bottleneck_drop")
    for i in reversed(range(len(levels))):
        x = conv(tf.keras.layers.Conv2DTranspose, levels[i], f"up{i + 1}", size=UP_KERNEL,
                 strides=POOL)(x)
        x = tf.keras.layers.Concatenate(name=f"skip{i + 1}")([x, skips[i]])
        x = conv(tf.keras.layers.Conv2D, levels[i], f"dec{i + 1}_conv1")(x)
        x = conv(tf.keras.layers.Conv2D, levels[i], f"dec{i + 1}_conv2")(x)
    logits = conv(tf.keras.layers.Conv2D, 1, "mask", size=1, act=None)(x)
    return tf.keras.Model(inputs, logits, name=name)
