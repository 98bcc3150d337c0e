"""Atomic writes: a file is either its old self or its complete new self, never half.

Every file this package writes (tables, configurations, checkpoints' state, figures,
arrays, notebooks, NIfTI masks) goes through `replacing`: the writer fills a temporary
file in the same folder, which is renamed over the target (``os.replace``, atomic on
POSIX) only if the writer finished; a writer that raises or is killed leaves the
target untouched and the temporary file removed (or, if killed, a hidden
``.<name>.partial-<pid>...`` beside it).
"""

import contextlib
import json
import os
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def replacing(path, suffix=None):
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    Parameters
    ----------
    path : path
        The file to write; its folder is created.
    suffix : str, optional
        Ending of the temporary name, for writers that choose the format by it
        (``".png"``, ``".nii.gz"``); default: ``path``'s last suffix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    stem = path.name[: len(path.name) - len(suffix)] if suffix and path.name.endswith(suffix) else path.name
    tmp = path.with_name(f".{stem}.partial-{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    with replacing(path) as tmp:
        tmp.write_text(text)


def write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_json(path, data):
    """Write ``data`` as indented JSON atomically (numpy numbers and arrays and paths
    become plain JSON)."""
    write_text(path, json.dumps(data, indent=2, default=json_default))


def save_array(path, array):
    """Save ``array`` as ``.npy`` atomically."""
    with replacing(path, ".npy") as tmp:
        np.save(tmp, np.asarray(array))


def json_default(value):
    """JSON for the values numpy and pathlib give (``json.dumps(default=...)``)."""
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
