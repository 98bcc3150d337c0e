"""A segmentation experiment cross-validated by subject: folds x losses, each (fold, loss)
a cell that runs the stages in its own folder and is scored on the fold's test subjects,
then one table pooling the cells (`nengo_hybrid.segmentation.pooled_record`).

A cell (``cells/fold<k>/<loss>/``) seeds everything from the configuration alone (never
from the cells run before it), keeps its checkpoints, atlas and ``scores.json``, and is
read back instead of trained again when the run resumes.  The table step reads finished
cells only.

``config`` needs what `nengo_hybrid.stages.run_stages` needs and ``size``, ``axis``,
``intensity``, ``max_subjects``, ``folds``, ``fold_indices()``, ``test_subjects``,
``losses``, ``loss(name)``, ``threshold``, ``atlas_threshold``, ``figure_slices`` and
``figure_loss``.
"""

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from data_prep.hippocampus import cross_validation_folds
from nengo_hybrid import report, segmentation
from nengo_hybrid.atomic import replacing, write_bytes, write_json
from nengo_hybrid.experiment import ExperimentRun, finetuning_record, seed_everything
from nengo_hybrid.segmentation import FLOOR
from nengo_hybrid.stages import evaluate_stages, load_thresholds, spiking_evaluation, validation_split

MODELS = ("ann", "converted", "fine_tuned")
# the paper's Table 1 is an image in the text we have: no numbers to put beside ours
PAPER = {}
COLUMNS = ([("loss", "loss"), ("model", "model")] + segmentation.DICE_COLUMNS
           + [("timesteps", "T")] + segmentation.ACTIVITY_COLUMNS)


def run(config, images, labels, out_dir, make_model, caption, resume=False):
    run = ExperimentRun(config, out_dir, resume)
    with run.timed("load_s"):
        ids = segmentation.subject_ids(images, labels, config.max_subjects)
        slices = segmentation.load(config, images, labels, ids)
    folds = cross_validation_folds(ids, config.folds, config.seed)
    run.write("folds.json", {"seed": config.seed, "images": str(images), "labels": str(labels),
                             "run_folds": list(config.fold_indices()), "test_subjects": config.test_subjects,
                             "folds": [{"train": train, "test": test} for train, test in folds]})
    cells = {}
    for fold in config.fold_indices():
        train, test = fold_slices(config, slices, folds, fold)
        prior = segmentation.atlas(train)
        for loss in config.losses:
            print(f"== fold {fold}, {loss}: {len(train.subjects)} training subjects ({len(train)} slices), "
                  f"{len(test.subjects)} test subjects ({len(test)} slices)", flush=True)
            cells[fold, loss] = run_cell(run, config, make_model, fold, loss, train, test, prior)
    with run.timed("report_s"):
        records = write_table(run.out_dir, config, cells, caption)
    run.finish("table1")
    return records


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
        # the outputs alone: no second pass for the firing rates
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


def run_cell(run, config, make_model, fold, loss, train, test, prior):
    """One fold and loss: the three stages, scored on the fold's test subjects; a
    finished cell is read back when the run resumes."""
    folder = run.out_dir / "cells" / f"fold{fold}" / loss
    if run.resume and (folder / "scores.json").exists():
        return json.loads((folder / "scores.json").read_text())
    # seeded from the configuration alone, not from the cells run before it
    seed_everything(config.seed)
    segmentation.save_atlas(folder, prior)
    model = make_model(config, train.images.shape[1:])
    results = run.stages(model, train.images, train.masks, test.images, config.loss(loss),
                         folder=folder.relative_to(run.out_dir), prefix=f"fold{fold}_{loss}_",
                         groups=train.subject_ids)
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
    report.metric_vs_timesteps(segmentation.dice_sweep(results["sweeps"], slices.images.shape[1:3], slices,
                                                       config.threshold),
                               folder / "dice_vs_timesteps.png", "2D Dice (all slices)",
                               floor=segmentation.scores(masks[FLOOR], slices, config.threshold)["dice_2d"],
                               title=f"U-Net ({loss}) spiking Dice against timesteps")


def write_table(out_dir, config, cells, caption):
    """Table 1 (CSV, JSON, Markdown): the atlas floor, then for each loss its ANN,
    converted and fine-tuned SNN pooled over the folds run; Figures 3 and 4 and the
    timestep curves copied to the top of the run."""
    records = []
    for loss in config.losses:
        by_fold = [cells[fold, loss] for fold in config.fold_indices()]
        models = [cell["models"] for cell in by_fold]
        if not records:  # the atlas is the same whatever the loss
            records.append(dict(segmentation.pooled_record(models, FLOOR), loss=None, timesteps=None))
        for name in MODELS:
            record = dict(segmentation.pooled_record(models, name), loss=loss,
                          timesteps=None if name == "ann" else config.eval_steps)
            if name == "fine_tuned":
                record["finetuning"] = [cell["finetuning"] for cell in by_fold]
            records.append(record)
    floor = records[0]
    for record in records:
        for metric, gain in segmentation.GAINS.items():
            record[gain] = record[metric] - floor[metric]
        record["paper_dice"] = PAPER.get((record["loss"], record["model"]))
    any_cell = next(iter(cells.values()))
    n_target = sum(sum(c["models"][FLOOR]["has_target"]) for c in cells.values()) // len(config.losses)
    report.write_table(out_dir, "table1", records, COLUMNS, caption(config, floor, n_target))
    write_json(out_dir / "thresholds.json", {f"fold{c['fold']}/{c['loss']}": c["thresholds"]
                                             for c in cells.values()})
    figure_cell = out_dir / "cells" / f"fold{config.fold_indices()[0]}" / config.figure_loss
    for name in ("figure3_masks.png", "figure4_firing_rates.png"):
        if (figure_cell / name).exists():
            write_bytes(out_dir / name, (figure_cell / name).read_bytes())
    report.metric_vs_timesteps(
        {f"{c['loss']} {m}": tuple(curve) for c in cells.values() if c["fold"] == any_cell["fold"]
         for m, curve in c["dice_vs_timesteps"].items()},
        out_dir / "dice_vs_timesteps.png", "2D Dice (all slices)", floor=floor["dice_2d"],
        title=f"U-Net spiking Dice against timesteps (fold {any_cell['fold']})")
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


