"""Binary vs ternary spiking networks: the second paper's Tables 4 (classification, VGG-5)
and 5 (hippocampus segmentation, the U-Net).

    python experiments/binary_ternary.py run [--profile cpu|paper|quick] [--data DIR]
                                             [--table 4|5|both] [--out DIR] [--resume]
                                             [--executor local|ray] [--address ADDR]
                                             [--cpus-per-cell N] [--gpus-per-cell N]

Each network is trained as an ANN on inputs scaled to [0, 1] and, separately, to [-1, 1];
each ANN is converted to integrate-and-fire neurons with balanced thresholds and fed
Poisson spikes of its inputs (binary spikes {0, 1} from [0, 1], ternary {-1, 0, 1} from
[-1, 1]), then fine-tuned by surrogate-gradient backpropagation through time.  The paper
finds the ternary networks ahead; the tables give the difference with its spread over
seeds (Table 4) or folds (Table 5; test subjects when one fold is run) and say whether it
is larger than that spread.

Table 4 runs on CIFAR-10 when the data directory holds it (``python -m data_prep.download
cifar10``), else on a real stand-in this machine has: ten Caltech-101 categories resized to
32 x 32, split per class, scored by class-balanced accuracy.  The tables name their data.
Every (coding, seed) of Table 4 and (coding, fold, loss) of Table 5 is a cell of a grid
(`nengo_hybrid.cells`): one after another, or Ray tasks with ``--executor ray``.
"""

import nengo_hybrid  # noqa: F401, I001  (first: it quiets TensorFlow)

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import unet
from nengo_hybrid import binary_ternary, codings
from nengo_hybrid.atomic import write_bytes
from nengo_hybrid.cells import GridIncomplete, GridOptions, Resources, add_grid_arguments, resources_from_args
from nengo_hybrid.experiment import describe_training
from nengo_hybrid.models.vgg import build_vgg5
from nengo_hybrid.paths import add_data_argument, data_dir, default_out
from nengo_hybrid.stages import THREE_STAGE_IF, Balancing, SpikingSettings, TrainSettings


@dataclass(frozen=True)
class VGGConfig:
    """Table 4's settings; the ``paper`` profile is the paper's kind of protocol."""

    dataset: str = "auto"  # CIFAR-10 if the data directory holds it, else the Caltech stand-in
    size: tuple = (32, 32)
    test_fraction: float = 0.2  # the stand-in's stratified split
    max_train: int = 0  # at most this many training / test images (each class alike); 0: all
    max_test: int = 0
    filters: tuple = (64, 128, 128)
    dense: Optional[tuple] = None  # None: n_flat // 8 each (1,024 at 32 x 32)
    dropout: float = 0.2
    codings: tuple = codings.CODINGS
    seeds: tuple = (0, 1, 2)
    # what each (coding, seed) cell asks of the machine running it (nengo_hybrid.cells)
    resources: Resources = Resources()
    seed: int = 0  # every cell sets its own (`classification.cell_config`)
    intensity: str = "zero_mean"  # every cell sets its coding's
    ann: TrainSettings = TrainSettings(learning_rate=1e-3, epochs=100, batch_size=64, patience=10,
                                       validation_fraction=0.1, plateau_patience=4, plateau_factor=0.5)
    # each weight's per-timestep gradients summed in a fixed order (`nengo_hybrid.gradients`)
    finetune: TrainSettings = TrainSettings(learning_rate=1e-4, epochs=35, batch_size=64, n_steps=200,
                                            patience=5, validation_fraction=0.1, plateau_patience=2,
                                            plateau_factor=0.5, fixed_order_sums=True)
    synapse: float = None
    scale_firing_rates: float = None
    eval_steps: int = 200
    eval_window: int = 200
    steps_sweep: tuple = (50, 100, 200)
    eval_batch: int = 64
    rate_examples: int = 256
    spiking: SpikingSettings = replace(THREE_STAGE_IF, balancing=Balancing(examples=256, percentile=99.9,
                                                                           batch_size=64))
    departures: str = ""


@dataclass(frozen=True)
class BinaryTernaryConfig:
    classification: VGGConfig
    segmentation: unet.UNetConfig
    seed: int = 0


PAPER_VGG = VGGConfig()
UNET_CPU = unet.PROFILES["cpu"]
PROFILES = {
    "paper": BinaryTernaryConfig(PAPER_VGG, unet.PAPER_PROFILE),
    # 2 CPU cores, both tables within 60 minutes
    "cpu": BinaryTernaryConfig(
        # on CIFAR-10 (when the data folder holds it) 1,600 + 400 images, about the stand-in's
        replace(PAPER_VGG, filters=(16, 32, 32), dense=(128, 128), seeds=(0, 1), max_train=1600, max_test=400,
                ann=replace(PAPER_VGG.ann, epochs=30, patience=6, plateau_patience=3),
                finetune=replace(PAPER_VGG.finetune, epochs=2, n_steps=32, batch_size=32, patience=2,
                                 examples_per_epoch=512, plateau_patience=1),
                eval_steps=32, eval_window=32, steps_sweep=(8, 16, 32), eval_batch=64, rate_examples=128,
                spiking=replace(PAPER_VGG.spiking, balancing=Balancing(examples=64, percentile=99.0,
                                                                       batch_size=64, initial_potential=0.5)),
                departures=("VGG-5 of 16/32/32 channels and dense 128-128 (a quarter of the paper's widths), "
                            "2 seeds, at most 1,600 training and 400 test images, "
                            "the ANN for at most 30 epochs; thresholds balanced on 64 training images at the "
                            "99th percentile, membranes starting at half their threshold; conversion, "
                            "fine-tuning and evaluation at T = 32; fine-tuning on 512 images an epoch for at "
                            "most 2 epochs")),
        replace(UNET_CPU, losses=("bce_dice",),
                ann=replace(UNET_CPU.ann, epochs=8),
                finetune=replace(UNET_CPU.finetune, epochs=2, examples_per_epoch=160),
                departures=UNET_CPU.departures
                .replace(f"for at most {UNET_CPU.ann.epochs} epochs", "for at most 8 epochs")
                .replace(f"on {UNET_CPU.finetune.examples_per_epoch} slices an epoch for at most "
                         f"{UNET_CPU.finetune.epochs} epochs", "on 160 slices an epoch for at most 2 epochs")
                + "; BCE-Dice loss only")),
    "quick": BinaryTernaryConfig(
        replace(PAPER_VGG, size=(16, 16), filters=(4, 8, 8), dense=(16, 16), seeds=(0, 1), max_train=480,
                max_test=200,
                ann=TrainSettings(learning_rate=3e-3, epochs=3, batch_size=32),
                finetune=TrainSettings(learning_rate=1e-4, epochs=1, batch_size=32, n_steps=8,
                                       examples_per_epoch=64, fixed_order_sums=True),
                eval_steps=8, eval_window=8, steps_sweep=(4, 8), eval_batch=64, rate_examples=64,
                spiking=replace(PAPER_VGG.spiking, balancing=Balancing(examples=32, percentile=99.0,
                                                                       batch_size=32, initial_potential=0.5)),
                departures="480 training and about 200 test images of 16 x 16, a VGG-5 of 4/8/8 channels, "
                           "seconds of training at T = 8: it shows the pipeline works, not what it can do"),
        replace(unet.PROFILES["quick"], losses=("bce_dice",))),
}


def make_vgg(config, input_shape, n_classes):
    return build_vgg5(input_shape, n_classes, "relu", config.filters, config.dense, config.dropout,
                      seed=config.seed)


TABLE4_CAPTION = """\
Table 4 of the three-stage pipeline: binary vs ternary spiking VGG-5 on {dataset} ({n_train}
training, {n_test} test images, {n_classes} classes), inputs scaled to [0, 1] (binary Poisson
spikes) or to [-1, 1] (ternary spikes); mean and std over {n_seeds} seeds (a seed sets the
weights, the minibatch order and the Poisson draws). Balanced accuracy is the mean recall over
the classes (the floor, the training set's most frequent class for every image, scores
1 / {n_classes}). The SNNs are integrate-and-fire neurons with thresholds balanced at the
{percentile}th percentile on {n_balance} training images, membranes starting at
{initial_potential:g} × threshold, read as the output's potential averaged over T = {steps}.
ANN {ann}; fine-tuning by surrogate-gradient backpropagation through time, {finetune}.
Departures from the paper's protocol: {departures}. The paper's Table 4 (CIFAR-10) is an image
in the text we have; its finding: {finding}. Ternary minus binary (balanced accuracy, paired by
seed): {differences}."""

TABLE5_CAPTION = """\
Table 5 of the three-stage pipeline: the U-Net of Table 1 ({loss_names}) trained, converted and
fine-tuned once on inputs scaled to [0, 1] (binary spikes) and once to [-1, 1] (ternary, the
paper's choice), on the same folds ({folds}); the two runs' own Table 1 captions (unet_binary/,
unet_ternary/) give every setting. Departures from the paper's protocol: {departures}. The
paper's Table 5 is an image in the text we have; its finding: {finding}. Ternary minus binary
(paired {pairing}): {differences}."""


def table4_caption(config, dataset, differences):
    data = dataset.data
    return TABLE4_CAPTION.format(
        dataset=dataset.name, n_train=len(data.y_train), n_test=len(data.y_test),
        n_classes=len(data.class_names), n_seeds=len(config.seeds),
        percentile=config.spiking.balancing.percentile, n_balance=config.spiking.balancing.examples,
        initial_potential=config.spiking.balancing.initial_potential, steps=config.eval_steps,
        ann=describe_training(config.ann, held_out="random images"),
        finetune=describe_training(config.finetune, held_out="random images"),
        departures=config.departures or "none", finding=binary_ternary.PAPER_FINDING,
        differences=codings.describe(differences))


def table5_caption(config, differences):
    return TABLE5_CAPTION.format(
        loss_names=", ".join(config.losses), folds=", ".join(map(str, config.fold_indices())),
        departures=config.departures or "none", finding=binary_ternary.PAPER_FINDING,
        pairing="by fold" if len(config.fold_indices()) > 1 else "by test subject (3D) and test slice (2D)",
        differences="; ".join(f"{d['loss']} {d['metric']}: " + codings.describe([d]) for d in differences))


def run(config, data, out_dir, tables=("4", "5"), resume=False, grid=GridOptions()):
    out_dir = Path(out_dir)
    results = {}
    if "4" in tables:
        results["4"] = binary_ternary.classification_table(config.classification, data, make_vgg,
                                                           out_dir / "classification", table4_caption,
                                                           resume=resume, grid=grid)
        for name in ("table4.md", "table4.csv", "table4.json", "table4_binary_vs_ternary.png"):
            write_bytes(out_dir / name, (out_dir / "classification" / name).read_bytes())
    if "5" in tables:
        root = Path(data) / "msd_hippocampus"
        results["5"] = binary_ternary.segmentation_table(
            config.segmentation, root / "imagesTr", root / "labelsTr", unet.make_model, unet.caption, out_dir,
            table5_caption, resume=resume, grid=grid)
        print((out_dir / "table5.md").read_text())
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="train, convert, fine-tune and score both codings")
    run_parser.add_argument("--profile", choices=sorted(PROFILES), default="paper")
    run_parser.add_argument("--table", choices=("4", "5", "both"), default="both")
    run_parser.add_argument("--out", default=None,
                            help="default: results/binary_ternary (other profiles: results/binary_ternary_<profile>)")
    run_parser.add_argument("--resume", action="store_true", help="read finished cells back, continue the others")
    add_data_argument(run_parser)
    add_grid_arguments(run_parser)
    args = parser.parse_args(argv)
    tables = ("4", "5") if args.table == "both" else (args.table,)
    config = PROFILES[args.profile]
    config = replace(config, **{part: replace(getattr(config, part),
                                              resources=resources_from_args(getattr(config, part).resources, args))
                                for part in ("classification", "segmentation")})
    out = args.out or default_out("binary_ternary", args.profile)
    try:
        run(config, data_dir(args.data), out, tables, resume=args.resume, grid=GridOptions.from_args(args))
    except GridIncomplete as error:
        raise SystemExit(f"{out}: {error}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
