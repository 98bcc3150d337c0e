"""The CAE and its conversion into every neuron family (Conv2DTranspose included)."""

import nengo
import nengo_dl
import numpy as np
import pytest
import tensorflow as tf

import nengo_hybrid as nh
from nengo_hybrid.models.cae import build_cae, mask_probabilities

SLICE = (56, 40, 1)
FAMILY_RELU = {
    "rate": nengo.RectifiedLinear,
    "spiking": nengo.SpikingRectifiedLinear,
    "hybrid": nh.HybridSpikingRectifiedLinear,
}
CONV_TYPES = (tf.keras.layers.Conv2D, tf.keras.layers.Conv2DTranspose)


def test_cae_is_ten_convolutions_in_a_chain_ending_in_logits():
    model = build_cae(SLICE)
    convs = [layer for layer in model.layers if isinstance(layer, CONV_TYPES)]
    assert len(convs) == 10
    assert sum(type(c) is tf.keras.layers.Conv2D for c in convs) == 5
    assert sum(isinstance(layer, tf.keras.layers.AveragePooling2D) for layer in model.layers) == 3
    # no skip connections: every layer reads exactly the layer before it
    for before, layer in zip(model.layers, model.layers[1:]):
        assert [n.inbound_layers for n in layer.inbound_nodes] == [before]
    assert model.output_shape == (None,) + SLICE
    assert convs[-1].activation is tf.keras.activations.linear
    assert all(c.activation is tf.keras.activations.relu for c in convs[:-1])


def test_cae_filters_and_shapes_are_configurable():
    assert build_cae((24, 56, 1)).output_shape == (None, 24, 56, 1)  # the paper's crop
    model = build_cae((32, 48, 2), filters=(4, 8, 12, 16, 20))  # 4 poolings, 12 convs
    assert model.output_shape == (None, 32, 48, 1)
    assert [layer.filters for layer in model.layers if isinstance(layer, CONV_TYPES)] == [
        4, 8, 12, 16, 20, 20, 16, 12, 8, 4, 4, 1
    ]
    with pytest.raises(ValueError, match="divisible by 8"):
        build_cae((60, 40, 1))


@pytest.mark.parametrize("family", ["rate", "spiking", "hybrid"])
def test_cae_converts_into_every_family(family):
    model = build_cae(SLICE, filters=(4, 8, 8, 16))
    converted = nh.convert(model, family, scale_firing_rates=1000, synapse=0.005)
    # every hidden convolution became the family's neurons...
    hidden = [layer.name for layer in model.layers if isinstance(layer, CONV_TYPES)][:-1]
    types = converted.neuron_types()
    assert sorted(types) == sorted(hidden)
    assert all(type(t) is FAMILY_RELU[family] for t in types.values()), types
    # ...and nothing else anywhere in the network: no other neurons, no TensorNode
    assert {type(e.neuron_type) for e in converted.net.all_ensembles} == {FAMILY_RELU[family]}
    assert not [n for n in converted.net.all_nodes if isinstance(n, nengo_dl.TensorNode)]
    # the logits and the average pooling are linear: plain nodes, not neurons
    assert type(converted.output.target) is nengo.Node
    pool = converted.converter.layers[model.get_layer("pool1")]
    assert type(pool) is nengo.Node
    ups = [c.transform for c in converted.net.all_connections
           if isinstance(c.transform, nengo.transforms.ConvolutionTranspose)]
    assert len(ups) == 5


def test_rate_cae_computes_the_keras_function():
    tf.keras.utils.set_random_seed(0)
    model = build_cae(SLICE, filters=(4, 8, 8, 16), seed=3)
    # nonzero biases, so that the per-channel bias broadcast is checked too
    for layer in model.layers:
        if isinstance(layer, CONV_TYPES):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, np.random.RandomState(1).uniform(-0.1, 0.1, bias.shape)])
    rng = np.random.RandomState(2)
    # structure on the scale of the bottleneck (iid pixels would average out in pooling)
    coarse = rng.uniform(0, 3, size=(4, 7, 5, 1))
    images = (np.kron(coarse, np.ones((1, 8, 8, 1))) + rng.uniform(0, 1, (4,) + SLICE))
    images = images.astype(np.float32)
    expected = model.predict(images, verbose=0).reshape(4, -1)
    # the inputs reach the output: a network that outputs its biases would pass too
    assert np.ptp(expected, axis=0).mean() > 0.05

    converted = nh.convert(model, "rate")
    with converted.simulator(minibatch_size=4, n_steps=1) as sim:
        logits = nh.simulation.predict(sim, converted.inputs(images), converted.output)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        mask_probabilities(logits), tf.sigmoid(expected).numpy(), rtol=1e-4, atol=1e-6
    )


def single_layer_model(input_shape=(5, 4, 3), **layer_kwargs):
    inp = tf.keras.Input(input_shape)
    layer = tf.keras.layers.Conv2DTranspose(
        2, bias_initializer=tf.keras.initializers.RandomUniform(-1, 1, seed=1), **layer_kwargs
    )
    return tf.keras.Model(inp, layer(inp))


def rate_output(model, x):
    converted = nh.convert(model, "rate")
    with converted.simulator(minibatch_size=len(x), n_steps=1) as sim:
        return nh.simulation.predict(sim, converted.inputs(x), converted.output)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3, strides=1, padding="same"),
        dict(kernel_size=3, strides=1, padding="valid"),
        dict(kernel_size=3, strides=2, padding="same"),
        dict(kernel_size=3, strides=2, padding="valid"),
        dict(kernel_size=(2, 3), strides=(2, 1), padding="valid", activation="relu"),
        dict(kernel_size=3, strides=2, padding="valid", output_padding=1),
        dict(kernel_size=4, strides=3, padding="same", use_bias=False),
    ],
)
def test_a_conv2d_transpose_layer_matches_keras(kwargs):
    model = single_layer_model(**kwargs)
    x = np.random.RandomState(0).randn(3, 5, 4, 3).astype(np.float32)
    expected = model.predict(x, verbose=0)
    assert expected.shape[1:] == model.output_shape[1:]
    np.testing.assert_allclose(
        rate_output(model, x), expected.reshape(3, -1), rtol=1e-5, atol=1e-5
    )


@pytest.mark.filterwarnings("ignore:TensorFlow does not support convolution with channels_last")
def test_a_channels_first_conv2d_transpose_matches_keras():
    model = single_layer_model((3, 5, 4), kernel_size=3, strides=2, padding="same",
                               data_format="channels_first")
    x = np.random.RandomState(0).randn(2, 3, 5, 4).astype(np.float32)
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(rate_output(model, x), expected.reshape(2, -1), rtol=1e-5, atol=1e-5)


def test_conv2d_transpose_weights_train_in_nengo_dl():
    model = single_layer_model(kernel_size=3, strides=2, padding="same")
    x = np.random.RandomState(0).randn(4, 5, 4, 3).astype(np.float32)
    converted = nh.convert(model, "rate")
    with converted.simulator(minibatch_size=4, n_steps=1) as sim:
        trainable = sim.keras_model.trainable_weights
        # the kernel and the per-channel bias (`add_channel_biases`) are trainable
        assert sorted(tuple(w.shape) for w in trainable) == [(1, 1, 1, 2), (3, 3, 3, 2)]
        before = [w.numpy() for w in trainable]
        converted.compile(sim, tf.optimizers.SGD(0.1), tf.losses.mse)
        sim.fit(converted.inputs(x), converted.targets(np.ones((4, 10, 8, 2))), epochs=1,
                verbose=0)
        after = [w.numpy() for w in trainable]
    assert all(not np.allclose(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kernel_size=3, dilation_rate=2), "dilation_rate"),
        # Keras builds this layer, but no forward convolution maps its output back
        (dict(kernel_size=2, strides=2, padding="same", output_padding=0), "ConvolutionTranspose"),
        (dict(kernel_size=3, kernel_regularizer="l2"), "kernel_regularizer"),
    ],
)
def test_an_unsupported_conv2d_transpose_fails_loudly(kwargs, message):
    with pytest.raises(TypeError, match=message):
        nh.convert(single_layer_model(**kwargs), "spiking")


def test_average_pooling_converts_only_unpadded():
    """Why the CAE pools with padding "valid" (and needs divisible input sizes)."""
    inp = tf.keras.Input((6, 4, 2))
    x = tf.keras.layers.Conv2D(2, 3, padding="same", activation="relu")(inp)
    same = tf.keras.layers.AveragePooling2D(2, padding="same")(x)
    with pytest.raises(TypeError, match="padding"):
        nh.convert(tf.keras.Model(inp, same), "spiking")
