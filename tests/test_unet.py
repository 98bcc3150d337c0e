"""The modified U-Net, its conversion into every neuron family, and dropout that acts
only while the ANN (the rate family) trains."""

import nengo
import nengo_dl
import numpy as np
import pytest
import tensorflow as tf

import nengo_hybrid as nh
from nengo_hybrid.converters import DropoutNode, HybridConverter
from nengo_hybrid.families import _check_family, _swap_map
from nengo_hybrid.models.cae import mask_probabilities
from nengo_hybrid.models.unet import build_unet, mask_probabilities as unet_probabilities

SLICE = (56, 40, 1)
SMALL = (4, 8, 8)  # the test networks' filters: the default structure, fewer channels
FAMILY_RELU = {
    "rate": nengo.RectifiedLinear,
    "spiking": nengo.SpikingRectifiedLinear,
    "hybrid": nh.HybridSpikingRectifiedLinear,
    "if": nh.IntegrateAndFire,
}
CONV_TYPES = (tf.keras.layers.Conv2D, tf.keras.layers.Conv2DTranspose)


def layers_of(model, kind):
    return [layer for layer in model.layers if isinstance(layer, kind)]


def images(n, seed=2):
    """Slices with structure on the bottleneck's scale (iid pixels average out)."""
    rng = np.random.RandomState(seed)
    coarse = rng.uniform(0, 3, size=(n, 14, 10, 1))
    fine = rng.uniform(0, 1, (n,) + SLICE)
    return (np.kron(coarse, np.ones((1, 4, 4, 1))) + fine).astype(np.float32)


def tensor_nodes(converted):
    return [n for n in converted.net.all_nodes if isinstance(n, nengo_dl.TensorNode)]


# ---------------------------------------------------------------- the Keras model


def test_unet_default_structure():
    model = build_unet()
    assert model.output_shape == (None,) + SLICE
    names = [layer.name for layer in model.layers]
    assert names == [
        "image",
        "enc1_conv1", "enc1_conv2", "pool1", "drop1",
        "enc2_conv1", "enc2_conv2", "pool2", "drop2",
        "bottleneck_conv1", "bottleneck_conv2", "bottleneck_drop",
        "up2", "skip2", "dec2_conv1", "dec2_conv2",
        "up1", "skip1", "dec1_conv1", "dec1_conv2",
        "mask",
    ]
    shape = {layer.name: layer.output_shape[1:] for layer in model.layers}
    assert shape["enc1_conv2"] == (56, 40, 16)
    assert shape["enc2_conv2"] == (28, 20, 32)
    assert shape["bottleneck_conv2"] == (14, 10, 64)
    assert shape["skip2"] == (28, 20, 64) and shape["skip1"] == (56, 40, 32)
    # the skip connections join each decoder level to its encoder level
    for level in (1, 2):
        inbound = model.get_layer(f"skip{level}").inbound_nodes[0].inbound_layers
        assert [layer.name for layer in inbound] == [f"up{level}", f"enc{level}_conv2"]
    drops = layers_of(model, tf.keras.layers.Dropout)
    assert [d.rate for d in drops] == [0.2] * 3
    assert [model.get_layer(d.name).inbound_nodes[0].inbound_layers.name for d in drops] == [
        "pool1", "pool2", "bottleneck_conv2"
    ]


@pytest.mark.parametrize("filters", [(16, 32, 64), SMALL, (4, 8, 12, 16)])
def test_unet_has_no_bias_no_batch_norm_no_max_pooling_and_linear_logits(filters):
    model = build_unet(SLICE if len(filters) < 4 else (32, 48, 1), filters=filters)
    convs = layers_of(model, CONV_TYPES)
    assert convs and all(not c.use_bias for c in convs)
    # kernels are the only parameters
    assert model.count_params() == sum(int(np.prod(c.kernel.shape)) for c in convs)
    assert all(len(c.weights) == 1 for c in convs)
    for kind in (tf.keras.layers.BatchNormalization, tf.keras.layers.MaxPooling2D,
                 tf.keras.layers.Dense):
        assert not layers_of(model, kind)
    pools = layers_of(model, tf.keras.layers.AveragePooling2D)
    assert len(pools) == len(filters) - 1 and all(p.padding == "valid" for p in pools)
    assert len(layers_of(model, tf.keras.layers.Concatenate)) == len(filters) - 1
    assert len(layers_of(model, tf.keras.layers.Conv2DTranspose)) == len(filters) - 1
    # 2 per level (encoder and decoder), 2 in the bottleneck, the transposed ones, mask
    assert len(convs) == 4 * (len(filters) - 1) + 2 + (len(filters) - 1) + 1
    mask = model.layers[-1]
    assert type(mask) is tf.keras.layers.Conv2D and mask.name == "mask"
    assert mask.filters == 1 and mask.kernel_size == (1, 1)
    assert mask.activation is tf.keras.activations.linear
    assert all(c.activation is tf.keras.activations.relu for c in convs[:-1])


def test_unet_without_dropout_has_no_dropout_layers_and_the_same_weights():
    with_drop = build_unet(filters=SMALL, dropout=0.3, seed=4)
    without = build_unet(filters=SMALL, dropout=0, seed=4)
    assert not layers_of(without, tf.keras.layers.Dropout)
    assert len(layers_of(with_drop, tf.keras.layers.Dropout)) == 3
    for a, b in zip(with_drop.get_weights(), without.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = images(2)
    np.testing.assert_allclose(with_drop.predict(x, verbose=0), without.predict(x, verbose=0))


def test_unet_seed_sets_every_layer_apart():
    kernels = build_unet(filters=SMALL, seed=0).get_weights()
    # the same seed gives the same weights, another seed others
    for k, k_again in zip(kernels, build_unet(filters=SMALL, seed=0).get_weights()):
        np.testing.assert_array_equal(k, k_again)
    for k, k_other in zip(kernels, build_unet(filters=SMALL, seed=1).get_weights()):
        assert not np.allclose(k, k_other)
    # each layer has a seed of its own (enc1_conv2 and dec1_conv2 are both 3x3x4x4)
    same_shape = [k for k in kernels if k.shape == (3, 3, 4, 4)]
    assert len(same_shape) == 2 and not np.allclose(same_shape[0], same_shape[1])


def test_unet_input_must_pool_exactly():
    with pytest.raises(ValueError, match=r"\(58, 40, 1\).*divisible by 4"):
        build_unet((58, 40, 1))
    with pytest.raises(ValueError, match="divisible by 8"):
        build_unet((56, 44, 1), filters=(4, 8, 12, 16))
    assert build_unet((24, 56, 1), filters=SMALL).output_shape == (None, 24, 56, 1)
    assert unet_probabilities is mask_probabilities  # reused, not copied


# ---------------------------------------------------------------- conversion


@pytest.mark.parametrize("family", ["rate", "spiking", "hybrid", "if"])
def test_unet_converts_into_every_family(family):
    model = build_unet(filters=SMALL, dropout=0.5)
    spiking = nh.get_family(family).spiking
    converted = nh.convert(model, family, synapse=0.005 if spiking else None,
                           scale_firing_rates=100 if family in ("spiking", "hybrid") else None)
    hidden = [c.name for c in layers_of(model, CONV_TYPES)][:-1]
    types = converted.neuron_types()
    assert sorted(types) == sorted(hidden)
    assert {type(e.neuron_type) for e in converted.net.all_ensembles} == {FAMILY_RELU[family]}
    assert type(converted.output.target) is nengo.Node  # the logits: linear
    # no bias anywhere: every ensemble's bias is 0 and no constant node feeds the net
    for ens in converted.net.all_ensembles:
        assert ens.bias.options.tolist() == [0]
    assert [n for n in converted.net.all_nodes if n.size_in == 0] == [converted.input]
    # dropout: units dropped only in the ANN (a DropoutNode per Dropout layer); in
    # every SNN the dropout layers are the identity, with no object of their own
    nodes = tensor_nodes(converted)
    if spiking:
        assert nodes == []
    else:
        assert [type(n) for n in nodes] == [DropoutNode] * 3
        assert sorted(n.label for n in nodes) == sorted(
            f"{name}.dropout" for name in ("drop1", "drop2", "bottleneck_drop"))


def test_dropout_is_the_identity_in_the_if_family():
    dropped = nh.convert(build_unet(filters=SMALL, dropout=0.5), "if")
    plain = nh.convert(build_unet(filters=SMALL, dropout=0), "if")
    assert tensor_nodes(dropped) == []
    assert len(dropped.net.all_connections) == len(plain.net.all_connections)
    assert len(dropped.net.all_nodes) == len(plain.net.all_nodes)
    assert len(dropped.net.all_ensembles) == len(plain.net.all_ensembles)
    # the next layer reads the layer before the dropout directly
    layer = dropped.converter.layers
    model = dropped.converter.model
    assert layer[model.get_layer("drop1")] is layer[model.get_layer("pool1")]
    assert layer[model.get_layer("bottleneck_drop")] is layer[model.get_layer("bottleneck_conv2")]
    # with dropout, the rate family has one node and one connection more per layer
    rate = nh.convert(build_unet(filters=SMALL, dropout=0.5), "rate")
    assert len(rate.net.all_connections) == len(plain.net.all_connections) + 3


def test_a_plain_nengo_dl_converter_gives_the_identity():
    model = build_unet(filters=SMALL, dropout=0.5)
    converter = nengo_dl.Converter(model, allow_fallback=False)
    assert not [n for n in converter.net.all_nodes if isinstance(n, nengo_dl.TensorNode)]
    assert HybridConverter(model, allow_fallback=False).dropout is False
    assert tensor_nodes(nh.convert(model, "rate")) != []


@pytest.mark.filterwarnings("ignore:Activation type .* falling back to a TensorNode")
def test_other_tensor_nodes_are_still_refused_next_to_dropout():
    inp = tf.keras.Input((6,))
    x = tf.keras.layers.Dense(6, activation="relu")(inp)
    x = tf.keras.layers.Dropout(0.5, name="drop")(x)
    x = tf.keras.layers.Activation("elu", name="elu_layer")(x)  # a TensorNode anywhere
    model = tf.keras.Model(inp, tf.keras.layers.Dense(2)(x))
    for family in ("rate", "spiking"):
        with pytest.raises(TypeError):
            nh.convert(model, family)
    # the family check itself refuses the fallback TensorNode and only it
    family = nh.get_family("rate")
    swaps = _swap_map(model, family)
    converter = HybridConverter(model, dropout=True, swap_activations=swaps,
                                allow_fallback=True)
    with pytest.raises(nh.ConversionError) as error:
        _check_family(converter, family, swaps, allow_tensor_nodes=False)
    assert "elu_layer" in str(error.value) and "drop." not in str(error.value)
    assert [type(n) for n in converter.net.all_nodes if isinstance(n, DropoutNode)] == [
        DropoutNode]
    # allowed on request, and then the dropout is still a DropoutNode (rate) or nothing
    rate = nh.convert(model, "rate", allow_tensor_nodes=True)
    assert sorted(type(n).__name__ for n in tensor_nodes(rate)) == ["DropoutNode", "TensorNode"]
    spiking = nh.convert(model, "spiking", allow_tensor_nodes=True)
    assert [type(n) for n in tensor_nodes(spiking)] == [nengo_dl.TensorNode]


def test_rate_unet_drops_units_only_while_training():
    tf.keras.utils.set_random_seed(0)
    model = build_unet(filters=SMALL, dropout=0.5, seed=3)
    x = images(2)
    expected = model.predict(x, verbose=0).reshape(2, 1, -1)
    # the inputs reach the output: a network that ignores them would pass too
    assert np.ptp(expected, axis=0).mean() > 0.01
    converted = nh.convert(model, "rate")
    with converted.simulator(minibatch_size=2, n_steps=1) as sim:
        # inference (predict): the identity, so exactly the Keras function
        logits = nh.simulation.predict(sim, converted.inputs(x), converted.output)
        np.testing.assert_allclose(logits.reshape(expected.shape), expected, rtol=1e-5,
                                   atol=1e-5)
        feed = [x.reshape(2, 1, -1), np.ones((2, 1), dtype=np.int32)]

        def run(training):
            out = sim.keras_model(feed, training=training)
            return (out[0] if isinstance(out, (list, tuple)) else out).numpy()

        inference = [run(False), run(False)]
        training = [run(True), run(True)]
        np.testing.assert_allclose(inference[0], expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(inference[0], inference[1])
        # training: units dropped, a new mask on every call
        for out in training:
            assert np.abs(out - expected).max() > 0.01
        assert np.abs(training[0] - training[1]).max() > 0.01

        # sim.fit trains through the dropout nodes
        before = [w.numpy() for w in sim.keras_model.trainable_weights]
        kernels = sum(int(np.prod(c.kernel.shape)) for c in layers_of(model, CONV_TYPES))
        assert sum(w.size for w in before) == kernels  # no bias parameters
        converted.compile(sim, tf.optimizers.SGD(0.01), tf.losses.mse)
        sim.fit(converted.inputs(x), converted.targets(np.ones((2,) + SLICE)), epochs=1,
                verbose=0)
        after = [w.numpy() for w in sim.keras_model.trainable_weights]
    assert all(not np.allclose(a, b) for a, b in zip(before, after))


def test_spiking_unet_has_no_dropout_even_while_training():
    model = build_unet(filters=SMALL, dropout=0.5, seed=3)
    x = images(2)
    converted = nh.convert(model, "hybrid", scale_firing_rates=100, synapse=0.005)
    with converted.simulator(minibatch_size=2, n_steps=3) as sim:
        feed = [np.tile(x.reshape(2, 1, -1), (1, 3, 1)), np.full((2, 1), 3, dtype=np.int32)]

        def run(training):
            out = sim.keras_model(feed, training=training)
            return (out[0] if isinstance(out, (list, tuple)) else out).numpy()

        # the hybrid neurons behave the same in both modes on the forward pass, and no
        # dropout draws a new mask: every call gives the same spikes
        first = run(True)
        np.testing.assert_array_equal(first, run(True))
