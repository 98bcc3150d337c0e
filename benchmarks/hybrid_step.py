"""Where the time of LocNet's hybrid fine-tuning goes at the paper's shape, per image-step.

    python benchmarks/hybrid_step.py [--steps 10 100] [--settings default ...]
                                     [--minibatches 4] [--data DIR]

The paper profile's hybrid epochs cost ~3.5 ms per image and timestep (100 timesteps, batch
16) where `benchmarks/neurons.py`'s 10-step hybrid epoch costs ~1.1 ms: this finds out why.
For every ``--steps`` value and every ``--settings`` entry, a fresh process builds the paper
profile's hybrid training graph (96x144x3 airplanes, batch 16, fresh weights: the timing of
dense convolutions does not depend on them), fits ``--minibatches`` real minibatches once to
warm up, then once timed, and reports per image-step: wall time, user and system CPU time
and minor page faults (``getrusage``), and the peak resident memory.  Settings, each an
environment the process starts in:

- ``default``: the package's (oneDNN on, TensorFlow's own thread pools);
- ``system-allocator``: ``TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1`` (oneDNN builds of TensorFlow
  put large tensors in a BFC pool of their own; this hands them to malloc);
- ``glibc-keep``: malloc keeps freed memory instead of returning it to the kernel
  (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TOP_PAD_``), so a
  freed buffer need not be faulted in again, page by zeroed page;
- ``unfused``: the neurons' training step not fused by XLA (``fuse_with_xla=False``);
- ``one-interop``: ``TF_NUM_INTEROP_THREADS=1``;
- ``grappler-off``: TensorFlow's graph optimiser off (``disable_meta_optimizer``), which
  rewrites a graph before it runs (it fuses convolutions with their bias and activation,
  among others): does the unrolled graph's size change what it does?
- ``loop-10``: the timesteps in a ``tf.while_loop`` of 10 unrolled steps
  (``use_loop=True, unroll_simulation=10``) instead of one graph of all of them;
- ``fixed-order``: the gradients' per-timestep terms summed in a fixed order
  (``TrainSettings(fixed_order_sums=True)``: `nengo_hybrid.gradients.FixedOrderAdam`
  with Grappler's arithmetic optimiser off);
- ``arithmetic-off``: only the second half of that, Grappler's arithmetic optimiser off
  with Keras's own Adam: which half costs.

``--trace`` records the timed epoch with TensorFlow's profiler and adds to each row the
self time per image-step of each op type and how often it ran per timestep (the
profiler's "tensorflow_stats", summed over threads; the costliest printed side by side).
The profiler drops events beyond its buffer: trace one or two minibatches, and check
that the runs per timestep agree between rows.

Prints every row's ms per image-step and its ratio to the default setting at the same
steps, and the ratio of each steps value to the first (linear in T: 1.0 per image-step),
and how much of the forward pass the step differentiates (`backward_coverage`): the cost
per image-step grows from 10 to 30 timesteps because the part of the graph that runs does
(TensorFlow prunes the forward ops no gradient needs as well), so the user CPU time over
the coverage, the cost of a whole step, is printed beside it.
Writes ``results/benchmarks/hybrid_step.json``.
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nengo_hybrid.atomic import write_json  # noqa: E402
from nengo_hybrid.paths import add_data_argument, data_dir  # noqa: E402

GIB = 2 ** 30
KEEP = str(GIB)  # bytes malloc may hold on to
SETTINGS = {
    "default": {},
    "system-allocator": {"TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "1"},
    "glibc-keep": {"MALLOC_TRIM_THRESHOLD_": KEEP, "MALLOC_MMAP_THRESHOLD_": str(2 ** 25),
                   "MALLOC_TOP_PAD_": str(2 ** 28)},
    "unfused": {},
    "one-interop": {"TF_NUM_INTEROP_THREADS": "1"},
    "grappler-off": {},
    "loop-10": {},
    "fixed-order": {},
    "arithmetic-off": {},
}
# settings the worker makes in its own code rather than by environment: each is its flag
WORKER_FLAGS = ("unfused", "grappler-off", "loop-10", "fixed-order", "arithmetic-off")
LOOP_UNROLL = 10


def _protobuf_fields(buffer):
    """(field number, value) of a serialised protobuf message, read by its wire format
    (varints, 64-bit, length-delimited, 32-bit): the profiler's op statistics come as a
    ``TfStatsDatabase`` whose Python class TensorFlow 2.12 does not ship."""
    def varint(i):
        value = shift = 0
        while True:
            byte = buffer[i]
            value |= (byte & 0x7F) << shift
            shift, i = shift + 7, i + 1
            if byte < 0x80:
                return value, i
    i = 0
    while i < len(buffer):
        key, i = varint(i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(i)
        elif wire == 1:
            value, i = struct.unpack("<d", buffer[i:i + 8])[0], i + 8
        elif wire == 2:
            size, i = varint(i)
            value, i = buffer[i:i + size], i + size
        elif wire == 5:
            value, i = struct.unpack("<f", buffer[i:i + 4])[0], i + 4
        else:
            raise ValueError(f"protobuf wire type {wire} not expected here")
        yield number, value


def op_times(logdir):
    """Self time (ms) and number of runs of each TensorFlow op type in the profiler
    trace under ``logdir``, from the profiler's own "tensorflow_stats" tool (the one
    TensorBoard shows).  Fields of tensorflow/core/profiler/protobuf/tf_stats.proto:
    the table with idle time is field 4 of ``TfStatsDatabase``, a record field 1 of
    the table; in a record, 3 is the op type, 5 the occurrences, 8 the total self time
    in microseconds."""
    from tensorflow.python.profiler.internal import _pywrap_profiler

    paths = [str(p) for p in Path(logdir).rglob("*.xplane.pb")]
    database = _pywrap_profiler.xspace_to_tools_data(paths, "tensorflow_stats")[0]
    times, counts = {}, {}
    for number, table in _protobuf_fields(database):
        if number != 4:
            continue
        for field, record in _protobuf_fields(table):
            if field != 1:
                continue
            values = dict(_protobuf_fields(record))
            kind = values.get(3, b"").decode()
            times[kind] = times.get(kind, 0.0) + values.get(8, 0.0) / 1e3
            counts[kind] = counts.get(kind, 0) + values.get(5, 0)
    return times, counts


def worker(root, steps, minibatches, fused, grappler=True, loop=False, trace=None,
           fixed_order=False, arithmetic=True):
    """One process: the paper profile's hybrid training graph at ``steps`` timesteps,
    one warm-up epoch of ``minibatches`` minibatches and one timed; the timed epoch's
    resource use."""
    import resource
    from dataclasses import replace

    import nengo_hybrid  # noqa: F401  (first: it quiets TensorFlow)
    import tensorflow as tf

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    import locnet
    from step_timing import PeakMemory, backward_coverage

    from nengo_hybrid import localisation
    from nengo_hybrid.experiment import seed_everything
    from nengo_hybrid.gradients import FixedOrderAdam, fix_sum_order
    from nengo_hybrid.losses import StandardisedBoxLoss
    from nengo_hybrid.stages import finetuning_loss, network
    from nengo_hybrid.targets import StandardisedTargets

    if not grappler:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    if fixed_order or not arithmetic:
        fix_sum_order()
    config = locnet.PROFILES["paper"]
    config = replace(config, spiking=replace(config.spiking, fuse_with_xla=fused))
    seed_everything(config.seed)
    (x_train, y_train, _), _ = localisation.load_split(config, root)
    batch = config.finetune.batch_size
    n = minibatches * batch
    x, boxes = x_train[:n] - config.pixel_offset, y_train[:n]
    targets = StandardisedTargets.fit(y_train)
    model = locnet.make_model(config, x.shape[1:])
    converted = network(model, config, config.spiking.finetuned_family)
    loss = finetuning_loss(config, StandardisedBoxLoss(targets.mean, targets.spread, config.iou_weight))
    build_start = time.perf_counter()
    simulator = (converted.simulator(batch, unroll_simulation=LOOP_UNROLL) if loop
                 else converted.simulator(batch, n_steps=steps))
    with simulator as sim:
        optimizer = FixedOrderAdam if fixed_order else tf.optimizers.Adam
        converted.compile(sim, optimizer(config.finetune.learning_rate), loss)
        data = converted.dataset(sim, x, targets.standardise(boxes), None, steps)
        sim.fit(data, epochs=1, shuffle=False, verbose=0)  # warm-up: tracing, compiling
        warm_s = time.perf_counter() - build_start
        coverage = backward_coverage(sim)
        memory = PeakMemory()
        before = resource.getrusage(resource.RUSAGE_SELF)
        if trace:
            tf.profiler.experimental.start(trace)
        start = time.perf_counter()
        sim.fit(data, epochs=1, shuffle=False, verbose=0)
        wall = time.perf_counter() - start
        if trace:
            tf.profiler.experimental.stop()
        after = resource.getrusage(resource.RUSAGE_SELF)
        peak = memory.peak()
    image_steps = n * steps
    times, counts = op_times(trace) if trace else ({}, {})
    return {
        "op_ms_per_image_step": {k: v / image_steps for k, v in times.items()},
        "op_runs_per_step": {k: v / (minibatches * steps) for k, v in counts.items()},
        "steps": steps, "images": n, "batch": batch, "warm_up_s": warm_s, "wall_s": wall,
        "backward_coverage": coverage,
        "ms_per_image_step": 1e3 * wall / image_steps,
        "user_ms_per_image_step": 1e3 * (after.ru_utime - before.ru_utime) / image_steps,
        "system_ms_per_image_step": 1e3 * (after.ru_stime - before.ru_stime) / image_steps,
        "minor_faults_per_image_step": (after.ru_minflt - before.ru_minflt) / image_steps,
        "peak_rss_gib": peak / GIB,
    }


def run_worker(args, steps, setting):
    """``worker`` in a fresh process under ``setting``'s environment; its result."""
    env = dict(os.environ, **SETTINGS[setting])
    out = Path(args.out).with_suffix(f".{setting}.{steps}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, __file__, "--worker", str(out), "--worker-steps", str(steps),
               "--minibatches", str(args.minibatches), "--data", str(args.data or "")]
    if setting in WORKER_FLAGS:
        command.append(f"--{setting}")
    if args.trace:
        command += ["--trace", str(out.with_suffix(".trace"))]
    subprocess.run(command, env=env, check=True)
    result = json.loads(out.read_text())
    out.unlink()
    return result


def print_op_table(rows, top=16):
    """The op types with the most self time: per image-step (us) and runs per timestep,
    one column pair per row."""
    kinds = sorted({k for r in rows for k in r["op_ms_per_image_step"]},
                   key=lambda k: -max(r["op_ms_per_image_step"].get(k, 0.0) for r in rows))
    print("\nself time per image-step (us) and runs per timestep by op type (summed over "
          "threads; IDLE: threads waiting)")
    print(f"{'':>30}" + "".join(f"{r['setting'][:12]:>13}/{r['steps']:<4}{'':>6}" for r in rows))
    for kind in kinds[:top]:
        print(f"{kind[:30]:>30}" + "".join(
            f"{1e3 * r['op_ms_per_image_step'].get(kind, 0.0):>12.1f}"
            f"{r['op_runs_per_step'].get(kind, 0.0):>11.1f}" for r in rows))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=["default"])
    parser.add_argument("--minibatches", type=int, default=4, help="minibatches of 16 airplanes timed")
    parser.add_argument("--out", default="results/benchmarks/hybrid_step.json")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one process
    parser.add_argument("--worker-steps", type=int, default=None, help=argparse.SUPPRESS)
    for flag in WORKER_FLAGS:
        parser.add_argument(f"--{flag}", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trace", nargs="?", const=True, default=None,
                        help="record the timed epoch with TensorFlow's profiler")
    args = parser.parse_args(argv)

    root = data_dir(args.data or None) / "caltech101"
    if args.worker:
        result = worker(root, args.worker_steps, args.minibatches, not args.unfused,
                        grappler=not args.grappler_off, loop=args.loop_10, trace=args.trace,
                        fixed_order=args.fixed_order, arithmetic=not args.arithmetic_off)
        Path(args.worker).write_text(json.dumps(result))
        return 0

    from nengo_hybrid import report

    rows = []
    for steps in args.steps:
        for setting in args.settings:
            print(f"== {setting}, {steps} timesteps", flush=True)
            row = dict(run_worker(args, steps, setting), setting=setting)
            rows.append(row)
            print(f"   {row['ms_per_image_step']:.3f} ms per image-step (user {row['user_ms_per_image_step']:.3f}, "
                  f"system {row['system_ms_per_image_step']:.3f}), {row['minor_faults_per_image_step']:.0f} "
                  f"page faults per image-step, peak {row['peak_rss_gib']:.2f} GiB; kernel gradients for "
                  + (f"{row['backward_coverage']:.0%}" if row["backward_coverage"] is not None else "? (a loop)")
                  + " of the convolutions", flush=True)
    print("\nsetting / steps: ms per image-step (x default at these steps; x the same setting at "
          f"{args.steps[0]} steps)")
    by_key = {(r["setting"], r["steps"]): r for r in rows}
    for row in rows:
        ms = row["ms_per_image_step"]
        default = by_key.get(("default", row["steps"]))
        first = by_key.get((row["setting"], args.steps[0]))
        row["ratio_to_default"] = ms / default["ms_per_image_step"] if default else None
        row["ratio_to_first_steps"] = ms / first["ms_per_image_step"] if first else None
        coverage = row["backward_coverage"]
        # TensorFlow also prunes the forward ops no gradient needs: the user CPU time per
        # image-step over the coverage is the cost of a whole step
        whole = f"; user {row['user_ms_per_image_step'] / coverage:.2f} ms per whole step" if coverage else ""
        print(f"  {row['setting']:>16} / {row['steps']:>3}: {ms:.3f} ms "
              f"(x{row['ratio_to_default'] or float('nan'):.2f}; x{row['ratio_to_first_steps']:.2f}{whole})")
    if args.trace:
        print_op_table(rows)
    write_json(args.out, {"rows": rows, "settings": {k: SETTINGS[k] for k in args.settings},
                          "minibatches": args.minibatches, "cpu": report.cpu()})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
