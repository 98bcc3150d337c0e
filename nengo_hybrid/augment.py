"""Box-preserving image augmentation: mirror, zoom and shift, with the box moved along;
brightness, contrast and erasing, which leave it where it is.

Boxes are ``(top, left, bottom, right)`` normalised to [0, 1] of the image.  A crop
window of relative size :math:`z` at offset :math:`(o_y, o_x)` (both in image units),
resized back to the full image, maps a box coordinate :math:`b` to

.. math:: b' = \\mathrm{clip}\\left(\\frac{b - o}{z}, 0, 1\\right)

(rows use :math:`o_y`, columns :math:`o_x`); the clip keeps the visible part of an object
that the window cuts.  A shift of the content by :math:`(d_y, d_x)` whole pixels of an
:math:`H \\times W` image moves a box coordinate to

.. math:: b' = \\mathrm{clip}\\left(b + \\frac{d}{H \\text{ or } W}, 0, 1\\right)

(rows divide by :math:`H`, columns by :math:`W`); the rows or columns it uncovers repeat
the nearest edge.  Unlike a zoom, a shift leaves a box's size as it was, except where the
image cuts it.  A left-right mirror maps ``(t, l, b, r)`` to ``(t, 1 - r, b, 1 - l)``.
A photometric jitter of pixels :math:`x \\in [0, 1]` with image mean :math:`\\bar{x}`,

.. math:: x' = \\mathrm{clip}\\left((x - \\bar{x})\\,c + \\bar{x} + b, 0, 1\\right),

moves no box.
"""

from dataclasses import dataclass

import numpy as np
import tensorflow as tf


_JITTER_CHUNK = 16  # images jittered at a time


def mirror_boxes(boxes):
    """Boxes of the left-right mirrored images."""
    boxes = np.asarray(boxes)
    return np.stack([boxes[:, 0], 1 - boxes[:, 3], boxes[:, 2], 1 - boxes[:, 1]], axis=1).astype(boxes.dtype)


@dataclass(frozen=True)
class BoxAugmentation:
    """Random mirror, zoom-in and shift of images with their boxes.

    Every call draws, per image, a mirror with probability ``flip``, a window of size
    :math:`z \\sim U[1 - \\text{max_zoom}, 1]` of the image (both axes alike, so the aspect
    ratio stays) at a uniform offset inside the image, and resizes the window back to the
    image size (bilinear); no pixel outside the image is invented.  Then a shift of
    :math:`d \\sim U[-\\text{max_shift}, \\text{max_shift}]` of the image's height and of
    its width (rounded to whole pixels; the uncovered edge repeats the nearest row or
    column).  Then each
    image's contrast is scaled by :math:`c \\sim U[1 - \\text{contrast}, 1 + \\text{contrast}]`
    about its mean and :math:`b \\sim U[-\\text{brightness}, \\text{brightness}]` is added
    (pixels read in [0, 1], clipped to it).  Last, a rectangle of
    :math:`h \sim U[0, \text{erase}]` of the height by :math:`w \sim U[0, \text{erase}]` of
    the width (rounded to whole pixels) at a uniform position inside the image is painted
    with the image's mean colour (random erasing; no box moves).

    Parameters
    ----------
    flip : float
        Probability of a left-right mirror.
    max_zoom : float
        Largest fraction of the image the window may leave out (0 disables the zoom).
    max_shift : float
        Largest shift, as a fraction of the image's height (rows) and width (columns).
    brightness, contrast : float
        Largest brightness shift and relative contrast change.
    erase : float
        Largest height and width of the erased rectangle, as fractions of the image's.

    0 disables a zoom, shift, jitter or erasing, and a disabled one draws nothing, so the other
    draws are as without it.
    """

    flip: float = 0.5
    max_zoom: float = 0.2
    max_shift: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    erase: float = 0.0

    def __call__(self, images, boxes, rng):
        """Augmented copies of ``images`` (n, H, W, C) and ``boxes`` (n, 4), drawn from
        ``rng`` (a `numpy.random.RandomState`), so a seed gives the same epoch twice."""
        n = len(images)
        mirrored = rng.uniform(size=n) < self.flip
        images = np.where(mirrored[:, None, None, None], images[:, :, ::-1], images)
        boxes = np.where(mirrored[:, None], mirror_boxes(boxes), boxes)
        if self.max_zoom > 0:
            images, boxes = self._zoom(images, boxes, rng)
        if self.max_shift > 0:
            images, boxes = self._shift(images, boxes, rng)
        if self.brightness > 0 or self.contrast > 0:
            images = self._jitter(images, rng)
        if self.erase > 0:
            images = self._erase(images, rng)
        return images, boxes

    def _erase(self, images, rng):
        n, height, width = images.shape[:3]
        sides = rng.uniform(0, self.erase, size=(n, 2)) * [height, width]
        rows, cols = np.rint(sides).astype(int).T
        tops = (rng.uniform(size=n) * (height - rows + 1)).astype(int)
        lefts = (rng.uniform(size=n) * (width - cols + 1)).astype(int)
        erased = images.copy()
        for i in range(n):
            erased[i, tops[i]:tops[i] + rows[i], lefts[i]:lefts[i] + cols[i]] = images[i].mean(axis=(0, 1))
        return erased

    def _jitter(self, images, rng):
        n = len(images)
        scale = rng.uniform(1 - self.contrast, 1 + self.contrast, size=n) if self.contrast > 0 else np.ones(n)
        shift = rng.uniform(-self.brightness, self.brightness, size=n) if self.brightness > 0 else np.zeros(n)
        jittered = np.empty_like(images)
        # a few images at a time, in place: the whole epoch's float64 temporaries (0.2 GB
        # each for 535 LocNet images) made this most of a second per epoch.  The same
        # arithmetic as (x - mean) * c + mean + b with numpy's promotions (a float32
        # difference, float64 after), so the same pixels to the bit
        for start in range(0, n, _JITTER_CHUNK):
            part = images[start:start + _JITTER_CHUNK]
            per_image = (len(part),) + (1,) * (images.ndim - 1)
            mean = part.mean(axis=tuple(range(1, images.ndim)), keepdims=True)
            values = (part - mean).astype(np.float64)
            values *= scale[start:start + _JITTER_CHUNK].reshape(per_image)
            values += mean
            values += shift[start:start + _JITTER_CHUNK].reshape(per_image)
            jittered[start:start + _JITTER_CHUNK] = np.clip(values, 0, 1, out=values)
        return jittered

    def _zoom(self, images, boxes, rng):
        n = len(images)
        size = rng.uniform(1 - self.max_zoom, 1, size=n)
        offset = rng.uniform(0, 1, size=(n, 2)) * (1 - size)[:, None]
        windows = np.stack([offset[:, 0], offset[:, 1], offset[:, 0] + size, offset[:, 1] + size], axis=1)
        cropped = tf.image.crop_and_resize(
            images, windows.astype(np.float32), np.arange(n, dtype=np.int32), images.shape[1:3]
        ).numpy().astype(images.dtype)
        origin = np.concatenate([offset, offset], axis=1)
        moved = np.clip((boxes - origin) / size[:, None], 0, 1).astype(boxes.dtype)
        return cropped, moved

    def _shift(self, images, boxes, rng):
        n, height, width = images.shape[:3]
        fractions = rng.uniform(-self.max_shift, self.max_shift, size=(n, 2))
        rows_by, cols_by = (np.rint(fractions * [height, width]).astype(int)).T
        # the pixel now at row i was at row i - d (clamped: the edge row repeats)
        rows = np.clip(np.arange(height)[None] - rows_by[:, None], 0, height - 1)
        cols = np.clip(np.arange(width)[None] - cols_by[:, None], 0, width - 1)
        shifted = images[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
        offset = np.stack([rows_by / height, cols_by / width], axis=1)
        moved = np.clip(boxes + np.concatenate([offset, offset], axis=1), 0, 1).astype(boxes.dtype)
        return shifted, moved


class PixelOffset:
    """An augmentation ``augment(x, y, rng)`` applied to images whose pixels were
    shifted by :math:`-c` (e.g. centred on zero): it sees :math:`x + c`, the pixels as
    they were read (its crops resize them), and returns its images shifted back."""

    def __init__(self, augment, offset):
        self.augment, self.offset = augment, np.float32(offset)

    def __call__(self, x, y, rng):
        x, y = self.augment(x + self.offset, y, rng)
        return x - self.offset, y
