"""Fine-tuning against direct training (the second paper's Table 3 and Figure 6B): the same
integrate-and-fire SNN trained by surrogate-gradient backpropagation through time, once
from the early-stop conversion of a trained ANN and once from random weights, scored on
validation subjects at chosen numbers of minibatches.

Both modes share everything but their starting weights: the network, the balancing of
its thresholds (on the training slices, with its own starting weights: the converted
ANN's, or the random ones, so that the direct SNN's neurons fire from the first step
too), T, the input coding, the optimiser and its schedule, and, for one seed, the order
of the minibatches and their Poisson draws.  A seed also sets the random weights.
"""

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nengo_hybrid import metrics, report, segmentation  # noqa: E402
from nengo_hybrid.atomic import write_json  # noqa: E402
from nengo_hybrid.cells import Cell, FolderJob, GridOptions, run_cells  # noqa: E402
from nengo_hybrid.crossval import fold_slices, validation_slices  # noqa: E402
from nengo_hybrid.experiment import ExperimentRun, seed_everything  # noqa: E402
from nengo_hybrid.losses import LastTimesteps  # noqa: E402
from nengo_hybrid.runtime import load_params  # noqa: E402
from nengo_hybrid.simulation import predict  # noqa: E402
from nengo_hybrid.stages import ann_outputs, balance_stage, load_thresholds, network, train  # noqa: E402

MODES = ("fine_tune", "direct")


def validation_dice(converted, sim, config, val):
    """2D Dice of ``sim`` on the validation slices ``val``, its output read as the mean
    over all of ``config``'s fine-tuning timesteps: ``(on-target, all slices)``."""
    settings = config.spiking
    inputs = converted.inputs(val.images, config.finetune.n_steps, settings.encoding, config.seed,
                              example_ids=np.arange(len(val)))
    probabilities = segmentation.probabilities(predict(sim, inputs, converted.output), val.images.shape[1:3])
    found = metrics.dice_2d(probabilities, val.masks, threshold=config.threshold)
    return float(np.mean(found.on_target)), float(np.mean(found.scores))


def train_and_score(config, model, params, thresholds, train_slices, val, loss, settings, checkpoints, folder,
                    resume=False):
    """Train the ``"if"`` network of ``model`` (weights from ``params``, or the Keras
    model's own if None; ``thresholds`` balanced) under ``settings``, one epoch being
    ``checkpoints[0]`` minibatches, and score it on ``val`` before training and at every
    count of ``checkpoints`` (`validation_dice`).  Scores are kept in
    ``folder/scores.json`` after each point, so a resumed run scores only the rest.

    Returns
    -------
    list of dict
        ``{"minibatches", "dice_2d_validation" (on-target), "dice_2d_validation_all"}``
        at 0 and at each checkpoint.
    """
    path = folder / "scores.json"
    scores = json.loads(path.read_text()) if resume and path.exists() else []
    done = {s["minibatches"] for s in scores}
    per_epoch = checkpoints[0]
    converted = network(model, config, "if", thresholds)

    def score(minibatches, sim):
        if minibatches in done or (minibatches and minibatches not in checkpoints):
            return
        on_target, every = validation_dice(converted, sim, config, val)
        scores.append({"minibatches": minibatches, "dice_2d_validation": on_target,
                       "dice_2d_validation_all": every})
        scores.sort(key=lambda s: s["minibatches"])
        done.add(minibatches)
        write_json(path, scores)
        print(f"[{folder.name}] {minibatches} minibatches: validation 2D Dice {on_target:.4f} "
              f"(slices showing hippocampus)", flush=True)

    with converted.simulator(settings.batch_size, n_steps=settings.n_steps) as sim:
        if params is not None:
            load_params(sim, params)
        score(0, sim)
        train(converted, sim, train_slices.images, train_slices.masks,
              LastTimesteps(loss, settings.n_steps), settings, folder / "checkpoint", resume=resume,
              label=folder.name, encoding=config.spiking.encoding,
              after_epoch=lambda epoch, sim: score(epoch * per_epoch, sim))
    return scores


def first_reaching(scores, target):
    """The fewest minibatches after which the validation Dice reaches ``target``; None
    if it never does."""
    return next((s["minibatches"] for s in scores if s["dice_2d_validation"] >= target), None)


@dataclass(frozen=True)
class ConvergenceJob(FolderJob):
    """One (mode, seed) cell of `compare` (``cells/<mode>_seed<seed>/``), run from
    nothing but the cell and this job: the trained run and the slices are read once per
    process (a Ray worker reads them as the driver does).  The cell seeds everything
    from its seed; with ``resume`` a finished cell (``cell.json``) is read back and an
    unfinished one goes on from its checkpoint and the scores it kept."""

    config: Any
    trained: Any  # a nengo_hybrid.crossval.TrainedRun
    images: str
    labels: str
    out_dir: str
    resume: bool = False
    record_name = "cell.json"

    def plan(self):
        """The comparison's shared setting (`_Plan`), built once per process."""
        key = (str(self.trained.run_dir), self.images, self.labels, repr(self.config))
        if key not in _PLANS:
            _PLANS.clear()
            _PLANS[key] = _plan(self.config, self.trained, self.images, self.labels)
        return _PLANS[key]

    def run_cell(self, cell, folder):
        mode, seed = cell["mode"], cell["seed"]
        plan = self.plan()
        settings, unet_config, trained = plan.settings, plan.unet_config, self.trained
        print(f"== {mode}, seed {seed}: {len(plan.train_slices)} training slices, {len(plan.val)} validation "
              f"slices, T = {settings.n_steps}", flush=True)
        seed_everything(seed)
        shape = plan.train_slices.images.shape[1:]
        if mode == "fine_tune":
            model = trained.make_model(unet_config, shape)
            params, thresholds = plan.cell / "ann", load_thresholds(plan.cell)
            if settings.n_steps != trained.config.eval_steps:  # balanced for another T
                thresholds = balance_stage(model, unet_config, params, plan.train_slices.images, folder,
                                           self.resume)
        else:
            model = trained.make_model(replace(unet_config, seed=seed), shape)
            params = None
            thresholds = balance_stage(model, unet_config, None, plan.train_slices.images, folder, self.resume)
        scores = train_and_score(unet_config, model, params, thresholds, plan.train_slices, plan.val,
                                 trained.config.loss(plan.loss), replace(settings, seed=seed), plan.checkpoints,
                                 folder, resume=self.resume)
        record = {"mode": mode, "seed": seed, "scores": scores}
        write_json(folder / self.record_name, record)
        return record


@dataclass(frozen=True)
class _Plan:
    fold: int
    loss: str
    train_slices: Any
    val: Any
    checkpoints: tuple
    settings: Any
    unet_config: Any
    cell: Path


_PLANS = {}


def _plan(config, trained, images, labels):
    """What every cell of the comparison shares: the cell of ``trained`` it starts from,
    its training slices (the ANN's training subjects without the validation ones) and
    validation slices, the checkpoints, the training settings and the U-Net
    configuration at the comparison's T."""
    fold, loss = tuple(config.cell) or (trained.config.fold_indices()[0], trained.config.figure_loss)
    train_slices, _ = fold_slices(trained.config, trained.load(images, labels), trained.folds, fold)
    val = validation_slices(trained.config, train_slices, config.validation_subjects)
    # trained on the ANN's training subjects only: the validation ones stay unseen
    train_slices = train_slices.select([s.id for s in train_slices.subjects
                                        if s.id not in {v.id for v in val.subjects}])
    checkpoints = tuple(sorted(config.checkpoints))
    if any(c % checkpoints[0] for c in checkpoints):
        raise ValueError(f"checkpoints {checkpoints} must be multiples of the first (an epoch)")
    settings = replace(config.train, epochs=checkpoints[-1] // checkpoints[0],
                       examples_per_epoch=checkpoints[0] * config.train.batch_size,
                       n_steps=config.train.n_steps or trained.config.eval_steps)
    unet_config = replace(trained.config, finetune=settings, eval_steps=settings.n_steps,
                          eval_window=settings.n_steps)
    return _Plan(fold, loss, train_slices, val, checkpoints, settings, unet_config, trained.cell_dir(fold, loss))


def grid_cells(config):
    """The comparison's cells: every seed of ``config.seeds`` times every mode of
    `MODES`, named ``<mode>_seed<seed>``, in the order the local executor runs them."""
    return [Cell(f"{mode}_seed{seed}", (("mode", mode), ("seed", seed))) for seed in config.seeds
            for mode in MODES]


def compare(config, trained, images, labels, out_dir, caption, resume=False, grid=GridOptions()):
    """Table 3 and Figure 6B for the cell ``config.cell`` of ``trained`` (a
    `nengo_hybrid.crossval.TrainedRun`; default its first fold and ``figure_loss``).

    For each seed of ``config.seeds`` and each mode of `MODES` a grid cell
    (`ConvergenceJob`, run through ``grid.executor`` with ``config.resources``) trains and
    scores the SNN (`train_and_score`) in ``cells/<mode>_seed<seed>/``: fine-tuning from
    the cell's ANN and balanced thresholds, or direct training from the U-Net
    initialised with that seed and thresholds balanced on it, with ``config.train`` (an
    epoch = ``checkpoints[0]`` minibatches) at the U-Net run's T unless
    ``config.train.n_steps`` says otherwise.  The target is ``config.target_fraction``
    of the cell's ANN's validation Dice.

    Writes ``table3.{csv,json,md}`` (``records``: mode, seed, minibatches,
    dice_2d_validation; ``to_target``: mode, seed, minibatches or None) and
    ``figure6b_convergence.png``; a missing cell raises
    `nengo_hybrid.cells.GridIncomplete` naming it, unless ``grid.partial``.
    """
    run = ExperimentRun(config, out_dir, resume)
    job = ConvergenceJob(config, trained, str(images), str(labels), str(run.out_dir), resume)
    with run.timed("load_s"):
        plan = job.plan()
    with run.timed("ann_s"):  # the ANN alone: the SNNs' outputs are not needed here
        ann = ann_outputs(trained.make_model(trained.config, plan.val.images.shape[1:]), trained.config,
                          plan.cell / "ann", plan.val.images)
    ann_dice = float(np.mean(metrics.dice_2d(segmentation.probabilities(ann, plan.val.images.shape[1:3]),
                                             plan.val.masks, threshold=trained.config.threshold).on_target))
    target = config.target_fraction * ann_dice
    cells = grid_cells(config)
    result = run_cells(job, cells, grid.executor, config.resources, grid.address)
    run.timings.update({f"{name}_s": seconds for name, seconds in result.seconds.items()})
    cell_records = result.require(cells, grid.partial)
    records, to_target = [], []
    for cell in cell_records:
        records += [dict(s, mode=cell["mode"], seed=cell["seed"]) for s in cell["scores"]]
        to_target.append({"mode": cell["mode"], "seed": cell["seed"],
                          "minibatches": first_reaching(cell["scores"], target)})
    summary = _summary(records, to_target, plan.checkpoints)
    settings = plan.settings
    words = caption.format(fold=plan.fold, loss=plan.loss, unet_dir=trained.run_dir, n_val=len(plan.val.subjects),
                           n_val_slices=int(plan.val.masks.reshape(len(plan.val), -1).any(axis=1).sum()),
                           n_train=len(plan.train_slices.subjects), seeds=len(config.seeds),
                           steps=settings.n_steps, batch=settings.batch_size, lr=settings.learning_rate,
                           ann=ann_dice, fraction=config.target_fraction, target=target)
    missing = [cell.name for cell in cells if cell.name not in result.records]
    if missing:
        words = f"PARTIAL TABLE: {len(missing)} cells missing ({', '.join(missing)}).\n\n{words}"
    report.write_table(run.out_dir, "table3", summary,
                       [("mode", "mode"), ("statistic", "")] + [(f"mb{c}", f"{c}") for c in (0,) + plan.checkpoints]
                       + [("to_target", "minibatches to target")], words)
    run.write("table3.json", {"records": records, "to_target": to_target, "ann_dice_2d_validation": ann_dice,
                              "target": target, "summary": summary, "caption": words,
                              **({"partial": True, "missing": missing} if missing else {})})
    convergence_figure(run.out_dir / "figure6b_convergence.png", records, target, ann_dice)
    run.finish("table3")
    return records


def _summary(records, to_target, checkpoints):
    """Table 3's rows: per mode the mean and the std over seeds at each count of
    minibatches, and the minibatches each needed to reach the target."""
    rows = []
    for mode in MODES:
        mine = [r for r in records if r["mode"] == mode]
        reached = [t["minibatches"] for t in to_target if t["mode"] == mode]
        for statistic, reduce in (("mean", np.mean), ("std", np.std)):
            row = {"mode": mode, "statistic": statistic}
            for c in (0,) + checkpoints:
                values = [r["dice_2d_validation"] for r in mine if r["minibatches"] == c]
                row[f"mb{c}"] = float(reduce(values)) if values else None
            row["to_target"] = (", ".join("never" if m is None else str(m) for m in reached)
                                if statistic == "mean" else None)
            rows.append(row)
    return rows


def convergence_figure(path, records, target, ann_dice):
    """Figure 6B: validation Dice against minibatches, the mean over seeds of each mode
    with its spread (min to max) shaded, the ANN's Dice and the target drawn."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, mode in enumerate(MODES):
        mine = [r for r in records if r["mode"] == mode]
        if not mine:  # a partial table without this mode's cells
            continue
        counts = sorted({r["minibatches"] for r in mine})
        values = [[r["dice_2d_validation"] for r in mine if r["minibatches"] == c] for c in counts]
        x = np.maximum(counts, 1)  # the start (0) drawn at 1 on the log axis
        ax.plot(x, [np.mean(v) for v in values], "-o", color=f"C{k}", markersize=3,
                label=f"{mode.replace('_', '-')} (mean of {len(values[0])} seeds)")
        ax.fill_between(x, [min(v) for v in values], [max(v) for v in values], color=f"C{k}", alpha=0.2)
    ax.axhline(ann_dice, color="grey", linestyle="--", label=f"ANN ({ann_dice:.3f})")
    ax.axhline(target, color="grey", linestyle=":", label=f"target ({target:.3f})")
    ax.set_xscale("log")
    ax.set(xlabel="training minibatches (0 drawn at 1)", ylabel="2D Dice (validation, on target)",
           title="Fine-tuning the converted SNN against training it directly")
    ax.legend(fontsize=7)
    report.save_figure(fig, path)
