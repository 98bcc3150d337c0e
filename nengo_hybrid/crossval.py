"""A segmentation experiment cross-validated by subject: folds x losses, each (fold, loss)
a cell that runs the stages in its own folder and is scored on the fold's test subjects,
then one table pooling the cells (`nengo_hybrid.segmentation.pooled_record`).

A cell (``cells/fold<k>/<loss>/``, `FoldLossJob`) seeds everything from the
configuration alone (never from the cells run before it), keeps its checkpoints, atlas
and ``scores.json``, and is read back instead of trained again when the run resumes.
The cells run through `nengo_hybrid.cells` (one after another, or as Ray tasks); the
table step reads finished cells only.

``config`` needs what `nengo_hybrid.stages.run_stages` needs and ``size``, ``axis``,
``intensity``, ``max_subjects``, ``folds``, ``fold_indices()``, ``test_subjects``,
``losses``, ``loss(name)``, ``threshold``, ``atlas_threshold``, ``figure_slices``,
``figure_loss`` and ``resources`` (`nengo_hybrid.cells.Resources`).
"""

import dataclasses
import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from data_prep.hippocampus import cross_validation_folds
from nengo_hybrid import report, segmentation
from nengo_hybrid.atomic import replacing, write_bytes, write_json
from nengo_hybrid.cells import Cell, FolderJob, GridOptions, run_cells
from nengo_hybrid.experiment import ExperimentRun, finetuning_record, seed_everything
from nengo_hybrid.segmentation import FLOOR
from nengo_hybrid.stages import (evaluate_stages, load_thresholds, run_stages, spiking_evaluation,
                                 validation_split)

MODELS = ("ann", "converted", "fine_tuned")
# the paper's Table 1 is an image in the text we have: no numbers to put beside ours
PAPER = {}
COLUMNS = ([("loss", "loss"), ("model", "model")] + segmentation.DICE_COLUMNS
           + [("timesteps", "T")] + segmentation.ACTIVITY_COLUMNS)


def run(config, images, labels, out_dir, make_model, caption, resume=False, grid=GridOptions()):
    """Every (fold, loss) cell of ``config`` (`grid_cells`) through ``grid.executor``
    (`nengo_hybrid.cells.run_cells`, each cell asking for ``config.resources``), then
    Table 1 from the finished cells (`write_table`); a cell that failed or is missing
    raises `nengo_hybrid.cells.GridIncomplete` naming it, unless ``grid.partial``."""
    run = ExperimentRun(config, out_dir, resume)
    with run.timed("load_s"):
        ids = segmentation.subject_ids(images, labels, config.max_subjects)
    folds = cross_validation_folds(ids, config.folds, config.seed)
    run.write("folds.json", {"seed": config.seed, "images": str(images), "labels": str(labels),
                             "run_folds": list(config.fold_indices()), "test_subjects": config.test_subjects,
                             "folds": [{"train": train, "test": test} for train, test in folds]})
    cells = grid_cells(config)
    job = FoldLossJob(config, make_model, str(images), str(labels), str(run.out_dir), resume)
    result = run_cells(job, cells, grid.executor, config.resources, grid.address)
    for record in result.records.values():
        for key, seconds in record["timings"].items():
            run.timings[f"fold{record['fold']}_{record['loss']}_{key}"] = seconds
    run.timings["cells_wall_s"] = result.seconds
    run.write("grid.json", {"executor": grid.executor, "address": grid.address,
                            "resources": dataclasses.asdict(config.resources),
                            "finished": sorted(result.records), "failed": result.failures,
                            "cell_seconds": result.seconds})
    records = result.require(cells, grid.partial)
    missing = [cell.name for cell in cells if cell.name not in result.records]
    with run.timed("report_s"):
        records = write_table(run.out_dir, config, {(r["fold"], r["loss"]): r for r in records}, caption,
                              missing=missing)
    run.finish("table1")
    return records


def grid_cells(config):
    """The run's cells: every fold run (`config.fold_indices()`) times every loss, named
    ``fold<k>/<loss>``, in the order the local executor runs them."""
    return [Cell(f"fold{fold}/{loss}", (("fold", fold), ("loss", loss)))
            for fold in config.fold_indices() for loss in config.losses]


@dataclass(frozen=True)
class FoldLossJob(FolderJob):
    """Runs one (fold, loss) cell of a cross-validated run (`run_cell`) from nothing but
    the cell and this job: it reads the run's ``folds.json``, loads the slices of the
    fold's subjects (once per process), and writes ``cells/fold<k>/<loss>/``.  With
    ``resume`` a finished cell is read back and an unfinished one continues from its
    checkpoints.  A Ray worker runs it as the driver would (`nengo_hybrid.cells`)."""

    config: Any
    make_model: Callable
    images: str
    labels: str
    out_dir: str
    resume: bool = False

    def run_cell(self, cell, folder):
        fold, loss = cell["fold"], cell["loss"]
        record = json.loads((Path(self.out_dir) / "folds.json").read_text())
        folds = [(f["train"], f["test"]) for f in record["folds"]]
        ids = sorted({i for train, test in folds for i in train + test})
        train, test = fold_slices(self.config, _slices(self.config, self.images, self.labels, ids), folds, fold)
        print(f"== fold {fold}, {loss}: {len(train.subjects)} training subjects ({len(train)} slices), "
              f"{len(test.subjects)} test subjects ({len(test)} slices)", flush=True)
        return run_cell(folder, self.config, self.make_model, fold, loss, train, test, segmentation.atlas(train),
                        self.resume)


_LOADED = {}


def _slices(config, images, labels, ids):
    """`segmentation.load`, kept for the process: the cells of a run share their slices."""
    key = (images, labels, tuple(ids), tuple(config.size), config.axis, config.intensity)
    if key not in _LOADED:
        _LOADED.clear()  # one run's slices at a time
        _LOADED[key] = segmentation.load(config, images, labels, ids)
    return _LOADED[key]


def fold_slices(config, slices, folds, fold):
    """``(train, test)``: the slices of ``fold``'s training subjects and of its test
    subjects (their first ``config.test_subjects`` if not 0)."""
    train_ids, test_ids = folds[fold]
    return slices.select(train_ids), slices.select(test_ids[:config.test_subjects or None])


def validation_slices(config, train, n_subjects=0):
    """The slices of the subjects that the ANN's early stopping held out of ``train``
    (`nengo_hybrid.stages.validation_split` with the subjects as groups): never trained
    on, never a fold's test subjects, so the place to tune anything after training.
    Their first ``n_subjects`` only if not 0."""
    val_idx, _ = validation_split(len(train), config.ann, groups=train.subject_ids)
    if not len(val_idx):
        raise ValueError("the run's ANN held out no validation subjects (its TrainSettings have no "
                         "patience), so every training subject was trained on: nothing to tune on")
    held_out = list(dict.fromkeys(np.asarray(train.subject_ids)[val_idx]))
    return train.select(held_out[:n_subjects or None])


class TrainedRun:
    """A cross-validated run (`run`) read back from its folder: its configuration,
    folds and cells, and the outputs of its trained models on any slices.

    Parameters
    ----------
    run_dir : path
        The run's output folder (``config.json``, ``folds.json``, ``cells/``).
    config_class : type
        The experiment's configuration dataclass.
    make_model : callable
        ``make_model(config, input_shape)``, the experiment's Keras model.
    """

    def __init__(self, run_dir, config_class, make_model):
        self.run_dir = Path(run_dir)
        for name in ("config.json", "folds.json"):
            if not (self.run_dir / name).exists():
                raise FileNotFoundError(f"{self.run_dir / name}: not a cross-validated run's folder "
                                        f"(no {name}); run the experiment first")
        self.config = report.config_from_json(config_class, json.loads((self.run_dir / "config.json").read_text()))
        record = json.loads((self.run_dir / "folds.json").read_text())
        self.folds = [(fold["train"], fold["test"]) for fold in record["folds"]]
        self.make_model = make_model

    def cells(self):
        """``(fold, loss)`` of every cell the run trained (missing ones raise)."""
        cells = [(fold, loss) for fold in self.config.fold_indices() for loss in self.config.losses]
        missing = [self.cell_dir(*cell) for cell in cells if not (self.cell_dir(*cell) / "scores.json").exists()]
        if missing:
            raise FileNotFoundError(f"unfinished cells in {self.run_dir}: {', '.join(map(str, missing))}; "
                                    f"finish the run (--resume) first")
        return cells

    def cell_dir(self, fold, loss):
        return self.run_dir / "cells" / f"fold{fold}" / loss

    def cell_scores(self, fold, loss):
        """The finished cell's ``scores.json`` (`run_cell`)."""
        path = self.cell_dir(fold, loss) / "scores.json"
        if not path.exists():
            raise FileNotFoundError(f"{path}: the cell is not finished; finish the run (--resume) first")
        return json.loads(path.read_text())

    def load(self, images, labels):
        """Every slice of the run's subjects from ``images``/``labels``."""
        ids = sorted({i for train, test in self.folds for i in train + test})
        return segmentation.load(self.config, images, labels, ids)

    def outputs(self, fold, loss, x, cache=None, reuse=False):
        """``{model: logits (n, H * W)}`` of the cell's ANN, converted and fine-tuned SNN
        on ``x`` (`nengo_hybrid.stages.evaluate_stages`), written to the ``cache`` file
        (``.npz``) if given, and read from it instead with ``reuse`` if it holds the
        outputs of the same ``x``."""
        if cache is not None and reuse and Path(cache).exists():
            with np.load(cache) as saved:
                if str(saved["x_sha1"]) == _fingerprint(x):
                    return {name: saved[name] for name in MODELS}
        model = self.make_model(self.config, x.shape[1:])
        # the outputs alone: no firing rates counted
        outputs = evaluate_stages(model, self.config, self.cell_dir(fold, loss), x, with_rates=False)["outputs"]
        if cache is not None:
            with replacing(Path(cache), ".npz") as tmp:
                np.savez(tmp, x_sha1=_fingerprint(x), **outputs)
        return outputs


    def converted_sweep(self, fold, loss, x, timesteps, scaling=1.0, cache=None, reuse=False):
        """``{T: logits (n, H * W)}``: the cell's converted SNN with every balanced
        threshold times ``scaling``, read at each ``T`` of ``timesteps`` as its output's
        mean over its first ``T`` steps, all from one run of ``max(timesteps)`` steps;
        cached like `outputs`."""
        timesteps = sorted(int(t) for t in timesteps)
        if cache is not None and reuse and Path(cache).exists():
            with np.load(cache) as saved:
                if str(saved["x_sha1"]) == _fingerprint(x) and all(f"T{t}" in saved for t in timesteps):
                    return {t: saved[f"T{t}"] for t in timesteps}
        cell = self.cell_dir(fold, loss)
        thresholds = load_thresholds(cell)
        if thresholds is None:
            raise ValueError(f"{cell}: the converted SNN has no balanced thresholds to scale")
        # read over every step so far: the U-Net's output is the mean potential
        config = replace(self.config, eval_steps=timesteps[-1], eval_window=timesteps[-1],
                         steps_sweep=tuple(timesteps))
        sweep = spiking_evaluation(self.make_model(self.config, x.shape[1:]), config, cell / "ann", x,
                                   {name: scaling * v for name, v in thresholds.items()},
                                   with_rates=False)["sweep"]
        if cache is not None:
            with replacing(Path(cache), ".npz") as tmp:
                np.savez(tmp, x_sha1=_fingerprint(x), **{f"T{t}": sweep[t] for t in timesteps})
        return {t: sweep[t] for t in timesteps}


def _fingerprint(x):
    """The SHA-1 of the examples, so that cached outputs are never those of others."""
    return hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest()


def run_cell(folder, config, make_model, fold, loss, train, test, prior, resume=False):
    """One fold and loss in ``folder``: the three stages (continued from their
    checkpoints with ``resume``), scored on the fold's test subjects; its record, also
    written as ``scores.json``."""
    folder = Path(folder)
    # seeded from the configuration alone, not from the cells run before it
    seed_everything(config.seed)
    segmentation.save_atlas(folder, prior)
    model = make_model(config, train.images.shape[1:])
    results = run_stages(model, config, train.images, train.masks, test.images, config.loss(loss), folder,
                         resume=resume, groups=train.subject_ids)
    floor = segmentation.atlas_slices(prior, test, config.atlas_threshold)
    masks = segmentation.model_masks(results, test.images.shape[1:3], floor)
    cell = {"fold": fold, "loss": loss, "thresholds": results["thresholds"],
            "finetuning": finetuning_record(results), "timings": results["timings"],
            "models": segmentation.cell_scores(model, config, test, masks, results, config.eval_steps),
            "dice_vs_timesteps": segmentation.dice_sweep(results["sweeps"], test.images.shape[1:3], test,
                                                         config.threshold)}
    write_cell_figures(folder, config, test, masks, results, loss)
    write_json(folder / "scores.json", cell)
    return cell


def write_cell_figures(folder, config, slices, masks, results, loss):
    """Figure 3 (masks), Figure 4 (rates per layer with thresholds), training curves and
    Dice against timesteps of one cell."""
    segmentation.mask_figure(folder / "figure3_masks.png", slices,
                             {m: masks[m] for m in ("converted", "fine_tuned")}, config.figure_slices,
                             config.threshold)
    report.firing_rate_bars(results["rates"], folder / "figure4_firing_rates.png",
                            f"U-Net ({loss}): average firing rate per layer, v = threshold",
                            thresholds=results["thresholds"])
    report.training_curves(results["histories"], folder / "training_curves.png")
    segmentation.dice_vs_timesteps(folder / "dice_vs_timesteps.png", f"U-Net ({loss}) spiking Dice against timesteps",
                                   config, slices, masks, results["sweeps"])


def write_table(out_dir, config, cells, caption, missing=()):
    """Table 1 (CSV, JSON, Markdown): the atlas floor, then for each loss its ANN,
    converted and fine-tuned SNN pooled over the folds run; Figures 3 and 4 and the
    timestep curves copied to the top of the run.  ``cells`` maps (fold, loss) to the
    finished cells' records; with ``missing`` cells (a partial grid) the table pools
    the finished ones, every record says ``"partial": true`` and the caption names
    the missing cells."""
    records = []
    for loss in config.losses:
        by_fold = [cells[fold, loss] for fold in config.fold_indices() if (fold, loss) in cells]
        if not by_fold:
            continue
        models = [cell["models"] for cell in by_fold]
        if not records:  # the atlas is the same whatever the loss
            records.append(dict(segmentation.pooled_record(models, FLOOR), loss=None, timesteps=None))
        for name in MODELS:
            record = dict(segmentation.pooled_record(models, name), loss=loss,
                          timesteps=None if name == "ann" else config.eval_steps)
            if name == "fine_tuned":
                record["finetuning"] = [cell["finetuning"] for cell in by_fold]
            records.append(record)
    if missing:
        for record in records:
            record["partial"] = True
    floor = records[0]
    for record in records:
        for metric, gain in segmentation.GAINS.items():
            record[gain] = record[metric] - floor[metric]
        record["paper_dice"] = PAPER.get((record["loss"], record["model"]))
    any_cell = next(iter(cells.values()))
    n_target = sum(sum(c["models"][FLOOR]["has_target"]) for c in cells.values() if c["loss"] == any_cell["loss"])
    text = caption(config, floor, n_target)
    if missing:
        text = (f"PARTIAL TABLE: {len(missing)} cells missing ({', '.join(missing)}); every row pools the "
                f"finished cells only.\n\n{text}")
    report.write_table(out_dir, "table1", records, COLUMNS, text)
    write_json(out_dir / "thresholds.json", {f"fold{c['fold']}/{c['loss']}": c["thresholds"]
                                             for c in cells.values()})
    figure_cell = out_dir / "cells" / f"fold{config.fold_indices()[0]}" / config.figure_loss
    for name in ("figure3_masks.png", "figure4_firing_rates.png"):
        if (figure_cell / name).exists():
            write_bytes(out_dir / name, (figure_cell / name).read_bytes())
    shown = [c for c in cells.values() if c["fold"] == any_cell["fold"]]

    def fold_dice(cell, model):  # on the fold shown, as the curves are (the table pools the folds)
        return float(np.mean(cell["models"][model]["slice_dice"]))

    report.curves_and_numbers(
        {f"{c['loss']} {m}": tuple(curve) for c in shown for m, curve in c["dice_vs_timesteps"].items()},
        out_dir / "dice_vs_timesteps.png", "2D Dice (all slices)", "dice_2d", floor=fold_dice(shown[0], FLOOR),
        ann={f"{c['loss']} ANN": fold_dice(c, "ann") for c in shown},
        title=f"U-Net spiking Dice against timesteps (fold {any_cell['fold']})", fold=any_cell["fold"])
    return records


def evaluate(config_class, make_model, checkpoint, images, labels, out_dir, mask_model="fine_tuned",
             loss="bce_dice", fold=0):
    """Run the cell (``fold``, ``loss``) of a trained run on every volume in ``images``
    (labels optional): NIfTI masks of ``mask_model`` in each image's grid, and with labels
    the table of every model on that folder (``evaluation.{csv,json,md}``)."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    config = report.config_from_json(config_class, json.loads((checkpoint / "config.json").read_text()))
    cell_dir = checkpoint / "cells" / f"fold{fold}" / loss
    if not (cell_dir / "fine_tuned.npz").exists():
        raise SystemExit(f"{cell_dir}: no trained cell for fold {fold} and loss {loss!r} in {checkpoint}")
    slices = segmentation.load(config, images, labels)
    model = make_model(config, slices.images.shape[1:])
    results = evaluate_stages(model, config, cell_dir, slices.images)
    predicted = segmentation.probabilities(results["outputs"][mask_model], slices.images.shape[1:3])
    written = segmentation.write_masks(slices, predicted > config.threshold, out_dir, mask_model,
                                       extra={"images": str(images), "labels": labels and str(labels),
                                              "checkpoint": str(checkpoint), "fold": fold, "loss": loss})
    if slices.masks is not None:
        floor = segmentation.atlas_slices(segmentation.load_atlas(cell_dir), slices, config.atlas_threshold)
        masks = segmentation.model_masks(results, slices.images.shape[1:3], floor)
        cell = segmentation.cell_scores(model, config, slices, masks, results, config.eval_steps)
        records = [dict(segmentation.pooled_record([cell], name), loss=None if name == FLOOR else loss,
                        timesteps=None if name in (FLOOR, "ann") else config.eval_steps) for name in masks]
        report.compare_with_floor_and_paper(records, FLOOR, segmentation.GAINS, PAPER, "paper_dice",
                                            compared="dice_2d")
        report.write_table(out_dir, "evaluation", records, COLUMNS, (
            f"Fold {fold}'s {loss} models of {checkpoint} on {len(slices.subjects)} subjects of {images}; "
            + segmentation.DICE_CAPTION.format(threshold=config.threshold,
                                               n_target=segmentation.n_on_target(slices),
                                               atlas_threshold=config.atlas_threshold)))
        print((out_dir / "evaluation.md").read_text())
    segmentation.mask_figure(out_dir / "figure3_masks.png", slices,
                             {m: v for m, v in segmentation.model_masks(results, slices.images.shape[1:3]).items()
                              if m != "ann"}, config.figure_slices, config.threshold)
    print(f"{len(written)} masks ({mask_model}) in {out_dir / 'masks'}")
    return written


