r"""Segmentation of hippocampus slices, shared by every segmentation experiment (the CAE,
the U-Net): where the volumes are, the atlas floor, probabilities from logits, Dice
scores, the table's rows, the figures, and NIfTI masks in each input's own grid.

A network's output is the mask's logits :math:`z` per pixel; the mask is
:math:`\sigma(z) > t` (`probabilities`, ``threshold``).  Scores (`scores`):

- 2D Dice per slice, :math:`2|P \cap G| / (|P| + |G|)`; a slice whose ground truth is
  empty scores 1 if the predicted mask is empty too and 0 otherwise
  (`nengo_hybrid.metrics.dice_2d`); "on target": over the slices that show
  hippocampus only;
- 3D Dice per subject, its slices stacked (`nengo_hybrid.metrics.dice_3d`).

The floor is the **atlas**: the mean of the training subjects' masks, thresholded and
predicted for every test subject whatever its image (`atlas`, `atlas_slices`).
"""

from pathlib import Path

import numpy as np

from data_prep.hippocampus import load_slices, msd_folders, save_mask, subjects
from nengo_hybrid import cells, metrics, report
from nengo_hybrid.atomic import save_array, write_json
from nengo_hybrid.models.cae import mask_probabilities
from nengo_hybrid.paths import add_data_argument, data_dir, experiment_parser, resolve_run

FLOOR = "atlas"
ATLAS_FILE = "atlas.npy"

DICE_COLUMNS = [("dice_2d", "2D Dice"), ("dice_2d_std", "± std"),
                ("gain_over_floor_2d", "gain over floor"), ("dice_2d_on_target", "2D Dice on target"),
                ("gain_over_floor_2d_on_target", "gain over floor"), ("dice_3d", "3D Dice"),
                ("dice_3d_std", "± std"), ("gain_over_floor_3d", "gain over floor")]
ACTIVITY_COLUMNS = [("firing_rate_hz", "rate (Hz)"), ("synaptic_ops", "synops/slice"),
                    ("ann_macs", "ANN MACs/slice"), ("energy_j_loihi", "SNN J/slice (Loihi)"),
                    ("energy_j_ann_gpu", "ANN J/slice (GPU)")]
GAINS = {"dice_2d": "gain_over_floor_2d", "dice_2d_on_target": "gain_over_floor_2d_on_target",
         "dice_3d": "gain_over_floor_3d"}

DICE_CAPTION = """\
Masks thresholded at probability {threshold}. 2D Dice: the mean ± std over every slice, where a
slice whose ground truth is empty scores 1 if the predicted mask is empty too and 0 if it has any
foreground; "on target": over the {n_target} slices that show hippocampus only (the number that
compares with papers that crop around the hippocampus). 3D Dice: per subject, the slices stacked.
`atlas` is the floor: the mean of the training subjects' masks thresholded at {atlas_threshold},
predicted for every test subject (it ignores the image); every gain is over it."""


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


def subject_ids(images, labels, max_subjects=0):
    """The ids of the labelled subjects, sorted; only the first ``max_subjects`` if not 0."""
    ids = [s.id for s in subjects(images, labels)]
    return ids[:max_subjects] if max_subjects else ids


def load(config, images, labels, ids=None):
    """The slices of ``ids`` (all subjects if None) cut as ``config`` says (``size``,
    ``axis``, ``intensity``)."""
    return load_slices(images, labels, ids=ids, size=config.size, axis=config.axis,
                       intensity=config.intensity)


def atlas(train):
    """The floor's prior: the mean of the training subjects' masks at the fixed size."""
    return np.mean(list(train.restack().values()), axis=0)


def save_atlas(run_dir, prior):
    """Keep a run's atlas (``run_dir/atlas.npy``) for its evaluations."""
    save_array(Path(run_dir) / ATLAS_FILE, prior)


def load_atlas(run_dir):
    """The atlas a run saved with `save_atlas`."""
    return np.load(Path(run_dir) / ATLAS_FILE)


def atlas_slices(prior, slices, threshold):
    """The atlas thresholded and cut like ``slices``: one mask per slice, the same for
    every subject."""
    cut = np.moveaxis(prior > threshold, slices.axis, 0).astype(np.float32)
    return cut[slices.slice_index][..., None]


def probabilities(outputs, shape):
    """The probability masks ``(n, H, W)`` of a model's logits ``(n, H * W)``."""
    return mask_probabilities(outputs).reshape((len(outputs),) + tuple(shape))


def scores(predicted, slices, threshold=0.5):
    """Dice of one model's probability masks on labelled ``slices``: the means and
    standard deviations, and the per-slice (``slice_dice``) and per-subject
    (``subject_dice``, in the order of ``subject_ids``) scores they come from."""
    slice_dice = metrics.dice_2d(predicted, slices.masks, threshold=threshold)
    volume_dice = metrics.dice_3d(predicted, slices.masks, slices.subject_ids, threshold=threshold)
    return dict(summary(slice_dice.scores, slice_dice.on_target, volume_dice.scores),
                slice_dice=slice_dice.scores, on_target=slice_dice.on_target,
                subject_dice=volume_dice.scores, subject_ids=list(volume_dice.subjects))


def summary(slice_scores, on_target_scores, subject_scores):
    """The table's Dice columns (mean and std) of per-slice, on-target and per-subject
    scores."""
    all_2d, on_target = metrics.mean_std(slice_scores), metrics.mean_std(on_target_scores)
    dice_3d = metrics.mean_std(subject_scores)
    return {"dice_2d": all_2d["mean"], "dice_2d_std": all_2d["std"],
            "dice_2d_on_target": on_target["mean"], "dice_2d_on_target_std": on_target["std"],
            "dice_3d": dice_3d["mean"], "dice_3d_std": dice_3d["std"]}


def model_masks(results, shape, floor_masks=None):
    """``{model: probability masks}`` of `run_stages`/`evaluate_stages` results, the
    floor's first if given."""
    masks = {} if floor_masks is None else {FLOOR: floor_masks}
    masks.update({name: probabilities(out, shape) for name, out in results["outputs"].items()})
    return masks


def score_records(model, config, slices, masks, results, n_steps):
    """One table record per model of ``masks`` (`model_masks`): its Dice columns and,
    for the converted and fine-tuned SNNs, activity and cost columns
    (`report.activity_columns`; the floor has none)."""
    records = []
    for name, predicted in masks.items():
        record = {"model": name, **{k: v for k, v in scores(predicted, slices, config.threshold).items()
                                    if k in DICE_KEYS}}
        if name == FLOOR:
            record.update(firing_rate_hz=None, synaptic_ops=None)
        else:
            record.update(report.activity_columns(model, results["rates"], name, n_steps,
                                                  input_rate_hz=results.get("input_rate_hz")))
        records.append(record)
    return records


DICE_KEYS = ("dice_2d", "dice_2d_std", "dice_2d_on_target", "dice_2d_on_target_std", "dice_3d",
             "dice_3d_std")


def n_on_target(slices):
    """How many of ``slices`` show hippocampus."""
    return int((slices.masks.reshape(len(slices), -1) > 0).any(axis=1).sum())


def figure_rows(slices, n):
    """Figure slices: of each of the first ``n`` subjects, its slice with the most
    hippocampus (the central slice where there are no labels)."""
    rows = []
    for subject in slices.subjects[:n]:
        index = np.flatnonzero(slices.subject_ids == subject.id)
        if slices.masks is None:
            rows.append(index[len(index) // 2])
        else:
            rows.append(index[np.argmax(slices.masks[index].sum(axis=(1, 2, 3)))])
    return np.array(rows, dtype=int)


def mask_figure(path, slices, masks, n_subjects, threshold=0.5):
    """The masks figure (input, ground truth, each model's probabilities) of one slice
    per subject, with each slice's Dice when there are labels."""
    rows = figure_rows(slices, n_subjects)
    titles = [f"{slices.subject_ids[k]} slice {slices.slice_index[k]}" for k in rows]
    shown = {m: v[rows] for m, v in masks.items()}
    if slices.masks is None:
        report.mask_grid(slices.images[rows], None, shown, path, row_titles=titles)
        return
    per_slice = {m: metrics.dice_2d(v, slices.masks, threshold=threshold).scores[rows]
                 for m, v in masks.items()}
    report.mask_grid(slices.images[rows], slices.masks[rows], shown, path, scores=per_slice,
                     row_titles=titles)


def dice_sweep(sweeps, shape, slices, threshold=0.5):
    """``{model: (timesteps, 2D Dice at each)}`` of `run_stages`' output sweeps."""
    return {model: (sorted(outputs), [scores(probabilities(outputs[t], shape), slices, threshold)["dice_2d"]
                                      for t in sorted(outputs)])
            for model, outputs in sweeps.items()}


def run_figures(out_dir, title, config, slices, masks, results, masks_file, sweeps=None):
    """The figures of one segmentation run on ``slices``: firing rates per layer, the
    training curves (a run that trained), the masks figure of ``masks`` (`model_masks`;
    the floor's are left out) and, with ``sweeps`` (``{model: {T: outputs}}``) and
    labels, 2D Dice against timesteps with the floor's (``masks[FLOOR]``) marked."""
    out_dir = Path(out_dir)
    report.firing_rate_bars(results["rates"], out_dir / "firing_rates.png",
                            f"{title}: average firing rate per layer")
    if results.get("histories"):  # an evaluation trains nothing
        report.training_curves(results["histories"], out_dir / "training_curves.png")
    mask_figure(out_dir / masks_file, slices, {m: v for m, v in masks.items() if m != FLOOR},
                config.figure_slices, config.threshold)
    if sweeps is None or slices.masks is None:
        return
    dice_vs_timesteps(out_dir / "dice_vs_timesteps.png", f"{title} spiking Dice against timesteps",
                      config, slices, masks, sweeps)


def dice_vs_timesteps(path, title, config, slices, masks, sweeps):
    """2D Dice (all slices) of each spiking model of ``sweeps`` against timesteps, with
    the floor's (``masks[FLOOR]``) and the ANN's (``masks["ann"]``) as lines; the
    numbers beside the figure (.json)."""
    def dice(name):
        return scores(masks[name], slices, config.threshold)["dice_2d"] if name in masks else None

    report.curves_and_numbers(dice_sweep(sweeps, slices.images.shape[1:3], slices, config.threshold), path,
                              "2D Dice (all slices)", "dice_2d", floor=dice(FLOOR), ann=dice("ann"), title=title)


def write_masks(slices, predicted, out_dir, model_name, extra=None):
    """Write each subject's binary ``predicted`` masks ``(n, H, W)`` as
    ``out_dir/masks/<subject>.nii.gz`` in the grid of its image, and
    ``out_dir/evaluated.json`` naming them; returns ``{subject: path}``."""
    volumes = slices.restack(predicted.astype(np.uint8))
    written = {}
    for subject in slices.subjects:
        path = save_mask(volumes[subject.id], subject, Path(out_dir) / "masks" / f"{subject.id}.nii.gz")
        written[subject.id] = str(path)
    write_json(Path(out_dir) / "evaluated.json", dict(extra or {}, mask_model=model_name, masks=written))
    return written


def cell_scores(model, config, slices, masks, results, n_steps):
    """What one trained cell (a fold and a loss) contributes to a pooled table: for each
    model of ``masks``, the per-slice and per-subject Dice on ``slices`` and the
    activity columns (JSON-ready; `pooled_records` pools cells)."""
    cell = {}
    for record, (name, predicted) in zip(score_records(model, config, slices, masks, results, n_steps),
                                         masks.items()):
        found = scores(predicted, slices, config.threshold)
        cell[name] = dict({k: v for k, v in record.items() if k not in DICE_KEYS},
                          slice_dice=found["slice_dice"].tolist(),
                          has_target=(slices.masks.reshape(len(slices), -1) > 0).any(axis=1).tolist(),
                          subject_dice=found["subject_dice"].tolist(), subject_ids=found["subject_ids"])
    return cell


def pooled_record(cells, name):
    """Model ``name``'s table record over ``cells`` (each a `cell_scores` result, e.g.
    the folds of one loss): the Dice means and stds over every test slice and subject of
    all cells pooled, the mean of each numeric activity column, and ``per_fold``
    summaries in the cells' order."""
    parts = [cell[name] for cell in cells]
    slice_dice = np.concatenate([p["slice_dice"] for p in parts])
    has_target = np.concatenate([p["has_target"] for p in parts]).astype(bool)
    subject_dice = np.concatenate([p["subject_dice"] for p in parts])
    record = {"model": name, **summary(slice_dice, slice_dice[has_target], subject_dice)}
    for key, value in parts[0].items():
        if key in ("slice_dice", "has_target", "subject_dice", "subject_ids", "model"):
            continue
        values = [p.get(key) for p in parts]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        record[key] = float(np.mean(values)) if numeric else values[0]
    record["per_fold"] = [summary(np.asarray(p["slice_dice"]),
                                  np.asarray(p["slice_dice"])[np.asarray(p["has_target"], bool)],
                                  np.asarray(p["subject_dice"])) for p in parts]
    record["n_subjects"], record["n_slices"] = int(len(subject_dice)), int(len(slice_dice))
    return record


def main(argv, doc, name, profiles, run, evaluate, mask_models, evaluate_options=(), grid=False, seeds_table=None):
    """The command line of a segmentation experiment script (``run`` and ``evaluate``,
    `nengo_hybrid.paths.experiment_parser`, with the folder arguments and
    ``--mask-model``).

    ``run(config, images, labels, out_dir, resume=...)`` and ``evaluate(checkpoint,
    images, labels, out_dir, mask_model=..., **options)``; ``evaluate_options`` lists
    ``(flag, argparse keywords)`` the script's ``evaluate`` takes besides.  With
    ``grid`` the run is a grid of cells: ``run`` also takes ``grid=``
    (`nengo_hybrid.cells.GridOptions`) and the command line the executor's options.
    With ``seeds_table`` (a `nengo_hybrid.seeds.SeedsTable`) ``run --seeds N`` repeats a
    single run for N seeds as a grid (`nengo_hybrid.seeds`).
    """
    from nengo_hybrid import seeds  # only the experiments that repeat over seeds need it

    parser, run_parser, eval_parser = experiment_parser(doc, name, profiles)
    if grid:
        cells.add_grid_arguments(run_parser)
    elif seeds_table:
        seeds.add_arguments(run_parser)
    eval_parser.add_argument("--mask-model", choices=mask_models, default=mask_models[-1],
                             help=f"whose masks are written as NIfTI (default: {mask_models[-1]})")
    for flag, keywords in evaluate_options:
        eval_parser.add_argument(flag, **keywords)
    for p in (run_parser, eval_parser):
        add_folder_arguments(p)
    args = parser.parse_args(argv)

    images, labels = folders(args)
    if args.command == "run":
        if labels is None:
            raise SystemExit("training needs labels: --labels DIR")
        config, out = resolve_run(args, name, profiles)
        if grid:
            cells.run_from_args(run, config, out, args, images, labels, resume=args.resume)
        elif seeds_table:
            seeds.run_from_args(run, config, (images, labels), out, args, seeds_table)
        else:
            run(config, images, labels, out, resume=args.resume)
    else:
        options = {flag.lstrip("-").replace("-", "_"): None for flag, _ in evaluate_options}
        evaluate(args.checkpoint, images, labels, args.out or Path(args.checkpoint) / "evaluate",
                 mask_model=args.mask_model, **{key: getattr(args, key) for key in options})
    return 0
