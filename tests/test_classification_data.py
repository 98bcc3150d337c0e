"""The real 10-class stand-in for CIFAR-10 (ten Caltech-101 categories): class counts, a
stratified, seeded split, 32x32 RGB images; on images written here in the official
layout, the resize and the errors; and the balanced accuracy the table reports."""

import re

import numpy as np
import pytest
from PIL import Image

from data_prep.caltech101 import (
    CATEGORY_DIR,
    CLASSIFICATION_CATEGORIES,
    DataError,
    load_categories,
    stratified_split,
)
from nengo_hybrid.metrics import balanced_accuracy

from conftest import skip_or_fail


@pytest.fixture(scope="module")
def categories_root(data_root):
    """The real Caltech-101 folder with the ten categories (skips, or fails in CI, without them)."""
    root = data_root / "caltech101"
    missing = [name for name in CLASSIFICATION_CATEGORIES if not (root / CATEGORY_DIR / name).is_dir()]
    if missing:
        skip_or_fail(f"no {missing} under {(root / CATEGORY_DIR).resolve()}")
    return root


@pytest.fixture(scope="module")
def real(categories_root):
    """The ten real categories, loaded once (about 1,900 JPEGs)."""
    return load_categories(categories_root)


def files_on_disk(root, name):
    return sorted(f"{name}/{p.name}" for p in (root / CATEGORY_DIR / name).glob("image_*.jpg"))


def test_real_classes_are_the_ten_sorted_categories_with_every_image(real, categories_root):
    assert real.class_names == sorted(CLASSIFICATION_CATEGORIES) == list(CLASSIFICATION_CATEGORIES)
    y = np.concatenate([real.y_train, real.y_test])
    counts = np.bincount(y, minlength=10)
    for label, name in enumerate(real.class_names):
        assert counts[label] == len(files_on_disk(categories_root, name)) >= 80, name
    assert counts[real.class_names.index("airplanes")] >= 600


def test_real_images_are_32x32_rgb_uint8(real):
    for x, y in ((real.x_train, real.y_train), (real.x_test, real.y_test)):
        assert x.shape[1:] == (32, 32, 3) and x.dtype == np.uint8 and len(x) == len(y)
        assert y.dtype == np.int64 and y.min() >= 0 and y.max() <= 9
    # car_side is all greyscale JPEGs: converted to RGB, its three channels are equal
    car = real.x_train[real.y_train == real.class_names.index("car_side")]
    assert len(car) and np.array_equal(car[..., 0], car[..., 1]) and np.array_equal(car[..., 1], car[..., 2])


def test_real_split_is_stratified_at_one_fifth(real):
    for label, name in enumerate(real.class_names):
        n_test = np.sum(real.y_test == label)
        n = n_test + np.sum(real.y_train == label)
        assert abs(n_test - 0.2 * n) <= 1, f"{name}: {n_test} of {n} in the test set"


def test_real_split_is_disjoint_and_covers_every_image(real, categories_root):
    train, test = set(real.train_files), set(real.test_files)
    assert len(train) == len(real.x_train) and len(test) == len(real.x_test)
    assert not train & test
    everything = {f for name in real.class_names for f in files_on_disk(categories_root, name)}
    assert train | test == everything
    # each file's label is its folder's
    for files, labels in ((real.train_files, real.y_train), (real.test_files, real.y_test)):
        assert [real.class_names[y] for y in labels] == [f.split("/")[0] for f in files]


def test_real_split_is_deterministic_for_a_seed(categories_root):
    two = ("hawksbill", "ketch")  # two small categories keep the repeated loads cheap
    first = load_categories(categories_root, two, seed=5)
    again = load_categories(categories_root, two, seed=5)
    other = load_categories(categories_root, two, seed=6)
    assert first.test_files == again.test_files and first.train_files == again.train_files
    np.testing.assert_array_equal(first.x_test, again.x_test)
    np.testing.assert_array_equal(first.y_train, again.y_train)
    assert other.test_files != first.test_files


# --- images written here in the official layout ---------------------------------------------

def write_jpeg(root, category, number, pixels, mode="RGB"):
    folder = root / CATEGORY_DIR / category
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"image_{number:04d}.jpg"
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode).save(path, quality=95)
    return path


def half_red_half_blue(height, width):
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2, 0] = 255
    pixels[:, width // 2:, 2] = 255
    return pixels


@pytest.fixture
def small_set(tmp_path):
    """Three categories of 10, 5 and 20 JPEGs of different sizes, one of them greyscale."""
    rng = np.random.RandomState(0)
    for n, name in ((10, "b_cat"), (5, "A_cat"), (20, "c_cat")):
        for i in range(1, n + 1):
            write_jpeg(tmp_path, name, i, rng.randint(0, 256, size=(40 + i, 60 + 2 * i, 3)))
    write_jpeg(tmp_path, "A_cat", 6, rng.randint(0, 256, size=(50, 30)), mode="L")
    return tmp_path


def test_images_are_resized_bilinearly_to_32x32_without_keeping_the_aspect_ratio(tmp_path):
    path = write_jpeg(tmp_path, "halves", 1, half_red_half_blue(64, 128))
    data = load_categories(tmp_path, ["halves"], test_fraction=0)
    image = data.x_train[0]
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    with Image.open(path) as img:  # Pillow's bilinear resize of the decoded JPEG, exactly
        np.testing.assert_array_equal(image, np.asarray(img.convert("RGB").resize((32, 32), Image.BILINEAR)))
    # the whole image is squeezed in: red on the left half, blue on the right
    assert image[:, :14, 0].min() > 200 and image[:, :14, 2].max() < 60
    assert image[:, 18:, 2].min() > 200 and image[:, 18:, 0].max() < 60


def test_greyscale_images_become_rgb(small_set):
    data = load_categories(small_set, ["A_cat"], size=(16, 8), test_fraction=0)
    grey = data.x_train[data.train_files.index("A_cat/image_0006.jpg")]
    assert grey.shape == (16, 8, 3)
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])


def test_labels_follow_the_sorted_names_and_each_class_is_split_alike(small_set):
    data = load_categories(small_set, ["c_cat", "b_cat", "A_cat"], test_fraction=0.2, seed=1)
    assert data.class_names == ["A_cat", "b_cat", "c_cat"]
    assert np.bincount(data.y_test).tolist() == [1, 2, 4]  # 20% of 6, 10 and 20
    assert np.bincount(data.y_train).tolist() == [5, 8, 16]
    assert all(f.startswith(data.class_names[y]) for f, y in zip(data.test_files, data.y_test))


def test_stratified_split_is_seeded_disjoint_and_complete():
    labels = np.repeat([0, 1, 2], [50, 7, 13])
    train, test = stratified_split(labels, 0.2, seed=3)
    assert np.array_equal(train, stratified_split(labels, 0.2, seed=3)[0])
    assert not np.array_equal(test, stratified_split(labels, 0.2, seed=4)[1])
    assert not set(train) & set(test) and sorted([*train, *test]) == list(range(70))
    assert np.bincount(labels[test]).tolist() == [10, 1, 3]
    with pytest.raises(ValueError, match="test_fraction 1"):
        stratified_split(labels, 1)


def test_a_missing_category_folder_is_named(small_set):
    folder = small_set / CATEGORY_DIR / "watch"
    with pytest.raises(DataError, match=re.escape(f"{folder}: no such folder") + ".*caltech-101.zip"):
        load_categories(small_set, ["A_cat", "watch"])


def test_a_category_without_images_is_named(small_set):
    folder = small_set / CATEGORY_DIR / "empty"
    folder.mkdir()
    with pytest.raises(DataError, match=re.escape(f"{folder}: no image_NNNN.jpg files")):
        load_categories(small_set, ["A_cat", "empty"])


def test_an_unreadable_image_is_named(small_set):
    path = small_set / CATEGORY_DIR / "b_cat" / "image_0003.jpg"
    path.write_text("not an image")
    with pytest.raises(DataError, match=re.escape(f"{path}: unreadable")):
        load_categories(small_set, ["b_cat"])


def test_a_truncated_image_is_named(small_set):
    path = small_set / CATEGORY_DIR / "c_cat" / "image_0020.jpg"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match=re.escape(f"{path}: unreadable or truncated")):
        load_categories(small_set, ["c_cat"])


# --- balanced accuracy ----------------------------------------------------------------------

def test_balanced_accuracy_is_the_mean_recall_of_the_true_classes():
    y_true = [0, 0, 1, 1, 1, 2]
    y_pred = [0, 1, 1, 1, 0, 2]
    assert balanced_accuracy(y_true, y_pred) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert balanced_accuracy(y_true, y_true) == 1.0


def test_balanced_accuracy_of_a_constant_guess_is_chance_whatever_the_class_sizes():
    y_true = np.array([0] * 95 + [1] * 5)
    assert balanced_accuracy(y_true, np.zeros(100, dtype=int)) == 0.5  # plain accuracy: 0.95


def test_balanced_accuracy_counts_a_class_absent_from_the_truth_as_a_miss():
    assert balanced_accuracy([0, 0, 1], [0, 7, 1]) == pytest.approx((1 / 2 + 1) / 2)


def test_balanced_accuracy_refuses_mismatched_or_empty_labels():
    with pytest.raises(ValueError, match="3 true labels but 2 predictions"):
        balanced_accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="no labels"):
        balanced_accuracy([], [])
