"""What a converted network's input node shows it at each timestep.

Two codings of an input ``x`` of shape ``(examples, ...)`` as ``(examples, n_steps,
features)``:

==========  ==========================================================================
``repeat``  the value itself at every timestep (what NengoDL's examples and the first
            paper's networks do: the first layer receives a constant current)
``poisson`` a rate-coded spike train (Diehl et al. 2015; Rathi et al. 2020): every
            timestep a value :math:`x \\in [-1, 1]` emits a spike of sign
            :math:`\\mathrm{sign}(x)` with probability :math:`|x|`.  Inputs in
            [0, 1] give binary spikes {0, 1}; zero-mean inputs in [-1, 1] give
            ternary spikes {-1, 0, 1}.
==========  ==========================================================================

Spikes are drawn per example from a generator seeded by ``(seed, example id)``, so an
example's spike train does not depend on which minibatch or chunk it arrives in, and
the same seed gives the same trains whether the data set is coded at once or one
minibatch at a time (which is how `nengo_hybrid.runtime.ConvertedNetwork` feeds it:
the coded trains of a data set are ``n_steps`` times its size).
"""

from dataclasses import dataclass

import numpy as np


def _flat(x):
    x = np.asarray(x, dtype=np.float32)
    return x.reshape((len(x), -1))


def poisson(x, n_steps, seed=0, example_ids=None):
    r"""Poisson spike trains of ``x``: shape ``(examples, n_steps, features)``.

    .. math:: s_t = \mathrm{sign}(x)\ \mathbb{1}[\,U_t < |x|\,], \quad
              U_t \sim \mathcal{U}[0, 1), \qquad \mathbb{E}[s_t] = x

    Parameters
    ----------
    x : array_like
        ``(examples, ...)`` values in [-1, 1].
    n_steps : int
        Timesteps.
    seed : int
        Seeds every example's generator (with the example's id).
    example_ids : array_like of int, optional
        One id per example (default ``0 .. examples - 1``): the same ``(seed, id)``
        draws the same train.

    Raises
    ------
    ValueError
        If any value lies outside [-1, 1] (the probability of a spike is ``|x|``).
    """
    values = _flat(x)
    if values.size and (values.min() < -1 or values.max() > 1 or not np.isfinite(values).all()):
        raise ValueError(
            f"Poisson coding needs inputs in [-1, 1] (a spike's probability is |x|); "
            f"got values in [{values.min():.4g}, {values.max():.4g}]: scale the data to "
            f"[0, 1] (binary spikes) or [-1, 1] (ternary spikes) first"
        )
    ids = np.arange(len(values)) if example_ids is None else np.asarray(example_ids)
    if len(ids) != len(values):
        raise ValueError(f"{len(ids)} example ids for {len(values)} examples")
    spikes = np.empty((len(values), n_steps, values.shape[1]), dtype=np.float32)
    magnitude, sign = np.abs(values), np.sign(values)
    for k, example_id in enumerate(ids):
        rng = np.random.default_rng([int(seed), int(example_id)])
        fired = rng.random((n_steps, values.shape[1]), dtype=np.float32) < magnitude[k]
        spikes[k] = fired * sign[k]
    return spikes


@dataclass(frozen=True)
class RepeatedInput:
    """The input value itself at every timestep."""

    name = "repeat"

    def __call__(self, x, n_steps, seed=0, example_ids=None):
        values = _flat(x)[:, None, :]
        return np.tile(values, (1, n_steps, 1))


@dataclass(frozen=True)
class PoissonInput:
    """Poisson spike trains (`poisson`): binary from [0, 1], ternary from [-1, 1]."""

    name = "poisson"

    def __call__(self, x, n_steps, seed=0, example_ids=None):
        return poisson(x, n_steps, seed=seed, example_ids=example_ids)


ENCODINGS = {"repeat": RepeatedInput(), "poisson": PoissonInput()}


def get_encoding(encoding):
    """The coding named ``encoding`` (``"repeat"``, ``"poisson"``), or ``encoding``
    itself if it is already one; None means ``"repeat"``."""
    if encoding is None:
        return ENCODINGS["repeat"]
    if callable(encoding):
        return encoding
    try:
        return ENCODINGS[encoding]
    except KeyError:
        raise KeyError(f"unknown input coding {encoding!r}; known: {sorted(ENCODINGS)}") from None


def draw_seed(seed, draw):
    """A seed for the ``draw``-th coding of a data set (e.g. one per training epoch, so
    that every epoch sees new spike trains and a resumed run sees the same ones)."""
    return int(np.random.SeedSequence([int(seed), int(draw)]).generate_state(1)[0])
