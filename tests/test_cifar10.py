"""Reading CIFAR-10's binary version: small batch files written here in the official
format (the real data set is not on the test machines), and one clear error per kind of
bad input."""

import re

import numpy as np
import pytest

from data_prep.caltech101 import DataError
from data_prep.cifar10 import (
    BATCHES_DIR,
    META_FILE,
    TEST_BATCH,
    TRAIN_BATCHES,
    load_cifar10,
    read_batch,
)

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def record(label, image):
    """One official record: the label byte, then the red, green and blue 32x32 planes,
    each row-major, of an HWC ``image``."""
    return bytes([label]) + np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).tobytes()


def write_batch(path, labels, images):
    path.write_bytes(b"".join(record(label, image) for label, image in zip(labels, images)))


def random_images(rng, n):
    return rng.randint(0, 256, size=(n, 32, 32, 3)).astype(np.uint8)


@pytest.fixture
def official(tmp_path):
    """``tmp_path/cifar-10-batches-bin`` holding two records per batch with known labels and
    random pixels, and a meta file ending in blank lines as the official one does; yields
    the folder and the expected (x_train, y_train, x_test, y_test)."""
    folder = tmp_path / BATCHES_DIR
    folder.mkdir()
    rng = np.random.RandomState(0)
    x_train, y_train = random_images(rng, 10), np.arange(10, dtype=np.int64)[::-1].copy()
    for i, name in enumerate(TRAIN_BATCHES):
        write_batch(folder / name, y_train[2 * i:2 * i + 2], x_train[2 * i:2 * i + 2])
    x_test, y_test = random_images(rng, 2), np.array([3, 9], dtype=np.int64)
    write_batch(folder / TEST_BATCH, y_test, x_test)
    (folder / META_FILE).write_text("\n".join(CLASS_NAMES) + "\n\n")
    return folder, (x_train, y_train, x_test, y_test)


def test_the_reader_gives_back_the_written_pixels_labels_and_names(official):
    folder, (x_train, y_train, x_test, y_test) = official
    data = load_cifar10(folder)
    assert data.x_train.shape == (10, 32, 32, 3) and data.x_train.dtype == np.uint8
    assert data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
    np.testing.assert_array_equal(data.x_train, x_train)  # batches 1..5 in order
    np.testing.assert_array_equal(data.y_train, y_train)
    np.testing.assert_array_equal(data.x_test, x_test)
    np.testing.assert_array_equal(data.y_test, y_test)
    assert data.class_names == CLASS_NAMES  # the trailing blank lines are not names
    assert data.train_files is None and data.test_files is None


def test_pixels_are_read_channel_major_into_hwc(tmp_path):
    # red plane all 255, green plane the row index, blue plane the column index: read
    # pixel-major (RGBRGB...), pixel (0, 0) would be (255, 255, 255)
    rows, cols = np.mgrid[0:32, 0:32]
    planes = np.stack([np.full((32, 32), 255), rows, cols]).astype(np.uint8)
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(bytes([7]) + planes.tobytes())
    x, y = read_batch(path)
    assert x.shape == (1, 32, 32, 3) and y.tolist() == [7]
    np.testing.assert_array_equal(x[0, 0, 0], [255, 0, 0])
    np.testing.assert_array_equal(x[0, 2, 5], [255, 2, 5])  # row 2, column 5: rows are row-major
    np.testing.assert_array_equal(x[0, 31, 30], [255, 31, 30])


@pytest.mark.parametrize("where", ["batches folder", "its parent", "data directory"])
def test_root_may_be_the_folder_its_parent_or_a_data_directory(official, tmp_path, where):
    folder, (x_train, *_) = official
    if where == "data directory":
        (tmp_path / "data" / "cifar10").mkdir(parents=True)
        folder = folder.rename(tmp_path / "data" / "cifar10" / BATCHES_DIR)
    root = {"batches folder": folder, "its parent": folder.parent, "data directory": tmp_path / "data"}[where]
    np.testing.assert_array_equal(load_cifar10(root).x_train, x_train)


def test_nothing_is_written_into_the_data_folder(official):
    folder, _ = official
    before = sorted(p.name for p in folder.parent.rglob("*"))
    load_cifar10(folder)
    assert sorted(p.name for p in folder.parent.rglob("*")) == before


# --- bad input: one DataError (a ValueError) naming the file and the problem --------------

def test_errors_are_value_errors():
    assert issubclass(DataError, ValueError)


def test_missing_folder(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DataError, match=re.escape(f"{root}: no such folder") + ".*data_prep.download cifar10"):
        load_cifar10(root)


def test_a_folder_without_cifar(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"{tmp_path}: holds no {BATCHES_DIR}/")):
        load_cifar10(tmp_path)


def test_missing_files_are_all_listed(official):
    folder, _ = official
    (folder / "data_batch_3.bin").unlink()
    (folder / TEST_BATCH).unlink()
    with pytest.raises(DataError, match=re.escape(f"{folder}: missing data_batch_3.bin, test_batch.bin;")):
        load_cifar10(folder)


def test_a_size_that_is_not_whole_records(official):
    folder, _ = official
    path = folder / "data_batch_2.bin"
    path.write_bytes(path.read_bytes() + b"\x00" * 5)
    with pytest.raises(DataError, match=re.escape(f"{path}: 6151 bytes is not a whole number of 3073-byte records")):
        load_cifar10(folder)


def test_an_empty_batch(official):
    folder, _ = official
    path = folder / "data_batch_4.bin"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=re.escape(f"{path}: 0 bytes is not a whole number")):
        load_cifar10(folder)


def test_a_label_outside_0_to_9(official):
    folder, (_, _, x_test, _) = official
    path = folder / TEST_BATCH
    write_batch(path, [2, 10], x_test)
    with pytest.raises(DataError, match=re.escape(f"{path}: record 1 has label 10, outside 0-9")):
        load_cifar10(folder)


@pytest.mark.parametrize("names", [CLASS_NAMES[:9], CLASS_NAMES + ["extra"]])
def test_a_meta_file_not_listing_ten_names(official, names):
    folder, _ = official
    path = folder / META_FILE
    path.write_text("\n".join(names) + "\n\n")
    with pytest.raises(DataError, match=re.escape(f"{path}: lists {len(names)} class names") + ".*expected 10"):
        load_cifar10(folder)


def test_read_batch_of_a_missing_file(tmp_path):
    path = tmp_path / "data_batch_1.bin"
    with pytest.raises(DataError, match=re.escape(f"{path}: no such file")):
        read_batch(path)
