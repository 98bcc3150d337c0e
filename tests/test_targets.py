"""Standardised regression targets: the map and its inverse, and augmentation that
moves raw boxes applied to standardised ones."""

import numpy as np
import pytest

from nengo_hybrid.augment import BoxAugmentation, mirror_boxes
from nengo_hybrid.targets import StandardisedTargets


def boxes(n=50, seed=0):
    rng = np.random.RandomState(seed)
    top_left = rng.uniform(0.05, 0.3, size=(n, 2))
    return np.concatenate([top_left, top_left + rng.uniform(0.4, 0.6, size=(n, 2))], axis=1).astype(np.float32)


def test_standardised_targets_have_zero_mean_and_unit_spread_and_map_back():
    y = boxes()
    targets = StandardisedTargets.fit(y)
    z = targets.standardise(y)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-5)
    np.testing.assert_allclose(targets.restore(z), y, atol=1e-6)
    # a zero output is the floor: the training mean box
    np.testing.assert_allclose(targets.restore(np.zeros(4)), y.mean(axis=0), atol=1e-6)
    again = StandardisedTargets.from_json(targets.to_json())
    np.testing.assert_allclose(again.restore(z), y, atol=1e-6)


def test_a_constant_coordinate_is_refused():
    y = boxes()
    y[:, 2] = 0.5
    with pytest.raises(ValueError, match="constant coordinate"):
        StandardisedTargets.fit(y)


def test_augmentation_mirrors_the_raw_box_of_a_standardised_target():
    y = boxes(8)
    targets = StandardisedTargets.fit(boxes(40, seed=1))
    images = np.random.RandomState(2).uniform(size=(8, 6, 10, 3)).astype(np.float32)
    augment = targets.augmentation(BoxAugmentation(flip=1.0, max_zoom=0.0))
    x_aug, z_aug = augment(images, targets.standardise(y), np.random.RandomState(0))
    np.testing.assert_array_equal(x_aug, images[:, :, ::-1])
    # the box is mirrored in image coordinates, not in standardised units
    np.testing.assert_allclose(targets.restore(z_aug), mirror_boxes(y), atol=1e-6)
    assert not np.allclose(z_aug, -targets.standardise(y)[:, [0, 3, 2, 1]], atol=1e-3)
    assert targets.augmentation(None) is None


def test_identity_targets_leave_boxes_as_they_are():
    y = boxes()
    identity = StandardisedTargets.identity(4)
    np.testing.assert_array_equal(identity.standardise(y), y)
    np.testing.assert_array_equal(identity.restore(y), y)


def test_restored_results_map_every_output_and_sweep_back_to_boxes():
    y = boxes(6)
    targets = StandardisedTargets.fit(boxes(40, seed=1))
    z = targets.standardise(y)
    results = {"outputs": {"ann": z, "hybrid": z[::-1]}, "sweeps": {"hybrid": {20: z, 60: 2 * z}},
               "rates": {"hybrid": {"network": 10.0}}}
    restored = targets.restore_results(results)
    np.testing.assert_allclose(restored["outputs"]["ann"], y, atol=1e-6)
    np.testing.assert_allclose(restored["outputs"]["hybrid"], y[::-1], atol=1e-6)
    np.testing.assert_allclose(restored["sweeps"]["hybrid"][60], targets.restore(2 * z), atol=1e-6)
    assert restored["rates"] is results["rates"]  # everything else passes through
    assert results["outputs"]["ann"] is z  # the input is not changed
