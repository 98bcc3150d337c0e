"""oneDNN's kernels on and off: what TensorFlow 2.12 leaves on the table on CPUs
without AVX-512, where it does not turn them on by default.

Runs `benchmarks/neurons.py` (LocNet on real airplanes: tf.keras, the NengoDL rate
family, the hybrid family fused and unfused) and `benchmarks/surrogate.py --network unet`
(the U-Net's integrate-and-fire fine-tuning step through time, NengoDL and the plain-TF
loop) once with ``TF_ENABLE_ONEDNN_OPTS=0`` and once with ``=1``, each in fresh processes
(TensorFlow reads the variable when it is imported), and prints every timing's ratio
off / on (> 1: oneDNN is faster).  Writes ``results/benchmarks/onednn.json``.

    python benchmarks/onednn.py --data DIR [--images 160] [--steps 10] [--unet-steps 20]
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nengo_hybrid.atomic import write_json  # noqa: E402
from nengo_hybrid.paths import add_data_argument, data_dir  # noqa: E402

HERE = Path(__file__).resolve().parent
SETTINGS = ("0", "1")


def run(script, args, setting, out):
    """``script`` with ``args`` in a fresh process under ``TF_ENABLE_ONEDNN_OPTS=setting``;
    its JSON."""
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=setting)
    print(f"\n== {script} with TF_ENABLE_ONEDNN_OPTS={setting}", flush=True)
    subprocess.run([sys.executable, str(HERE / script), *args, "--out", str(out)], env=env, check=True)
    return json.loads(Path(out).read_text())


def timings(neurons, surrogate):
    """``{name: seconds}`` of one setting's two benchmarks."""
    found = {}
    for name, row in neurons["times"].items():
        for kind in ("epoch_s", "inference_s"):
            if row.get(kind) is not None:
                found[f"locnet {name} {kind[:-2]}"] = row[kind]
    for impl, by_steps in surrogate["results"].items():
        for steps, row in by_steps.items():
            if "best_ms" in row:
                found[f"unet {impl} step T={steps}"] = row["best_ms"] / 1e3
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--images", type=int, default=160, help="LocNet airplanes timed")
    parser.add_argument("--steps", type=int, default=10, help="timesteps of LocNet's hybrid runs")
    parser.add_argument("--unet-steps", type=int, default=20, help="timesteps of the U-Net's IF step")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="results/benchmarks/onednn.json")
    args = parser.parse_args(argv)
    out_dir = Path(args.out).parent / "onednn_runs"
    out_dir.mkdir(parents=True, exist_ok=True)

    found = {}
    for setting in SETTINGS:
        neurons = run("neurons.py", ["--data", str(data_dir(args.data)), "--images", str(args.images),
                                     "--steps", str(args.steps), "--repeats", str(args.repeats),
                                     "--skip", "spiking", "keras_spiking"],
                      setting, out_dir / f"neurons_{setting}.json")
        surrogate = run("surrogate.py", ["--network", "unet", "--steps", str(args.unet_steps),
                                         "--repeats", str(args.repeats), "--skip", "snntorch"],
                        setting, out_dir / f"surrogate_unet_{setting}.json")
        found[setting] = timings(neurons, surrogate)

    ratios = {name: found["0"][name] / found["1"][name] for name in found["0"] if name in found["1"]}
    print(f"\n{'timing':>42} | {'off (s)':>8} | {'on (s)':>8} | off / on")
    for name, ratio in ratios.items():
        print(f"{name:>42} | {found['0'][name]:8.3f} | {found['1'][name]:8.3f} | {ratio:6.2f}")
    cpu = neurons.get("machine"), surrogate.get("cpu")
    write_json(args.out, {"command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
                          "cpu": cpu[1], "machine": cpu[0], "seconds": found, "ratios_off_over_on": ratios})
    print(f"\nwrote {args.out}")
    return ratios


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
