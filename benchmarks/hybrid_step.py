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
- ``one-interop``: ``TF_NUM_INTEROP_THREADS=1``.

Prints every row's ms per image-step and its ratio to the default setting at the same
steps, and the ratio of each steps value to the first (linear in T: 1.0 per image-step).
Writes ``results/benchmarks/hybrid_step.json``.
"""

import argparse
import json
import os
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
}


def worker(root, steps, minibatches, fused):
    """One process: the paper profile's hybrid training graph at ``steps`` timesteps,
    one warm-up epoch of ``minibatches`` minibatches and one timed; the timed epoch's
    resource use."""
    import resource
    from dataclasses import replace

    import nengo_hybrid  # noqa: F401  (first: it quiets TensorFlow)
    import tensorflow as tf

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    import locnet
    from step_timing import PeakMemory

    from nengo_hybrid import localisation
    from nengo_hybrid.experiment import seed_everything
    from nengo_hybrid.losses import StandardisedBoxLoss
    from nengo_hybrid.stages import finetuning_loss, network
    from nengo_hybrid.targets import StandardisedTargets

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
    with converted.simulator(batch, n_steps=steps) as sim:
        converted.compile(sim, tf.optimizers.Adam(config.finetune.learning_rate), loss)
        data = converted.dataset(sim, x, targets.standardise(boxes), None, steps)
        sim.fit(data, epochs=1, shuffle=False, verbose=0)  # warm-up: tracing, compiling
        warm_s = time.perf_counter() - build_start
        memory = PeakMemory()
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        sim.fit(data, epochs=1, shuffle=False, verbose=0)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        peak = memory.peak()
    image_steps = n * steps
    return {
        "steps": steps, "images": n, "batch": batch, "warm_up_s": warm_s, "wall_s": wall,
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
    if setting == "unfused":
        command.append("--unfused")
    subprocess.run(command, env=env, check=True)
    result = json.loads(out.read_text())
    out.unlink()
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=["default"])
    parser.add_argument("--minibatches", type=int, default=4, help="minibatches of 16 airplanes timed")
    parser.add_argument("--out", default="results/benchmarks/hybrid_step.json")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one process
    parser.add_argument("--worker-steps", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--unfused", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    root = data_dir(args.data or None) / "caltech101"
    if args.worker:
        result = worker(root, args.worker_steps, args.minibatches, not args.unfused)
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
                  f"page faults per image-step, peak {row['peak_rss_gib']:.2f} GiB", flush=True)
    print("\nsetting / steps: ms per image-step (x default at these steps; x the same setting at "
          f"{args.steps[0]} steps)")
    by_key = {(r["setting"], r["steps"]): r for r in rows}
    for row in rows:
        ms = row["ms_per_image_step"]
        default = by_key.get(("default", row["steps"]))
        first = by_key.get((row["setting"], args.steps[0]))
        row["ratio_to_default"] = ms / default["ms_per_image_step"] if default else None
        row["ratio_to_first_steps"] = ms / first["ms_per_image_step"] if first else None
        print(f"  {row['setting']:>16} / {row['steps']:>3}: {ms:.3f} ms "
              f"(x{row['ratio_to_default'] or float('nan'):.2f}; x{row['ratio_to_first_steps']:.2f})")
    write_json(args.out, {"rows": rows, "settings": {k: SETTINGS[k] for k in args.settings},
                          "minibatches": args.minibatches, "cpu": report.cpu()})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
