"""Time per training epoch and per inference of one LocNet-sized network.

Compared: plain tf.keras; the NengoDL rate family (one timestep); the spiking and hybrid
families over ``--steps`` timesteps; and, as the outside peer, the same network trained
spike-aware in keras-spiking (``SpikingActivation``) over the same timesteps.  Each time
is the best of ``--repeats`` epochs after one warm-up epoch (which builds the graph).
Prints the ratios and writes ``results/benchmarks/neurons.json``.

With synapses between the layers, a lower layer's activity at the last few timesteps never
reaches the output within the run, and TensorFlow runs neither those steps' convolutions
nor their gradients in training: each NengoDL row prints the share of the layer-steps that
ran (31 % of LocNet's at 10 timesteps, 93 % at 100; `step_timing.backward_coverage`), so a
10-step epoch times about a third of what a long run's steps cost.  keras-spiking's peer
has no synapses and runs every step.

    python benchmarks/neurons.py --data DIR --steps 10
"""

import nengo_hybrid as nh  # noqa: I001  (first: it quiets TensorFlow)

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from data_prep.caltech101 import image_ids, load_airplanes
from nengo_hybrid.models.locnet import build_locnet
from nengo_hybrid.paths import add_data_argument, data_dir
from nengo_hybrid.report import versions
from nengo_hybrid.atomic import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_timing import backward_coverage  # noqa: E402  (beside this script)


def best_time(run, repeats):
    run()  # warm-up: graph construction and tracing
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def keras_times(model, x, y, batch, repeats, xla=False):
    model.compile(tf.optimizers.Adam(1e-3), "mse", jit_compile=xla)
    fit = best_time(lambda: model.fit(x, y, batch_size=batch, epochs=1, verbose=0), repeats)
    predict = best_time(lambda: model.predict(x, batch_size=batch, verbose=0), repeats)
    return fit, predict


def nengo_times(model, family, x, y, batch, steps, repeats, scale=None, fuse_with_xla=True):
    spiking = nh.get_family(family).spiking
    converted = nh.convert(model, family, synapse=0.005 if spiking else None,
                           scale_firing_rates=scale if spiking else None, fuse_with_xla=fuse_with_xla)
    with converted.simulator(minibatch_size=batch, n_steps=steps) as sim:
        inputs = converted.inputs(x, steps)
        # inference first, so that every family is timed on the converted weights
        predict = best_time(lambda: sim.predict(inputs, verbose=0), repeats)
        converted.compile(sim, tf.optimizers.Adam(1e-3), tf.losses.mse)
        targets = converted.targets(y, n_steps=steps)
        fit = best_time(lambda: sim.fit(inputs, targets, epochs=1, verbose=0), repeats)
        coverage = backward_coverage(sim)
    return fit, predict, coverage


def network_rate(model, family, x, batch, steps, scale=None):
    """Average firing rate (Hz) of the whole network: a silent network times nothing."""
    converted = nh.convert(model, family, synapse=0.005, scale_firing_rates=scale)
    with converted.simulator(minibatch_size=batch, n_steps=steps, layer_probes=True) as sim:
        return converted.firing_rates(sim, x[:batch], steps)["network"]


def keras_spiking_model(model, steps):
    """The same layers and weights, each nonlinearity a keras-spiking SpikingActivation."""
    import keras_spiking

    inp = tf.keras.Input((steps,) + model.input_shape[1:])
    x = inp
    for layer in model.layers[1:]:
        config = layer.get_config()
        activation = getattr(layer, "activation", None)
        if activation is not None:
            config["activation"] = None
        clone = type(layer).from_config(config)
        x = tf.keras.layers.TimeDistributed(clone)(x)
        clone.set_weights(layer.get_weights())
        if activation is not None and activation is not tf.keras.activations.linear:
            x = keras_spiking.SpikingActivation(activation, dt=0.001, spiking_aware_training=True)(x)
    return tf.keras.Model(inp, x)


def keras_spiking_times(model, x, y, batch, steps, repeats):
    spiking_model = keras_spiking_model(model, steps)
    xs = np.repeat(x[:, None], steps, axis=1)
    ys = np.repeat(y[:, None], steps, axis=1)
    return keras_times(spiking_model, xs, ys, batch, repeats)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--steps", type=int, default=10, help="timesteps of the spiking runs")
    parser.add_argument("--images", type=int, default=720, help="at most this many airplanes")
    parser.add_argument("--size", type=int, nargs=2, default=(96, 144), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--neuron", choices=["lif", "relu"], default="lif",
                        help="SoftLIF (LocNet's) or ReLU hidden units")
    parser.add_argument("--skip", nargs="*", default=[], choices=["spiking", "keras_spiking"],
                        help="leave out slow peers")
    parser.add_argument("--out", default="results/benchmarks/neurons.json")
    args = parser.parse_args(argv)

    root = data_dir(args.data) / "caltech101"
    ids = image_ids(root)[: args.images]
    x, y, _ = load_airplanes(root, size=tuple(args.size), ids=ids, grey=False)
    n = len(x) - len(x) % args.batch
    x, y = x[:n], y[:n]
    if args.neuron == "lif":
        model = build_locnet(x.shape[1:], nh.SoftLIF(sigma=0.005, amplitude=0.01), hidden_bias=1.0)
        scale = None
    else:
        # ReLU units' outputs are small numbers: scaled up, they spike at tens of Hz
        model = build_locnet(x.shape[1:], "relu")
        scale = 100.0
    steps = args.steps
    print(f"{n} real Caltech-101 airplanes of {x.shape[1:]}, {args.neuron} units, "
          f"{model.count_params()} parameters, {steps} timesteps, {os.cpu_count()} CPU cores, "
          f"GPU: {bool(tf.config.list_physical_devices('GPU'))}", flush=True)

    rows = {}

    def record(name, fit, predict, coverage=None):
        rows[name] = {"epoch_s": fit, "inference_s": predict, "backward_coverage": coverage}
        fit_text = "   -   " if fit is None else f"{fit:7.2f}"
        # the part of the training graph that runs (`step_timing.backward_coverage`):
        # through synapses, a lower layer's last steps never reach the loss
        ran = "" if coverage is None else f"   (training ran {coverage:.0%} of the layer-steps)"
        print(f"{name:>14}: epoch {fit_text} s   inference {predict:7.2f} s{ran}", flush=True)

    rate_hz = network_rate(model, "spiking", x, args.batch, steps, scale)
    print(f"spiking network's average firing rate: {rate_hz:.1f} Hz", flush=True)

    record("keras", *keras_times(model, x, y, args.batch, args.repeats))
    # the stricter baseline: the same Keras model compiled with XLA
    record("keras_xla", *keras_times(tf.keras.models.clone_model(model), x, y, args.batch, args.repeats, xla=True))
    record("nengo_rate", *nengo_times(model, "rate", x, y, args.batch, 1, args.repeats))
    if "spiking" not in args.skip:
        # NengoDL trains its spiking family as rates over the timesteps
        record("nengo_spiking", *nengo_times(model, "spiking", x, y, args.batch, steps, args.repeats, scale))
    record("nengo_hybrid", *nengo_times(model, "hybrid", x, y, args.batch, steps, args.repeats, scale))
    # the fast path against the same maths unfused (SpikingSettings.fuse_with_xla=False)
    record("hybrid_unfused", *nengo_times(model, "hybrid", x, y, args.batch, steps, args.repeats, scale,
                                          fuse_with_xla=False))
    if "keras_spiking" not in args.skip:
        record("keras_spiking", *keras_spiking_times(model, x, y, args.batch, steps, args.repeats))

    keras_epoch = rows["keras"]["epoch_s"]
    xla_epoch = rows["keras_xla"]["epoch_s"]
    ratios = {
        "rate_epoch / keras_epoch": rows["nengo_rate"]["epoch_s"] / keras_epoch,
        "hybrid_epoch / (steps * keras_epoch)": rows["nengo_hybrid"]["epoch_s"] / (steps * keras_epoch),
        "rate_epoch / keras_xla_epoch": rows["nengo_rate"]["epoch_s"] / xla_epoch,
        "hybrid_epoch / (steps * keras_xla_epoch)": rows["nengo_hybrid"]["epoch_s"] / (steps * xla_epoch),
        "hybrid_epoch / hybrid_unfused_epoch": rows["nengo_hybrid"]["epoch_s"] / rows["hybrid_unfused"]["epoch_s"],
    }
    if "keras_spiking" in rows:
        ratios["keras_spiking_epoch / (steps * keras_epoch)"] = rows["keras_spiking"]["epoch_s"] / (steps * keras_epoch)
        ratios["hybrid_epoch / keras_spiking_epoch"] = rows["nengo_hybrid"]["epoch_s"] / rows["keras_spiking"]["epoch_s"]
        # keras-spiking runs every layer-step; the hybrid epoch as if it ran them all
        ratios["(hybrid_epoch / ran) / keras_spiking_epoch"] = (
            ratios["hybrid_epoch / keras_spiking_epoch"] / rows["nengo_hybrid"]["backward_coverage"])
    print()
    for name, value in ratios.items():
        print(f"{name:>45}: {value:6.2f}")

    result = {
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
        "images": n,
        "image_shape": list(x.shape[1:]),
        "steps": steps,
        "batch": args.batch,
        "neuron": args.neuron,
        "scale_firing_rates": scale,
        "spiking_network_rate_hz": rate_hz,
        "cpu_cores": os.cpu_count(),
        "gpu": bool(tf.config.list_physical_devices("GPU")),
        "machine": platform.platform(),
        "versions": versions(),
        "times": rows,
        "ratios": ratios,
    }
    write_json(args.out, result)
    print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
