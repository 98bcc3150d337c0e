"""What lifts LocNet's spiking networks above the mean box: a finished run's trained ANN
converted and fine-tuned again under variants of its configuration, both SNNs scored on
the validation airplanes the training stages hold out (never the test split).
(Issue 12 §1.)

    python benchmarks/locnet_finetune.py --run results/locnet [--data DIR] [--resume]
        --variants base scale_firing_rates=5 "scale_firing_rates=5 finetune.learning_rate=0.0003"

Each variant is a space-separated list of ``field=value`` overrides of the run's
configuration (``finetune.<field>`` for the fine-tuning `TrainSettings`; values are
Python literals; ``base`` for none).  Every variant starts from the run's ANN
(``ann.npz``), converts it, fine-tunes the converted SNN with hybrid neurons exactly as
`nengo_hybrid.stages.run_stages` does, and reads both SNNs on the airplanes early
stopping holds out (the ANN and fine-tuning stages hold out the same ones when their
minibatches divide the same count, as in the paper profile).  Prints and writes to
``--out``, per variant: the validation mean IoU and fraction at IoU >= 0.9 of the
converted and the fine-tuned SNN at the run's read-out (``eval_steps``) and at every
timestep of ``steps_sweep``, their firing rates, each gain over the floor (the training
mean box) with its paired standard error, every image's IoU, the fine-tuned SNN's
difference from the first variant's (paired standard error), the fine-tuning epochs and
the time.  One variant costs one fine-tuning stage (~5-15 minutes on 2 cores); each
runs in its own folder under ``--work`` (``--resume`` continues a killed one).
"""

import nengo_hybrid  # noqa: F401, I001  (first: it quiets TensorFlow)

import argparse
import json
import re
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import locnet  # noqa: E402

from nengo_hybrid import localisation, metrics, report  # noqa: E402
from nengo_hybrid.paths import add_data_argument, config_with_overrides, data_dir  # noqa: E402
from nengo_hybrid.stages import run_stages, validation_split, write_run_config  # noqa: E402


def scored(boxes, true_boxes, floor_per_image):
    """Mean IoU, fraction at IoU >= 0.9, every image's IoU and the gain over the floor
    with its paired standard error."""
    per_image = metrics.box_iou(boxes, true_boxes)
    gain = metrics.paired_difference(per_image, floor_per_image)
    return dict(localisation.iou_columns(boxes, true_boxes), gain_over_floor=gain["mean"],
                gain_over_floor_se=gain["se"], per_image_iou=per_image.tolist())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--run", required=True, help="a finished LocNet run (config.json, ann.npz)")
    parser.add_argument("--variants", nargs="+", default=["base"])
    parser.add_argument("--work", default="results/benchmarks/locnet_finetune")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--out", default="results/benchmarks/locnet_finetune.json")
    args = parser.parse_args(argv)
    run_dir = Path(args.run)
    if not (run_dir / "ann.npz").exists():
        raise SystemExit(f"{run_dir / 'ann.npz'}: not there; --run needs a run whose ANN stage finished")
    run_config = report.config_from_json(locnet.LocNetConfig, json.loads((run_dir / "config.json").read_text()))
    root = data_dir(args.data) / "caltech101"
    (x_train, y_train, _), _ = localisation.load_split(run_config, root)
    record = {"run": str(run_dir), "variants": []}
    for variant in args.variants:
        config = config_with_overrides(run_config, variant)
        val_idx, train_idx = validation_split(len(x_train), config.finetune)
        ann_val_idx, _ = validation_split(len(x_train), config.ann)
        if not len(val_idx) or set(val_idx) != set(ann_val_idx):
            raise SystemExit(f"[{variant}] the fine-tuning stage would validate on other airplanes than the ANN "
                             f"stage (or none): its scores would not be held out from the ANN's training")
        x_val, y_val = x_train[val_idx], y_train[val_idx]
        floor_boxes = np.tile(y_train[train_idx].mean(axis=0), (len(y_val), 1))
        floor_per_image = metrics.box_iou(floor_boxes, y_val)
        targets, model, augment, loss = localisation.training_setup(config, x_train, y_train, locnet.make_model)
        work = Path(args.work) / re.sub(r"[^A-Za-z0-9.=_-]+", "_", variant)
        write_run_config(work, asdict(config), args.resume)
        start = time.time()
        results = targets.restore_results(run_stages(
            model, config, x_train, targets.standardise(y_train), x_val, loss, work, augment=augment,
            resume=args.resume, trained_ann=run_dir / "ann"))
        seconds = time.time() - start
        entry = {"variant": variant, "n_validation": len(y_val),
                 "floor": localisation.iou_columns(floor_boxes, y_val),
                 "ann": scored(results["outputs"]["ann"], y_val, floor_per_image),
                 "finetune_epochs": results["finetune_epochs"],
                 "finetune_best_epoch": results["finetune_best_epoch"],
                 "timings": results["timings"], "seconds": seconds}
        for name in ("converted", "hybrid"):
            entry[name] = dict(scored(results["outputs"][name], y_val, floor_per_image),
                               firing_rate_hz=results["rates"][name]["network"],
                               iou_vs_timesteps={t: float(metrics.box_iou(boxes, y_val).mean())
                                                 for t, boxes in sorted(results["sweeps"][name].items())})
        compared = ""
        if record["variants"]:
            first = record["variants"][0]
            versus = metrics.paired_difference(np.array(entry["hybrid"]["per_image_iou"]),
                                               np.array(first["hybrid"]["per_image_iou"]))
            entry["hybrid_versus_first"] = {"variant": first["variant"], "difference": versus["mean"],
                                            "se": versus["se"]}
            compared = f"; hybrid against {first['variant']!r}: {versus['mean']:+.4f} ± {versus['se']:.4f}"
        record["variants"].append(entry)
        print(f"[{variant}] {len(y_val)} validation airplanes, floor {entry['floor']['iou']:.4f}, "
              f"ANN {entry['ann']['iou']:.4f}", flush=True)
        for name in ("converted", "hybrid"):
            model_entry = entry[name]
            sweep = ", ".join(f"{iou:.3f}@{t}" for t, iou in model_entry["iou_vs_timesteps"].items())
            print(f"  {name}: IoU {model_entry['iou']:.4f} (gain {model_entry['gain_over_floor']:+.4f} ± "
                  f"{model_entry['gain_over_floor_se']:.4f}), IoU >= 0.9: {model_entry['frac_iou_ge_0.9']:.2f}, "
                  f"{model_entry['firing_rate_hz']:.1f} Hz; against timesteps {sweep}", flush=True)
        print(f"  fine-tuning: best epoch {entry['finetune_best_epoch']} of {entry['finetune_epochs']}"
              f"{compared}; {seconds:.0f} s", flush=True)
        report.write_probe(args.out, record)
    print(f"\n{report.describe_cpu(record['cpu'])}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
