"""Analyses of a trained cross-validated segmentation run (`nengo_hybrid.crossval`):
sweeps that re-read its models rather than train new ones.

`threshold_sweep` scores every model at a range of output cut-offs (the second paper's
Table 2 and Figure 5), choosing each model's cut-off on validation subjects and
reporting it on test subjects.  `timestep_sweep` reads the converted SNN at every T of a
range for several scalings of its thresholds, and finds each curve's elbow (Figure 6A).
"""

from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nengo_hybrid import metrics, report, segmentation  # noqa: E402
from nengo_hybrid.cells import (Cell, FolderJob, GridIncomplete, GridOptions, add_grid_arguments, run_cells,  # noqa: E402
                                run_from_args)
from nengo_hybrid.atomic import write_json  # noqa: E402
from nengo_hybrid.crossval import MODELS, fold_slices, validation_slices  # noqa: E402
from nengo_hybrid.experiment import ExperimentRun  # noqa: E402
from nengo_hybrid.paths import experiment_parser, resolve_run  # noqa: E402

SPLITS = ("validation", "test")


def on_target_dice_by_cutoff(probabilities, masks, cutoffs):
    """``(len(cutoffs), n_on_target)``: the 2D Dice of every slice that shows the
    structure, with the probability masks cut at each cut-off (foreground where
    :math:`p >` cut-off)."""
    return np.stack([metrics.dice_2d(probabilities, masks, threshold=cutoff).on_target
                     for cutoff in cutoffs])


def best_cutoff(cutoffs, curve):
    """The cut-off of the highest mean Dice; of equal ones, the nearest to 0.5 (the
    default a tie gives no reason to leave)."""
    curve = np.asarray(curve)
    ties = np.flatnonzero(curve >= curve.max() - 1e-12)
    return float(cutoffs[min(ties, key=lambda k: abs(cutoffs[k] - 0.5))])


def threshold_sweep(config, trained, images, labels, out_dir, caption, resume=False):
    """Table 2 and Figure 5 of ``trained`` (a `nengo_hybrid.crossval.TrainedRun`).

    For every cell (fold, loss) the ANN, converted and fine-tuned SNN are run on the
    fold's validation subjects (`nengo_hybrid.crossval.validation_slices`, the first
    ``config.validation_subjects``) and its test subjects; the on-target 2D Dice at
    every cut-off of ``config.cutoffs`` is pooled over the slices of all cells.  Each
    model's cut-off is the best on validation (`best_cutoff`); the table gives both
    splits at every cut-off and the test Dice at the chosen one and at 0.5.

    Writes ``table2.{csv,md}``, ``table2.json`` (``best_threshold``: the converted
    SNN's, ``chosen_on``, ``best_thresholds`` per model, ``records``: one per model,
    cut-off and split with ``dice_2d_on_target``), ``figure5_dice_vs_cutoff.png``,
    and the models' outputs per cell and split under ``cells/`` (reused with
    ``resume``).
    """
    run = ExperimentRun(config, out_dir, resume)
    cutoffs = np.asarray(config.cutoffs, dtype=float)
    with run.timed("load_s"):
        slices = trained.load(images, labels)
    shape = slices.images.shape[1:3]
    scores = {(split, model): [] for split in SPLITS for model in MODELS}
    subjects = {}
    cells = trained.cells()
    for fold, loss in cells:
        train, test = fold_slices(trained.config, slices, trained.folds, fold)
        parts = {"validation": validation_slices(trained.config, train, config.validation_subjects),
                 "test": test}
        subjects[f"fold{fold}/{loss}"] = {split: [s.id for s in part.subjects] for split, part in parts.items()}
        for split, part in parts.items():
            cache = run.out_dir / "cells" / f"fold{fold}" / loss / f"{split}_outputs.npz"
            print(f"== fold {fold}, {loss}: {split} ({len(part.subjects)} subjects, {len(part)} slices)",
                  flush=True)
            with run.timed(f"fold{fold}_{loss}_{split}_s"):
                outputs = trained.outputs(fold, loss, part.images, cache=cache, reuse=resume)
            for model in MODELS:
                probabilities = segmentation.probabilities(outputs[model], shape)
                scores[split, model].append(on_target_dice_by_cutoff(probabilities, part.masks, cutoffs))
    # pooled over the slices of every cell: the mean at each cut-off
    pooled = {key: np.concatenate(parts, axis=1) for key, parts in scores.items()}
    curves = {key: value.mean(axis=1) for key, value in pooled.items()}
    best = {model: best_cutoff(cutoffs, curves["validation", model]) for model in MODELS}
    records = [{"model": model, "threshold": float(cutoff), "split": split,
                "dice_2d_on_target": float(curves[split, model][k]),
                "dice_2d_on_target_std": float(pooled[split, model][k].std())}
               for model in MODELS for split in SPLITS for k, cutoff in enumerate(cutoffs)]
    at = {model: int(np.flatnonzero(np.isclose(cutoffs, best[model]))[0]) for model in MODELS}
    default = np.flatnonzero(np.isclose(cutoffs, 0.5))
    summary = [{"model": model, "best_threshold": best[model],
                "validation_at_best": float(curves["validation", model][at[model]]),
                "test_at_best": float(curves["test", model][at[model]]),
                "test_at_0.5": float(curves["test", model][default[0]]) if len(default) else None}
               for model in MODELS]
    words = caption.format(first=cutoffs[0], last=cutoffs[-1],
                           folds=", ".join(str(f) for f in dict.fromkeys(f for f, _ in cells)),
                           losses=", ".join(dict.fromkeys(loss for _, loss in cells)), unet_dir=trained.run_dir,
                           n_val=_distinct(subjects, "validation"),
                           n_val_slices=pooled["validation", MODELS[0]].shape[1],
                           n_test=_distinct(subjects, "test"), n_test_slices=pooled["test", MODELS[0]].shape[1],
                           paper_best=config.paper_best)
    _write_table(run.out_dir, cutoffs, curves, best, summary, words)
    run.write("table2.json", {"best_threshold": best["converted"], "chosen_on": "validation",
                              "best_thresholds": best, "paper_best_threshold": config.paper_best,
                              "summary": summary, "records": records, "subjects": subjects,
                              "caption": words})
    dice_vs_cutoff_figure(run.out_dir / "figure5_dice_vs_cutoff.png", cutoffs, curves, best, config.paper_best)
    run.finish("table2")
    return records


def _distinct(subjects, split):
    """How many distinct subjects the cells used for ``split``."""
    return len({i for cell in subjects.values() for i in cell[split]})


def _write_table(out_dir, cutoffs, curves, best, summary, caption):
    """table2.{csv,md}: one row per cut-off, a validation and a test column per model,
    the chosen cut-offs marked; then each model's chosen cut-off and its test Dice."""
    rows = []
    for k, cutoff in enumerate(cutoffs):
        row = {"threshold": f"{cutoff:.2f}"}
        for model in MODELS:
            mark = " ◀" if np.isclose(cutoff, best[model]) else ""
            row[f"{model}_validation"] = f"{curves['validation', model][k]:.4f}{mark}"
            row[f"{model}_test"] = float(curves["test", model][k])
        rows.append(row)
    columns = [("threshold", "cut-off")] + [
        (f"{model}_{split}", f"{model} ({split})") for model in MODELS for split in SPLITS]
    chosen = "; ".join(f"{s['model']}: {s['best_threshold']:.2f} (test {s['test_at_best']:.4f}, at 0.5 "
                       f"{s['test_at_0.5']:.4f})" for s in summary if s["test_at_0.5"] is not None)
    report.write_table(out_dir, "table2", rows, columns,
                       caption + f"\n\n◀ the cut-off chosen on validation. Chosen: {chosen}.")


def dice_vs_cutoff_figure(path, cutoffs, curves, best, paper_best):
    """Figure 5: Dice against the cut-off, one colour per model, validation solid and
    test dashed, each model's chosen cut-off marked and the paper's best drawn."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, model in enumerate(MODELS):
        colour = f"C{k}"
        ax.plot(cutoffs, curves["validation", model], "-", color=colour, label=f"{model} (validation)")
        ax.plot(cutoffs, curves["test", model], "--", color=colour, label=f"{model} (test)")
        index = int(np.flatnonzero(np.isclose(cutoffs, best[model]))[0])
        ax.plot([best[model]], [curves["validation", model][index]], "o", color=colour)
    ax.axvline(paper_best, color="grey", linestyle=":", label=f"the paper's best ({paper_best:g})")
    ax.set(xlabel="output cut-off (probability)", ylabel="2D Dice (slices showing hippocampus)",
           title="Dice against the output cut-off (• chosen on validation)")
    ax.legend(fontsize=7)
    report.save_figure(fig, path)


def elbow(timesteps, dice):
    """The elbow of an increasing, flattening curve of Dice against timesteps, found by
    kneed's Kneedle (Satopää et al. 2011: the point farthest below the line through the
    curve's ends, normalised to the unit square); None if it finds none (a flat or
    non-concave curve)."""
    from kneed import KneeLocator  # one use; its import is slow

    if len(timesteps) < 3 or np.ptp(dice) <= 0:
        return None
    knee = KneeLocator(list(timesteps), list(dice), curve="concave", direction="increasing").knee
    return None if knee is None else int(knee)


@dataclass(frozen=True)
class ScalingJob(FolderJob):
    """One (fold, loss, scaling) cell of `timestep_sweep`
    (``cells/fold<k>/<loss>/scaling_<s>/``): the converted SNN of the trained cell with its
    thresholds scaled, run once and read at every T of the sweep on the fold's validation
    slices that show hippocampus; its record (``record.json``) holds each T's per-slice
    on-target Dice, its outputs ``outputs.npz``.  Read back when the sweep resumes."""

    config: Any
    trained: Any  # a nengo_hybrid.crossval.TrainedRun
    images: str
    labels: str
    out_dir: str
    resume: bool = False
    record_name = "record.json"

    def run_cell(self, cell, folder):
        fold, loss, scaling = cell["fold"], cell["loss"], cell["scaling"]
        trained, timesteps = self.trained, sorted(int(t) for t in self.config.timesteps)
        x, masks, n_subjects = _validation_on_target(trained, self.images, self.labels, fold,
                                                     self.config.validation_subjects)
        print(f"== fold {fold}, {loss}: thresholds x {scaling:g}, {len(x)} validation slices, "
              f"T up to {timesteps[-1]}", flush=True)
        sweep = trained.converted_sweep(fold, loss, x, timesteps, scaling, cache=folder / "outputs.npz",
                                        reuse=self.resume)
        record = {"fold": fold, "loss": loss, "scaling": float(scaling), "timesteps": timesteps,
                  "n_subjects": n_subjects, "n_slices": len(x),
                  "dice_2d_on_target": [metrics.dice_2d(segmentation.probabilities(sweep[t], x.shape[1:3]), masks,
                                                        threshold=trained.config.threshold).on_target.tolist()
                                        for t in timesteps]}
        write_json(folder / self.record_name, record)
        return record


_VALIDATION = {}


def _validation_on_target(trained, images, labels, fold, n_subjects):
    """``(images, masks, n_subjects)``: the slices showing hippocampus of the first
    ``n_subjects`` validation subjects of ``fold`` of ``trained`` (all of them if 0), and
    how many subjects they come from; kept for the process."""
    key = (str(trained.run_dir), str(images), str(labels), fold, n_subjects)
    if key not in _VALIDATION:
        train, _ = fold_slices(trained.config, trained.load(images, labels), trained.folds, fold)
        val = validation_slices(trained.config, train, n_subjects)
        on_target = val.masks.reshape(len(val), -1).any(axis=1)
        _VALIDATION.clear()
        _VALIDATION[key] = (val.images[on_target], val.masks[on_target], len(val.subjects))
    return _VALIDATION[key]


def timestep_sweep(config, trained, images, labels, out_dir, caption, resume=False, grid=GridOptions()):
    """Figure 6A of ``trained`` (a `nengo_hybrid.crossval.TrainedRun`): the converted
    SNN's Dice against timesteps for several threshold scalings, each curve's elbow.

    For each cell of ``config.cells`` (``(fold, loss)``; default the run's first fold
    and its ``figure_loss``) and each factor of ``config.scalings``, a grid cell
    (`ScalingJob`, run through ``grid.executor`` with ``config.resources``) runs the
    converted SNN with every balanced threshold times the factor once for
    ``max(config.timesteps)`` steps on the fold's validation slices that show
    hippocampus (of its first ``config.validation_subjects`` validation subjects) and
    reads it at every T (`nengo_hybrid.crossval.TrainedRun.converted_sweep`); Dice is
    pooled over those slices and cells, and `elbow` finds each curve's elbow.

    Writes ``figure6a.{csv,md}``, ``figure6a.json`` (``records``: scaling, timesteps,
    dice_2d_on_target; ``elbows``: scaling, timesteps) and
    ``figure6a_dice_vs_timesteps.png``; a missing cell raises
    `nengo_hybrid.cells.GridIncomplete` naming it (no partial curves).
    """
    run = ExperimentRun(config, out_dir, resume)
    timesteps = sorted(int(t) for t in config.timesteps)
    sources = [tuple(cell) for cell in config.cells] or [
        (trained.config.fold_indices()[0], trained.config.figure_loss)]
    cells = [Cell(f"fold{fold}/{loss}/scaling_{scaling:g}", (("fold", fold), ("loss", loss), ("scaling", scaling)))
             for fold, loss in sources for scaling in config.scalings]
    job = ScalingJob(config, trained, str(images), str(labels), str(run.out_dir), resume)
    result = run_cells(job, cells, grid.executor, config.resources, grid.address)
    run.timings.update({f"{name}_s": seconds for name, seconds in result.seconds.items()})
    done = result.require(cells, grid.partial)
    # with --partial, the curves of the scalings whose every cell finished
    missing = [cell.name for cell in cells if cell.name not in result.records]
    scalings = [float(scaling) for scaling in config.scalings
                if not any(cell["scaling"] == scaling and cell.name in missing for cell in cells)]
    curves = {scaling: np.concatenate([np.asarray(r["dice_2d_on_target"]) for r in done if r["scaling"] == scaling],
                                      axis=1).mean(axis=1) for scaling in scalings}
    if not scalings:
        raise GridIncomplete(f"no scaling has all its cells finished (missing: {', '.join(missing)})")
    first = [r for r in done if r["scaling"] == scalings[0]]
    n_subjects, n_slices = sum(r["n_subjects"] for r in first), sum(r["n_slices"] for r in first)
    records = [{"scaling": float(scaling), "timesteps": t, "dice_2d_on_target": float(curves[scaling][k])}
               for scaling in scalings for k, t in enumerate(timesteps)]
    elbows = [{"scaling": float(scaling), "timesteps": elbow(timesteps, curves[scaling])}
              for scaling in scalings]
    words = caption.format(cells=", ".join(f"fold {f} {l}" for f, l in sources), unet_dir=trained.run_dir,
                           n_subjects=n_subjects, n_slices=n_slices, first=timesteps[0], last=timesteps[-1],
                           paper_elbow=config.paper_elbow,
                           elbows="; ".join(f"× {e['scaling']:g}: {e['timesteps']}" for e in elbows))
    if missing:
        words = f"PARTIAL: {len(missing)} cells missing ({', '.join(missing)}).\n\n{words}"
    rows = [dict({"timesteps": t}, **{f"x{scaling:g}": float(curves[scaling][k]) for scaling in scalings})
            for k, t in enumerate(timesteps)]
    rows.append(dict({"timesteps": "elbow"}, **{f"x{e['scaling']:g}": e["timesteps"] for e in elbows}))
    report.write_table(run.out_dir, "figure6a", rows, [("timesteps", "T")] + [
        (f"x{scaling:g}", f"thresholds × {scaling:g}") for scaling in scalings], words)
    run.write("figure6a.json", {"records": records, "elbows": elbows, "paper_elbow": config.paper_elbow,
                                "cells": [list(c) for c in sources], "caption": words,
                                **({"partial": True, "missing": missing} if missing else {})})
    dice_vs_timesteps_figure(run.out_dir / "figure6a_dice_vs_timesteps.png", timesteps, curves, elbows,
                             config.paper_elbow)
    run.finish("figure6a")
    return records


def dice_vs_timesteps_figure(path, timesteps, curves, elbows, paper_elbow):
    """Figure 6A: Dice against timesteps (log axis), one curve per threshold scaling,
    each curve's elbow marked, the paper's elbow drawn."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, (scaling, curve) in enumerate(curves.items()):
        ax.plot(timesteps, curve, "-o", color=f"C{k}", markersize=3, label=f"thresholds × {scaling:g}")
        knee = next(e["timesteps"] for e in elbows if e["scaling"] == float(scaling))
        if knee is not None:
            ax.plot([knee], [curve[timesteps.index(knee)]], "s", color=f"C{k}", markersize=9,
                    markerfacecolor="none")
    ax.axvline(paper_elbow, color="grey", linestyle=":", label=f"the paper's elbow ({paper_elbow})")
    ax.set_xscale("log")
    ax.set(xlabel="timesteps T", ylabel="2D Dice (validation slices showing hippocampus)",
           title="Converted SNN against timesteps (□ elbow, kneed)")
    ax.legend(fontsize=7)
    report.save_figure(fig, path)


def main(argv, doc, name, profiles, run, grid=False):
    """The command line of an analysis of a trained run (a sweep, or fine-tuning vs
    direct training): ``run`` only (`nengo_hybrid.paths.experiment_parser`), with the
    data folders, ``--unet DIR``, the trained run to read (default: the results
    folder of the U-Net profile the analysis's profile names).
    ``run(config, images, labels, out_dir, unet_dir=..., resume=...)``; with ``grid`` the
    analysis is a grid of cells: ``run`` also takes ``grid=``
    (`nengo_hybrid.cells.GridOptions`) and the command line the executor's options."""
    parser, run_parser, _ = experiment_parser(doc, name, profiles)
    segmentation.add_folder_arguments(run_parser)
    if grid:
        add_grid_arguments(run_parser)
    run_parser.add_argument("--unet", default=None,
                            help="the trained U-Net run (default: the results of the profile's U-Net profile)")
    args = parser.parse_args(argv)
    if args.command != "run":
        raise SystemExit(f"{name} has no evaluate command: it evaluates a trained run")
    images, labels = segmentation.folders(args)
    if labels is None:
        raise SystemExit(f"{name} scores masks: it needs --labels")
    config, out = resolve_run(args, name, profiles)
    if grid:
        run_from_args(run, config, out, args, images, labels, unet_dir=args.unet, resume=args.resume)
    else:
        run(config, images, labels, out, unet_dir=args.unet, resume=args.resume)
    return 0
