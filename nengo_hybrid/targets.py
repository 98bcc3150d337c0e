"""Regression targets in units of their spread about the training mean.

A bounding box's corners vary little from image to image (LocNet's airplanes: a variance
of ~1e-3 per coordinate about the mean box), so a network trained on raw corners
finds "predict the mean box" a deep basin: its error there is already tiny, and any
other loss beside it (the firing-rate terms) dominates.  Training on

.. math:: z = \\frac{y - \\mu}{s}

(:math:`\\mu`, :math:`s`: each coordinate's training mean and standard deviation) makes
the floor's error 1 per coordinate, and a network whose output layer starts at zero
starts *at* the floor and has to learn the deviation from it.  Predictions map back as
:math:`\\hat y = \\mu + s\\,\\hat z`.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StandardisedTargets:
    """The map between targets and their standardised form.

    Parameters
    ----------
    mean, spread : ndarray (d,)
        Each coordinate's training mean :math:`\\mu` and spread :math:`s` (> 0).
    """

    mean: np.ndarray
    spread: np.ndarray

    @classmethod
    def fit(cls, y):
        """The mean and standard deviation of each column of the training targets ``y``."""
        y = np.asarray(y, dtype=np.float64)
        spread = y.std(axis=0)
        if not np.all(spread > 0):
            raise ValueError(f"cannot standardise targets with a constant coordinate (spread {spread})")
        return cls(y.mean(axis=0), spread)

    @classmethod
    def identity(cls, d):
        """The map that leaves ``d``-dimensional targets as they are (:math:`\\mu = 0`,
        :math:`s = 1`)."""
        return cls(np.zeros(d), np.ones(d))

    @classmethod
    def from_json(cls, data):
        return cls(np.asarray(data["mean"]), np.asarray(data["spread"]))

    def to_json(self):
        return {"mean": np.asarray(self.mean).tolist(), "spread": np.asarray(self.spread).tolist()}

    def standardise(self, y):
        """:math:`(y - \\mu) / s`, as float32."""
        return ((np.asarray(y) - self.mean) / self.spread).astype(np.float32)

    def restore(self, z):
        """:math:`\\mu + s z`: predictions back in the targets' units (any leading shape)."""
        return (self.mean + self.spread * np.asarray(z)).astype(np.float32)

    def augmentation(self, augment):
        """``augment(x, y, rng)`` (which moves raw targets, e.g. mirrors a box) applied
        to standardised targets: restored, augmented, standardised again."""
        if augment is None:
            return None

        def standardised_augment(x, z, rng):
            x, y = augment(x, self.restore(z), rng)
            return x, self.standardise(y)

        return standardised_augment

    def restore_results(self, results):
        """`nengo_hybrid.stages.run_stages` (or ``evaluate_stages``) results with every
        output and every output of a timestep sweep restored (`restore`)."""
        return dict(results, outputs={name: self.restore(z) for name, z in results["outputs"].items()},
                    sweeps={name: {t: self.restore(z) for t, z in sweep.items()}
                            for name, sweep in results["sweeps"].items()})
