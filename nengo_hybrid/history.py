"""A training stage's history (`nengo_hybrid.stages.train`): per-epoch values and epoch 0.

``history[key]`` is a list with one value per epoch (``"loss"``, ``"val_loss"``, ...,
as Keras logs them); ``history[START_SCORES]`` maps the validation keys to their values
for the weights the stage started from, before its first epoch: for fine-tuning, the
converted network's, which an epoch must beat to be kept.
"""

import numpy as np

START_SCORES = "start"


def curve(history, key):
    """``(epochs, values)`` of ``history[key]``: epochs 1..n, or 0..n with the starting
    weights' value first when the history holds it."""
    values = list(history[key])
    start = history.get(START_SCORES, {})
    if key in start:
        return np.arange(len(values) + 1), [start[key], *values]
    return np.arange(1, len(values) + 1), values
