"""Caltech-101, read in place from its official layout.

Airplanes with bounding boxes (LocNet):
``<root>/101_ObjectCategories/airplanes/image_NNNN.jpg`` with
``<root>/Annotations/Airplanes_Side_2/annotation_NNNN.mat``, whose ``box_coord`` is
``[top, bottom, left, right]`` in pixels.  Each image is resized to the configured size
and its box is mapped into the same frame; the target is the box's corners normalised to
[0, 1] as ``(top, left, bottom, right)`` (fractions of the image height and width, so
resizing leaves them unchanged).

Every category folder (classification): ``<root>/101_ObjectCategories/<name>/``.
`load_categories` reads ten of them (`CLASSIFICATION_CATEGORIES`) as a real 10-class
stand-in for CIFAR-10: every image converted to RGB (the greyscale ones repeat their grey
level in all three channels), resized to 32 x 32 and split train/test per class.

Bad input raises one `DataError` naming the file and the problem.
"""

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import scipy.io
from PIL import Image, UnidentifiedImageError

CATEGORY_DIR = Path("101_ObjectCategories")
IMAGE_DIR = CATEGORY_DIR / "airplanes"
ANNOTATION_DIR = Path("Annotations") / "Airplanes_Side_2"
# a box may overhang the image by this many pixels (annotation slop) and is clipped;
# one that overhangs by more is rejected
BOX_TOLERANCE_PX = 5
# the ten categories of the classification stand-in for CIFAR-10, in label order
# (Python's sorted(), capitals first, as `categories` lists folders)
CLASSIFICATION_CATEGORIES = (
    "Faces_easy", "Leopards", "Motorbikes", "airplanes", "bonsai",
    "car_side", "chandelier", "hawksbill", "ketch", "watch",
)


class DataError(ValueError):
    """A file of the data set is missing, unreadable or inconsistent."""


class EmptyBoxError(DataError):
    """An annotation whose box has no area (the official set has one: 0118)."""


@dataclass
class Airplanes:
    """Resized images, normalised boxes ``(top, left, bottom, right)`` and image ids."""

    images: np.ndarray
    boxes: np.ndarray
    ids: List[str]


@dataclass
class ClassificationSet:
    """An image-classification set split into train and test.

    Attributes
    ----------
    x_train, x_test : numpy.ndarray
        uint8 images, ``(n, height, width, 3)`` (HWC, RGB).
    y_train, y_test : numpy.ndarray
        int64 labels, indices into ``class_names``.
    class_names : list of str
        The name of each label.
    train_files, test_files : list of str or None
        Where each image came from, relative to the data set's root, for sets stored as
        one file per image (Caltech-101); None for sets stored as batches (CIFAR-10).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: List[str]
    train_files: Optional[List[str]] = None
    test_files: Optional[List[str]] = None


def _ids(folder, prefix):
    return {p.stem[len(prefix):]: p for p in folder.glob(f"{prefix}*")}


def image_ids(root):
    """Sorted ids (the ``NNNN`` of ``image_NNNN.jpg``) of the airplane images, checked
    to have exactly one annotation each."""
    root = Path(root)
    image_folder, annotation_folder = root / IMAGE_DIR, root / ANNOTATION_DIR
    for folder in (image_folder, annotation_folder):
        if not folder.is_dir():
            raise DataError(
                f"{folder}: no such folder; expected the official Caltech-101 layout "
                f"(101_ObjectCategories/airplanes and Annotations/Airplanes_Side_2); "
                f"run `make data` to fetch it"
            )
    images = _ids(image_folder, "image_")
    annotations = _ids(annotation_folder, "annotation_")
    if not images:
        raise DataError(f"{image_folder}: no image_NNNN.jpg files")
    for i in sorted(set(images) - set(annotations)):
        raise DataError(f"{images[i]}: no annotation (expected {annotation_folder / f'annotation_{i}.mat'})")
    for i in sorted(set(annotations) - set(images)):
        raise DataError(f"{annotations[i]}: annotation without its image (expected {image_folder / f'image_{i}.jpg'})")
    return sorted(images)


def read_resized(path, size, mode):
    """One image converted to ``mode`` and resized to ``size``, as stored: uint8.

    Parameters
    ----------
    path : path-like
        An image file (any format Pillow reads).
    size : (int, int)
        ``(height, width)`` after resizing.
    mode : {"L", "RGB"}
        Pillow mode: ``"L"`` greyscale ``(height, width)``; ``"RGB"`` ``(height, width, 3)``,
        a greyscale file repeating its grey level in the three channels.

    Returns
    -------
    pixels : numpy.ndarray
        uint8.
    original : (int, int)
        The file's ``(height, width)``.

    Notes
    -----
    The whole image is resized to ``size`` without keeping its aspect ratio, with
    Pillow's bilinear filter, which widens its support when shrinking and so averages
    over every source pixel (no aliasing).  Bad files raise `DataError` naming them.
    """
    height, width = size
    try:
        with Image.open(path) as img:
            original = (img.height, img.width)
            img.load()  # decodes the whole file: a truncated JPEG fails here
            img = img.convert(mode).resize((width, height), Image.BILINEAR)
            pixels = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: unreadable or truncated image ({err})") from None
    return pixels, original


def load_image(path, size, grey=True):
    """One image resized to ``size`` = (height, width), float32 in [0, 1], HWC.

    Returns the pixels and the original ``(height, width)``.
    """
    pixels, original = read_resized(path, size, "L" if grey else "RGB")
    pixels = pixels.astype(np.float32) / 255.0
    return (pixels[..., None] if grey else pixels), original


def read_box(path, image_shape, image_path):
    """The box of an annotation as normalised ``(top, left, bottom, right)``."""
    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises several types for a bad file
        raise DataError(f"{path}: unreadable .mat file ({err})") from None
    if "box_coord" not in mat:
        raise DataError(f"{path}: no box_coord variable (has {sorted(k for k in mat if not k.startswith('__'))})")
    coords = np.asarray(mat["box_coord"], dtype=np.float64).ravel()
    if coords.size != 4 or not np.all(np.isfinite(coords)):
        raise DataError(f"{path}: box_coord should be 4 finite numbers, got {coords.tolist()}")
    top, bottom, left, right = coords
    height, width = image_shape
    if bottom <= top or right <= left:
        raise EmptyBoxError(f"{path}: empty box (top {top}, bottom {bottom}, left {left}, right {right})")
    if bottom <= 0 or top >= height or right <= 0 or left >= width:
        raise DataError(f"{path}: box {coords.tolist()} lies wholly outside its {width}x{height} image {image_path}")
    overhang = max(-top, -left, bottom - height, right - width)
    if overhang > BOX_TOLERANCE_PX:
        raise DataError(
            f"{path}: box {coords.tolist()} overhangs its {width}x{height} image by {overhang:g} px "
            f"(at most {BOX_TOLERANCE_PX} px is repaired)"
        )
    if overhang > 0:
        warnings.warn(f"{path}: box overhangs its image by {overhang:g} px; clipped to the image")
        top, left = max(top, 0), max(left, 0)
        bottom, right = min(bottom, height), min(right, width)
    return np.array([top / height, left / width, bottom / height, right / width], dtype=np.float32)


def load_example(root, image_id, size, grey=True):
    """One resized image and its normalised box ``(top, left, bottom, right)``."""
    root = Path(root)
    image_path = root / IMAGE_DIR / f"image_{image_id}.jpg"
    pixels, original = load_image(image_path, size, grey)
    box = read_box(root / ANNOTATION_DIR / f"annotation_{image_id}.mat", original, image_path)
    return pixels, box


def load_airplanes(root, size=(32, 48), ids=None, grey=True):
    """Images, boxes and ids of the given airplane ids (all if None), stacked.

    An example whose box has no area is left out with a warning naming its file (the
    returned ids say which were kept); any other bad file raises `DataError`.
    """
    ids = image_ids(root) if ids is None else list(ids)
    images, boxes, kept = [], [], []
    for i in ids:
        try:
            pixels, box = load_example(root, i, size, grey)
        except EmptyBoxError as err:
            warnings.warn(f"{err}; example left out")
            continue
        images.append(pixels)
        boxes.append(box)
        kept.append(i)
    if not kept:
        raise DataError(f"{Path(root) / ANNOTATION_DIR}: no usable box among {len(ids)} annotations")
    return np.stack(images), np.stack(boxes), kept


def split_ids(ids, test_fraction=0.1, seed=0):
    """Seeded split of ``ids`` into (train, test), each sorted."""
    ids = sorted(ids)
    order = np.random.RandomState(seed).permutation(len(ids))
    n_test = int(round(test_fraction * len(ids)))
    test = sorted(ids[i] for i in order[:n_test])
    train = sorted(ids[i] for i in order[n_test:])
    return train, test


def categories(root):
    """Sorted names of the category folders present under ``101_ObjectCategories``."""
    folder = Path(root) / CATEGORY_DIR
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (expected the Caltech-101 layout)")
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("image_*.jpg")))


def load_classification(root, size=(32, 48), per_class=None, grey=True, names=None):
    """Images of every category (the first ``per_class`` of each, sorted by id) with
    integer labels in the order of ``names`` (default: `categories`)."""
    names = categories(root) if names is None else list(names)
    images, labels = [], []
    for label, name in enumerate(names):
        paths = sorted((Path(root) / CATEGORY_DIR / name).glob("image_*.jpg"))[:per_class]
        images += [load_image(p, size, grey)[0] for p in paths]
        labels += [label] * len(paths)
    return np.stack(images), np.array(labels, dtype=np.int32), names


def category_images(root, name):
    """Sorted paths of the ``image_NNNN.jpg`` files of category ``name``.

    Raises `DataError` naming the folder if it is missing or holds no image.
    """
    folder = Path(root) / CATEGORY_DIR / name
    if not folder.is_dir():
        raise DataError(
            f"{folder}: no such folder; expected the official Caltech-101 layout "
            f"(101_ObjectCategories/<category>/image_NNNN.jpg).  `make data` extracts the "
            f"airplanes and the stand-in's ten categories into a new data folder (a folder "
            f"fetched before it learned to holds only the airplanes: delete its caltech101/ "
            f"and run `make data` again); every category is in 101_ObjectCategories.tar.gz of "
            f"caltech-101.zip (https://doi.org/10.22002/D1.20086)"
        )
    paths = sorted(folder.glob("image_*.jpg"))
    if not paths:
        raise DataError(f"{folder}: no image_NNNN.jpg files")
    return paths


def stratified_split(labels, test_fraction=0.2, seed=0):
    """Seeded train/test split that takes the same fraction of every class.

    Parameters
    ----------
    labels : array_like of int
        The label of each example.
    test_fraction : float
        Fraction of each class put in the test set, rounded to whole examples per class
        (so every class's test share is within half an example of it).
    seed : int
        Seeds one `numpy.random.RandomState` that permutes the classes in ascending
        label order: the same labels and seed always give the same split.

    Returns
    -------
    train, test : numpy.ndarray
        Sorted indices into ``labels``; disjoint, together all of them.
    """
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction {test_fraction}: expected 0 <= test_fraction < 1")
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        shuffled = members[rng.permutation(len(members))]
        n_test = int(round(test_fraction * len(members)))
        test.append(shuffled[:n_test])
        train.append(shuffled[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_categories(root, categories: Sequence[str] = CLASSIFICATION_CATEGORIES, size=(32, 32),
                    test_fraction=0.2, seed=0):
    """Images of the given categories as a train/test classification set.

    Parameters
    ----------
    root : path-like
        The Caltech-101 folder, holding ``101_ObjectCategories/``.
    categories : sequence of str
        Category folder names; labels follow their sorted order, whatever order they
        are given in.
    size : (int, int)
        ``(height, width)`` every image is resized to (bilinear, aspect ratio not kept;
        see `read_resized`).
    test_fraction, seed
        Of the stratified split (`stratified_split`).

    Returns
    -------
    ClassificationSet
        uint8 RGB images, int64 labels, the sorted category names as ``class_names``,
        and the file of each image (``"<category>/image_NNNN.jpg"``) in ``train_files``
        and ``test_files``.

    Raises
    ------
    DataError
        Naming the missing category folder or the unreadable image.
    """
    class_names = sorted(categories)
    if not class_names:
        raise ValueError("no categories to load")
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"categories {list(categories)}: a category is named twice")
    paths, labels = [], []
    for label, name in enumerate(class_names):
        found = category_images(root, name)
        paths += found
        labels += [label] * len(found)
    images = np.stack([read_resized(path, size, "RGB")[0] for path in paths])
    labels = np.array(labels, dtype=np.int64)
    files = np.array([f"{path.parent.name}/{path.name}" for path in paths])
    train, test = stratified_split(labels, test_fraction, seed)
    return ClassificationSet(
        x_train=images[train], y_train=labels[train],
        x_test=images[test], y_test=labels[test],
        class_names=class_names,
        train_files=files[train].tolist(), test_files=files[test].tolist(),
    )
