import numpy as np
import pytest

from nengo_hybrid.augment import BoxAugmentation, PixelOffset, mirror_boxes


def painted(boxes, shape=(48, 72)):
    """Black images with each box painted white."""
    images = np.zeros((len(boxes),) + shape + (1,), dtype=np.float32)
    for image, (top, left, bottom, right) in zip(images, boxes):
        h, w = shape
        image[int(round(top * h)):int(round(bottom * h)), int(round(left * w)):int(round(right * w))] = 1
    return images


def white_extent(image):
    """The normalised (top, left, bottom, right) of the pixels brighter than 0.5."""
    rows, cols = np.nonzero(image[..., 0] > 0.5)
    h, w = image.shape[:2]
    return np.array([rows.min() / h, cols.min() / w, (rows.max() + 1) / h, (cols.max() + 1) / w])


def test_mirror_boxes():
    np.testing.assert_allclose(mirror_boxes(np.array([[0.1, 0.2, 0.6, 0.5]])), [[0.1, 0.5, 0.6, 0.8]])


@pytest.mark.parametrize("augmentation", [BoxAugmentation(flip=1.0, max_zoom=0.0),
                                          BoxAugmentation(flip=0.0, max_zoom=0.3),
                                          BoxAugmentation(flip=0.5, max_zoom=0.3),
                                          BoxAugmentation(flip=0.5, max_zoom=0.0, max_shift=0.1)])
def test_augmented_boxes_follow_the_augmented_pixels(augmentation):
    rng = np.random.RandomState(0)
    boxes = np.array([[0.2, 0.1, 0.8, 0.9], [0.3, 0.4, 0.7, 0.6], [0.05, 0.05, 0.95, 0.5]] * 4, dtype=np.float32)
    images, moved = augmentation(painted(boxes), boxes, rng)
    assert images.shape == (12, 48, 72, 1) and moved.shape == boxes.shape
    assert not np.allclose(moved, boxes)  # something happened
    for image, box in zip(images, moved):
        # within about a pixel (bilinear resampling blurs the edges)
        np.testing.assert_allclose(white_extent(image), box, atol=2.5 / 48)


def test_shift_moves_pixels_and_box_by_the_same_whole_pixels():
    boxes = np.array([[0.2, 0.1, 0.8, 0.9], [0.3, 0.4, 0.7, 0.6], [0.1, 0.1, 0.9, 0.5]] * 4)
    images = painted(boxes)  # 48 x 72, no painted box within 5 rows or 7 columns of an edge
    shifted, moved = BoxAugmentation(flip=0.0, max_zoom=0.0, max_shift=0.1)(images, boxes, np.random.RandomState(0))
    draws = np.random.RandomState(0)
    draws.uniform(size=12)  # the mirror draw
    pixels = np.rint(draws.uniform(-0.1, 0.1, size=(12, 2)) * [48, 72])
    assert np.abs(pixels).max() > 3 and (np.abs(pixels).max(axis=0) <= [5, 7]).all()
    offsets = np.tile(pixels / [48, 72], 2)
    np.testing.assert_allclose(moved, np.clip(boxes + offsets, 0, 1), atol=1e-12)
    for before, after, offset in zip(images, shifted, offsets):
        # no resampling: the painted box moved by exactly those pixels
        np.testing.assert_allclose(white_extent(after), white_extent(before) + offset, atol=1e-12)
        assert after.sum() == before.sum()  # nothing white was cut or repeated


def test_shift_repeats_the_edge_it_uncovers_and_clips_the_box():
    images = np.arange(4 * 6, dtype=np.float32).reshape(1, 4, 6, 1)
    augmentation = BoxAugmentation(flip=0.0, max_zoom=0.0, max_shift=0.5)

    class Draws:  # a generator that draws a shift of +2 rows and -3 columns
        def uniform(self, low=0.0, high=1.0, size=None):
            return np.ones(size) if size == 1 else np.array([[0.5, -0.5]])

    shifted, moved = augmentation(images, np.array([[0.0, 0.0, 0.5, 0.5]]), Draws())
    expected = images[0, :, :, 0][[0, 0, 0, 1]][:, [3, 4, 5, 5, 5, 5]]
    np.testing.assert_array_equal(shifted[0, :, :, 0], expected)
    np.testing.assert_allclose(moved, [[0.5, 0.0, 1.0, 0.0]])


def test_same_generator_state_same_augmentation():
    boxes = np.array([[0.2, 0.1, 0.8, 0.9]] * 5, dtype=np.float32)
    images = painted(boxes)
    first = BoxAugmentation()(images, boxes, np.random.RandomState(3))
    again = BoxAugmentation()(images, boxes, np.random.RandomState(3))
    other = BoxAugmentation()(images, boxes, np.random.RandomState(4))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_pixel_offset_augments_the_pixels_as_read_and_shifts_them_back():
    boxes = np.array([[0.2, 0.1, 0.7, 0.5], [0.3, 0.4, 0.9, 0.8]], dtype=np.float32)
    images = painted(boxes)
    seen = []

    def augment(x, y, rng):
        seen.append(x.copy())
        return x * 2, y[:, ::-1]

    x, y = PixelOffset(augment, 0.5)(images - 0.5, boxes, np.random.RandomState(0))
    np.testing.assert_array_equal(seen[0], images)  # the augmentation saw the pixels as read
    np.testing.assert_array_equal(x, images * 2 - 0.5)
    np.testing.assert_array_equal(y, boxes[:, ::-1])


def test_brightness_and_contrast_move_the_pixels_as_stated_and_no_box():
    rng = np.random.RandomState(0)
    images = rng.uniform(0.3, 0.7, size=(6, 8, 10, 3)).astype(np.float32)  # no pixel reaches a clip
    boxes = rng.uniform(0, 1, size=(6, 4)).astype(np.float32)
    shifted, same = BoxAugmentation(flip=0.0, max_zoom=0.0, brightness=0.1)(images, boxes, np.random.RandomState(1))
    np.testing.assert_array_equal(same, boxes)
    offsets = (shifted - images).reshape(6, -1)
    np.testing.assert_allclose(offsets, offsets[:, :1] * np.ones_like(offsets), atol=1e-6)  # one shift an image
    expected = np.random.RandomState(1)
    expected.uniform(size=6)  # the mirror draw
    np.testing.assert_allclose(offsets[:, 0], expected.uniform(-0.1, 0.1, size=6), atol=1e-6)
    scaled, same = BoxAugmentation(flip=0.0, max_zoom=0.0, contrast=0.2)(images, boxes, np.random.RandomState(1))
    np.testing.assert_array_equal(same, boxes)
    ratio = scaled.reshape(6, -1).std(axis=1) / images.reshape(6, -1).std(axis=1)
    expected = np.random.RandomState(1)
    expected.uniform(size=6)
    np.testing.assert_allclose(ratio, expected.uniform(0.8, 1.2, size=6), rtol=1e-4)
    np.testing.assert_allclose(scaled.reshape(6, -1).mean(axis=1), images.reshape(6, -1).mean(axis=1), atol=1e-6)


def test_jitter_of_many_images_is_the_formula_to_the_bit():
    """Over more images than `_jitter` takes at a time (the last lot partial), mirrored
    views and pixels that reach the clip: the pixels of the formula computed at once."""
    rng = np.random.RandomState(5)
    images = rng.uniform(0, 1, size=(37, 6, 7, 3)).astype(np.float32)
    boxes = rng.uniform(0, 1, size=(37, 4)).astype(np.float32)
    augmentation = BoxAugmentation(flip=0.5, max_zoom=0.0, brightness=0.3, contrast=0.5)
    jittered, _ = augmentation(images, boxes, np.random.RandomState(2))
    draws = np.random.RandomState(2)
    mirrored = draws.uniform(size=37) < 0.5
    seen = np.where(mirrored[:, None, None, None], images[:, :, ::-1], images)
    contrast = draws.uniform(0.5, 1.5, size=37)[:, None, None, None]
    brightness = draws.uniform(-0.3, 0.3, size=37)[:, None, None, None]
    mean = seen.mean(axis=(1, 2, 3), keepdims=True)
    expected = np.clip((seen - mean) * contrast + mean + brightness, 0, 1).astype(np.float32)
    assert 0 < (expected == 0).sum() and 0 < (expected == 1).sum()  # both clips reached
    assert jittered.dtype == np.float32
    np.testing.assert_array_equal(jittered, expected)


def test_disabled_jitter_draws_nothing():
    images = painted(np.array([[0.2, 0.1, 0.8, 0.9]] * 4, dtype=np.float32))
    boxes = np.array([[0.2, 0.1, 0.8, 0.9]] * 4, dtype=np.float32)
    plain = BoxAugmentation(flip=0.5, max_zoom=0.3)(images, boxes, np.random.RandomState(2))
    zeros = BoxAugmentation(flip=0.5, max_zoom=0.3, max_shift=0.0, brightness=0.0,
                            contrast=0.0)(images, boxes, np.random.RandomState(2))
    for a, b in zip(plain, zeros):
        np.testing.assert_array_equal(a, b)


def test_erasing_fills_one_rectangle_per_image_with_its_mean_and_moves_no_box():
    rng = np.random.RandomState(0)
    images = rng.uniform(size=(20, 30, 40, 3)).astype(np.float32)
    boxes = rng.uniform(size=(20, 4)).astype(np.float32)
    erased, same_boxes = BoxAugmentation(flip=0.0, max_zoom=0.0, erase=0.5)(images, boxes, np.random.RandomState(1))
    np.testing.assert_array_equal(same_boxes, boxes)
    for before, after in zip(images, erased):
        changed = (after != before).any(axis=2)
        rows, cols = np.nonzero(changed)
        if not len(rows):
            continue
        # one rectangle, at most half the height and half the width, painted with the
        # image's per-channel mean (taken before erasing)
        rectangle = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        assert rows.max() - rows.min() + 1 <= 15 and cols.max() - cols.min() + 1 <= 20
        np.testing.assert_allclose(after[rectangle], np.broadcast_to(before.mean(axis=(0, 1)), after[rectangle].shape),
                                   rtol=1e-6)
        outside = np.ones(changed.shape, bool)
        outside[rectangle] = False
        np.testing.assert_array_equal(after[outside], before[outside])
    assert sum((a != b).any() for a, b in zip(images, erased)) >= 15
