"""The output-threshold sweep of the three-stage U-Net: the second paper's Table 2 and
Figure 5 (2D Dice against the probability cut-off of the output layer).

    python experiments/threshold_sweep.py run [--profile cpu|paper|quick] [--data DIR |
                                              --images DIR --labels DIR] [--unet DIR]
                                              [--out DIR] [--resume]

The paper sweeps the converted SNN's cut-off from 0.10 to 0.60 and finds its best at 0.48,
close to the default 0.5: a global shift of the output does not explain what conversion
loses.  Here the sweep reads a trained U-Net run (``experiments/unet.py``, its own profile's
folder unless ``--unet``; trained first if it is not there), scores the ANN, the converted
and the fine-tuned SNN of every cell at every cut-off on the cell's *validation* subjects
(the ones the ANN's early stopping held out) and on its test subjects, picks each model's
cut-off on validation and reports it on test.  A cut-off picked on the test subjects would
not be a result.
"""

import nengo_hybrid  # noqa: F401, I001  (first: it quiets TensorFlow)

import sys
from dataclasses import dataclass

import numpy as np

import unet
from nengo_hybrid import sweeps


@dataclass(frozen=True)
class ThresholdSweepConfig:
    """The sweep's settings; the U-Net run it reads has its own configuration."""

    unet_profile: str = "paper"  # the profile of experiments/unet.py whose run is swept
    cutoffs: tuple = tuple(np.round(np.arange(0.10, 0.6001, 0.02), 2))
    validation_subjects: int = 0  # 0: every validation subject of a fold
    seed: int = 0
    paper_best: float = 0.48  # the paper's best cut-off for its converted SNN


PROFILES = {
    "paper": ThresholdSweepConfig(),
    # the cpu U-Net run; its validation subjects cut to 8 per fold (a spiking pass over
    # a fold's 16 costs ~3 minutes per model at T = 40 on 2 cores)
    "cpu": ThresholdSweepConfig(unet_profile="cpu", validation_subjects=8),
    "quick": ThresholdSweepConfig(unet_profile="quick", validation_subjects=2),
}

CAPTION = """\
Table 2 of the three-stage pipeline: 2D Dice (mean over the slices that show hippocampus) of
the U-Net's three models against the output layer's probability cut-off, {first:g} to
{last:g}, pooled over the cells (folds {folds} × losses {losses}) of {unet_dir}. Each model's
cut-off is chosen on validation subjects (the {n_val} subjects its ANN's early stopping held
out of training, {n_val_slices} slices showing hippocampus) and reported on the test subjects
({n_test} subjects, {n_test_slices} slices showing hippocampus); the test column at every
cut-off is shown for the curve, not for choosing. The paper's best cut-off for its
converted SNN: {paper_best:g} (its Table 2 is an image in the text we have)."""


def run(config, images, labels, out_dir, unet_dir=None, resume=False):
    trained = unet.trained_run(config.unet_profile, images, labels, unet_dir)
    return sweeps.threshold_sweep(config, trained, images, labels, out_dir, CAPTION, resume=resume)


def main(argv=None):
    return sweeps.main(argv, __doc__, "threshold_sweep", PROFILES, run)


if __name__ == "__main__":
    sys.exit(main())
