"""Hippocampus MRI volumes and their labels, read in place, cut into 2D slices.

Two layouts are read, by the same functions:

* the Medical Segmentation Decathlon, Task04 Hippocampus (Simpson et al. 2019,
  arXiv:1902.09063): ``<root>/imagesTr/hippocampus_NNN.nii.gz`` with
  ``<root>/labelsTr/hippocampus_NNN.nii.gz`` (0 background, 1 anterior, 2 posterior);
  `msd_folders` gives the two folders;
* any two folders of NIfTI volumes (``.nii`` or ``.nii.gz``) paired by name, e.g. a
  user's own ADNI crops: ``images/<id>.nii.gz`` with ``labels/<id>.nii.gz``.

Files whose name starts with ``._`` (macOS resource forks, which the Decathlon archive
carries beside every volume) are not volumes and are passed over quietly.

Every volume goes through the same steps:

1. reoriented to the closest canonical (RAS+) orientation, so that array axis 0 runs
   left -> right, axis 1 posterior -> anterior and axis 2 inferior -> superior in every
   volume, whatever order its file stores them in;
2. intensities scaled on the whole volume: its 1st and 99th percentiles map to 0 and 1,
   clipped to [0, 1] (``intensity="unit"``); ``intensity="zero_mean"`` then subtracts the
   volume's mean, which leaves it zero-mean within [-1, 1];
3. padded or cropped symmetrically about the volume's centre (never about its label,
   which a network will not have at test time) to one fixed size, default
   `DEFAULT_SIZE`; padding is 0 *after* scaling, i.e. the dark background of the [0, 1]
   scale, or the volume's mean on the zero-mean scale;
4. the hippocampus mask is label 1 or 2.

Volumes are then cut into 2D slices across one axis (`DEFAULT_AXIS`: sagittal slices,
see below); each slice remembers its subject and index so that per-subject 3D scores can
be computed by restacking (`Slices.restack`), and `save_mask` writes a restacked mask back
as NIfTI in the geometry of the subject's original image.

Default size and axis, from the 200 Decathlon volumes in canonical orientation (sizes
31-42 x 40-59 x 24-47 voxels, median 35 x 50 x 36, 1 mm isotropic): (40, 56, 40) holds
every volume but for a few voxels of border on the largest ones and never crops a
labelled voxel (the hippocampus lies within 15, 24 and 18 voxels of the centre along the
three axes).  Slicing across axis 0 (left -> right, sagittal slices of 56 x 40) cuts the
hippocampus along its length, anterior to posterior, so most slices show both labels,
and both in-plane sizes are divisible by 8 (three 2x2 poolings).

Bad input raises one `DataError` naming the file and the problem.  Nothing is written
by the loader.
"""

import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import apply_orientation, io_orientation, ornt_transform
from nibabel.spatialimages import HeaderDataError
from tqdm import tqdm

from data_prep.caltech101 import DataError, split_ids
from nengo_hybrid.atomic import replacing

MSD_IMAGES = Path("imagesTr")
MSD_LABELS = Path("labelsTr")
DEFAULT_SIZE = (40, 56, 40)
DEFAULT_AXIS = 0
LABELS = (0, 1, 2)
PERCENTILES = (1, 99)
INTENSITIES = ("unit", "zero_mean")
# an image and its label are the same grid if their affines agree to this many mm
# (headers store the affine in float32, so exact equality is too strict)
AFFINE_TOLERANCE_MM = 1e-3
# more volumes than this get a progress bar
PROGRESS_FROM = 20
_CANONICAL = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
# what nibabel and gzip raise for a damaged file
_READ_ERRORS = (ImageFileError, HeaderDataError, OSError, EOFError, ValueError, zlib.error)


@dataclass(frozen=True)
class Subject:
    """One volume on disk: its id (file name without ``.nii``/``.nii.gz``), its image
    and, when there is one, its label."""

    id: str
    image: Path
    label: Optional[Path] = None


@dataclass
class Volume:
    """One subject preprocessed: canonical orientation, scaled, at the fixed size.

    ``label`` keeps the label values 0/1/2 (None without a label); ``affine`` and
    ``shape`` are the original image's, as stored in its file.
    """

    subject: Subject
    image: np.ndarray
    label: Optional[np.ndarray]
    affine: np.ndarray
    shape: Tuple[int, int, int]

    @property
    def mask(self):
        """The binary hippocampus mask (label 1 or 2), uint8; None without a label."""
        return None if self.label is None else (self.label > 0).astype(np.uint8)


@dataclass
class Slices:
    """2D slices of several subjects, stacked.

    ``images`` and ``masks`` are float32 ``(n, H, W, 1)`` (``masks`` in {0, 1}, None
    when loaded without labels); slice ``k`` is slice ``slice_index[k]`` across ``axis``
    of subject ``subject_ids[k]``, at the fixed ``size``.  ``subjects`` are the loaded
    subjects, in the order their slices come.
    """

    images: np.ndarray
    masks: Optional[np.ndarray]
    subject_ids: np.ndarray
    slice_index: np.ndarray
    axis: int
    size: Tuple[int, int, int]
    subjects: List[Subject]

    def __len__(self):
        return len(self.images)

    def select(self, ids):
        """The slices of the subjects ``ids`` only (e.g. one side of `split_subjects`)."""
        ids = list(ids)
        unknown = sorted(set(ids) - {s.id for s in self.subjects})
        if unknown:
            raise KeyError(f"no slices of subject(s) {unknown}")
        keep = np.isin(self.subject_ids, ids)
        wanted = set(ids)
        return Slices(
            images=self.images[keep],
            masks=None if self.masks is None else self.masks[keep],
            subject_ids=self.subject_ids[keep],
            slice_index=self.slice_index[keep],
            axis=self.axis,
            size=self.size,
            subjects=[s for s in self.subjects if s.id in wanted],
        )

    def restack(self, values=None):
        """Per-subject 3D volumes (fixed size, canonical) rebuilt from per-slice
        ``values`` (``(n, H, W)`` or ``(n, H, W, 1)``, e.g. predictions; default the
        masks), as a dict from subject id to array.

        Every slice of every subject must be present, else a 3D score would silently
        count the missing slices as background.
        """
        values = self.masks if values is None else np.asarray(values)
        if values is None:
            raise ValueError("no masks to restack (loaded without labels); pass values")
        if values.ndim == 4 and values.shape[-1] == 1:
            values = values[..., 0]
        if values.shape[0] != len(self) or values.ndim != 3:
            raise ValueError(f"values of shape {values.shape} do not match {len(self)} slices of 2D maps")
        depth = self.size[self.axis]
        volumes = {}
        for subject in self.subjects:
            rows = np.flatnonzero(self.subject_ids == subject.id)
            order = self.slice_index[rows]
            if sorted(order.tolist()) != list(range(depth)):
                raise ValueError(f"subject {subject.id}: has slices {sorted(order.tolist())}, needs 0..{depth - 1}")
            stacked = np.empty((depth,) + values.shape[1:], dtype=values.dtype)
            stacked[order] = values[rows]
            volumes[subject.id] = np.moveaxis(stacked, 0, self.axis)
        return volumes


def msd_folders(root):
    """The image and label folders of the Decathlon layout under ``root``
    (``imagesTr``, ``labelsTr``), checked to exist."""
    root = Path(root)
    for folder in (root / MSD_IMAGES, root / MSD_LABELS):
        if not folder.is_dir():
            raise DataError(
                f"{folder}: no such folder; expected the Medical Segmentation Decathlon "
                f"Task04 layout (imagesTr and labelsTr); run `make data` to fetch it"
            )
    return root / MSD_IMAGES, root / MSD_LABELS


def _subject_id(path):
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return None


def _volumes_in(folder):
    """``{id: path}`` of the NIfTI files in ``folder``, resource forks left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    found = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("._") or not path.is_file():
            continue
        subject_id = _subject_id(path)
        if subject_id is None:
            continue  # a README or similar beside the volumes
        if subject_id in found:
            raise DataError(f"{path}: same subject as {found[subject_id].name}; keep one of the two")
        found[subject_id] = path
    if not found:
        raise DataError(f"{folder}: no NIfTI volumes (.nii or .nii.gz)")
    return found


def subjects(images_dir, labels_dir=None):
    """The subjects of a layout, sorted by id, each image paired with its label.

    Without ``labels_dir`` (evaluation only) the subjects have no label.  With it, every
    image must have a label of the same name and every label an image.
    """
    images = _volumes_in(images_dir)
    if labels_dir is None:
        return [Subject(i, images[i]) for i in sorted(images)]
    labels = _volumes_in(labels_dir)
    for i in sorted(set(images) - set(labels)):
        raise DataError(f"{images[i]}: no label (expected {Path(labels_dir) / images[i].name})")
    for i in sorted(set(labels) - set(images)):
        raise DataError(f"{labels[i]}: label without its image (expected {Path(images_dir) / labels[i].name})")
    return [Subject(i, images[i], labels[i]) for i in sorted(images)]


def _read(path):
    """The image of ``path`` (header read, checked 3D) and its voxels in canonical
    orientation."""
    try:
        img = nib.load(path)
    except _READ_ERRORS as err:
        raise DataError(f"{path}: unreadable NIfTI file ({err})") from None
    if len(img.shape) != 3:
        raise DataError(f"{path}: a {len(img.shape)}D volume of shape {img.shape}; expected 3D")
    try:
        data = np.asanyarray(nib.as_closest_canonical(img).dataobj)
    except _READ_ERRORS as err:
        raise DataError(f"{path}: truncated or corrupt NIfTI file ({err})") from None
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise DataError(f"{path}: {bad} NaN or infinite voxels")
    return img, data


def _windows(shape, size):
    """Index of the part a ``shape`` volume and its ``size`` fit share: in the volume,
    and in the fitted array.  The fitted window is centred on the volume's centre; of
    an odd margin, the extra voxel of padding goes before, of cropping after."""
    in_volume, in_fitted = [], []
    for s, t in zip(shape, size):
        start = (s - t) // 2  # negative: padding
        lo, hi = max(start, 0), min(s, start + t)
        in_volume.append(slice(lo, hi))
        in_fitted.append(slice(lo - start, hi - start))
    return tuple(in_volume), tuple(in_fitted)


def fit(volume, size):
    """``volume`` padded with 0 or cropped, about its centre, to ``size``."""
    out = np.zeros(size, dtype=volume.dtype)
    in_volume, in_fitted = _windows(volume.shape, size)
    out[in_fitted] = volume[in_volume]
    return out


def unfit(fitted, shape):
    """Undo `fit`: the ``shape`` volume that ``fitted`` was fitted from, 0 where the fit
    had cropped."""
    out = np.zeros(shape, dtype=fitted.dtype)
    in_volume, in_fitted = _windows(shape, fitted.shape)
    out[in_volume] = fitted[in_fitted]
    return out


def scale(data, intensity="unit"):
    """Intensities mapped to [0, 1] by the volume's 1st/99th percentiles and clipped;
    ``"zero_mean"`` then subtracts the mean (within [-1, 1])."""
    if intensity not in INTENSITIES:
        raise ValueError(f"intensity {intensity!r}; choose from {INTENSITIES}")
    data = data.astype(np.float32)
    low, high = np.percentile(data, PERCENTILES)
    if high <= low:  # a mostly uniform volume: fall back to its full range
        low, high = data.min(), data.max()
    if high <= low:
        return None
    unit = np.clip((data - low) / (high - low), 0, 1)
    return unit - unit.mean() if intensity == "zero_mean" else unit


def _check_size(size, axis=None):
    size = tuple(int(s) for s in size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"size {size}: expected three positive voxel counts")
    if axis is not None and axis not in (0, 1, 2):
        raise ValueError(f"axis {axis}: expected 0, 1 or 2")
    return size


def load_volume(subject, size=DEFAULT_SIZE, intensity="unit"):
    """One subject read, checked and preprocessed (see the module's steps 1-3)."""
    size = _check_size(size)
    img, data = _read(subject.image)
    image = scale(data, intensity)
    if image is None:
        raise DataError(f"{subject.image}: every voxel has the same intensity")
    label = None
    if subject.label is not None:
        label_img, label_data = _read(subject.label)
        if label_img.shape != img.shape:
            raise DataError(f"{subject.label}: shape {label_img.shape} differs from its image's {img.shape} ({subject.image})")
        if not np.allclose(label_img.affine, img.affine, rtol=0, atol=AFFINE_TOLERANCE_MM):
            raise DataError(
                f"{subject.label}: affine differs from its image's ({subject.image}); "
                f"label\n{label_img.affine}\nimage\n{img.affine}"
            )
        bad = ~np.isin(label_data, LABELS)
        if bad.any():
            raise DataError(f"{subject.label}: label values {np.unique(label_data[bad])[:5].tolist()} outside {list(LABELS)}")
        label = fit(label_data.astype(np.uint8), size)
        lost = np.count_nonzero(label_data) - np.count_nonzero(label)
        if lost:
            warnings.warn(
                f"{subject.label}: {lost} of {np.count_nonzero(label_data)} hippocampus voxels lie outside "
                f"the fixed size {size} and are cropped away; choose a larger size"
            )
    return Volume(subject, fit(image, size), label, img.affine, tuple(img.shape))


def load_volumes(subject_list, size=DEFAULT_SIZE, intensity="unit", progress=None):
    """`load_volume` of each subject; a progress bar when there are many
    (``progress=None``) or when asked (``True``)."""
    if progress is None:
        progress = len(subject_list) > PROGRESS_FROM
    return [
        load_volume(s, size, intensity)
        for s in tqdm(subject_list, desc="reading volumes", unit="volume", disable=not progress)
    ]


def to_slices(volumes, axis=DEFAULT_AXIS):
    """The volumes cut into 2D slices across ``axis``, stacked as `Slices`.

    Either every volume has a label or none has (masks None).
    """
    if not volumes:
        raise ValueError("no volumes to slice")
    size = volumes[0].image.shape
    _check_size(size, axis)
    labelled = {v.label is not None for v in volumes}
    if len(labelled) > 1:
        raise ValueError("some volumes have labels and some do not")
    depth = size[axis]
    images = np.concatenate([np.moveaxis(v.image, axis, 0) for v in volumes])
    masks = None
    if labelled == {True}:
        masks = np.concatenate([np.moveaxis(v.mask, axis, 0) for v in volumes]).astype(np.float32)[..., None]
    return Slices(
        images=images.astype(np.float32)[..., None],
        masks=masks,
        subject_ids=np.repeat(np.array([v.subject.id for v in volumes]), depth),
        slice_index=np.tile(np.arange(depth), len(volumes)),
        axis=axis,
        size=tuple(size),
        subjects=[v.subject for v in volumes],
    )


def load_slices(images_dir, labels_dir=None, ids=None, size=DEFAULT_SIZE, axis=DEFAULT_AXIS,
                intensity="unit", progress=None):
    """Slices of the subjects ``ids`` (default all) of a pair of folders, labels optional.

    For the Decathlon layout: ``load_slices(*msd_folders(root))``.
    """
    size = _check_size(size, axis)
    found = subjects(images_dir, labels_dir)
    if ids is not None:
        by_id = {s.id: s for s in found}
        missing = sorted(set(ids) - set(by_id))
        if missing:
            raise DataError(f"{images_dir}: no volume for subject(s) {missing}")
        found = [by_id[i] for i in sorted(set(ids))]
    return to_slices(load_volumes(found, size, intensity, progress), axis)


def split_subjects(ids, test_fraction=0.1, seed=0):
    """Seeded split of subject ids into (train, test), each sorted.

    Split subjects, never slices: neighbouring slices of one brain are near copies, and
    one on each side would leak the test set into training.
    """
    return split_ids(ids, test_fraction, seed)


def cross_validation_folds(ids, n_folds=5, seed=0):
    """Seeded k-fold cross-validation by subject: ``[(train_ids, test_ids)] * n_folds``.

    The ids are shuffled by ``seed`` and dealt into ``n_folds`` test sets whose sizes
    differ by at most one; every subject is in exactly one test set, and each fold
    trains on all the others (never on a subject it tests).  Each list is sorted.
    """
    ids = sorted(ids)
    if not 2 <= n_folds <= len(ids):
        raise ValueError(f"cannot make {n_folds} folds of {len(ids)} subjects")
    order = np.random.RandomState(seed).permutation(len(ids))
    tests = [sorted(ids[i] for i in part) for part in np.array_split(order, n_folds)]
    return [(sorted(set(ids) - set(test)), test) for test in tests]


def geometry(subject):
    """The original image of ``subject`` (a `Subject`, a `Volume` or an image path),
    header only, whose ``affine`` and ``shape`` a written mask takes; its orientation
    (as `nibabel.orientations.io_orientation`); and its shape in canonical orientation."""
    subject = getattr(subject, "subject", subject)
    path = subject.image if isinstance(subject, Subject) else Path(subject)
    try:
        img = nib.load(path)
    except _READ_ERRORS as err:
        raise DataError(f"{path}: unreadable NIfTI file ({err})") from None
    ornt = io_orientation(img.affine)
    canonical = [0, 0, 0]
    for axis, (to, _) in enumerate(ornt):
        canonical[int(to)] = img.shape[axis]
    return img, ornt, tuple(canonical)


def to_original(mask, subject):
    """A canonical, fixed-size volume put back in the grid of ``subject``'s image: the
    pad/crop and the reorientation undone (0 where the fit had cropped)."""
    _, ornt, canonical = geometry(subject)
    return _to_original(mask, ornt, canonical)


def _to_original(mask, ornt, canonical):
    mask = np.asarray(mask)
    if mask.ndim == 4 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim != 3:
        raise ValueError(f"mask of shape {mask.shape}: expected a 3D volume")
    return apply_orientation(unfit(mask, canonical), ornt_transform(_CANONICAL, ornt))


def save_mask(mask, subject, path):
    """Write ``mask`` (canonical orientation, fixed size, as `Volume.label`/`restack`
    give it) as a uint8 NIfTI in the original image's grid: its shape and affine.

    ``subject`` is a `Subject` or a `Volume`.  The mask holds integers (0/1, or 0/1/2
    for a label map); threshold probabilities first.  Written to a temporary file and
    renamed, so ``path`` never holds half a file.
    """
    mask = np.asarray(mask)
    if mask.dtype.kind == "f" and not np.array_equal(mask, np.round(mask)):
        raise ValueError("mask has fractional values; threshold it first")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(f"mask values {mask.min()}..{mask.max()} do not fit uint8")
    img, ornt, canonical = geometry(subject)
    data = _to_original(mask, ornt, canonical).astype(np.uint8)
    # the image's header keeps its voxel size, units and qform/sform codes for viewers;
    # its intensity scaling and display range are the image's, not the mask's
    header = img.header.copy()
    header.set_data_dtype(np.uint8)
    out = nib.Nifti1Image(data, img.affine, header)
    out.header.set_slope_inter(1, 0)
    out.header["cal_min"], out.header["cal_max"] = 0, 0
    path = Path(path)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii" if path.name.endswith(".nii") else None
    if suffix is None:
        raise ValueError(f"{path}: expected a .nii or .nii.gz file name")
    # nibabel picks the format by the name's ending: the temporary name keeps it
    with replacing(path, suffix) as tmp:
        nib.save(out, tmp)
    return path
