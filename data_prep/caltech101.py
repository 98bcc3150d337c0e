"""Caltech-101 airplanes with their bounding boxes, read from the official layout.

``<root>/101_ObjectCategories/airplanes/image_NNNN.jpg`` with
``<root>/Annotations/Airplanes_Side_2/annotation_NNNN.mat``, whose ``box_coord`` is
``[top, bottom, left, right]`` in pixels.  Each image is resized to the configured size
and its box is mapped into the same frame; the target is the box's corners normalised
to [0, 1] as ``(top, left, bottom, right)``.
"""

from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

IMAGE_DIR = Path("101_ObjectCategories") / "airplanes"
ANNOTATION_DIR = Path("Annotations") / "Airplanes_Side_2"


def image_ids(root):
    """Sorted ids (the ``NNNN`` of ``image_NNNN.jpg``) of the airplane images."""
    folder = Path(root) / IMAGE_DIR
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (expected the Caltech-101 layout)")
    return sorted(p.stem.split("_")[1] for p in folder.glob("image_*.jpg"))


def load_example(root, image_id, size, grey=True):
    """One resized image (float32 in [0, 1], shape ``(height, width, channels)``) and
    its normalised box ``(top, left, bottom, right)``."""
    root = Path(root)
    path = root / IMAGE_DIR / f"image_{image_id}.jpg"
    with Image.open(path) as img:
        orig_w, orig_h = img.size
    pixels = load_image(path, size, grey)
    top, bottom, left, right = (
        scipy.io.loadmat(root / ANNOTATION_DIR / f"annotation_{image_id}.mat")["box_coord"]
        .ravel()
        .astype(np.float64)
    )
    box = np.array([top / orig_h, left / orig_w, bottom / orig_h, right / orig_w])
    return pixels, np.clip(box, 0, 1).astype(np.float32)


def load_airplanes(root, size=(32, 48), ids=None, grey=True):
    """Images and boxes of the given ids (all if None), stacked."""
    ids = image_ids(root) if ids is None else ids
    pairs = [load_example(root, i, size, grey) for i in ids]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), list(ids)


CATEGORY_DIR = Path("101_ObjectCategories")


def categories(root):
    """Sorted names of the category folders present under ``101_ObjectCategories``."""
    folder = Path(root) / CATEGORY_DIR
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (expected the Caltech-101 layout)")
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("image_*.jpg")))


def load_image(path, size, grey=True):
    """One image resized to ``size`` = (height, width), float32 in [0, 1], HWC."""
    height, width = size
    with Image.open(path) as img:
        img = img.convert("L" if grey else "RGB").resize((width, height), Image.BILINEAR)
        pixels = np.asarray(img, dtype=np.float32) / 255.0
    return pixels[..., None] if grey else pixels


def load_classification(root, size=(32, 48), per_class=None, grey=True, names=None):
    """Images of every category (the first ``per_class`` of each, sorted by id) with
    integer labels in the order of ``names`` (default: `categories`)."""
    names = categories(root) if names is None else list(names)
    images, labels = [], []
    for label, name in enumerate(names):
        paths = sorted((Path(root) / CATEGORY_DIR / name).glob("image_*.jpg"))[:per_class]
        images += [load_image(p, size, grey) for p in paths]
        labels += [label] * len(paths)
    return np.stack(images), np.array(labels, dtype=np.int32), names
