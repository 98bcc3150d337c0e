"""A segmentation experiment on held-out subjects: one seeded split by subject, the three
stages (`nengo_hybrid.stages.run_stages`) at a main timestep budget and, if the
configuration names one, a short budget from the same ANN (`nengo_hybrid.budgets`), and
one table with its figures.

This is the CAE's protocol (the first paper's Table 2); the cross-validated U-Net's is
`nengo_hybrid.crossval`.  An experiment script supplies its configuration, its Keras model
and a `HeldOutTable` — the table's name, the paper's numbers and the caption — and calls
`run` and `evaluate`.

A configuration needs what `run_stages` needs, and ``size``, ``axis``, ``intensity``,
``max_subjects``, ``test_fraction``, ``threshold``, ``atlas_threshold``,
``figure_slices``, ``rate_examples``, a method ``loss()`` (the task loss) and a method
``short_budget()`` (the configuration at the short budget, or None).
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

from data_prep.hippocampus import split_subjects
from nengo_hybrid import report, segmentation
from nengo_hybrid.budgets import budget_records, budget_sweeps
from nengo_hybrid.experiment import ExperimentRun
from nengo_hybrid.segmentation import FLOOR
from nengo_hybrid.stages import evaluate_stages

COLUMNS = ([("model", "model"), ("budget", "budget"), ("timesteps", "timesteps")] + segmentation.DICE_COLUMNS
           + segmentation.ACTIVITY_COLUMNS
           + [("paper_dice", "paper Dice"), ("diff_vs_paper", "ours − paper"),
              ("paper_firing_rate_hz", "paper rate (Hz)")])

SHORT_FOLDER = "short"


@dataclass(frozen=True)
class HeldOutTable:
    """What an experiment's table is called, what it is compared with, and its caption.

    Parameters
    ----------
    name : str
        The table's file stem (``table2``: ``table2.{csv,json,md}``).
    title : str
        The network's name in figure titles.
    masks_file : str
        The file name of the figure of predicted masks.
    paper, paper_rates : mapping
        The paper's 2D Dice and firing rate (Hz) per model name; compared with our 2D
        Dice on the slices that show the target.
    caption : callable
        ``caption(config, slices, records, short)``: the table's caption for the test
        ``slices``, the table's ``records`` and whether a short budget ran.
    """

    name: str
    title: str
    masks_file: str
    paper: Mapping[str, float]
    paper_rates: Mapping[str, Optional[float]]
    caption: Callable


def split_slices(config, images, labels):
    """The slices of the training and the test subjects: ``config.max_subjects`` of the
    labelled subjects (0: all), split by subject, seeded by ``config.seed``, with
    ``config.test_fraction`` held out for testing."""
    ids = segmentation.subject_ids(images, labels, config.max_subjects)
    train_ids, test_ids = split_subjects(ids, config.test_fraction, config.seed)
    slices = segmentation.load(config, images, labels, ids)
    return slices.select(train_ids), slices.select(test_ids)


def run(config, images, labels, out_dir, make_model, table: HeldOutTable, resume=False):
    """Train and test one run in ``out_dir``: split the subjects of ``images``/``labels``
    (seeded, ``config.test_fraction`` held out), build the training subjects' atlas (the
    floor), run the stages at the main budget and at ``config.short_budget()`` (from the
    same ANN, in ``out_dir/short``), and write the table and figures.  Returns the
    table's records."""
    run = ExperimentRun(config, out_dir, resume)
    with run.timed("load_s"):
        train, test = split_slices(config, images, labels)
    print(f"{len(train.subjects)} training subjects ({len(train)} slices), {len(test.subjects)} test "
          f"subjects ({len(test)} slices) of {train.images.shape[1:3]}", flush=True)
    run.write("split.json", {"seed": config.seed, "size": config.size, "axis": config.axis,
                             "images": str(images), "labels": str(labels),
                             "train": [s.id for s in train.subjects], "test": [s.id for s in test.subjects]})
    prior = segmentation.atlas(train)
    segmentation.save_atlas(run.out_dir, prior)

    model = make_model(config, train.images.shape[1:])
    # early stopping validates on whole training subjects: neighbouring slices of one
    # brain on both sides would make the validation loss optimistic
    results = run.stages(model, train.images, train.masks, test.images, config.loss(),
                         groups=train.subject_ids)
    short = None
    if config.short_budget() is not None:
        short = run.stages(model, train.images, train.masks, test.images, config.loss(), folder=SHORT_FOLDER,
                           prefix="short_", config=config.short_budget(), groups=train.subject_ids,
                           trained_ann=run.out_dir / "ann")
    with run.timed("report_s"):
        records = write_report(run.out_dir, model, config, test, prior, results, table, short)
    run.finish(table.name)
    return records


def write_report(out_dir, model, config, slices, prior, results, table: HeldOutTable, short=None):
    """The table (with labels), the masks figure, firing rates, training curves and Dice
    against timesteps of one run's ``results`` on ``slices``; returns the records (None
    without labels).

    ``short``: the results at ``config.short_budget()``, whose spiking models become more
    records, each marked with its budget and timesteps."""
    shape = slices.images.shape[1:3]
    floor = None if slices.masks is None else segmentation.atlas_slices(prior, slices, config.atlas_threshold)
    budgets = [("long", config, results)] + ([] if short is None else [("short", config.short_budget(), short)])
    masks = segmentation.model_masks(results, shape, floor)
    segmentation.run_figures(out_dir, table.title, config, slices, masks, results, table.masks_file,
                             budget_sweeps(budgets))
    if slices.masks is None:  # no labels: the masks, no scores
        return None

    def score(budget_config, budget_results, main):
        budget_masks = masks if main else segmentation.model_masks(budget_results, shape)
        return segmentation.score_records(model, budget_config, slices, budget_masks, budget_results,
                                          budget_config.eval_steps)

    records = budget_records(score, budgets)
    report.compare_with_floor_and_paper(records, FLOOR, segmentation.GAINS, table.paper, "paper_dice",
                                        compared="dice_2d_on_target", paper_rates=table.paper_rates)
    report.write_table(out_dir, table.name, records, COLUMNS,
                       table.caption(config, slices, records, short is not None))
    return records


def evaluate(config_class, make_model, table: HeldOutTable, checkpoint, images, labels, out_dir,
             mask_model="hybrid"):
    """Evaluate a trained run (its ``config.json``, atlas and parameters; the short
    budget's too if it ran) on every volume in ``images`` (labels optional), and write
    each subject's predicted mask (of ``mask_model``) as ``out_dir/masks/<subject>.nii.gz``;
    with labels, the table as well.  Returns the records (None without labels)."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    config = report.config_from_json(config_class, json.loads((checkpoint / "config.json").read_text()))
    slices = segmentation.load(config, images, labels)
    model = make_model(config, slices.images.shape[1:])
    results = evaluate_stages(model, config, checkpoint, slices.images)
    short = None
    if config.short_budget() is not None and (checkpoint / SHORT_FOLDER).is_dir():
        short = evaluate_stages(model, config.short_budget(), checkpoint / SHORT_FOLDER, slices.images,
                                trained_ann=checkpoint / "ann")
    predicted = segmentation.probabilities(results["outputs"][mask_model], slices.images.shape[1:3])
    written = segmentation.write_masks(
        slices, predicted > config.threshold, out_dir, mask_model,
        extra={"images": str(images), "labels": None if labels is None else str(labels),
               "firing_rate_hz": {m: r["network"] for m, r in results["rates"].items()}})
    records = write_report(out_dir, model, config, slices, segmentation.load_atlas(checkpoint), results, table,
                           short)
    if records is not None:
        print((out_dir / f"{table.name}.md").read_text())
    print(f"{len(written)} masks ({mask_model}) in {out_dir / 'masks'}")
    return records


def rate_slices(config, slices):
    """Which test slices the firing rates were measured on, in words: the first
    ``config.rate_examples`` (and of how many subjects), or all of them."""
    n = len(slices) if config.rate_examples is None else min(config.rate_examples, len(slices))
    if n == len(slices):
        return f"all {n} test slices ({len(slices.subjects)} subjects)"
    n_subjects = len(set(slices.subject_ids[:n]))
    return f"the first {n} test slices ({n_subjects} of the {len(slices.subjects)} subjects)"
