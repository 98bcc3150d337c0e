"""LocNet's Keras model: its shape, and dropout that changes training only."""

import numpy as np
import tensorflow as tf

from nengo_hybrid.models.locnet import build_locnet

SMALL = dict(input_shape=(12, 16, 3), filters=(2, 3, 4), dense_units=(8, 6, 5), hidden_bias=0.1, init_scale=2.0)


def test_locnet_has_three_conv_pool_pairs_and_four_dense_layers():
    model = build_locnet(**SMALL)
    kinds = [(type(layer).__name__, getattr(layer, "strides", None)) for layer in model.layers[1:]]
    assert kinds == [("Conv2D", (1, 1)), ("Conv2D", (2, 2))] * 3 + [("Flatten", None)] + [("Dense", None)] * 4
    assert model.output_shape == (None, 4)


def test_dropout_leaves_the_weights_and_the_inference_output_alone_and_drops_in_training():
    x = np.random.RandomState(0).uniform(-0.5, 0.5, size=(5, 12, 16, 3)).astype(np.float32)
    plain = build_locnet(**SMALL, seed=3)
    dropped = build_locnet(**SMALL, seed=3, dropout=0.5)
    # the Dropout layers draw no weights: the same seed gives the same initial network
    for a, b in zip(plain.get_weights(), dropped.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert [layer.name for layer in dropped.layers if isinstance(layer, tf.keras.layers.Dropout)] == [
        "dropout1", "dropout2", "dropout3"]
    np.testing.assert_array_equal(plain(x, training=False).numpy(), dropped(x, training=False).numpy())
    assert not np.allclose(plain(x, training=True).numpy(), dropped(x, training=True).numpy())
