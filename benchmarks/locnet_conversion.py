"""Where LocNet's converted SNN loses to its ANN: a finished run's trained ANN converted
again at other firing-rate scales and synapses, scored on the ANN stage's validation
airplanes (never the test split) at several read-out times.  (Issue 12 §1.)

    python benchmarks/locnet_conversion.py --run results/locnet [--data DIR]
        [--variants 1:0.005 5:0.005 1:0.01] [--steps 60 100 150]

Each variant is ``scale:synapse`` (``scale_firing_rates``, synapse time constant in
seconds; 0 for none).  Prints and writes to ``results/benchmarks/locnet_conversion.json``
the validation floor (the training mean box) and the ANN, then for each variant its mean
IoU at every ``--steps`` (the output averaged over the run's ``eval_window`` timesteps
ending there) and its network firing rate (Hz, over the run's ``eval_steps``).
"""

import nengo_hybrid  # noqa: F401, I001  (first: it quiets TensorFlow)

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import locnet  # noqa: E402

from nengo_hybrid import localisation, report  # noqa: E402
from nengo_hybrid.metrics import box_iou  # noqa: E402
from nengo_hybrid.paths import add_data_argument, data_dir  # noqa: E402
from nengo_hybrid.stages import ann_outputs, spiking_evaluation, validation_split  # noqa: E402
from nengo_hybrid.targets import StandardisedTargets  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--run", required=True, help="a finished LocNet run (config.json, targets.json, ann)")
    parser.add_argument("--variants", nargs="+", default=["1:0.005", "5:0.005", "1:0.01"])
    parser.add_argument("--steps", nargs="+", type=int, default=[60, 100, 150])
    parser.add_argument("--out", default="results/benchmarks/locnet_conversion.json")
    args = parser.parse_args(argv)
    run_dir = Path(args.run)
    config = report.config_from_json(locnet.LocNetConfig, json.loads((run_dir / "config.json").read_text()))
    (x_train, y_train, _), _ = localisation.load_split(config, data_dir(args.data) / "caltech101")
    targets = StandardisedTargets.from_json(json.loads((run_dir / "targets.json").read_text()))
    model = locnet.make_model(config, x_train.shape[1:])
    # the ANN stage's validation images: early stopping saw them, its gradients never did
    val_idx, train_idx = validation_split(len(x_train), config.ann)
    if not len(val_idx):
        raise SystemExit(f"{run_dir / 'config.json'}: its ANN stage held out no validation images "
                         f"(early stopping is off: ann.patience {config.ann.patience}); this probe scores only on them")
    x_val, y_val = x_train[val_idx], y_train[val_idx]

    def iou(standardised):
        return float(box_iou(targets.restore(standardised), y_val).mean())

    floor = float(box_iou(np.tile(y_train[train_idx].mean(axis=0), (len(y_val), 1)), y_val).mean())
    record = {"run": str(run_dir), "n_validation": len(y_val), "floor": floor,
              "ann": iou(ann_outputs(model, config, run_dir / "ann", x_val)), "variants": []}
    print(f"{len(y_val)} validation airplanes: floor {floor:.4f}, ANN {record['ann']:.4f}", flush=True)
    for variant in args.variants:
        scale, synapse = (float(value) for value in variant.split(":"))
        start = time.time()
        converted = spiking_evaluation(model, replace(config, scale_firing_rates=scale, synapse=synapse or None,
                                                      steps_sweep=tuple(args.steps)), run_dir / "ann", x_val)
        ious = {t: iou(out) for t, out in converted["sweep"].items() if t in args.steps}
        record["variants"].append({"scale_firing_rates": scale, "synapse": synapse, "iou": ious,
                                   "firing_rate_hz": converted["rates"]["network"]})
        print(f"scale {scale:g}, synapse {synapse:g} s: IoU " +
              ", ".join(f"{iou_t:.4f} at {t}" for t, iou_t in ious.items()) +
              f"; {converted['rates']['network']:.1f} Hz ({time.time() - start:.0f} s)", flush=True)
    report.write_probe(args.out, record)
    print(f"\n{report.describe_cpu(record['cpu'])}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
