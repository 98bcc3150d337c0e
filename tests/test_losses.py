"""Segmentation losses (BCE, Dice, BCE-Dice) and Dice metrics (2D slices, 3D volumes)."""

import numpy as np
import pytest
import tensorflow as tf

import nengo_hybrid as nh
from nengo_hybrid.losses import BCEDice, BinaryCrossEntropy, DiceLoss, LastTimesteps, SliceDiceError
from nengo_hybrid.metrics import dice_2d, dice_3d, mean_std

LOSSES = [BinaryCrossEntropy, DiceLoss, BCEDice]


def masks_and_logits(shape=(3, 6, 5, 1), seed=0):
    rng = np.random.RandomState(seed)
    masks = (rng.uniform(size=shape) > 0.6).astype(np.float32)
    logits = rng.normal(0, 2, size=shape).astype(np.float32)
    return masks, logits


def value(loss, y_true, y_pred):
    return float(loss(tf.constant(y_true), tf.constant(y_pred)))


@pytest.mark.parametrize("from_logits", [True, False])
def test_bce_equals_keras_binary_crossentropy(from_logits):
    masks, logits = masks_and_logits()
    y_pred = logits if from_logits else tf.sigmoid(logits).numpy()
    keras = tf.keras.losses.BinaryCrossentropy(from_logits=from_logits)
    np.testing.assert_allclose(
        value(BinaryCrossEntropy(from_logits=from_logits), masks, y_pred),
        value(keras, masks, y_pred),
        rtol=1e-6,
    )


def test_dice_of_known_masks():
    truth = np.zeros((1, 4, 4, 1), np.float32)
    truth[0, :2] = 1  # 8 pixels
    perfect = truth.copy()
    disjoint = 1 - truth  # the other 8 pixels
    half = np.zeros_like(truth)
    half[0, 0] = 1  # 4 of the 8 pixels, no false positives
    dice = DiceLoss(from_logits=False, smooth=1.0)
    assert value(dice, truth, perfect) == 0.0
    np.testing.assert_allclose(value(dice, truth, disjoint), 1 - 1 / 17)
    np.testing.assert_allclose(value(dice, truth, half), 1 - (2 * 4 + 1) / (12 + 1))
    # from logits: a confident correct prediction is (almost) perfect
    np.testing.assert_allclose(value(DiceLoss(), truth, 40 * (2 * truth - 1)), 0.0, atol=1e-6)
    # the smoothing decides an empty slice: nothing predicted is right, anything is wrong
    empty = np.zeros_like(truth)
    assert value(dice, empty, empty) == 0.0
    np.testing.assert_allclose(value(dice, empty, half), 4 / 5)


def test_dice_is_per_example_not_per_batch():
    truth = np.zeros((2, 4, 4, 1), np.float32)
    truth[0] = 1
    pred = truth.copy()
    pred[1, 0, 0] = 1  # one false positive on the empty example
    dice = DiceLoss(from_logits=False, smooth=1.0)
    # per example: (0 + 1/2) / 2; pooled over the batch it would be about 0.03
    np.testing.assert_allclose(value(dice, truth, pred), 0.25)
    # over_batch pools them: 16 true pixels all found, one false positive
    pooled = DiceLoss(from_logits=False, smooth=1.0, over_batch=True)
    np.testing.assert_allclose(value(pooled, truth, pred), 1 - (2 * 16 + 1) / (17 + 16 + 1), rtol=1e-6)


def test_batch_dice_over_timesteps_and_its_gradient():
    """``over_batch`` with (batch, steps, pixels) outputs: one Dice per timestep over
    the minibatch's pixels, and its gradient is that of the pooled formula (numpy,
    by hand); per-mask Dice's gradient on an empty target is ~1/s per pixel."""
    rng = np.random.RandomState(3)
    truth = (rng.uniform(size=(4, 3, 10)) > 0.7).astype(np.float32)
    truth[1] = 0  # an empty mask
    logits = rng.normal(0, 2, size=truth.shape).astype(np.float32)
    s = 1e-5
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    overlap, total = (p * truth).sum(axis=(0, 2)), p.sum(axis=(0, 2)) + truth.sum(axis=(0, 2))
    per_step = 1 - (2 * overlap + s) / (total + s)
    x = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = DiceLoss(smooth=s, over_batch=True)(tf.constant(truth), x)
    np.testing.assert_allclose(float(loss), per_step.mean(), rtol=1e-5)
    # d/dp of the mean over steps of 1 - (2 O + s) / (T + s), times dp/dz = p (1 - p)
    step = (-(2 * truth) * (total + s)[None, :, None] + (2 * overlap + s)[None, :, None]) / (
        (total + s)[None, :, None] ** 2)
    expected = step / truth.shape[1] * p * (1 - p)
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), expected, rtol=1e-4, atol=1e-9)
    # per mask, the empty mask's gradient is ~1/s where it predicts little
    quiet = np.full((1, 1, 10), -12.0, np.float32)
    x = tf.constant(quiet)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = DiceLoss(smooth=s)(tf.zeros((1, 1, 10)), x)
    sigma = 1 / (1 + np.exp(12.0))  # each pixel's p; the loss is sum p / (sum p + s)
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(),
                               np.full((1, 1, 10), s / (10 * sigma + s) ** 2 * sigma * (1 - sigma)), rtol=1e-3)
    assert s / (10 * sigma + s) ** 2 > 0.01 / s  # ~1/s per unit of probability


@pytest.mark.parametrize("from_logits", [True, False])
def test_bce_dice_is_the_weighted_sum(from_logits):
    masks, logits = masks_and_logits()
    y_pred = logits if from_logits else tf.sigmoid(logits).numpy()
    bce = value(BinaryCrossEntropy(from_logits=from_logits), masks, y_pred)
    dice = value(DiceLoss(from_logits=from_logits), masks, y_pred)
    assert bce > 0.1 and dice > 0.1
    np.testing.assert_allclose(
        value(BCEDice(from_logits=from_logits), masks, y_pred), 0.5 * bce + 0.5 * dice, rtol=1e-6
    )
    np.testing.assert_allclose(
        value(BCEDice(0.2, 1.5, from_logits=from_logits), masks, y_pred),
        0.2 * bce + 1.5 * dice,
        rtol=1e-6,
    )


@pytest.mark.parametrize("loss_class", LOSSES)
def test_images_and_nengo_dl_outputs_give_the_same_loss(loss_class):
    masks, logits = masks_and_logits()
    loss = loss_class()
    image = value(loss, masks, logits)
    flat = value(loss, masks.reshape(3, 1, -1), logits.reshape(3, 1, -1))  # 1 step
    np.testing.assert_allclose(flat, image, rtol=1e-6)
    # the same prediction on every timestep: the same loss
    steps = value(loss, np.repeat(masks.reshape(3, 1, -1), 4, axis=1),
                  np.repeat(logits.reshape(3, 1, -1), 4, axis=1))
    np.testing.assert_allclose(steps, image, rtol=1e-6)
    np.testing.assert_allclose(value(loss, masks[..., 0], logits), image, rtol=1e-6)  # (b, H, W)
    np.testing.assert_allclose(value(loss, masks.reshape(3, -1), logits.reshape(3, -1)), image,
                               rtol=1e-6)
    with pytest.raises(ValueError, match="masks must be"):
        loss(masks[None], logits[None])


@pytest.mark.parametrize("loss_class", LOSSES)
@pytest.mark.parametrize("wrongness", [5.0, 200.0])
def test_gradients_are_finite_even_for_saturated_logits_and_empty_masks(loss_class, wrongness):
    masks, _ = masks_and_logits()
    masks[0] = 0  # an empty slice
    logits = tf.Variable(np.where(masks > 0, -wrongness, wrongness).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = loss_class()(masks, logits)
    grad = tape.gradient(loss, logits).numpy()
    assert np.isfinite(float(loss)) and np.isfinite(grad).all()
    if wrongness < 10 or loss_class is not DiceLoss:
        # the sigmoid of the Dice loss saturates (its gradient vanishes, finitely);
        # the cross-entropy's gradient does not
        assert np.abs(grad).max() > 1e-4
    assert (grad[masks > 0] <= 0).all() and (grad[masks == 0] >= 0).all()  # descent fixes


def test_mask_losses_compose_with_last_timesteps():
    masks, logits = masks_and_logits(shape=(3, 5, 30))
    transient = logits.copy()
    transient[:, :3] = 100.0  # a transient the loss must not see
    window = LastTimesteps(BCEDice(), 2)
    np.testing.assert_allclose(
        value(window, masks, transient),
        value(BCEDice(), masks[:, -1:], logits[:, 3:].mean(axis=1, keepdims=True)), rtol=1e-6
    )


def test_mask_losses_round_trip_through_their_config():
    loss = BCEDice(0.3, 0.7, from_logits=False, smooth=2.0, over_batch=True)
    again = BCEDice.from_config(loss.get_config())
    masks, logits = masks_and_logits()
    probs = tf.sigmoid(logits).numpy()
    assert (again.bce_weight, again.dice_weight, again.dice.smooth) == (0.3, 0.7, 2.0)
    assert again.dice.over_batch
    assert value(again, masks, probs) == value(loss, masks, probs)


def tiny_segmenter():
    inp = tf.keras.Input((4, 4, 1))
    x = tf.keras.layers.Conv2D(3, 3, padding="same", activation="relu",
                               kernel_initializer=tf.keras.initializers.HeUniform(0))(inp)
    out = tf.keras.layers.Conv2DTranspose(1, 3, padding="same",
                                          kernel_initializer=tf.keras.initializers.HeUniform(1))(x)
    return tf.keras.Model(inp, out)


def test_bce_dice_trains_a_keras_model():
    masks, logits = masks_and_logits(shape=(8, 4, 4, 1))
    model = tiny_segmenter()
    model.compile(tf.optimizers.Adam(0.05), loss=BCEDice())
    history = model.fit(np.abs(logits), masks, epochs=20, batch_size=8, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]


@pytest.mark.parametrize("family, n_steps", [("rate", 1), ("hybrid", 4)])
def test_bce_dice_trains_a_nengo_dl_simulator(family, n_steps):
    masks, logits = masks_and_logits(shape=(4, 4, 4, 1))
    x = np.abs(logits)
    converted = nh.convert(tiny_segmenter(), family, scale_firing_rates=100)
    loss = BCEDice() if n_steps == 1 else LastTimesteps(BCEDice(), 2)
    with converted.simulator(minibatch_size=4, n_steps=n_steps) as sim:
        before = [w.numpy() for w in sim.keras_model.trainable_weights]
        converted.compile(sim, tf.optimizers.Adam(0.01), loss)
        history = sim.fit(converted.inputs(x, n_steps), converted.targets(masks, n_steps=n_steps),
                          epochs=1, verbose=0).history
        after = [w.numpy() for w in sim.keras_model.trainable_weights]
    assert np.isfinite(history["loss"]).all()
    assert all(not np.allclose(a, b) for a, b in zip(before, after))


# Dice metrics ----------------------------------------------------------------------


def slices():
    """Four 2x3 slices: partial overlap, empty/empty, empty truth with a false
    positive, and a missed structure."""
    true = np.zeros((4, 2, 3))
    pred = np.zeros((4, 2, 3))
    true[0, 0] = 1  # 3 pixels
    pred[0, 0, :2] = pred[0, 1, 0] = 1  # 2 of them and 1 false positive
    pred[2, 1, 1] = 0.9  # a probability above the threshold
    true[3, 1] = 1
    pred[3, 1] = 0.4  # below it: nothing predicted
    return pred, true


def test_dice_2d_scores_each_slice_with_an_explicit_empty_rule():
    pred, true = slices()
    scored = dice_2d(pred, true, empty="score")
    np.testing.assert_allclose(scored.scores, [2 * 2 / (3 + 3), 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(scored.has_target, [True, False, False, True])
    np.testing.assert_allclose(scored.on_target, [2 / 3, 0.0])

    excluded = dice_2d(pred, true, empty="exclude")
    np.testing.assert_allclose(excluded.scores, [2 / 3, np.nan, np.nan, 0.0])
    np.testing.assert_allclose(excluded.on_target, scored.on_target)
    assert mean_std(excluded.scores) == mean_std(scored.on_target)

    flat = dice_2d(pred.reshape(4, -1), true[..., None])  # NengoDL's flat outputs
    np.testing.assert_array_equal(flat.scores, scored.scores)
    np.testing.assert_allclose(dice_2d(pred - 0.5, true, threshold=0.0).scores, scored.scores)
    with pytest.raises(ValueError, match="empty must be"):
        dice_2d(pred, true, empty="ignore")
    with pytest.raises(ValueError, match="3 pixels, 4 true masks of 6 pixels"):
        dice_2d(pred[:, :1], true)


def test_slice_dice_error_is_one_minus_the_tables_2d_dice():
    rng = np.random.RandomState(3)
    masks = (rng.uniform(size=(12, 7, 5, 1)) > 0.7).astype(np.float32)
    masks[:4] = 0  # empty targets: two predicted empty, two with false positives
    logits = rng.normal(0, 2, size=masks.shape).astype(np.float32)
    logits[:2] = -3.0
    logits[5] = np.where(masks[5] > 0, 4.0, -4.0)  # a perfect slice
    expected = 1 - dice_2d(tf.sigmoid(logits).numpy(), masks).scores
    assert set(expected[:4]) == {0.0, 1.0} and expected[5] == 0.0
    np.testing.assert_allclose(value(SliceDiceError(), masks, logits), expected.mean(), atol=1e-6)
    # from probabilities, over NengoDL's (batch, steps, pixels) outputs read late
    steps = np.stack([np.full_like(logits, -9.0), logits], axis=1).reshape(12, 2, -1)
    over_time = LastTimesteps(SliceDiceError(), 1)
    np.testing.assert_allclose(value(over_time, masks.reshape(12, 1, -1).repeat(2, 1), steps),
                               expected.mean(), atol=1e-6)

    # on target: the masks with no target count 0, so the mean is the share of masks
    # with target times one minus their mean Dice (the tables' "on target" column)
    on_target = dice_2d(tf.sigmoid(logits).numpy(), masks).on_target
    assert len(on_target) == 8
    np.testing.assert_allclose(value(SliceDiceError(on_target=True), masks, logits),
                               8 / 12 * (1 - on_target.mean()), atol=1e-6)
    assert SliceDiceError(on_target=True).name == "dice_error_on_target"


def test_dice_3d_pools_each_subjects_voxels_whatever_the_slice_order():
    rng = np.random.RandomState(0)
    true = rng.uniform(size=(10, 4, 5)) > 0.7
    pred = rng.uniform(size=(10, 4, 5)) > 0.5
    subjects = np.array(["b", "a", "b", "b", "a", "c", "c", "a", "b", "c"])

    result = dice_3d(pred, true, subjects)
    assert list(result.subjects) == ["b", "a", "c"]  # order of first appearance
    for subject, score in zip(result.subjects, result.scores):
        volume_p, volume_t = pred[subjects == subject], true[subjects == subject]
        expected = 2 * (volume_p & volume_t).sum() / (volume_p.sum() + volume_t.sum())
        np.testing.assert_allclose(score, expected)
    # not the mean of the slice scores: a volume pools its voxels
    slice_mean = np.nanmean(dice_2d(pred[subjects == "b"], true[subjects == "b"]).scores)
    assert abs(result.scores[0] - slice_mean) > 1e-3

    order = rng.permutation(10)
    shuffled = dice_3d(pred[order], true[order], subjects[order])
    np.testing.assert_allclose(
        [dict(zip(shuffled.subjects, shuffled.scores))[s] for s in result.subjects], result.scores
    )
    with pytest.raises(ValueError, match="subject ids"):
        dice_3d(pred, true, subjects[:-1])


def test_mean_std_leaves_out_excluded_slices():
    summary = mean_std([1.0, np.nan, 0.5, 0.0])
    assert summary["n"] == 3
    np.testing.assert_allclose([summary["mean"], summary["std"]], [0.5, np.std([1, 0.5, 0])])
    assert mean_std([np.nan])["n"] == 0


def test_readout_windows_average_the_loss_of_each_window():
    from nengo_hybrid.losses import ReadoutWindows

    rng = np.random.RandomState(0)
    y_pred = rng.normal(size=(3, 12, 4)).astype(np.float32)
    y_true = np.repeat(rng.normal(size=(3, 1, 4)).astype(np.float32), 12, axis=1)

    def window_mse(end, n):
        mean = y_pred[:, end - n:end].mean(axis=1)
        return np.mean((mean - y_true[:, -1]) ** 2)

    loss = ReadoutWindows("mse", 4, (6, 9, 12))
    expected = np.mean([window_mse(6, 4), window_mse(9, 4), window_mse(12, 4)])
    assert float(loss(y_true, y_pred)) == pytest.approx(expected, rel=1e-5)
    # one window at the end is LastTimesteps
    assert float(ReadoutWindows("mse", 4, (12,))(y_true, y_pred)) == pytest.approx(
        float(LastTimesteps("mse", 4)(y_true, y_pred)), rel=1e-6)
    with pytest.raises(ValueError, match="at or after timestep 4"):
        ReadoutWindows("mse", 4, (3, 12))
