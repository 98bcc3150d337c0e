"""Fine-tuning the converted U-Net against training the same SNN directly from random
weights: the second paper's Table 3 and Figure 6B (validation Dice against minibatches).

    python experiments/finetune_vs_direct.py run [--profile cpu|paper|quick] [--data DIR |
                                                 --images DIR --labels DIR] [--unet DIR]
                                                 [--out DIR] [--resume] [--executor local|ray]
                                                 [--address ADDR] [--cpus-per-cell N]
                                                 [--gpus-per-cell N] [--partial]

Reads a trained U-Net run (``experiments/unet.py``, its own profile's folder unless
``--unet``; trained first if it is not there) for one cell's ANN, thresholds and subjects.
For each seed, the integrate-and-fire SNN is trained by surrogate-gradient backpropagation
through time from the early-stop conversion of that ANN (fine-tuning) and from random
weights (direct training), with the same T, optimiser, schedule and minibatch order, and
scored on the cell's validation subjects (held out of both trainings and of the ANN's) at
each checkpoint.  The paper: fine-tuning converges much faster and higher.
"""

import nengo_hybrid  # noqa: F401, I001  (first: it quiets TensorFlow)

import sys
from dataclasses import dataclass

import unet
from nengo_hybrid import convergence, sweeps
from nengo_hybrid.cells import GridOptions, Resources
from nengo_hybrid.stages import TrainSettings


@dataclass(frozen=True)
class FinetuneVsDirectConfig:
    """The comparison's settings; the U-Net run it starts from has its own."""

    unet_profile: str = "paper"  # the profile of experiments/unet.py whose run is read
    cell: tuple = ()  # (fold, loss); (): the run's first fold and its figure loss
    seeds: tuple = (0, 1, 2)
    # validation Dice is read after each of these numbers of minibatches (multiples of
    # the first, which is one epoch)
    checkpoints: tuple = (50, 100, 200, 400, 800)
    # both modes; n_steps None: the U-Net run's T; each weight's per-timestep gradients
    # summed in a fixed order (`nengo_hybrid.gradients`)
    train: TrainSettings = TrainSettings(learning_rate=1e-3, epochs=1, batch_size=26, n_steps=None,
                                         fixed_order_sums=True)
    validation_subjects: int = 0  # 0: every validation subject of the cell's fold
    target_fraction: float = 0.9  # of the ANN's validation Dice
    seed: int = 0
    # what each (mode, seed) cell asks of the machine running it (nengo_hybrid.cells)
    resources: Resources = Resources()


PROFILES = {
    "paper": FinetuneVsDirectConfig(),
    # the cpu U-Net (8/16/32 channels) at T = 20 with minibatches of 8 costs ~2.3 s a
    # minibatch on 2 cores: 160 minibatches per run, 6 runs
    "cpu": FinetuneVsDirectConfig(unet_profile="cpu", checkpoints=(20, 40, 80, 160),
                                  train=TrainSettings(learning_rate=1e-3, epochs=1, batch_size=8, n_steps=20,
                                                      fixed_order_sums=True),
                                  validation_subjects=2),
    "quick": FinetuneVsDirectConfig(unet_profile="quick", checkpoints=(4, 8, 16),
                                    train=TrainSettings(learning_rate=1e-3, epochs=1, batch_size=8, n_steps=None,
                                                        fixed_order_sums=True),
                                    validation_subjects=1),
}

CAPTION = """\
Table 3 of the three-stage pipeline: 2D Dice (mean over the {n_val_slices} validation slices
showing hippocampus, of {n_val} validation subjects never trained on) of the integrate-and-fire
U-Net after each number of training minibatches, fine-tuned from the early-stop conversion of
the ANN of fold {fold}, {loss} ({unet_dir}) or trained directly from random weights; mean and
std over {seeds} seeds (a seed sets the minibatch order, the Poisson draws and the random
weights). Both: surrogate-gradient backpropagation through time at T = {steps}, minibatches of
{batch}, Adam at {lr:g}, thresholds balanced on the training slices with their starting weights,
{n_train} training subjects. Target: {fraction:g} × the ANN's validation Dice ({ann:.4f}) =
{target:.4f}; "minibatches to target" lists each seed's first checkpoint at or above it. The
paper's Table 3 is an image in the text we have: it reports fine-tuning converging much faster
and higher than direct training."""


def run(config, images, labels, out_dir, unet_dir=None, resume=False, grid=GridOptions()):
    trained = unet.trained_run(config.unet_profile, images, labels, unet_dir, grid=grid)
    return convergence.compare(config, trained, images, labels, out_dir, CAPTION, resume=resume, grid=grid)


def main(argv=None):
    return sweeps.main(argv, __doc__, "finetune_vs_direct", PROFILES, run, grid=True)


if __name__ == "__main__":
    sys.exit(main())
