"""CIFAR-10 (Krizhevsky 2009), read in place from its official binary version.

The binary version is ``cifar-10-binary.tar.gz`` from
https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz (md5
``c32a1d4ab5d03f1284b67883e8d87530``; ``python -m data_prep.download cifar10`` fetches,
checks and unpacks it).  It unpacks to ``cifar-10-batches-bin/`` holding:

* ``data_batch_1.bin`` ... ``data_batch_5.bin`` (the 50,000 training images) and
  ``test_batch.bin`` (the 10,000 test images), each a run of 3,073-byte records with no
  header: 1 label byte (0-9), then 3,072 pixel bytes stored channel-major, i.e. the
  32 x 32 red plane, then the green plane, then the blue plane, each row-major (the first
  32 bytes are the red values of the top row);
* ``batches.meta.txt``: the ten class names, one per line, in label order (the file
  ends with blank lines, which are not names).

Images are returned height x width x channel (HWC), uint8, as the other readers of
``data_prep`` return them.  Bad input raises one `DataError` naming the file and the
problem.  Nothing is written by the reader.
"""

from pathlib import Path

import numpy as np

from data_prep.caltech101 import ClassificationSet, DataError

BATCHES_DIR = "cifar-10-batches-bin"
TRAIN_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_BATCH = "test_batch.bin"
META_FILE = "batches.meta.txt"
FILES = (*TRAIN_BATCHES, TEST_BATCH, META_FILE)
N_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
PIXEL_BYTES = 32 * 32 * 3
RECORD_BYTES = 1 + PIXEL_BYTES
# where a data directory keeps it (what `python -m data_prep.download cifar10` fills)
DATA_SUBDIR = Path("cifar10") / BATCHES_DIR
LAYOUT = (
    f"expected the official CIFAR-10 binary version: {BATCHES_DIR}/ holding "
    f"{', '.join(FILES)}; run `python -m data_prep.download cifar10` to fetch it"
)


def find_batches_dir(root):
    """The ``cifar-10-batches-bin`` folder that ``root`` is or holds.

    Parameters
    ----------
    root : path-like
        The ``cifar-10-batches-bin`` folder itself (by name, or because it holds any of
        the CIFAR-10 files), a folder holding it, or a data directory holding
        ``cifar10/cifar-10-batches-bin``.

    Returns
    -------
    pathlib.Path
        The folder (its files are not checked here: see `missing_files`).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; {LAYOUT}")
    for folder in (root, root / BATCHES_DIR, root / DATA_SUBDIR):
        if folder.is_dir() and (folder.name == BATCHES_DIR or any((folder / name).exists() for name in FILES)):
            return folder
    raise DataError(f"{root}: holds no {BATCHES_DIR}/ (nor {DATA_SUBDIR}/) and none of its files; {LAYOUT}")


def missing_files(folder):
    """Names of the official files that ``folder`` lacks, in `FILES` order."""
    return [name for name in FILES if not (Path(folder) / name).is_file()]


def read_batch(path):
    """The images and labels of one binary batch file.

    Parameters
    ----------
    path : path-like
        A ``data_batch_N.bin`` or ``test_batch.bin``.

    Returns
    -------
    x : numpy.ndarray
        uint8 ``(n, 32, 32, 3)``, HWC, RGB.
    y : numpy.ndarray
        int64 ``(n,)``, in 0-9.

    Raises
    ------
    DataError
        If the file is missing, empty, not a whole number of 3,073-byte records, or has
        a label byte outside 0-9.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; {LAYOUT}")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise DataError(
            f"{path}: {raw.size} bytes is not a whole number of {RECORD_BYTES}-byte records "
            f"(1 label byte + {PIXEL_BYTES} pixel bytes); truncated, or not a CIFAR-10 binary batch"
        )
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels >= N_CLASSES)
    if bad.size:
        raise DataError(
            f"{path}: record {bad[0]} has label {labels[bad[0]]}, outside 0-{N_CLASSES - 1} "
            f"({bad.size} such records; not a CIFAR-10 batch: CIFAR-100's has 2 label bytes)"
        )
    # stored as (channel, row, column) planes; HWC puts the channel last
    planes = records[:, 1:].reshape(-1, IMAGE_SHAPE[2], *IMAGE_SHAPE[:2])
    return np.ascontiguousarray(planes.transpose(0, 2, 3, 1)), labels


def read_class_names(path):
    """The ten class names of ``batches.meta.txt``, in label order (blank lines dropped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; {LAYOUT}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not a text file of class names ({err})") from None
    names = [line.strip() for line in lines if line.strip()]
    if len(names) != N_CLASSES:
        raise DataError(f"{path}: lists {len(names)} class names {names[:12]}; expected {N_CLASSES}")
    return names


def _read_batches(folder, names):
    images, labels = zip(*(read_batch(folder / name) for name in names))
    return np.concatenate(images), np.concatenate(labels)


def load_cifar10(root):
    """The CIFAR-10 training and test sets, from the binary version.

    Parameters
    ----------
    root : path-like
        The ``cifar-10-batches-bin`` folder, a folder holding it, or a data directory
        holding ``cifar10/cifar-10-batches-bin`` (see `find_batches_dir`).

    Returns
    -------
    ClassificationSet
        ``x_train`` uint8 ``(50000, 32, 32, 3)`` (HWC) from ``data_batch_1.bin`` ...
        ``data_batch_5.bin`` in order, ``y_train`` int64 ``(50000,)``, ``x_test`` and
        ``y_test`` from ``test_batch.bin``, ``class_names`` from ``batches.meta.txt``
        (``train_files`` and ``test_files`` are None).  The counts are those of the
        files: they are not required to be the official ones.

    Raises
    ------
    DataError
        Naming the folder and every missing file, or the first bad file and its problem.
    """
    folder = find_batches_dir(root)
    missing = missing_files(folder)
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)}; {LAYOUT}")
    class_names = read_class_names(folder / META_FILE)
    x_train, y_train = _read_batches(folder, TRAIN_BATCHES)
    x_test, y_test = _read_batches(folder, (TEST_BATCH,))
    return ClassificationSet(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                             class_names=class_names)
