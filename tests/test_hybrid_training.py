"""Fine-tuning a converted network with hybrid neurons lowers its spiking loss."""

import numpy as np
import pytest
import tensorflow as tf

import nengo_hybrid as nh
from data_prep.caltech101 import image_ids, load_airplanes

N_STEPS = 10


def small_locnet(seed):
    tf.keras.utils.set_random_seed(seed)
    soft_lif = nh.SoftLIF(sigma=0.02, amplitude=0.01)
    inp = tf.keras.Input((16, 24, 1))
    x = tf.keras.layers.Conv2D(6, 3, strides=2, activation=soft_lif)(inp)
    x = tf.keras.layers.Flatten()(x)
    x = tf.keras.layers.Dense(32, activation=soft_lif)(x)
    return tf.keras.Model(inp, tf.keras.layers.Dense(4)(x))


def spiking_mse(model_or_sim, converted, x, y):
    """Box MSE of the spiking network: the last 5 of N_STEPS timesteps, averaged."""
    pred = nh.simulation.predict(model_or_sim, converted.inputs(x, N_STEPS), converted.output, last_steps=5)
    return float(np.mean((pred - y) ** 2))


def test_hybrid_fine_tuning_lowers_the_spiking_loss(data_root):
    root = data_root / "caltech101"
    x, y, _ = load_airplanes(root, size=(16, 24), ids=image_ids(root)[:96])
    model = small_locnet(seed=0)
    model.compile(tf.optimizers.Adam(0.01), "mse")
    model.fit(x, y, epochs=20, batch_size=16, verbose=0)

    options = dict(synapse=0.005, scale_firing_rates=1.0)
    spiking = nh.convert(model, "spiking", **options)
    hybrid = nh.convert(model, "hybrid", **options)
    with spiking.simulator(minibatch_size=16, n_steps=N_STEPS) as spiking_sim:
        before = spiking_mse(spiking_sim, spiking, x, y)

        with hybrid.simulator(minibatch_size=16, n_steps=N_STEPS) as hybrid_sim:
            hybrid.compile(hybrid_sim, tf.optimizers.Adam(0.002), tf.losses.mse)
            hybrid_sim.fit(hybrid.inputs(x, N_STEPS), hybrid.targets(y, n_steps=N_STEPS), epochs=8, verbose=0)
            nh.transfer_weights(hybrid_sim, spiking_sim)
        after = spiking_mse(spiking_sim, spiking, x, y)
    print(f"spiking MSE before {before:.4f}, after hybrid fine-tuning {after:.4f}")
    assert after < 0.8 * before


def hybrid_training_params(x, y, fuse_with_xla, folder):
    """Parameters after three minibatches of hybrid fine-tuning (rate-regularised, through
    `nengo_hybrid.stages.train` and its tf.data pipeline) from the same starting weights."""
    from nengo_hybrid.experiment import seed_everything
    from nengo_hybrid.stages import TrainSettings, train

    seed_everything(0)
    model = small_locnet(seed=3)
    converted = nh.convert(model, "hybrid", synapse=0.005, fuse_with_xla=fuse_with_xla)
    assert all(e.neuron_type.fuse_with_xla is fuse_with_xla for e in converted.net.all_ensembles)
    settings = TrainSettings(learning_rate=0.01, epochs=1, batch_size=8, n_steps=N_STEPS)
    regularization = nh.RateRegularization(250.0, 0.01, 1.0)
    with converted.simulator(8, n_steps=N_STEPS, layer_probes=True) as sim:
        before = [w.numpy().copy() for w in sim.keras_model.trainable_weights]
        train(converted, sim, x[:24], y[:24], nh.losses.LastTimesteps(tf.losses.mse, 5), settings,
              folder, regularization=regularization)
        return before, [w.numpy().copy() for w in sim.keras_model.trainable_weights]


@pytest.mark.parametrize("fuse_with_xla", [True, False])
def test_hybrid_training_twice_gives_bit_identical_parameters(data_root, tmp_path, fuse_with_xla):
    root = data_root / "caltech101"
    x, y, _ = load_airplanes(root, size=(16, 24), ids=image_ids(root)[:24], grey=True)
    start, first = hybrid_training_params(x, y, fuse_with_xla, tmp_path / "first")
    _, second = hybrid_training_params(x, y, fuse_with_xla, tmp_path / "second")
    assert any(not np.array_equal(a, b) for a, b in zip(start, first)), "training changed nothing"
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
