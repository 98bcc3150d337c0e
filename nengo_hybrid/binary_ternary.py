"""The second paper's binary-vs-ternary comparison (its Tables 4 and 5): the same network
trained, converted and fine-tuned once on inputs in [0, 1] (binary input spikes) and once
on inputs in [-1, 1] (ternary), the difference reported with its spread.

* `classification_table`: a classifier per coding and seed (`nengo_hybrid.classification`
  cells), Table 4 of accuracies over seeds;
* `segmentation_table`: the cross-validated U-Net (`nengo_hybrid.crossval`) run once per
  coding on the same folds, Table 5 of Dice pooled over the test subjects.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np

from nengo_hybrid import classification, codings, crossval, report, segmentation
from nengo_hybrid.atomic import write_json
from nengo_hybrid.cells import GridOptions, run_cells
from nengo_hybrid.experiment import ExperimentRun

TABLE4_COLUMNS = [("coding", "coding"), ("model", "model"), ("balanced_accuracy", "balanced accuracy"),
                  ("balanced_accuracy_std", "± std"), ("accuracy", "accuracy"), ("accuracy_std", "± std"),
                  ("firing_rate_hz", "rate (Hz)"), ("timesteps", "T"), ("n", "seeds")]
TABLE5_COLUMNS = [("coding", "coding"), ("model", "model"), ("dice_3d", "3D Dice"), ("dice_3d_std", "± std"),
                  ("dice_2d_on_target", "2D Dice (on target)"), ("dice_2d_on_target_std", "± std"),
                  ("dice_2d", "2D Dice (all slices)"), ("firing_rate_hz", "rate (Hz)"), ("timesteps", "T"),
                  ("n", "folds"), ("n_subjects", "subjects")]
DIFFERENCE_COLUMNS = [("model", "model"), ("metric", "metric"), ("ternary_minus_binary", "ternary − binary"),
                      ("spread", "spread (std)"), ("spread_over", "over"), ("exceeds_spread", "larger than spread")]
# the paper's Tables 4 and 5 are images in the text we have: no numbers, only its finding
PAPER_FINDING = "ternary SNNs score higher than binary ones, in classification and in segmentation"


def classification_table(config, data_dir, make_model, out_dir, caption, resume=False, grid=GridOptions()):
    """Table 4: for each coding of ``config.codings`` and seed of ``config.seeds`` a
    cell (`nengo_hybrid.classification.ClassificationJob`, run through ``grid.executor``
    with ``config.resources``) in ``out_dir``; the floor, then each coding's ANN,
    converted and fine-tuned network (mean and std over the seeds), the
    ternary-minus-binary differences paired by seed, and the figure.  A missing cell
    raises `nengo_hybrid.cells.GridIncomplete` naming it (the differences are paired by
    seed: no partial table).

    ``caption(config, dataset, differences)`` writes the table's caption."""
    run = ExperimentRun(config, out_dir, resume)
    with run.timed("load_s"):
        dataset = classification.load_for(config, data_dir)
    data = dataset.data
    run.write("split.json", {"dataset": dataset.name, "class_names": list(data.class_names),
                             "n_train": int(len(data.y_train)), "n_test": int(len(data.y_test)),
                             "test_files": data.test_files})
    print(f"{len(data.y_train)} training and {len(data.y_test)} test images of {dataset.name}", flush=True)
    grid_cells = classification.grid_cells(config)
    job = classification.ClassificationJob(config, make_model, str(data_dir), str(run.out_dir), resume)
    result = run_cells(job, grid_cells, grid.executor, config.resources, grid.address)
    result.require(grid_cells)
    cells = {(cell["coding"], cell["seed"]): result.records[cell.name] for cell in grid_cells}
    for (coding, seed), cell in cells.items():
        for key, seconds in cell["timings"].items():
            run.timings[f"{coding}_seed{seed}_{key}"] = seconds
    floor = dict(classification.floor_scores(data.y_train, data.y_test), coding=None,
                 model=classification.FLOOR, dataset=dataset.name, n=len(config.seeds))
    records = [floor]
    for coding in config.codings:
        for model in classification.MODELS:
            per_seed = [cells[coding, seed]["models"][model] for seed in config.seeds]
            record = {"coding": coding, "model": model, "dataset": dataset.name, "n": len(config.seeds),
                      "timesteps": None if model == "ann" else config.eval_steps,
                      "per_seed": per_seed}
            for metric in ("accuracy", "balanced_accuracy", "firing_rate_hz"):
                values = [s[metric] for s in per_seed]
                if None in values:
                    record[metric] = None
                    continue
                record[metric] = float(np.mean(values))
                record[f"{metric}_std"] = float(np.std(values))
            records.append(record)
    differences = codings.differences(
        {coding: {model: [cells[coding, seed]["models"][model]["balanced_accuracy"] for seed in config.seeds]
                  for model in classification.MODELS} for coding in config.codings},
        "balanced_accuracy", "seeds")
    _write(run.out_dir, "table4", records, TABLE4_COLUMNS, differences, caption(config, dataset, differences),
           dataset=dataset.name)
    codings.comparison_figure(run.out_dir / "table4_binary_vs_ternary.png", records, "balanced_accuracy",
                              "balanced accuracy (test)", floor=floor["balanced_accuracy"],
                              title=f"Binary vs ternary VGG-5 ({dataset.name.split(' (')[0]})")
    run.finish("table4")
    return records, differences


def segmentation_table(config, images, labels, make_model, unet_caption, out_dir, caption, resume=False,
                       grid=GridOptions()):
    """Table 5: the cross-validated U-Net (``config``, a `UNetConfig`-like configuration)
    run once per coding (``unet_<coding>/``, the same folds: they are dealt from the
    subjects and ``config.seed`` alone); the atlas floor, then each coding's models
    pooled over the test subjects of the folds run, the ternary-minus-binary differences
    paired by fold (by test subject when one fold is run) for each loss.  Each run's
    (fold, loss) cells go through ``grid`` (`nengo_hybrid.crossval.run`).

    ``caption(config, differences)`` writes the table's caption."""
    out_dir = Path(out_dir)
    runs = {}
    for coding in codings.CODINGS:
        coded = replace(config, intensity=codings.INTENSITY[coding])
        print(f"==== the U-Net on {coding} input spikes (intensity {coded.intensity})", flush=True)
        crossval.run(coded, images, labels, out_dir / f"unet_{coding}", make_model, unet_caption, resume=resume,
                     grid=replace(grid, partial=False))
        runs[coding] = crossval.TrainedRun(out_dir / f"unet_{coding}", type(config), make_model)
    records, differences = [], []
    folds = config.fold_indices()
    for loss in config.losses:
        scores = {coding: [run.cell_scores(fold, loss) for fold in folds] for coding, run in runs.items()}
        if not records:  # the atlas depends on the training subjects alone, not the coding
            floor = segmentation.pooled_record([c["models"] for c in scores["ternary"]], crossval.FLOOR)
            records.append(dict(floor, coding=None, loss=None, n=len(folds), dataset=DATASET, timesteps=None))
        for coding in codings.CODINGS:
            for model in crossval.MODELS:
                pooled = segmentation.pooled_record([c["models"] for c in scores[coding]], model)
                records.append(dict(pooled, coding=coding, loss=loss, n=len(folds), dataset=DATASET,
                                    timesteps=None if model == "ann" else config.eval_steps))
        for metric, (key, unit) in _PAIRED.items():
            values = {coding: {model: _paired(scores[coding], model, key, len(folds) > 1)
                               for model in crossval.MODELS} for coding in codings.CODINGS}
            for d in codings.differences(values, metric, "folds" if len(folds) > 1 else unit):
                differences.append(dict(d, loss=loss))
    _write(out_dir, "table5", records, [("loss", "loss")] + TABLE5_COLUMNS, differences,
           caption(config, differences), dataset=DATASET, loss_column=True)
    for loss in config.losses:
        codings.comparison_figure(out_dir / f"table5_binary_vs_ternary_{loss}.png",
                                  [r for r in records if r["loss"] == loss], "dice_3d", "3D Dice (test subjects)",
                                  floor=records[0]["dice_3d"], title=f"Binary vs ternary U-Net ({loss})")
    return records, differences


DATASET = "MSD Task04 hippocampus"
# Table 5's paired metrics: the per-cell scores they come from and what a unit is then
_PAIRED = {"dice_3d": ("subject_dice", "test subjects"), "dice_2d_on_target": ("slice_dice", "test slices on target")}


def _paired(cells, model, key, by_fold):
    """One value per fold (the fold's mean), or, for one fold, one per test subject (3D)
    or test slice showing hippocampus (2D on target)."""
    if by_fold:
        return [float(np.mean(_units(cell["models"][model], key))) for cell in cells]
    return _units(cells[0]["models"][model], key)


def _units(scores, key):
    values = np.asarray(scores[key], dtype=np.float64)
    if key == "slice_dice":
        values = values[np.asarray(scores["has_target"], bool)]
    return values.tolist()


def _write(out_dir, name, records, columns, differences, caption, dataset, loss_column=False):
    """``name``.{csv,md} (the table, then the differences under it) and ``name``.json:
    ``{"dataset", "records", "differences", "paper_finding"}``."""
    lead = [("loss", "loss")] if loss_column else []
    text = report.markdown_table(differences, lead + DIFFERENCE_COLUMNS)
    report.write_table(out_dir, name, records, columns, caption + "\n\nTernary minus binary:\n\n" + text)
    write_json(out_dir / f"{name}.json", {"dataset": dataset, "records": records, "differences": differences,
                                          "paper_finding": PAPER_FINDING})
