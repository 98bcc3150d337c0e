"""Input coding over timesteps (`nengo_hybrid.encoding`) and how a converted network
is fed with it (`ConvertedNetwork.inputs` and `ConvertedNetwork.dataset`).

Poisson trains: their mean is the input, their signs are the input's, they are
reproducible per (seed, example id) whatever the batch, and out-of-range inputs are
refused.  The repeat coding tiles.  The data pipeline codes each minibatch exactly as
coding the whole data set at once would.
"""

import numpy as np
import pytest
import tensorflow as tf

import nengo_hybrid as nh
from nengo_hybrid.encoding import draw_seed, get_encoding, poisson


def test_poisson_mean_is_the_input_within_sampling_error():
    values = np.array([0.0, 0.02, 0.3, 0.5, 0.9, 1.0, -0.1, -0.6, -1.0])
    x = np.stack([values, values[::-1]])
    n_steps = 4000
    spikes = poisson(x, n_steps, seed=5)

    assert spikes.shape == (2, n_steps, len(values)) and spikes.dtype == np.float32
    # each step is a Bernoulli(|x|) draw of sign(x): the mean's std is binomial
    std = np.sqrt(np.abs(x) * (1 - np.abs(x)) / n_steps)
    assert np.all(np.abs(spikes.mean(axis=1) - x) <= 5 * std + 1e-12)


def test_poisson_flattens_each_example():
    x = np.random.RandomState(0).uniform(0, 1, size=(3, 2, 4))
    assert poisson(x, 7).shape == (3, 7, 8)


def test_poisson_spikes_have_the_sign_of_the_input():
    rng = np.random.RandomState(1)
    binary = poisson(rng.uniform(0, 1, size=(4, 30)), 50, seed=0)
    assert set(np.unique(binary)) == {0.0, 1.0}

    x = rng.uniform(-1, 1, size=(4, 30))
    ternary = poisson(x, 50, seed=0)
    assert set(np.unique(ternary)) == {-1.0, 0.0, 1.0}
    # a spike's sign is its input's: never a +1 from a negative value or vice versa
    assert np.all(ternary * np.sign(x)[:, None, :] >= 0)


def test_zero_never_spikes_and_one_spikes_every_step():
    spikes = poisson(np.array([[0.0, 1.0, -1.0]]), 500, seed=3)
    np.testing.assert_array_equal(spikes[0], np.tile([0.0, 1.0, -1.0], (500, 1)))


def test_same_seed_same_trains_other_seed_other_trains():
    x = np.random.RandomState(2).uniform(-1, 1, size=(5, 20))
    np.testing.assert_array_equal(poisson(x, 40, seed=7), poisson(x, 40, seed=7))
    assert not np.array_equal(poisson(x, 40, seed=7), poisson(x, 40, seed=8))


def test_an_examples_train_depends_only_on_seed_and_its_id():
    x = np.random.RandomState(3).uniform(0, 1, size=(6, 10))
    whole = poisson(x, 25, seed=11)
    # the same examples coded in another batch (a minibatch of the pipeline)
    np.testing.assert_array_equal(poisson(x[2:4], 25, seed=11, example_ids=[2, 3]), whole[2:4])
    # ... and not by position: without their ids they would draw rows 0 and 1's numbers
    assert not np.array_equal(poisson(x[2:4], 25, seed=11), whole[2:4])
    # two examples with equal values but different ids get different trains
    same = np.tile(x[:1], (2, 1))
    first, second = poisson(same, 25, seed=11)
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("bad", [1.5, -1.01, np.nan, np.inf])
def test_values_outside_minus_one_one_are_refused(bad):
    x = np.array([[0.2, bad, -0.3]])
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        poisson(x, 10)


def test_one_id_per_example_is_required():
    with pytest.raises(ValueError, match="ids"):
        poisson(np.zeros((3, 2)), 5, example_ids=[0, 1])


def test_repeat_tiles_and_names_are_looked_up():
    x = np.arange(6.0).reshape((2, 3))
    repeat = get_encoding("repeat")
    np.testing.assert_array_equal(repeat(x, 4), np.tile(x[:, None, :], (1, 4, 1)))
    assert get_encoding(None) is repeat
    np.testing.assert_array_equal(get_encoding("poisson")(x / 10, 6, seed=2),
                                  poisson(x / 10, 6, seed=2))
    # a coding can be passed as itself
    assert get_encoding(poisson) is poisson
    with pytest.raises(KeyError, match="unknown input coding"):
        get_encoding("rate")


def test_draw_seed_is_reproducible_and_differs_between_draws():
    assert draw_seed(3, 0) == draw_seed(3, 0)
    assert len({draw_seed(3, draw) for draw in range(10)}) == 10


# ---------------------------------------------------------------- feeding a network

N_EXAMPLES, BATCH, T = 8, 4, 6


@pytest.fixture(scope="module")
def network():
    """A tiny IF network and a simulator of BATCH examples and T steps."""
    inp = tf.keras.Input(5)
    hidden = tf.keras.layers.Dense(4, activation="relu")(inp)
    out = tf.keras.layers.Dense(3)(hidden)
    converted = nh.convert(tf.keras.Model(inp, out), "if")
    with converted.simulator(minibatch_size=BATCH, n_steps=T) as sim:
        yield converted, sim


def data():
    rng = np.random.RandomState(4)
    return rng.uniform(0, 1, size=(N_EXAMPLES, 5)), rng.uniform(size=(N_EXAMPLES, 3))


@pytest.mark.parametrize("example_ids", [None, np.arange(N_EXAMPLES) + 100])
def test_dataset_codes_each_minibatch_as_coding_the_whole_set(network, example_ids):
    converted, sim = network
    x, y = data()
    ids = np.arange(N_EXAMPLES) if example_ids is None else example_ids
    image = sim.get_name(converted.input)
    dataset = converted.dataset(sim, x, y, n_steps=T, encoding="poisson", seed=9,
                                example_ids=example_ids)

    batches = list(dataset)
    assert len(batches) == N_EXAMPLES // BATCH
    for k, (inputs, targets) in enumerate(batches):
        rows = slice(k * BATCH, (k + 1) * BATCH)
        np.testing.assert_array_equal(
            inputs[image].numpy(), poisson(x[rows], T, seed=9, example_ids=ids[rows])
        )
        np.testing.assert_array_equal(inputs["n_steps"].numpy(), T)
        # the targets are repeated over time, not coded
        np.testing.assert_allclose(
            targets[sim.get_name(converted.output)].numpy(),
            np.tile(y[rows, None, :], (1, T, 1)), rtol=1e-6,
        )
    # and the whole set coded at once gives the same trains
    whole = converted.inputs(x, T, encoding="poisson", seed=9, example_ids=example_ids)
    np.testing.assert_array_equal(
        np.concatenate([inputs[image].numpy() for inputs, _ in batches]),
        whole[converted.input],
    )


def test_dataset_repeats_the_input_by_default(network):
    converted, sim = network
    x, y = data()
    image = sim.get_name(converted.input)
    for k, (inputs, _) in enumerate(converted.dataset(sim, x, y, n_steps=T)):
        rows = slice(k * BATCH, (k + 1) * BATCH)
        np.testing.assert_allclose(
            inputs[image].numpy(), np.tile(x[rows, None, :], (1, T, 1)), rtol=1e-6
        )


def test_inputs_poisson_equals_poisson_of_the_data(network):
    converted, _ = network
    x, _ = data()
    inputs = converted.inputs(x, T, encoding="poisson", seed=13)
    assert list(inputs) == [converted.input]
    np.testing.assert_array_equal(inputs[converted.input], poisson(x, T, 13))
    repeated = converted.inputs(x, T)[converted.input]
    np.testing.assert_allclose(repeated, np.tile(x[:, None, :], (1, T, 1)), rtol=1e-6)
