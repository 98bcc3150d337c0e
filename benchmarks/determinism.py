"""Is hybrid fine-tuning at the paper's size bit-reproducible, within one process and
across processes?  (Issue 12 §3: the XLA-fused hybrid step drifts by ~1e-8 between runs.)

    python benchmarks/determinism.py --run results/locnet [--processes 4] [--repeats 2]
                                     [--minibatches 3] [--unfused] [--rate-terms]
                                     [--xla-dump DIR] [--data DIR]
                                     [--preludes none ann-fit ...]
    python benchmarks/determinism.py --run results/cae --experiment cae [--budget short]
                                     [--sgd-step] [--fixed-order-sums] [--env VAR=VALUE ...]

Takes a finished LocNet run (its ``config.json``, ``targets.json`` and trained ``ann``
parameters; with ``--experiment cae`` a finished CAE run, fine-tuned at its ``--budget``,
on real training slices) and starts ``--processes`` fresh processes.  Each builds the hybrid training
graph once (fused, or ``--unfused``; with the run's rate terms and their layer probes if its
hybrid stage has them, or with ``--rate-terms``), then ``--repeats`` times: loads the trained ANN, zeroes
Adam's state and fits the same ``--minibatches`` augmented minibatches (drawn once, from a
fixed seed).  Prints and writes to ``results/benchmarks/determinism.json``: the largest
parameter difference between repeats within each process, and between each process's
result and the first process's, with how many weights differ.  Every repeat within a
process identical but processes apart means the drift is fixed when a process builds its
graph; differences within a process, that it is drawn at every step.  ``--xla-dump DIR``
has each process write what XLA compiled (HLO before and after optimisation, LLVM IR) to
``DIR/process<i>/``: the same code in two processes that give different numbers points at
the runtime (threads, buffer alignment), different code at the compilation.

``--preludes`` gives each process, in turn, something to do before it builds the hybrid
graph (one process per entry; ``--processes`` is then their number): ``none``;
``ann-build``, build and compile the rate network's training simulator as the ANN stage
does, train nothing; ``ann-fit``, the same and train it on ``PRELUDE_MINIBATCHES`` ANN
minibatches.  A process whose result differs from the first's after a prelude
means the hybrid stage depends on what its process did before it (as a run resumed after
its ANN stage, against the uninterrupted run).

``--sgd-step`` fits one step of plain gradient descent at rate 1 instead of Adam, so the
weights move by exactly the gradient and the variables that differ between repeats name
the gradients that do.  ``--env VAR=VALUE`` starts every process with that variable set
(``TF_NUM_INTEROP_THREADS=1``: one inter-op thread; ``TF_ENABLE_ONEDNN_OPTS=0``).
``--fixed-order-sums`` trains as ``TrainSettings(fixed_order_sums=True)`` does: TensorFlow's
tape adds the gradients a weight gets from its uses (one per timestep) with one ``AddN``,
whose CPU kernel accumulates into whichever input buffer no other op still holds and moves
that input to the front, so the order of the additions follows the scheduler;
`nengo_hybrid.gradients` adds them as a chain of two-input adds in a fixed order instead
(with Grappler's arithmetic optimiser off, which would fold the chain back).
"""

import nengo_hybrid  # noqa: F401, I001  (first: it quiets TensorFlow)

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import locnet  # noqa: E402

from nengo_hybrid import localisation, report  # noqa: E402
from nengo_hybrid.atomic import write_json  # noqa: E402
from nengo_hybrid.experiment import seed_everything  # noqa: E402
from nengo_hybrid.paths import add_data_argument, data_dir  # noqa: E402


PRELUDES = ("none", "ann-build", "ann-fit")
PRELUDE_MINIBATCHES = 4
EXPERIMENTS = ("locnet", "cae")


def prelude(kind, model, config, x_train, y_train, loss, regularization):
    """What a process does before the hybrid graph is built (see ``--preludes``)."""
    import tensorflow as tf

    from nengo_hybrid.stages import network

    if kind == "none":
        return
    ann = network(model, config, "rate")
    with ann.simulator(config.ann.batch_size, n_steps=1, layer_probes=regularization is not None) as sim:
        ann.compile(sim, tf.optimizers.Adam(config.ann.learning_rate), loss, regularization=regularization)
        if kind == "ann-fit":
            n = PRELUDE_MINIBATCHES * config.ann.batch_size
            sim.fit(ann.dataset(sim, x_train[:n], y_train[:n], regularization, 1), epochs=1, shuffle=False,
                    verbose=0)


def locnet_fit(run_dir, root, minibatches, fused, rate_terms, before):
    """LocNet's hybrid stage as the paper profile trains it: (config, model, minibatches'
    inputs and targets, loss, rate regularisation or None), after the ``before`` prelude."""
    from nengo_hybrid.augment import PixelOffset
    from nengo_hybrid.losses import StandardisedBoxLoss
    from nengo_hybrid.stages import finetuning_loss
    from nengo_hybrid.targets import StandardisedTargets

    config = report.config_from_json(locnet.LocNetConfig, json.loads((run_dir / "config.json").read_text()))
    config = replace(config, spiking=replace(config.spiking, fuse_with_xla=fused))
    seed_everything(config.seed)
    (x_train, y_train, _), _ = localisation.load_split(config, root / "caltech101")
    targets = StandardisedTargets.from_json(json.loads((run_dir / "targets.json").read_text()))
    model = locnet.make_model(config, x_train.shape[1:])
    augment = targets.augmentation(PixelOffset(config.augmentation(), config.pixel_offset))
    n = minibatches * config.finetune.batch_size
    xs, ys = augment(x_train[:n], targets.standardise(y_train[:n]), np.random.RandomState(1))
    # the rate terms and their layer probes as the paper profile's hybrid stage has them
    regularization = config.regularization() if config.finetune.rate_terms or rate_terms else None
    box_loss = StandardisedBoxLoss(targets.mean, targets.spread, config.iou_weight)
    prelude(before, model, config, x_train, targets.standardise(y_train), box_loss,
            config.regularization() if config.ann.rate_terms else None)
    return config, model, xs, ys, finetuning_loss(config, box_loss), regularization


def cae_fit(run_dir, root, minibatches, fused, budget):
    """The CAE's hybrid stage at ``budget`` ("long" or "short") on real training slices
    (a seeded draw of ``minibatches`` minibatches): (config, model, inputs, targets, loss,
    None)."""
    import cae

    from data_prep.hippocampus import msd_folders
    from nengo_hybrid.heldout import split_slices
    from nengo_hybrid.stages import finetuning_loss

    config = report.config_from_json(cae.CAEConfig, json.loads((run_dir / "config.json").read_text()))
    if budget == "short":
        config = config.short_budget()
    config = replace(config, spiking=replace(config.spiking, fuse_with_xla=fused))
    seed_everything(config.seed)
    train, _ = split_slices(config, *msd_folders(root / "msd_hippocampus"))  # the run's training subjects
    chosen = np.random.RandomState(1).permutation(len(train.images))[:minibatches * config.finetune.batch_size]
    model = cae.make_model(config, train.images.shape[1:])
    return config, model, train.images[chosen], train.masks[chosen], finetuning_loss(config, config.loss()), None


def worker(run_dir, root, options, out):
    """One process: build the training graph once, fit the same minibatches
    ``options.repeats`` times from the trained ANN, save the first fit's parameters to
    ``out`` (.npz) and return the largest difference of every later fit from the first."""
    import tensorflow as tf

    from nengo_hybrid.gradients import FixedOrderAdam, FixedOrderSGD, fix_sum_order
    from nengo_hybrid.stages import network

    fused = not options.unfused
    if options.experiment == "cae":
        config, model, xs, ys, loss, regularization = cae_fit(run_dir, root, options.minibatches, fused,
                                                              options.budget)
    else:
        config, model, xs, ys, loss, regularization = locnet_fit(run_dir, root, options.minibatches, fused,
                                                                 options.rate_terms, options.before)
    tuning = network(model, config, config.spiking.finetuned_family, None)
    first, differences = None, []
    with tuning.simulator(config.finetune.batch_size, n_steps=config.finetune.n_steps,
                          layer_probes=regularization is not None) as sim:
        # one plain step at rate 1 moves every weight by its gradient, so the weights that
        # differ between repeats are the gradients that do
        if options.fixed_order_sums:
            fix_sum_order()
            optimizer = FixedOrderSGD(1.0) if options.sgd_step else FixedOrderAdam(config.finetune.learning_rate)
        else:
            optimizer = (tf.optimizers.SGD(1.0) if options.sgd_step
                         else tf.optimizers.Adam(config.finetune.learning_rate))
        tuning.compile(sim, optimizer, loss, regularization=regularization)
        optimizer.build(sim.keras_model.trainable_variables)
        data = tuning.dataset(sim, xs, ys, regularization, config.finetune.n_steps)
        names = [variable.name for variable in sim.keras_model.trainable_weights]
        for repeat in range(options.repeats):
            start = time.time()
            sim.load_params(run_dir / "ann")
            for variable in optimizer.variables:
                variable.assign(tf.zeros_like(variable))
            sim.fit(data, epochs=1, shuffle=False, verbose=0)
            weights = [w.numpy() for w in sim.keras_model.trainable_weights]
            digest = hashlib.sha1(b"".join(w.tobytes() for w in weights)).hexdigest()[:12]
            line = f"  repeat {repeat + 1}/{options.repeats}: {time.time() - start:.1f} s, weights sha1 {digest}"
            if first is None:
                first = weights
            else:
                differences.append(max(float(np.abs(a - b).max()) for a, b in zip(first, weights)))
                differing = [name for name, a, b in zip(names, first, weights) if np.any(a != b)]
                line += f"; {len(differing)} of {len(names)} variables differ from the first fit"
            print(line, flush=True)
    np.savez(out, *first)
    return differences


def compare(reference, other):
    """The largest parameter difference between two saved fits, and how many weights differ."""
    a, b = np.load(reference), np.load(other)
    diffs = [np.abs(a[k] - b[k]) for k in a.files]
    return float(max(d.max() for d in diffs)), int(sum((d > 0).sum() for d in diffs))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--run", required=True, help="a finished run (config.json, ann; LocNet's targets.json)")
    parser.add_argument("--experiment", choices=EXPERIMENTS, default="locnet")
    parser.add_argument("--budget", choices=("long", "short"), default="short",
                        help="the CAE's fine-tuning budget (default: short)")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--minibatches", type=int, default=3)
    parser.add_argument("--unfused", action="store_true", help="train without the XLA-fused step")
    parser.add_argument("--rate-terms", action="store_true",
                        help="train with the run's rate terms (and layer probes) even if its hybrid stage has none")
    parser.add_argument("--sgd-step", action="store_true",
                        help="plain gradient descent at rate 1 instead of Adam (the weights move by the gradient)")
    parser.add_argument("--fixed-order-sums", action="store_true",
                        help="each weight's gradient terms added in a fixed order (TrainSettings.fixed_order_sums)")
    parser.add_argument("--env", nargs="+", default=[], metavar="VAR=VALUE",
                        help="environment variables every process starts with")
    parser.add_argument("--xla-dump", default=None, help="each process writes XLA's HLO and IR to DIR/process<i>")
    parser.add_argument("--preludes", nargs="+", choices=PRELUDES, default=None,
                        help="LocNet: one process per entry, each doing this before the hybrid graph is built")
    parser.add_argument("--out", default="results/benchmarks/determinism.json")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one process's .npz
    parser.add_argument("--before", default="none", choices=PRELUDES, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)
    run_dir = Path(args.run)
    if args.preludes and args.experiment != "locnet":
        parser.error("--preludes is for LocNet runs")
    settings = dict(variable.split("=", 1) for variable in args.env)
    if args.worker:
        differences = worker(run_dir, data_dir(args.data), args, args.worker)
        Path(args.worker).with_suffix(".json").write_text(json.dumps(differences))
        return 0

    mode = "unfused" if args.unfused else "fused"
    preludes = args.preludes or ["none"] * args.processes
    processes = []
    with tempfile.TemporaryDirectory() as folder:
        for index, before in enumerate(preludes):
            print(f"process {index + 1}/{len(preludes)} ({args.experiment}, {mode}, prelude {before}):", flush=True)
            out = Path(folder) / f"process{index}.npz"
            command = [sys.executable, __file__, "--run", str(run_dir), "--experiment", args.experiment,
                       "--budget", args.budget, "--repeats", str(args.repeats),
                       "--minibatches", str(args.minibatches), "--worker", str(out), "--before", before]
            if args.data:
                command += ["--data", str(args.data)]
            for flag in ("unfused", "rate_terms", "sgd_step", "fixed_order_sums"):
                if getattr(args, flag):
                    command.append("--" + flag.replace("_", "-"))
            env = {**os.environ, **settings}
            if args.xla_dump:
                dump = Path(args.xla_dump) / f"process{index}"
                env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_dump_to={dump} --xla_dump_hlo_as_text".strip()
            subprocess.run(command, check=True, env=env)
            within = json.loads(out.with_suffix(".json").read_text())
            across, n_differing = compare(Path(folder) / "process0.npz", out)
            processes.append({"prelude": before, "within_process_max_diff": max(within, default=0.0),
                              "within_process_repeats_differing": sum(d > 0 for d in within),
                              "vs_first_process_max_diff": across, "vs_first_process_weights_differing": n_differing})
            print(f"  within the process: {sum(d > 0 for d in within)} of {len(within)} later fits differ "
                  f"from the first, max |diff| {max(within, default=0.0):.3g}; against process 1: "
                  f"max |diff| {across:.3g} in {n_differing} weights", flush=True)
    record = {"experiment": args.experiment, "budget": args.budget if args.experiment == "cae" else None,
              "mode": mode, "rate_terms": args.rate_terms, "sgd_step": args.sgd_step,
              "fixed_order_sums": args.fixed_order_sums, "env": settings, "xla_dump": args.xla_dump,
              "run": str(run_dir), "repeats": args.repeats, "minibatches": args.minibatches,
              "processes": processes, "cpu": report.cpu(), "versions": report.versions()}
    write_json(args.out, record)
    print(f"\n{report.describe_cpu(record['cpu'])}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
