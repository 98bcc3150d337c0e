"""Time per stage of ``make locnet`` (the paper profile) on this machine.

    python benchmarks/locnet.py [--data DIR] [--profile paper]

Runs the LocNet experiment and writes ``results/benchmarks/locnet.json``: seconds per
stage (ANN training, converted evaluation, hybrid fine-tuning, hybrid evaluation), the
total against the 30-minute budget, and the machine.
"""

import nengo_hybrid  # noqa: F401, I001  (first: it quiets TensorFlow)

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import locnet  # noqa: E402

from nengo_hybrid.paths import add_data_argument, data_dir  # noqa: E402
from nengo_hybrid.report import versions  # noqa: E402
from nengo_hybrid.stages import write_json  # noqa: E402

BUDGET_S = 30 * 60


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--profile", default="paper", choices=sorted(locnet.PROFILES))
    parser.add_argument("--out", default="results/benchmarks/locnet.json")
    args = parser.parse_args(argv)
    run_dir = Path("results/benchmarks/locnet_run")
    locnet.run(locnet.PROFILES[args.profile], data_dir(args.data) / "caltech101", run_dir)
    timings = json.loads((run_dir / "timings.json").read_text())
    print()
    for stage, seconds in timings.items():
        print(f"{stage:>18}: {seconds:8.1f} s")
    print(f"{'total / budget':>18}: {timings['total_s'] / BUDGET_S:8.2f}")
    write_json(args.out, {"profile": args.profile, "timings_s": timings, "budget_s": BUDGET_S,
                          "fraction_of_budget": timings["total_s"] / BUDGET_S,
                          "cpu_cores": os.cpu_count(), "machine": platform.platform(),
                          "versions": versions()})


if __name__ == "__main__":
    main()
