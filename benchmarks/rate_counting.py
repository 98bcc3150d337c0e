"""What measuring firing rates costs an evaluation: spike counters against probes that
keep every layer's activity.

On the CAE's paper profile (converted to SpikingRectifiedLinear, random weights or a
trained run's ``--params``) and real hippocampus slices, times three passes over the same
``--slices`` at ``--steps`` timesteps, in one process:

- ``output``: the output probe alone (what reading the masks needs);
- ``output+counters``: the same pass with a spike counter on every layer
  (`ConvertedNetwork.count_probes`), as `nengo_hybrid.stages.spiking_evaluation` runs it;
- ``history``: the earlier second pass, a probe on every layer at every step, its
  activity carried back and averaged in numpy;
- ``sweep+first-steps counters``: one pass over ``--sweep-steps`` (a timestep sweep read
  past the read-out) with counters of its first ``--steps`` only (``spike_counts=N``), as
  `spiking_evaluation` now runs a sweep; against ``sweep output`` + ``output+counters``,
  the two passes it ran before.

Prints each pass's seconds per slice and its ratio to the output pass, checks that every
way gives the same rates, and writes ``results/benchmarks/rate_counting.json``.

    python benchmarks/rate_counting.py [--data DIR] [--slices 80] [--steps 80] [--sweep-steps 160]
                                       [--params results/cae/ann]
"""

import nengo_hybrid  # noqa: F401, I001  (first: it quiets TensorFlow)

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import cae  # noqa: E402

from nengo_hybrid import segmentation  # noqa: E402
from nengo_hybrid.atomic import write_json  # noqa: E402
from nengo_hybrid.report import cpu  # noqa: E402
from nengo_hybrid.runtime import COUNT_LAG  # noqa: E402
from nengo_hybrid.simulation import iterate_predictions  # noqa: E402
from nengo_hybrid.stages import network  # noqa: E402


def timed_pass(converted, params, x, n_steps, batch, counters, counted_steps=None):
    """Seconds of one pass over ``x`` (simulator built beforehand) and its rates if
    ``counters``: over every step, or over the first ``counted_steps`` of ``n_steps``."""
    rates = converted.rate_meter(counted_steps or n_steps) if counters else None
    spike_counts = counted_steps if counters and counted_steps else counters
    with converted.simulator(minibatch_size=batch, spike_counts=spike_counts) as sim:
        if params:
            sim.load_params(params)
        start = time.perf_counter()
        inputs = converted.inputs(x, n_steps + (COUNT_LAG if counters and not counted_steps else 0))
        for _, out in iterate_predictions(sim, inputs):
            if counters:
                rates.add(converted.counts(out))
        return time.perf_counter() - start, (rates.result() if counters else None)


def timed_history(converted, params, x, n_steps, batch):
    with converted.simulator(minibatch_size=batch, layer_probes=True) as sim:
        if params:
            sim.load_params(params)
        start = time.perf_counter()
        rates = converted.firing_rates(sim, x, n_steps)
        return time.perf_counter() - start, rates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    segmentation.add_folder_arguments(parser)
    parser.add_argument("--slices", type=int, default=80)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--sweep-steps", type=int, default=None, help="default: twice --steps")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--params", default=None, help="a trained run's ANN parameters (default: random weights)")
    parser.add_argument("--out", default="results/benchmarks/rate_counting.json")
    args = parser.parse_args(argv)

    config = cae.PROFILES["paper"]
    images, labels = segmentation.folders(args)
    ids = segmentation.subject_ids(images, labels, 0)
    slices = segmentation.load(config, images, labels, ids[:max(1, -(-args.slices // 36))])
    x = slices.images[np.linspace(0, len(slices) - 1, args.slices).astype(int)]
    converted = network(cae.make_model(config, x.shape[1:]), config, "spiking")

    seconds, rates = {}, {}
    # the output pass once untimed first: TensorFlow's first run of a graph pays its warm-up
    timed_pass(converted, args.params, x[:args.batch], args.steps, args.batch, False)
    seconds["output"], _ = timed_pass(converted, args.params, x, args.steps, args.batch, False)
    seconds["output+counters"], rates["counters"] = timed_pass(converted, args.params, x, args.steps, args.batch,
                                                               True)
    seconds["history"], rates["history"] = timed_history(converted, args.params, x, args.steps, args.batch)
    sweep_steps = args.sweep_steps or 2 * args.steps
    seconds["sweep output"], _ = timed_pass(converted, args.params, x, sweep_steps, args.batch, False)
    seconds["sweep+first-steps counters"], rates["first-steps counters"] = timed_pass(
        converted, args.params, x, sweep_steps, args.batch, True, counted_steps=args.steps)
    two_passes = seconds["sweep output"] + seconds["output+counters"]

    ratios = {name: s / seconds["output"] for name, s in seconds.items()}
    print(f"{len(x)} slices of {x.shape[1:3]}, {args.steps} timesteps (sweep {sweep_steps}), minibatch {args.batch}")
    print(f"{'pass':>26} | {'s/slice':>8} | / output")
    for name, s in seconds.items():
        print(f"{name:>26} | {s / len(x):8.4f} | {ratios[name]:6.2f}")
    print(f"a sweep with its rates: two passes (sweep output + output+counters) / one pass "
          f"(sweep+first-steps counters) = {two_passes / seconds['sweep+first-steps counters']:.2f}")
    difference = max(abs(rates[way]["layers"][n] / rates["history"]["layers"][n] - 1)
                     for way in ("counters", "first-steps counters")
                     for n in rates["history"]["layers"] if rates["history"]["layers"][n])
    print(f"network rate: counters {rates['counters']['network']:.3f} Hz, history "
          f"{rates['history']['network']:.3f} Hz; largest relative difference of a layer {difference:.1e}")
    write_json(args.out, {"slices": len(x), "steps": args.steps, "batch": args.batch, "params": args.params,
                          "sweep_steps": sweep_steps, "seconds": seconds, "ratios_to_output": ratios,
                          "two_passes_over_one": two_passes / seconds["sweep+first-steps counters"],
                          "network_rate_hz": {k: r["network"] for k, r in rates.items()},
                          "largest_relative_difference": difference, "cpu": cpu()})
    print(f"wrote {args.out}")
    return difference < 1e-6


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
