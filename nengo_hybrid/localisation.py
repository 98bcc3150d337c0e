r"""Object localisation by box regression (LocNet): the floor, the scores, the table's
rows and the figures, shared by every experiment that predicts one box per image.

Boxes are ``(top, left, bottom, right)`` in [0, 1] of the image.  A model is scored by
the intersection over union of its box with the true one,
:math:`\mathrm{IoU} = |P \cap G| / |P \cup G|` (`nengo_hybrid.metrics.box_iou`): the
mean over the images, and the fraction of images at :math:`\mathrm{IoU} \ge 0.9`.

The floor is the **mean box**: the training split's mean box predicted for every image,
whatever the image (``mean_box``); a model is only as good as its gain over it.
"""

from pathlib import Path

import numpy as np

from nengo_hybrid import metrics, report
from nengo_hybrid.experiment import finetuning_record

FLOOR = "mean_box"
GOOD_IOU = 0.9  # the "IoU >= 0.9" column

COLUMNS = [("model", "model"), ("iou", "mean IoU"), ("gain_over_floor", "gain over floor"),
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
    gain over the floor and the paper's number (``paper``/``paper_rates``:
    ``{model: value}``) beside it; the last (the fine-tuned SNN) with its training
    columns."""
    floor = np.tile(floor_box, (len(true_boxes), 1))
    records = [{"model": FLOOR, **iou_columns(floor, true_boxes), "firing_rate_hz": None, "synaptic_ops": None}]
    for name, boxes in results["outputs"].items():
        record = {"model": name, **iou_columns(boxes, true_boxes)}
        record.update(report.activity_columns(model, results["rates"], name, n_steps))
        records.append(record)
    report.compare_with_floor_and_paper(records, FLOOR, {"iou": "gain_over_floor"}, paper, "paper_iou",
                                        compared="iou", paper_rates=paper_rates)
    records[-1].update(finetuning_record(results))
    return records


def write_report(out_dir, name, records, images, true_boxes, results, caption, title="LocNet"):
    """Table ``name`` (JSON, CSV, Markdown with ``caption``) and the figures: the boxes
    of the first twelve images, firing rates per layer, training curves (a run that
    trained) and mean IoU against timesteps, the floor marked."""
    out_dir = Path(out_dir)
    report.write_table(out_dir, name, records, COLUMNS, caption)
    predictions = results["outputs"]
    shown = np.arange(min(12, len(images)))
    report.box_grid(images[shown], true_boxes[shown], {m: b[shown] for m, b in predictions.items()},
                    out_dir / "boxes.png",
                    ious={m: metrics.box_iou(b, true_boxes)[shown] for m, b in predictions.items()})
    report.firing_rate_bars(results["rates"], out_dir / "firing_rates.png", f"{title}: average firing rate per layer")
    if results.get("histories"):  # an evaluation trains nothing
        report.training_curves(results["histories"], out_dir / "training_curves.png")
    floor = next(r["iou"] for r in records if r["model"] == FLOOR)
    sweeps = {model: (sorted(outputs), [iou_columns(outputs[t], true_boxes)["iou"] for t in sorted(outputs)])
              for model, outputs in results["sweeps"].items()}
    report.metric_vs_timesteps(sweeps, out_dir / "iou_vs_timesteps.png", "mean IoU", floor=floor,
                               title=f"{title} spiking IoU against timesteps")
