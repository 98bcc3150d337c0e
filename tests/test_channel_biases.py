"""Convolutions' channel biases in the converted network (`add_channel_biases`): one
trainable value per channel, the value and the gradient of Keras's bias."""

import zipfile

import numpy as np
import pytest
import tensorflow as tf

import nengo_hybrid as nh
from nengo_hybrid.runtime import load_params, save_params

LAYERS = {
    "Conv2D": lambda: tf.keras.layers.Conv2D(2, 3, strides=2, padding="same", activation="relu"),
    "Conv2DTranspose": lambda: tf.keras.layers.Conv2DTranspose(
        2, 3, strides=2, padding="same", activation="relu"),
}


def one_layer(kind, shape=(6, 5, 3)):
    inp = tf.keras.Input(shape)
    model = tf.keras.Model(inp, LAYERS[kind]()(inp))
    layer = model.layers[-1]
    # biases big enough to matter, different per channel
    layer.bias.assign([0.3, -0.2])
    return model, layer


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_one_sgd_step_in_nengo_dl_is_one_sgd_step_in_keras(kind):
    model, layer = one_layer(kind)
    rng = np.random.RandomState(0)
    x = rng.randn(4, *model.input_shape[1:]).astype(np.float32)
    y = rng.rand(4, *model.output_shape[1:]).astype(np.float32)
    kernel_shape = (3, 3, 3, 2)  # Nengo's (kh, kw, in, out) for both layers
    converted = nh.convert(model, "rate")
    with converted.simulator(minibatch_size=4, n_steps=1) as sim:
        trainable = {tuple(w.shape): w for w in sim.keras_model.trainable_weights}
        # the kernel and one bias per channel, nothing per position
        assert sorted(trainable) == [(1, 1, 1, 2), kernel_shape]
        converted.compile(sim, tf.optimizers.SGD(0.5), tf.losses.mse)
        sim.fit(converted.inputs(x), converted.targets(y), epochs=1, verbose=0)
        nengo_bias = trainable[(1, 1, 1, 2)].numpy().ravel()
        nengo_kernel = trainable[kernel_shape].numpy()
    bias_before = layer.bias.numpy().copy()
    model.compile(tf.optimizers.SGD(0.5), tf.losses.mse)
    model.train_on_batch(x, y)
    assert not np.allclose(layer.bias.numpy(), bias_before, atol=1e-3)  # the step moved it
    np.testing.assert_allclose(nengo_bias, layer.bias.numpy(), rtol=1e-5, atol=1e-6)
    kernel = layer.kernel.numpy()
    if kind == "Conv2DTranspose":  # Keras (kh, kw, out, in) -> Nengo (kh, kw, in, out)
        kernel = np.swapaxes(kernel, -1, -2)
    np.testing.assert_allclose(nengo_kernel, kernel, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:TensorFlow does not support convolution with channels_last")
def test_channels_first_conv2d_biases_go_to_their_channels():
    """Keras runs channels-first convolutions only on a GPU: the reference is the same
    layer channels-last, on the transposed input."""
    model, layer = one_layer("Conv2D")
    inp = tf.keras.Input((3, 6, 5))
    first = tf.keras.layers.Conv2D(2, 3, strides=2, padding="same", activation="relu",
                                   data_format="channels_first")
    first_model = tf.keras.Model(inp, first(inp))
    first.set_weights(layer.get_weights())
    x = np.random.RandomState(1).randn(2, 6, 5, 3).astype(np.float32)
    expected = np.transpose(model.predict(x, verbose=0), (0, 3, 1, 2))
    converted = nh.convert(first_model, "rate")
    with converted.simulator(minibatch_size=2, n_steps=1) as sim:
        out = nh.simulation.predict(sim, converted.inputs(np.transpose(x, (0, 3, 1, 2))),
                                    converted.output)
    np.testing.assert_allclose(out.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)


def test_parameters_saved_with_per_channel_column_biases_are_refused_naming_the_file(tmp_path):
    """Files saved before the 1x1-kernel biases hold each as a (C, 1) array."""
    model, _ = one_layer("Conv2D")
    converted = nh.convert(model, "rate")
    with converted.simulator(minibatch_size=1, n_steps=1) as sim:
        shapes = [tuple(w.shape) for w in sim.keras_model.weights]
        old = [np.zeros((2, 1) if s == (1, 1, 1, 2) else s, np.float32) for s in shapes]
        np.savez(tmp_path / "old.npz", *old)
        with pytest.raises(ValueError, match=r"old\.npz: .* is \(2, 1\) where this network has \(1, 1, 1, 2\)"):
            load_params(sim, tmp_path / "old")
        with pytest.raises(FileNotFoundError, match="missing.npz"):
            load_params(sim, tmp_path / "missing")
        sim.save_params(tmp_path / "own")
        before = [w.numpy() for w in sim.keras_model.weights]
        for w in sim.keras_model.trainable_weights:
            w.assign(tf.zeros_like(w))
        load_params(sim, tmp_path / "own")
        for a, b in zip(before, sim.keras_model.weights):
            np.testing.assert_array_equal(a, b.numpy())


def test_saved_parameters_are_nengo_dls_file_uncompressed_and_load_back_exactly(tmp_path):
    """`save_params` writes the arrays NengoDL's ``save_params`` writes (its own
    ``load_params`` reads them), uncompressed, and nothing beside the file."""
    model, _ = one_layer("Conv2D")
    converted = nh.convert(model, "rate")
    with converted.simulator(minibatch_size=1, n_steps=1) as sim:
        for w in sim.keras_model.trainable_weights:  # values no initialiser gives
            w.assign(tf.random.stateless_normal(w.shape, seed=(1, 2)))
        before = [w.numpy() for w in sim.keras_model.weights]
        save_params(sim, tmp_path / "ours")
        sim.save_params(tmp_path / "nengo_dl")
        with np.load(tmp_path / "ours.npz") as ours, np.load(tmp_path / "nengo_dl.npz") as theirs:
            assert ours.files == theirs.files
            for name in ours.files:
                np.testing.assert_array_equal(ours[name], theirs[name])
        with zipfile.ZipFile(tmp_path / "ours.npz") as archive:
            assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}
        assert sorted(p.name for p in tmp_path.iterdir()) == ["nengo_dl.npz", "ours.npz"]
        for w in sim.keras_model.trainable_weights:
            w.assign(tf.zeros_like(w))
        sim.load_params(tmp_path / "ours")  # NengoDL's own reader
        for a, b in zip(before, sim.keras_model.weights):
            np.testing.assert_array_equal(a, b.numpy())
