"""What moves LocNet's ANN away from the mean box: the paper profile's ANN stage trained
under variants of its configuration and scored on its validation airplanes (never the
test split).  (Issue 12 §1.)

    python benchmarks/locnet_ann.py [--data DIR] [--seed S] [--resume]
        --variants base max_zoom=0.1 dropout=0.3 "dropout=0.3 ann.plateau_patience=5"

Each variant is a space-separated list of ``field=value`` overrides of `LocNetConfig`'s
paper profile (``ann.<field>`` for its ANN `TrainSettings`; values are Python
literals, e.g. ``filters=(16,32,64)``; ``base`` for none).  Every variant trains from
the same seed on the same split, validates on the same airplanes (those the ANN stage
holds out for early stopping) and keeps its best epoch.  Prints and writes to
``results/benchmarks/locnet_ann.json``, per variant: the validation mean IoU and
fraction at IoU >= 0.9 beside the floor's (the training mean box), the gain over the
floor with its paired standard error, every image's IoU, the difference from the first
variant with its paired standard error, the best epoch and the time.  A paired standard
error is the std of the per-image differences over sqrt(n): what separates two models
scored on the same images.  Each variant costs one ANN stage (~6 minutes on 2
cores); the runs go to ``--work``, one folder per variant with its ``config.json``,
``targets.json`` and ``ann.npz`` (kept: ``--resume`` continues a killed variant, and
``benchmarks/locnet_conversion.py --run`` converts its ANN).
"""

import nengo_hybrid  # noqa: F401, I001  (first: it quiets TensorFlow)

import argparse
import re
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import locnet  # noqa: E402

from nengo_hybrid import localisation, metrics, report  # noqa: E402
from nengo_hybrid.atomic import write_json  # noqa: E402
from nengo_hybrid.paths import add_data_argument, config_with_overrides, data_dir  # noqa: E402
from nengo_hybrid.stages import ann_outputs, ann_stage, validation_split, write_run_config  # noqa: E402


class ValidationAirplanes:
    """The airplanes the paper profile's ANN stage holds out for early stopping (never the
    test split), their floor (the mean box of the airplanes it trains on), and the
    scoring of one variant's boxes against both and against the first variant scored.

    Parameters
    ----------
    config : LocNetConfig
        The split (``seed``, ``test_fraction``) and the ANN stage's validation fraction.
    root : path
        The Caltech-101 folder.
    """

    def __init__(self, config, root):
        (self.x_train, self.y_train, _), _ = localisation.load_split(config, root)
        self.val_idx, self.train_idx = validation_split(len(self.x_train), config.ann)
        self.y_val = self.y_train[self.val_idx]
        floor_boxes = np.tile(self.y_train[self.train_idx].mean(axis=0), (len(self.y_val), 1))
        self.floor = localisation.iou_columns(floor_boxes, self.y_val)
        self.floor_per_image = metrics.box_iou(floor_boxes, self.y_val)

    def score(self, record, variant, boxes, *, epochs, best_epoch, seconds, **extra):
        """Append the entry of ``variant``'s validation ``boxes`` to ``record["variants"]``
        (with the ANN stage's ``epochs``, ``best_epoch``, ``seconds`` and any ``extra``
        fields) and print it: mean IoU, fraction at IoU >= 0.9, gain over
        the floor and difference from the first variant, each with its paired standard
        error (the std of the per-image differences over sqrt(n))."""
        scores = localisation.iou_columns(boxes, self.y_val)
        per_image = metrics.box_iou(boxes, self.y_val)
        gain = metrics.paired_difference(per_image, self.floor_per_image)
        entry = {"variant": variant, "floor": self.floor, "ann": scores, "gain_over_floor": gain["mean"],
                 "gain_over_floor_se": gain["se"], "per_image_iou": per_image.tolist(), **extra,
                 "epochs": epochs, "best_epoch": best_epoch, "seconds": seconds}
        compared = ""
        if record["variants"]:
            first = record["variants"][0]
            versus = metrics.paired_difference(per_image, np.array(first["per_image_iou"]))
            entry["versus_first"] = {"variant": first["variant"], "difference": versus["mean"], "se": versus["se"]}
            compared = f"; against {first['variant']!r}: {versus['mean']:+.4f} ± {versus['se']:.4f}"
        record["variants"].append(entry)
        print(f"[{variant}] {len(self.y_val)} validation airplanes: IoU {scores['iou']:.4f} "
              f"(floor {self.floor['iou']:.4f}, gain {gain['mean']:+.4f} ± {gain['se']:.4f} s.e.), IoU >= 0.9: "
              f"{scores['frac_iou_ge_0.9']:.2f} (floor {self.floor['frac_iou_ge_0.9']:.2f}){compared}; best "
              f"epoch {best_epoch} of {epochs}, {seconds:.0f} s", flush=True)
        return entry


def train_ann(config, model, targets, augment, loss, airplanes, work, resume=False):
    """The paper profile's ANN stage of ``model`` in the run folder ``work`` (which
    ``benchmarks/locnet_conversion.py --run`` converts again); returns `train`'s result
    and the boxes it predicts for the validation airplanes."""
    write_run_config(work, asdict(config), resume)
    write_json(work / "targets.json", targets.to_json())
    result = ann_stage(model, config, airplanes.x_train, targets.standardise(airplanes.y_train), loss, work,
                       regularization=config.regularization() if config.ann.rate_terms else None,
                       augment=augment, resume=resume)
    boxes = targets.restore(ann_outputs(model, config, work / "ann", airplanes.x_train[airplanes.val_idx]))
    return result, boxes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--variants", nargs="+", default=["base"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="results/benchmarks/locnet_ann")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--out", default="results/benchmarks/locnet_ann.json")
    args = parser.parse_args(argv)
    root = data_dir(args.data) / "caltech101"
    record = {"seed": args.seed, "variants": []}
    for variant in args.variants:
        config = config_with_overrides(replace(locnet.PROFILES["paper"], seed=args.seed), variant)
        airplanes = ValidationAirplanes(config, root)
        targets, model, augment, loss = localisation.training_setup(
            config, airplanes.x_train, airplanes.y_train, locnet.make_model)
        work = Path(args.work) / re.sub(r"[^A-Za-z0-9.=_-]+", "_", variant)
        start = time.time()
        result, boxes = train_ann(config, model, targets, augment, loss, airplanes, work, args.resume)
        airplanes.score(record, variant, boxes, epochs=result["epochs"], best_epoch=result["best_epoch"],
                        seconds=time.time() - start)
        report.write_probe(args.out, record)
    print(f"\n{report.describe_cpu(record['cpu'])}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
