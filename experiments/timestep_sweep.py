"""The converted U-Net against timesteps for several threshold scalings, and each curve's
elbow: the second paper's Figure 6A (how it chose T = 200 for its early-stop conversion).

    python experiments/timestep_sweep.py run [--profile cpu|paper|quick] [--data DIR |
                                             --images DIR --labels DIR] [--unet DIR]
                                             [--out DIR] [--resume] [--executor local|ray]
                                             [--address ADDR] [--cpus-per-cell N]
                                             [--gpus-per-cell N]

The sweep reads a trained U-Net run (``experiments/unet.py``, its own profile's folder
unless ``--unet``; trained first if it is not there).  For each scaling factor the
converted SNN, every balanced threshold times the factor, runs once for the longest T on
validation subjects (never trained on, never tested: T is a choice, so it is made there)
and is read at every T of the sweep; the elbow of each curve is found by kneed, not by eye.
Each (fold, loss, scaling) is a cell of a grid (`nengo_hybrid.cells`): one after another, or
Ray tasks with ``--executor ray``.
"""

import nengo_hybrid  # noqa: F401, I001  (first: it quiets TensorFlow)

import sys
from dataclasses import dataclass

import unet
from nengo_hybrid import sweeps
from nengo_hybrid.cells import GridOptions, Resources

TIMESTEPS = (10, 20, 40, 60, 80, 100, 150, 200, 300, 400, 600, 800, 1000)


@dataclass(frozen=True)
class TimestepSweepConfig:
    """The sweep's settings; the U-Net run it reads has its own configuration."""

    unet_profile: str = "paper"  # the profile of experiments/unet.py whose run is swept
    timesteps: tuple = TIMESTEPS
    scalings: tuple = (0.6, 0.7, 0.8, 0.9, 1.0)
    # (fold, loss) cells whose converted SNN is swept; (): the run's first fold and the
    # loss its Figures 3 and 4 show
    cells: tuple = ()
    validation_subjects: int = 4  # of each fold's validation subjects, the first ones
    seed: int = 0
    paper_elbow: int = 200
    # what each (fold, loss, scaling) cell asks of the machine running it (nengo_hybrid.cells)
    resources: Resources = Resources()


PROFILES = {
    "paper": TimestepSweepConfig(),
    # one T = 1000 run of the 8/16/32 U-Net costs ~7 ms per slice and step on 2 cores:
    # 2 validation subjects' ~50 slices showing hippocampus, ~6 minutes per scaling
    "cpu": TimestepSweepConfig(unet_profile="cpu", validation_subjects=2),
    "quick": TimestepSweepConfig(unet_profile="quick", timesteps=(4, 8, 12, 24, 48, 96), scalings=(0.7, 1.0),
                                 validation_subjects=1),
}

CAPTION = """\
Figure 6A of the three-stage pipeline: 2D Dice (mean over the {n_slices} validation slices
that show hippocampus, of {n_subjects} validation subjects) of the converted U-Net ({cells} of
{unet_dir}) read at T = {first} to {last} timesteps (the output's mean potential over its
first T steps, all T from one run), for every balanced threshold scaled by each factor. The
elbow of each curve by kneed (Kneedle, Satopää et al. 2011): {elbows}; the paper's elbow, at
every scaling: T = {paper_elbow}."""


def run(config, images, labels, out_dir, unet_dir=None, resume=False, grid=GridOptions()):
    trained = unet.trained_run(config.unet_profile, images, labels, unet_dir, grid=grid)
    return sweeps.timestep_sweep(config, trained, images, labels, out_dir, CAPTION, resume=resume, grid=grid)


def main(argv=None):
    return sweeps.main(argv, __doc__, "timestep_sweep", PROFILES, run, grid=True)


if __name__ == "__main__":
    sys.exit(main())
