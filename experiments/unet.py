"""The three-stage spiking U-Net on hippocampus MRI slices: the second paper's Table 1 and
Figures 3 and 4 (ANN -> early-stop conversion to integrate-and-fire neurons -> surrogate-
gradient fine-tuning through time), for three losses, cross-validated by subject.

    python experiments/unet.py run [--profile cpu|paper|quick] [--data DIR | --images DIR
                                   --labels DIR] [--out DIR] [--resume]
                                   [--executor local|ray [--address ADDR]]
                                   [--cpus-per-cell N] [--gpus-per-cell N] [--partial]
    python experiments/unet.py evaluate --checkpoint results/unet [--data DIR | --images DIR
                                        [--labels DIR]] [--loss bce_dice] [--fold 0]
                                        [--mask-model fine_tuned] [--out DIR]

``run`` deals the subjects of the Medical Segmentation Decathlon's Task04 Hippocampus into
five folds (seeded; ``folds.json``), and for every fold it runs and every loss (BCE, Dice,
BCE-Dice) trains the U-Net as an ANN on the other folds' subjects, balances the thresholds
of its integrate-and-fire conversion, fine-tunes the converted SNN through time, and scores
the three models and the atlas floor on the fold's test subjects (``cells/fold<k>/<loss>/``,
resumable).  The cells run one after another, or with ``--executor ray`` as Ray tasks on
a local instance or the cluster at ``--address`` (`nengo_hybrid.cells`).  Table 1 pools the test subjects of every fold run.  ``evaluate`` runs one
trained cell on any folder of volumes and writes its NIfTI masks.

The profiles: ``paper``, the paper's protocol (a GPU job); ``cpu`` (``make unet``), the same
table on 2 CPU cores within 90 minutes, cutting what the caption says; ``quick``, minutes.
"""

import nengo_hybrid  # noqa: F401, I001  (first: it quiets TensorFlow)

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Tuple

from nengo_hybrid import crossval, segmentation
from nengo_hybrid.cells import GridOptions, Resources
from nengo_hybrid.crossval import MODELS
from nengo_hybrid.experiment import describe_training
from nengo_hybrid.losses import BCEDice, BinaryCrossEntropy, DiceLoss
from nengo_hybrid.models.unet import build_unet
from nengo_hybrid.paths import default_out
from nengo_hybrid.stages import THREE_STAGE_IF, Balancing, SpikingSettings, TrainSettings

LOSSES = ("bce", "dice", "bce_dice")


@dataclass(frozen=True)
class UNetConfig:
    """Every setting of a U-Net run; the ``paper`` profile is the paper's protocol."""

    # sagittal slices of 56 x 40 (volumes padded/cropped about their centre)
    size: tuple = (40, 56, 40)
    axis: int = 0
    # zero-mean intensities in [-1, 1]: ternary input spikes (the paper's segmentation
    # networks); "unit" gives [0, 1] and binary spikes
    intensity: str = "zero_mean"
    max_subjects: int = 0  # 0: every subject
    folds: int = 5
    run_folds: Tuple[int, ...] = ()  # the folds trained and tested; (): all of them
    test_subjects: int = 0  # 0: every test subject of a fold; else its first ones
    seed: int = 0
    filters: tuple = (16, 32, 64)
    dropout: float = 0.2
    losses: Tuple[str, ...] = LOSSES
    bce_weight: float = 0.3  # BCE-Dice = 0.3 BCE + 0.7 Dice
    dice_weight: float = 0.7
    smooth: float = 1e-5  # the Dice loss's epsilon
    # one Dice over each minibatch's pixels: per slice, the ~40 % of slices with no
    # hippocampus give the Dice loss a gradient of ~1/epsilon (see DiceLoss)
    batch_dice: bool = True
    # Adam at 1e-3 with ReduceLROnPlateau; 100 epochs, early stopping on whole
    # validation subjects carved from the training ones; batch 26
    ann: TrainSettings = TrainSettings(learning_rate=1e-3, epochs=100, batch_size=26, patience=10,
                                       validation_fraction=0.1, plateau_patience=4, plateau_factor=0.5)
    # surrogate-gradient BPTT at the conversion's T, up to 35 epochs; each weight's
    # per-timestep gradients summed in a fixed order (`nengo_hybrid.gradients`): in
    # TensorFlow's own, which follows its scheduler, a last-bit difference between two runs
    # of one seed grows into other weights
    finetune: TrainSettings = TrainSettings(learning_rate=1e-3, epochs=35, batch_size=26, n_steps=200,
                                            patience=5, validation_fraction=0.1, plateau_patience=2,
                                            plateau_factor=0.5, fixed_order_sums=True)
    # integrate-and-fire neurons need no synapse; their rates are not rescaled
    synapse: float = None
    scale_firing_rates: float = None
    # the early-stop conversion's T: every spiking model is read as the output's
    # membrane potential averaged over all of its T steps
    eval_steps: int = 200
    eval_window: int = 200
    steps_sweep: tuple = (25, 50, 100, 150, 200)
    eval_batch: int = 26
    rate_examples: int = 208
    spiking: SpikingSettings = replace(THREE_STAGE_IF, balancing=Balancing(examples=208, percentile=99.9,
                                                                           scale=1.0, batch_size=26))
    threshold: float = 0.5
    atlas_threshold: float = 0.5
    figure_slices: int = 6
    figure_loss: str = "bce_dice"  # Figures 3 and 4 show this loss's first fold
    # what each (fold, loss) cell asks of its machine: all its cores by default; on a
    # cluster, e.g. 4 cores and 1 GPU (--cpus-per-cell 4 --gpus-per-cell 1)
    resources: Resources = Resources()
    # what this profile cuts from the paper's protocol, for the caption
    departures: str = ""

    def loss(self, name):
        """The task loss ``name`` (on logits)."""
        return {"bce": lambda: BinaryCrossEntropy(),
                "dice": lambda: DiceLoss(smooth=self.smooth, over_batch=self.batch_dice),
                "bce_dice": lambda: BCEDice(self.bce_weight, self.dice_weight, smooth=self.smooth,
                                            over_batch=self.batch_dice)}[name]()

    def fold_indices(self):
        return self.run_folds or tuple(range(self.folds))


PAPER_PROFILE = UNetConfig()
PROFILES = {
    "paper": PAPER_PROFILE,
    # 2 CPU cores, <= 90 minutes, < 16 GB: see benchmarks/surrogate.py for the costs
    "cpu": replace(
        PAPER_PROFILE,
        run_folds=(0,),
        test_subjects=8,
        filters=(8, 16, 32),
        # 30 epochs (was 16, when the validation loss was still falling at the last one; an
        # epoch of the ANN costs ~5 s with oneDNN's kernels, see nengo_hybrid/__init__.py)
        ann=replace(PAPER_PROFILE.ann, epochs=30, patience=4, plateau_patience=2, examples_per_epoch=2048),
        # the epoch kept is the one of best validation Dice on the slices that show
        # hippocampus, the converted weights included: fine-tuning BCE at T = 40 lowered
        # the validation BCE while shrinking every mask (its 2D Dice on target fell from
        # 0.715 converted to 0.679, session 5); keeping the best all-slice Dice instead
        # favoured fewer false positives on empty slices over the on-target Dice the bar
        # reads (BCE-Dice: 0.703 against its ANN's 0.745, session 6). At the paper's 1e-3
        # the training loss rose from the first epoch on (BCE 0.094 -> 0.115, Dice 0.413 ->
        # 0.487) and the Dice cell's validation kept its converted weights (session 7): with
        # 20 minibatches an epoch ReduceLROnPlateau never acts in time, so the rate starts lower.
        # 480 slices an epoch for at most 4 (was 160 for at most 3): 60 minibatches at 1e-4
        # moved the weights so little that on hippocampus slices the fine-tuned SNNs scored
        # within 0.005 of the converted ones (session 12), a quarter of what conversion lost
        finetune=replace(PAPER_PROFILE.finetune, learning_rate=1e-4, epochs=4, batch_size=8, n_steps=40, patience=2,
                         validation_fraction=0.02, examples_per_epoch=480, plateau_patience=1,
                         monitor="val_output_dice_error_on_target"),
        eval_steps=40, eval_window=40, steps_sweep=(10, 20, 30, 40), eval_batch=26,
        rate_examples=52,
        # chosen on 3 validation subjects of fold 0 (the BCE ANN: 3D Dice 0.84): at T = 40
        # a conversion with membranes starting at 0 is silent (0.002: each of twelve
        # layers waits ~1/rate steps for its first spike); started at half the threshold,
        # 0.69 at the 99.9th percentile and 0.78 at the 99th
        spiking=replace(PAPER_PROFILE.spiking, balancing=Balancing(examples=26, percentile=99.0,
                                                                    batch_size=26, initial_potential=0.5)),
        departures=("fold 0 of 5 only, tested on its first 8 subjects; a U-Net of 8/16/32 channels "
                    "(the paper profile's 16/32/64 costs twice as much per timestep here); the ANN on "
                    "2,048 slices an epoch for at most 30 epochs; thresholds balanced on 26 slices at the "
                    "99th percentile instead of the 99.9th; "
                    "conversion, fine-tuning and evaluation at T = 40 timesteps instead of 200, every membrane "
                    "starting at half its threshold instead of 0 (Bu et al. 2022; started at 0, "
                    "twelve IF layers deliver almost nothing to the output in 40 steps; both chosen on "
                    "validation subjects); fine-tuning "
                    "on 480 slices an epoch for at most 4 epochs, minibatches of 8, Adam at 1e-4 instead of "
                    "1e-3 (at 1e-3 the training loss rose from the first epoch), keeping the epoch "
                    "of best validation Dice on hippocampus-bearing slices rather than least "
                    "validation loss")),
    "quick": replace(
        PAPER_PROFILE,
        max_subjects=15, folds=5, run_folds=(0,), filters=(4, 8), losses=("bce", "bce_dice"),
        # patience as long as the training: it never stops early, but holds out the
        # validation subjects that the sweeps tune on
        ann=TrainSettings(learning_rate=3e-3, epochs=8, batch_size=16, patience=8),
        finetune=TrainSettings(learning_rate=1e-3, epochs=1, batch_size=8, n_steps=12,
                               examples_per_epoch=48, fixed_order_sums=True),
        eval_steps=12, eval_window=12, steps_sweep=(6, 12, 24), eval_batch=16, rate_examples=32,
        spiking=replace(PAPER_PROFILE.spiking, balancing=Balancing(examples=16, percentile=99.9,
                                                                    batch_size=16, initial_potential=0.5)),
        figure_slices=3, figure_loss="bce_dice",
        departures=("15 subjects, fold 0 of 5, 2 losses, a one-pooling U-Net of 4/8 channels, "
                    "seconds of training at T = 12: it shows the pipeline works, not what it can do")),
}


def make_model(config, input_shape):
    return build_unet(input_shape, "relu", config.filters, dropout=config.dropout, seed=config.seed)


def run(config, images, labels, out_dir, resume=False, grid=GridOptions()):
    return crossval.run(config, images, labels, out_dir, make_model, caption, resume=resume, grid=grid)


def trained_run(profile, images, labels, unet_dir=None, grid=GridOptions()):
    """The finished run of ``profile`` (in ``unet_dir``, default its results folder) as a
    `nengo_hybrid.crossval.TrainedRun`, trained (or finished, resuming) first if it is not
    there, its cells through ``grid``: what the analyses of the trained U-Net read."""
    unet_dir = Path(unet_dir or default_out("unet", profile))
    if not (unet_dir / "table1.json").exists():
        print(f"no finished U-Net run in {unet_dir}: training it ({profile} profile)", flush=True)
        run(PROFILES[profile], images, labels, unet_dir, resume=True, grid=replace(grid, partial=False))
    return crossval.TrainedRun(unet_dir, UNetConfig, make_model)


def evaluate(checkpoint, images, labels, out_dir, mask_model="fine_tuned", loss="bce_dice", fold=0):
    return crossval.evaluate(UNetConfig, make_model, checkpoint, images, labels, out_dir, mask_model,
                             loss, fold)


CAPTION = """\
Table 1 of the three-stage pipeline: the U-Net (filters {filters}, no bias, average pooling,
dropout {dropout} in the ANN only) on MSD Task04 hippocampus, sagittal slices of {shape}
({intensity} intensities: {coding} Poisson input spikes), {n_folds}-fold cross-validation by
subject; pooled over the test subjects of fold(s) {run_folds} ({n_subjects} subjects, {n_slices}
slices). {dice} Mean ± std over those subjects (3D) and slices (2D); per-fold values in
table1.json. The SNNs are integrate-and-fire neurons (reset by subtraction) with thresholds
balanced at the {percentile}th percentile of each layer's input on {n_balance} training slices
and membranes starting at {initial_potential:g} × threshold, read as the output layer's
potential averaged over T = {steps} timesteps. ANN {ann}; fine-tuning by surrogate-gradient
backpropagation through time, {finetune}. BCE-Dice = {bce_weight} BCE + {dice_weight} Dice,
Dice ε = {smooth:g}, {dice_over}. Departures from the paper's protocol in this profile:
{departures}. The paper's Table 1 (ADNI right-hippocampus crops of 24×56×48) is an image in the
text we have, so its numbers are not beside ours; its text reports converted SNNs well below
their ANNs and fine-tuned SNNs close to them, Dice loss slightly ahead."""


def caption(config, floor, n_target):
    """Table 1's caption for ``config``, its pooled ``floor`` record and the number of
    test slices showing hippocampus."""
    shape = [n for axis, n in enumerate(config.size) if axis != config.axis]
    return CAPTION.format(
        filters=config.filters, dropout=config.dropout, shape="x".join(map(str, shape)),
        intensity=config.intensity, coding="ternary" if config.intensity == "zero_mean" else "binary",
        n_folds=config.folds, run_folds=", ".join(map(str, config.fold_indices())),
        n_subjects=floor["n_subjects"], n_slices=floor["n_slices"],
        dice=segmentation.DICE_CAPTION.format(threshold=config.threshold, n_target=n_target,
                                              atlas_threshold=config.atlas_threshold),
        percentile=config.spiking.balancing.percentile,
        initial_potential=config.spiking.balancing.initial_potential, n_balance=config.spiking.balancing.examples,
        steps=config.eval_steps, ann=describe_training(config.ann),
        finetune=describe_training(config.finetune), bce_weight=config.bce_weight,
        dice_weight=config.dice_weight, smooth=config.smooth,
        dice_over="one Dice over each minibatch's pixels" if config.batch_dice else "one Dice per slice",
        departures=config.departures or "none")


def main(argv=None):
    return segmentation.main(argv, __doc__, "unet", PROFILES, run, evaluate, MODELS, grid=True, evaluate_options=[
        ("--loss", {"choices": LOSSES, "default": "bce_dice", "help": "the trained loss (default: bce_dice)"}),
        ("--fold", {"type": int, "default": 0, "help": "the trained fold (default: 0)"})])


if __name__ == "__main__":
    sys.exit(main())
