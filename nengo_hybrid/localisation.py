r"""Object localisation by box regression (LocNet): the floor, the scores, the table's
rows and the figures, shared by every experiment that predicts one box per image.

Boxes are ``(top, left, bottom, right)`` in [0, 1] of the image.  A model is scored by
the intersection over union of its box with the true one,
:math:`\mathrm{IoU} = |P \cap G| / |P \cup G|` (`nengo_hybrid.metrics.box_iou`): the
mean over the images, and the fraction of images at :math:`\mathrm{IoU} \ge 0.9`.

The floor is the **mean box**: the training split's mean box predicted for every image,
whatever the image (``mean_box``); a model is only as good as its gain over it.

`run` is LocNet's protocol (the first paper's Table 1) on Caltech-101 airplanes: a seeded
train/test split of the images, the boxes standardised (`nengo_hybrid.targets`), the three
stages (`nengo_hybrid.stages.run_stages`) under an IoU-type loss with augmentation that
moves the box with the image, and one table with its figures.  An experiment script
supplies its configuration, its Keras model and a `LocalisationTable` and calls `run`
and `evaluate`.  A configuration needs what `run_stages` needs, and ``image_size``,
``grey``, ``max_images``, ``test_fraction``, ``pixel_offset``, ``standardise_targets``,
``iou_weight`` and the methods ``augmentation()`` and ``regularization()``.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from data_prep.caltech101 import image_ids, load_airplanes, split_ids
from nengo_hybrid import metrics, report
from nengo_hybrid.atomic import write_json
from nengo_hybrid.augment import PixelOffset
from nengo_hybrid.experiment import ExperimentRun, finetuning_record
from nengo_hybrid.losses import StandardisedBoxLoss
from nengo_hybrid.stages import evaluate_stages
from nengo_hybrid.targets import StandardisedTargets

FLOOR = "mean_box"
GOOD_IOU = 0.9  # the "IoU >= 0.9" column

COLUMNS = [("model", "model"), ("iou", "mean IoU"), ("gain_over_floor", "gain over floor"),
           ("gain_over_floor_se", "± s.e."),
           ("frac_iou_ge_0.9", "IoU ≥ 0.9"), ("firing_rate_hz", "rate (Hz)"),
           ("synaptic_ops", "synops/img"), ("ann_macs", "ANN MACs/img"),
           ("energy_j_loihi", "SNN J/img (Loihi)"), ("energy_j_ann_gpu", "ANN J/img (GPU)"),
           ("paper_iou", "paper IoU"), ("diff_vs_paper", "ours − paper"),
           ("paper_firing_rate_hz", "paper rate (Hz)")]


def iou_columns(boxes, true_boxes):
    """The mean IoU of ``boxes`` against ``true_boxes`` and the fraction at IoU >= 0.9."""
    iou = metrics.box_iou(boxes, true_boxes)
    return {"iou": float(iou.mean()), "frac_iou_ge_0.9": float((iou >= GOOD_IOU).mean())}


def table_records(model, results, true_boxes, floor_box, n_steps, paper, paper_rates):
    """The table's records: the floor (``floor_box`` for every image), then each output
    of ``results`` (`run_stages`/`evaluate_stages` results in box units) with its
    activity and cost columns (`nengo_hybrid.report.activity_columns`), each with its
    gain over the floor, the gain's paired standard error (`metrics.paired_difference`),
    every image's IoU and the paper's number (``paper``/``paper_rates``:
    ``{model: value}``) beside it; the last (the fine-tuned SNN) with its training
    columns."""
    floor = np.tile(floor_box, (len(true_boxes), 1))
    floor_iou = metrics.box_iou(floor, true_boxes)
    records = [{"model": FLOOR, **iou_columns(floor, true_boxes), "gain_over_floor_se": None,
                "iou_per_image": floor_iou.tolist(), "firing_rate_hz": None, "synaptic_ops": None}]
    for name, boxes in results["outputs"].items():
        iou = metrics.box_iou(boxes, true_boxes)
        record = {"model": name, **iou_columns(boxes, true_boxes),
                  "gain_over_floor_se": metrics.paired_difference(iou, floor_iou)["se"],
                  "iou_per_image": iou.tolist()}
        record.update(report.activity_columns(model, results["rates"], name, n_steps))
        records.append(record)
    report.compare_with_floor_and_paper(records, FLOOR, {"iou": "gain_over_floor"}, paper, "paper_iou",
                                        compared="iou", paper_rates=paper_rates)
    records[-1].update(finetuning_record(results))
    return records


@dataclass(frozen=True)
class LocalisationTable:
    """What an experiment's table is called, what it is compared with, and its caption.

    Parameters
    ----------
    name : str
        The table's file stem (``table1``: ``table1.{csv,json,md}``).
    title : str
        The network's name in figure titles.
    paper, paper_rates : mapping
        The paper's mean IoU and firing rate (Hz) per model name.
    caption : str
        The caption, formatted with ``test_n`` (test images), ``steps`` (timesteps the
        spiking models run) and ``window`` (the last timesteps their box is read over).
    """

    name: str
    title: str
    paper: Mapping[str, float]
    paper_rates: Mapping[str, Optional[float]]
    caption: str


def load_images(config, root, ids=None):
    """The airplanes ``ids`` (all if None) of the Caltech-101 folder ``root`` with their
    boxes and ids, at ``config.image_size``, pixels shifted by ``-config.pixel_offset``."""
    x, y, ids = load_airplanes(root, config.image_size, ids, config.grey)
    return x - np.float32(config.pixel_offset), y, ids


def load_split(config, root):
    """Images, boxes and ids of the seeded train/test split (``config.seed``,
    ``config.test_fraction``; the first ``config.max_images`` ids if not 0)."""
    ids = image_ids(root)
    if config.max_images:
        ids = ids[: config.max_images]
    train_ids, test_ids = split_ids(ids, config.test_fraction, config.seed)
    return load_images(config, root, train_ids), load_images(config, root, test_ids)


def training_setup(config, x_train, y_train, make_model):
    """What training on the boxes ``y_train`` of the images ``x_train`` needs:
    ``(targets, model, augment, loss)`` — the boxes' standardisation (each corner as its
    offset from the training mean box in units of its spread; `StandardisedTargets`),
    the Keras ANN ``make_model(config, input_shape)``, the augmentation in standardised
    units and the loss (`StandardisedBoxLoss`)."""
    targets = StandardisedTargets.fit(y_train) if config.standardise_targets else StandardisedTargets.identity(4)
    model = make_model(config, x_train.shape[1:])
    # the augmentation sees the pixels and boxes as they were read
    augment = targets.augmentation(PixelOffset(config.augmentation(), config.pixel_offset))
    loss = StandardisedBoxLoss(targets.mean, targets.spread, config.iou_weight)
    return targets, model, augment, loss


def run(config, root, out_dir, make_model, table: LocalisationTable, resume=False):
    """Train and test one run in ``out_dir`` on the airplanes of ``root``; returns the
    table's records.  ``make_model(config, input_shape)`` builds the Keras ANN."""
    run = ExperimentRun(config, out_dir, resume)
    with run.timed("load_s"):
        (x_train, y_train, train_ids), (x_test, y_test, test_ids) = load_split(config, root)
    print(f"{len(x_train)} training and {len(x_test)} test airplanes of {x_train.shape[1:]}", flush=True)
    run.write("split.json", {"seed": config.seed, "train": train_ids, "test": test_ids})

    targets, model, augment, loss = training_setup(config, x_train, y_train, make_model)
    run.write("targets.json", targets.to_json())
    results = run.stages(model, x_train, targets.standardise(y_train), x_test, loss,
                         regularization=config.regularization(), augment=augment)
    results = targets.restore_results(results)
    floor_box = y_train.mean(axis=0)
    run.write("floor_box.json", floor_box)
    with run.timed("report_s"):
        records = write_report(run.out_dir, model, config, x_test, y_test, floor_box, results, table)
    run.finish(table.name)
    return records


def evaluate(config_class, make_model, table: LocalisationTable, checkpoint, root, out_dir):
    """Evaluate a trained run (its ``config.json``, ``targets.json``, ``floor_box.json``
    and stage parameters) on every airplane of ``root`` (any folder in the official
    layout); writes the table and figures in ``out_dir`` and returns the records."""
    checkpoint = Path(checkpoint)
    config = report.config_from_json(config_class, json.loads((checkpoint / "config.json").read_text()))
    floor_box = np.array(json.loads((checkpoint / "floor_box.json").read_text()))
    targets = StandardisedTargets.from_json(json.loads((checkpoint / "targets.json").read_text()))
    x, y, ids = load_images(config, root)
    model = make_model(config, x.shape[1:])
    results = targets.restore_results(evaluate_stages(model, config, checkpoint, x))
    out_dir = Path(out_dir)
    write_json(out_dir / "evaluated_ids.json", {"root": str(root), "ids": ids})
    records = write_report(out_dir, model, config, x, y, floor_box, results, table)
    print((out_dir / f"{table.name}.md").read_text())
    return records


def write_report(out_dir, model, config, images, true_boxes, floor_box, results, table: LocalisationTable):
    """The table (JSON, CSV, Markdown with its caption) of ``results`` on ``images`` and
    the figures: the boxes of the first twelve images, firing rates per layer, training
    curves (a run that trained) and mean IoU against timesteps, the floor marked.
    Returns the records."""
    out_dir = Path(out_dir)
    records = table_records(model, results, true_boxes, floor_box, config.eval_steps, table.paper, table.paper_rates)
    report.write_table(out_dir, table.name, records, COLUMNS, table.caption.format(
        test_n=len(true_boxes), steps=config.eval_steps, window=config.eval_window))
    predictions = results["outputs"]
    shown = np.arange(min(12, len(images)))
    report.box_grid(images[shown], true_boxes[shown], {m: b[shown] for m, b in predictions.items()},
                    out_dir / "boxes.png",
                    ious={m: metrics.box_iou(b, true_boxes)[shown] for m, b in predictions.items()})
    report.firing_rate_bars(results["rates"], out_dir / "firing_rates.png",
                            f"{table.title}: average firing rate per layer")
    if results.get("histories"):  # an evaluation trains nothing
        report.training_curves(results["histories"], out_dir / "training_curves.png")
    floor = next(r["iou"] for r in records if r["model"] == FLOOR)
    ann = next((r["iou"] for r in records if r["model"] == "ann"), None)
    sweeps = {name: (sorted(outputs), [iou_columns(outputs[t], true_boxes)["iou"] for t in sorted(outputs)])
              for name, outputs in results["sweeps"].items()}
    report.curves_and_numbers(sweeps, out_dir / "iou_vs_timesteps.png", "mean IoU", "iou", floor=floor, ann=ann,
                              title=f"{table.title} spiking IoU against timesteps", window=config.eval_window)
    return records
