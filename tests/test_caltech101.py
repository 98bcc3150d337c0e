"""Reading Caltech-101 airplanes: the real data, and one clear error per kind of bad input."""

import shutil

import numpy as np
import pytest
import scipy.io
from PIL import Image

from data_prep.caltech101 import (
    ANNOTATION_DIR,
    IMAGE_DIR,
    DataError,
    image_ids,
    load_airplanes,
    split_ids,
)


def test_real_airplanes_load_with_boxes_inside_the_image(data_root):
    root = data_root / "caltech101"
    ids = image_ids(root)
    assert len(ids) >= 600
    images, boxes, loaded = load_airplanes(root, size=(24, 36), ids=ids[:50], grey=False)
    assert loaded == ids[:50]
    assert images.shape == (50, 24, 36, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1
    assert np.all((boxes >= 0) & (boxes <= 1))
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    # the first annotation: box_coord [30 137 49 349] on a 398x164 image
    np.testing.assert_allclose(boxes[0], [30 / 164, 49 / 398, 137 / 164, 349 / 398], rtol=1e-6)


def test_split_is_seeded_disjoint_and_90_10():
    ids = [f"{i:04d}" for i in range(1, 701)]
    train, test = split_ids(ids, 0.1, seed=3)
    assert (train, test) == split_ids(ids, 0.1, seed=3)
    assert split_ids(ids, 0.1, seed=4)[1] != test
    assert len(test) == 70 and not set(train) & set(test) and len(train) + len(test) == 700


@pytest.fixture
def small_copy(data_root, tmp_path):
    """Three real airplanes with their annotations, copied so that they can be broken."""
    src = data_root / "caltech101"
    for folder in (IMAGE_DIR, ANNOTATION_DIR):
        (tmp_path / folder).mkdir(parents=True)
    for i in ("0001", "0002", "0003"):
        shutil.copy(src / IMAGE_DIR / f"image_{i}.jpg", tmp_path / IMAGE_DIR)
        shutil.copy(src / ANNOTATION_DIR / f"annotation_{i}.mat", tmp_path / ANNOTATION_DIR)
    return tmp_path


def load(root):
    return load_airplanes(root, size=(16, 24))


def test_the_small_copy_loads(small_copy):
    assert load(small_copy)[2] == ["0001", "0002", "0003"]


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="airplanes: no such folder.*make data"):
        load(tmp_path)


def test_empty_folder(small_copy):
    for p in (small_copy / IMAGE_DIR).iterdir():
        p.unlink()
    for p in (small_copy / ANNOTATION_DIR).iterdir():
        p.unlink()
    with pytest.raises(DataError, match="no image_NNNN.jpg"):
        load(small_copy)


def test_image_without_annotation(small_copy):
    (small_copy / ANNOTATION_DIR / "annotation_0002.mat").unlink()
    with pytest.raises(DataError, match=r"image_0002.jpg: no annotation"):
        load(small_copy)


def test_annotation_without_image(small_copy):
    (small_copy / IMAGE_DIR / "image_0003.jpg").unlink()
    with pytest.raises(DataError, match=r"annotation_0003.mat: annotation without its image"):
        load(small_copy)


def test_truncated_jpeg(small_copy):
    path = small_copy / IMAGE_DIR / "image_0002.jpg"
    path.write_bytes(path.read_bytes()[:600])
    with pytest.raises(DataError, match=r"image_0002.jpg: unreadable or truncated"):
        load(small_copy)


def test_not_a_jpeg(small_copy):
    (small_copy / IMAGE_DIR / "image_0001.jpg").write_text("not an image")
    with pytest.raises(DataError, match=r"image_0001.jpg: unreadable"):
        load(small_copy)


def test_mat_without_box_coord(small_copy):
    scipy.io.savemat(small_copy / ANNOTATION_DIR / "annotation_0001.mat", {"obj_contour": np.zeros((2, 3))})
    with pytest.raises(DataError, match=r"annotation_0001.mat: no box_coord"):
        load(small_copy)


def write_box(root, image_id, box):
    scipy.io.savemat(root / ANNOTATION_DIR / f"annotation_{image_id}.mat", {"box_coord": np.array([box])})


def test_box_overhanging_by_a_few_pixels_is_clipped_with_a_warning(small_copy):
    with Image.open(small_copy / IMAGE_DIR / "image_0001.jpg") as img:
        width, height = img.size
    write_box(small_copy, "0001", [-2, height + 3, 10, width + 1])
    with pytest.warns(UserWarning, match=r"annotation_0001.mat: box overhangs .* clipped"):
        _, boxes, _ = load(small_copy)
    np.testing.assert_allclose(boxes[0], [0, 10 / width, 1, 1], rtol=1e-6)


def test_box_wholly_outside_is_rejected(small_copy):
    with Image.open(small_copy / IMAGE_DIR / "image_0002.jpg") as img:
        width, height = img.size
    write_box(small_copy, "0002", [height + 10, height + 50, 5, 40])
    with pytest.raises(DataError, match=r"annotation_0002.mat: box .* wholly outside"):
        load(small_copy)


def test_box_far_over_the_edge_is_rejected(small_copy):
    write_box(small_copy, "0003", [10, 50, 5, 10_000])
    with pytest.raises(DataError, match=r"annotation_0003.mat: box .* overhangs .* by"):
        load(small_copy)


def test_nothing_is_written_into_the_data_folder(small_copy):
    before = sorted(p.name for p in small_copy.rglob("*"))
    load(small_copy)
    assert sorted(p.name for p in small_copy.rglob("*")) == before


def test_an_empty_box_leaves_its_example_out_with_a_warning(small_copy):
    write_box(small_copy, "0002", [38, 38, 104, 126])  # as the official annotation_0118
    with pytest.warns(UserWarning, match=r"annotation_0002.mat: empty box .* left out"):
        images, boxes, ids = load(small_copy)
    assert ids == ["0001", "0003"] and len(images) == len(boxes) == 2
