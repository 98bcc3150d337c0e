"""CAE on hippocampus MRI slices: the paper's Table 2 and Figure 3 (ANN, converted SNN,
hybrid SNN).

    python experiments/cae.py run [--profile paper|quick] [--data DIR | --images DIR --labels DIR]
                                  [--out DIR] [--resume]
    python experiments/cae.py evaluate --checkpoint results/cae [--data DIR | --images DIR
                                       [--labels DIR]] [--out DIR] [--mask-model hybrid]

``run`` reads the Medical Segmentation Decathlon's Task04 Hippocampus (``--data`` names the
data directory holding ``msd_hippocampus/`` or that folder itself; ``--images``/``--labels``
two folders of paired NIfTI volumes instead), splits it by subject (seeded, 90/10), trains
the CAE as an ANN (``nengo.RectifiedLinear``, firing rates scaled by 1000), converts it to
``SpikingRectifiedLinear`` neurons, fine-tunes the converted SNN with
`HybridSpikingRectifiedLinear` neurons, evaluates all three on the test subjects and writes
``results/cae/`` (quick: ``results/cae_quick/``): Table 2 (CSV, JSON, Markdown, with the
paper's numbers and the floor: the training subjects' atlas), the configuration, versions,
seed and split, timings, the atlas, checkpoints and figures (Figure 3's masks, firing rates
per layer, training curves, Dice against timesteps).

``evaluate`` runs a trained run on every volume of another folder, labelled or not, and
writes each subject's predicted mask as NIfTI in the grid of its image
(``OUT/masks/<subject>.nii.gz``); with labels it writes Table 2 as well.
"""

import nengo_hybrid  # noqa: F401, I001  (first: it quiets TensorFlow)

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from data_prep.hippocampus import load_slices, msd_folders, save_mask, split_subjects, subjects
from nengo_hybrid import metrics, report
from nengo_hybrid.losses import BCEDice
from nengo_hybrid.models.cae import build_cae, mask_probabilities
from nengo_hybrid.paths import add_data_argument, data_dir, experiment_parser, resolve_run
from nengo_hybrid.stages import SpikingSettings, TrainSettings, evaluate_stages, run_stages, write_json

PAPER = {"ann": 0.8221, "converted": 0.4859, "hybrid": 0.7648}
PAPER_RATES = {"ann": None, "converted": 708.2347, "hybrid": 731.3800}
MODELS = ("ann", "converted", "hybrid")
FLOOR = "atlas"


@dataclass(frozen=True)
class CAEConfig:
    """Every setting of a CAE run (the ``paper`` profile: the paper's protocol where this
    machine allows it; see the notes on ``ann`` and ``hybrid``)."""

    # volumes padded/cropped about their centre to this size, cut across this axis
    # (0: sagittal slices of 56 x 40; see data_prep.hippocampus)
    size: tuple = (40, 56, 40)
    axis: int = 0
    intensity: str = "unit"
    max_subjects: int = 0  # 0: every subject; else the first ones, sorted by id
    test_fraction: float = 0.1
    seed: int = 0
    filters: tuple = (16, 32, 64, 128)
    bce_weight: float = 0.5
    dice_weight: float = 0.5
    # The paper: Adam at 1e-5 for 100 epochs.  Here, on 18 validation subjects carved
    # from the training ones, 1e-5 had reached a 3D Dice of 0.22 after 8 epochs (1e-4:
    # 0.79; 1e-3: 0.83 by epoch 5, flat after), and 100 epochs of 10-20 s (2 cores) do
    # not fit the 45-minute budget: 1e-3, at most 20 epochs, keeping the best validation
    # epoch and stopping after 4 without progress.
    ann: TrainSettings = TrainSettings(learning_rate=1e-3, epochs=20, batch_size=32, patience=4)
    # Fine-tuning runs every slice for n_steps timesteps (~0.2 s a slice at 80 steps on
    # 2 cores; a full pass over the training split would take ~25 minutes), so an epoch
    # is examples_per_epoch slices drawn anew from it; early stopping as in the paper.
    # 1e-4 raised the converted SNN's validation 2D Dice (0.839 -> 0.850 in 1024 slices).
    finetune: TrainSettings = TrainSettings(learning_rate=1e-4, epochs=4, batch_size=16, n_steps=80,
                                          patience=2, validation_fraction=0.03,
                                          examples_per_epoch=768)
    synapse: float = 0.005
    scale_firing_rates: float = 1000.0
    # nine 5 ms synapses in a chain delay the output by ~45 ms: the converted SNN's Dice
    # is flat from ~70 timesteps on, so the spiking models are read at 80, as the mean
    # output over the last 10 (the hybrid trains on that window)
    eval_steps: int = 80
    eval_window: int = 10
    steps_sweep: tuple = (10, 20, 30, 40, 50, 60, 70, 80, 100)
    eval_batch: int = 20
    # the first paper's SNNs: SpikingRectifiedLinear converted, hybrid fine-tuning, the
    # slice shown at every timestep
    spiking: SpikingSettings = SpikingSettings()
    # firing rates from the first 200 test slices: every layer probed over 80 steps is
    # the slowest pass of an evaluation
    rate_examples: int = 200
    threshold: float = 0.5  # on probabilities (the logits' 0)
    atlas_threshold: float = 0.5
    figure_slices: int = 6

    def loss(self):
        return BCEDice(self.bce_weight, self.dice_weight)


PROFILES = {
    "paper": CAEConfig(),
    "quick": CAEConfig(
        max_subjects=28,
        test_fraction=4 / 28,
        filters=(4, 8, 8, 16),
        ann=TrainSettings(learning_rate=3e-3, epochs=16, batch_size=8),
        finetune=TrainSettings(learning_rate=1e-3, epochs=2, batch_size=16, n_steps=40, patience=2,
                             validation_fraction=0.05, examples_per_epoch=128),
        eval_steps=40,
        eval_window=10,
        steps_sweep=(10, 20, 40, 60),
        eval_batch=16,
        figure_slices=4,
    ),
}


def add_folder_arguments(parser):
    """``--data DIR`` (the data directory or its ``msd_hippocampus`` folder), or
    ``--images DIR`` with ``--labels DIR`` (two folders of NIfTI volumes paired by name)."""
    add_data_argument(parser)
    parser.add_argument("--images", default=None, help="a folder of NIfTI images (instead of --data)")
    parser.add_argument("--labels", default=None, help="the folder of their labels, paired by name")
    return parser


def folders(args):
    """(images, labels) of the command line: ``--images``/``--labels``, else the Decathlon
    layout under ``--data`` (the data directory or the ``msd_hippocampus`` folder)."""
    if args.images:
        return Path(args.images), (Path(args.labels) if args.labels else None)
    if args.labels:
        raise SystemExit("--labels needs --images")
    root = data_dir(args.data)
    if not (root / "imagesTr").is_dir():
        root = root / "msd_hippocampus"
    return msd_folders(root)


def load_split(config, images, labels):
    """Slices of the seeded subject split: (train, test) `Slices`."""
    ids = [s.id for s in subjects(images, labels)]
    if config.max_subjects:
        ids = ids[: config.max_subjects]
    train_ids, test_ids = split_subjects(ids, config.test_fraction, config.seed)
    slices = load_slices(images, labels, ids=ids, size=config.size, axis=config.axis,
                         intensity=config.intensity)
    return slices.select(train_ids), slices.select(test_ids)


def make_model(config, input_shape):
    return build_cae(input_shape, "relu", config.filters, seed=config.seed)


def atlas(train):
    """The floor's prior: the mean of the training subjects' masks at the fixed size."""
    return np.mean(list(train.restack().values()), axis=0)


def atlas_slices(prior, slices, threshold):
    """The atlas thresholded and cut like ``slices``: one mask per slice, the same for
    every subject."""
    cut = np.moveaxis(prior > threshold, slices.axis, 0).astype(np.float32)
    return cut[slices.slice_index][..., None]


def run(config, images, labels, out_dir, resume=False):
    start_time = time.time()
    out_dir = Path(out_dir)
    tf.keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    train, test = load_split(config, images, labels)
    load_s = time.time() - start_time
    print(f"{len(train.subjects)} training subjects ({len(train)} slices), {len(test.subjects)} test "
          f"subjects ({len(test)} slices) of {train.images.shape[1:3]}", flush=True)
    nengo_hybrid.stages.write_run_config(out_dir, dataclasses.asdict(config), resume)
    write_json(out_dir / "split.json", {
        "seed": config.seed, "size": config.size, "axis": config.axis,
        "images": str(images), "labels": str(labels),
        "train": [s.id for s in train.subjects], "test": [s.id for s in test.subjects]})
    write_json(out_dir / "versions.json", report.versions())
    prior = atlas(train)
    report.save_array(out_dir / "atlas.npy", prior)

    model = make_model(config, train.images.shape[1:])
    # early stopping validates on whole training subjects: neighbouring slices of one
    # brain on both sides would make the validation loss optimistic
    results = run_stages(model, config, train.images, train.masks, test.images, config.loss(),
                         out_dir, resume=resume, groups=train.subject_ids)
    records = table(model, config, test, atlas_slices(prior, test, config.atlas_threshold),
                    results["outputs"], results["rates"])
    records[-1]["epochs"] = results["finetune_epochs"]
    records[-1]["best_epoch"] = results["finetune_best_epoch"]
    timings = dict(results["timings"], load_s=load_s)
    report_start = time.time()
    write_report(out_dir, config, records, test, results, results["histories"])
    timings.update(report_s=time.time() - report_start, total_s=time.time() - start_time)
    write_json(out_dir / "timings.json", timings)
    print((out_dir / "table2.md").read_text())
    print(f"total {timings['total_s'] / 60:.1f} min; results in {out_dir}")
    return records


def probabilities(outputs, shape):
    """The probability masks ``(n, H, W)`` of a model's logits ``(n, H * W)``."""
    return mask_probabilities(outputs).reshape((len(outputs),) + tuple(shape))


def scores(config, predicted, slices):
    """Dice of one model's probability masks on labelled ``slices``."""
    slice_dice = metrics.dice_2d(predicted, slices.masks, threshold=config.threshold)
    volume_dice = metrics.dice_3d(predicted, slices.masks, slices.subject_ids, threshold=config.threshold)
    all_2d, on_target = metrics.mean_std(slice_dice.scores), metrics.mean_std(slice_dice.on_target)
    dice_3d = metrics.mean_std(volume_dice.scores)
    return {"dice_2d": all_2d["mean"], "dice_2d_std": all_2d["std"],
            "dice_2d_on_target": on_target["mean"], "dice_2d_on_target_std": on_target["std"],
            "dice_3d": dice_3d["mean"], "dice_3d_std": dice_3d["std"],
            "slice_dice": slice_dice.scores}


def table(model, config, test, floor_masks, predictions, rates):
    """Table 2's records: the atlas floor, then ANN, converted and hybrid."""
    shape = test.images.shape[1:3]
    records = []
    for name, masks in [(FLOOR, floor_masks)] + [(m, probabilities(predictions[m], shape)) for m in MODELS]:
        record = {"model": name, **scores(config, masks, test)}
        del record["slice_dice"]
        floor = records[0] if records else record
        for key, gain in (("dice_2d", "gain_over_floor_2d"), ("dice_2d_on_target", "gain_over_floor_2d_on_target"),
                          ("dice_3d", "gain_over_floor_3d")):
            record[gain] = record[key] - floor[key]
        record.update(paper_dice=PAPER.get(name), paper_firing_rate_hz=PAPER_RATES.get(name),
                      diff_vs_paper=None if name == FLOOR else record["dice_2d"] - PAPER[name])
        if name == FLOOR:
            record.update(firing_rate_hz=None, synaptic_ops=None)
        else:
            record.update(report.activity_columns(model, rates, name, config.eval_steps))
        records.append(record)
    return records


CAPTION = """\
Dice on the {n_test} test subjects ({n_slices} slices of {shape} across axis {axis} of volumes
padded/cropped about their centre to {size}); masks thresholded at probability {threshold}.
2D Dice: the mean ± std over every slice, where a slice whose ground truth is empty scores 1 if
the predicted mask is empty too and 0 if it has any foreground; "on target": over the
{n_target} slices that show hippocampus only. 3D Dice: per subject, the slices stacked.
`atlas` is the floor: the mean of the training subjects' masks thresholded at
{atlas_threshold}, predicted for every test subject (it ignores the image); every gain is over it.
Spiking models (SpikingRectifiedLinear, firing rates scaled by {scale:g}, a {synapse:g} s synapse
on every neuron's output) run {steps} timesteps, their mask being the sigmoid of the logits
averaged over the last {window}. Firing rate: spikes per neuron per second over all neurons.
Synaptic operations per slice: spikes x fan-out summed over layers and timesteps (the input
sends its real values every step); MACs: the ANN's multiply-accumulates. Energy from
keras-spiking's device table: SNN on Loihi, ANN on a GPU (every synop or MAC costs the same,
no memory traffic). Training: the ANN {ann}; the hybrid SNN, on {hybrid_examples} slices an epoch,
{hybrid} ({hybrid_done} epochs run, best epoch {hybrid_best}: 0 means no epoch beat the converted
weights on validation, which were kept). The paper's ANN trained with Adam at 1e-5 for 100 epochs,
which does not fit the time budget here and had reached a validation 3D Dice of 0.22 after 8
epochs, against 0.83 for 1e-3. Paper (ADNI right-hippocampus crops, 2D Dice): ANN 0.8221;
converted 0.4859 at 708.2 Hz; hybrid 0.7648 at 731.4 Hz; ours − paper compares our 2D Dice over
every slice."""


def describe_training(settings):
    """``settings`` (`TrainSettings`) in words, for a caption."""
    words = f"with Adam at {settings.learning_rate:g} for at most {settings.epochs} epochs"
    if settings.patience:
        words += (f", keeping the epoch of least loss on {settings.validation_fraction:.0%} of the "
                  f"training slices held out as whole subjects and stopping after {settings.patience} without progress")
    return words

COLUMNS = [("model", "model"), ("dice_2d", "2D Dice"), ("dice_2d_std", "± std"),
           ("gain_over_floor_2d", "gain over floor"), ("dice_2d_on_target", "2D Dice on target"),
           ("gain_over_floor_2d_on_target", "gain over floor"), ("dice_3d", "3D Dice"),
           ("dice_3d_std", "± std"), ("gain_over_floor_3d", "gain over floor"),
           ("firing_rate_hz", "rate (Hz)"), ("synaptic_ops", "synops/slice"),
           ("ann_macs", "ANN MACs/slice"), ("energy_j_loihi", "SNN J/slice (Loihi)"),
           ("energy_j_ann_gpu", "ANN J/slice (GPU)"), ("paper_dice", "paper Dice"),
           ("diff_vs_paper", "ours − paper"), ("paper_firing_rate_hz", "paper rate (Hz)")]


def figure_rows(config, slices):
    """Figure 3's slices: of each of the first test subjects, its slice with the most
    hippocampus (the central slice where there are no labels)."""
    rows = []
    for subject in slices.subjects[: config.figure_slices]:
        index = np.flatnonzero(slices.subject_ids == subject.id)
        if slices.masks is None:
            rows.append(index[len(index) // 2])
        else:
            rows.append(index[np.argmax(slices.masks[index].sum(axis=(1, 2, 3)))])
    return np.array(rows, dtype=int)


def write_report(out_dir, config, records, slices, results, histories):
    shape = slices.images.shape[1:3]
    masks = {m: probabilities(results["outputs"][m], shape) for m in MODELS}
    rows = figure_rows(config, slices)
    titles = [f"{slices.subject_ids[k]} slice {slices.slice_index[k]}" for k in rows]
    report.firing_rate_bars(results["rates"], out_dir / "firing_rates.png",
                            "CAE: average firing rate per layer")
    if histories:  # an evaluation trains nothing
        report.training_curves(histories, out_dir / "training_curves.png")
    if slices.masks is None:  # no labels: the masks, no scores
        report.mask_grid(slices.images[rows], None, {m: v[rows] for m, v in masks.items()},
                         out_dir / "figure3_masks.png", row_titles=titles)
        return
    per_slice = {m: scores(config, v, slices)["slice_dice"] for m, v in masks.items()}
    report.mask_grid(slices.images[rows], slices.masks[rows], {m: v[rows] for m, v in masks.items()},
                     out_dir / "figure3_masks.png", scores={m: v[rows] for m, v in per_slice.items()},
                     row_titles=titles)
    report.write_table(out_dir, "table2", records, COLUMNS, CAPTION.format(
        n_test=len(slices.subjects), n_slices=len(slices), shape="x".join(map(str, shape)),
        axis=slices.axis, size="x".join(map(str, slices.size)), threshold=config.threshold,
        n_target=int((slices.masks.reshape(len(slices), -1) > 0).any(axis=1).sum()),
        atlas_threshold=config.atlas_threshold, scale=config.scale_firing_rates,
        synapse=config.synapse, steps=config.eval_steps, window=config.eval_window,
        ann=describe_training(config.ann), hybrid=describe_training(config.finetune),
        hybrid_examples=config.finetune.examples_per_epoch or "all", hybrid_done=records[-1].get("epochs", "–"),
        hybrid_best=records[-1].get("best_epoch", "–")))
    floor = next(r["dice_2d"] for r in records if r["model"] == FLOOR)
    sweeps = {model: (config.steps_sweep, [scores(config, probabilities(outputs[t], shape), slices)["dice_2d"]
                                           for t in config.steps_sweep])
              for model, outputs in results["sweeps"].items()}
    report.metric_vs_timesteps(sweeps, out_dir / "dice_vs_timesteps.png", "2D Dice (all slices)",
                               floor=floor, title="CAE spiking Dice against timesteps")


def evaluate(checkpoint, images, labels, out_dir, mask_model="hybrid"):
    """Evaluate a trained run (its ``config.json``, ``atlas.npy`` and ``ann``/``hybrid``
    parameters) on every volume in ``images`` (labels optional), and write each subject's
    predicted mask (of ``mask_model``) as ``out_dir/masks/<subject>.nii.gz``."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    config = report.config_from_json(CAEConfig, json.loads((checkpoint / "config.json").read_text()))
    slices = load_slices(images, labels, size=config.size, axis=config.axis, intensity=config.intensity)
    model = make_model(config, slices.images.shape[1:])
    results = evaluate_stages(model, config, checkpoint, slices.images)
    predicted = probabilities(results["outputs"][mask_model], slices.images.shape[1:3]) > config.threshold
    volumes = slices.restack(predicted.astype(np.uint8))
    written = {}
    for subject in slices.subjects:
        path = save_mask(volumes[subject.id], subject, out_dir / "masks" / f"{subject.id}.nii.gz")
        written[subject.id] = str(path)
    write_json(out_dir / "evaluated.json", {"images": str(images), "labels": None if labels is None else str(labels),
                                            "mask_model": mask_model, "masks": written,
                                            "firing_rate_hz": {m: r["network"] for m, r in results["rates"].items()}})
    records = None
    if slices.masks is not None:
        prior = np.load(checkpoint / "atlas.npy")
        records = table(model, config, slices, atlas_slices(prior, slices, config.atlas_threshold),
                        results["outputs"], results["rates"])
        state = checkpoint / "checkpoints" / "hybrid" / "state.json"
        if state.exists():
            training = json.loads(state.read_text())
            records[-1].update(epochs=training["epoch"], best_epoch=training.get("best_epoch"))
    write_report(out_dir, config, records, slices, results, {})
    if records is not None:
        print((out_dir / "table2.md").read_text())
    print(f"{len(written)} masks ({mask_model}) in {out_dir / 'masks'}")
    return records


def main(argv=None):
    parser, run_parser, eval_parser = experiment_parser(__doc__, "cae", PROFILES)
    eval_parser.add_argument("--mask-model", choices=MODELS, default="hybrid",
                             help="whose masks are written as NIfTI (default: hybrid)")
    for p in (run_parser, eval_parser):
        add_folder_arguments(p)
    args = parser.parse_args(argv)

    images, labels = folders(args)
    if args.command == "run":
        if labels is None:
            raise SystemExit("training needs labels: --labels DIR")
        config, out = resolve_run(args, "cae", PROFILES)
        run(config, images, labels, out, resume=args.resume)
    else:
        evaluate(args.checkpoint, images, labels, args.out or Path(args.checkpoint) / "evaluate",
                 args.mask_model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
