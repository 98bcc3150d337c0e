"""Time per stage of ``make locnet`` (the paper profile) on this machine.

    python benchmarks/locnet.py [--data DIR] [--profile paper]
    python benchmarks/locnet.py --from-run results/locnet   # a finished `make locnet`

Runs the LocNet experiment (or reads the timings of a finished run) and writes ``results/benchmarks/locnet.json``: seconds per
stage (ANN training, converted evaluation, hybrid fine-tuning, hybrid evaluation), the
total against the 20-minute budget (`make locnet` within 20 minutes on 2 cores of either
machine kind, measured alone), and the machine.
"""

import nengo_hybrid  # noqa: F401, I001  (first: it quiets TensorFlow)

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import locnet  # noqa: E402

from nengo_hybrid.paths import add_data_argument, data_dir  # noqa: E402
from nengo_hybrid.report import write_benchmark  # noqa: E402

BUDGET_S = 20 * 60


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--profile", default="paper", choices=sorted(locnet.PROFILES))
    parser.add_argument("--out", default="results/benchmarks/locnet.json")
    parser.add_argument("--from-run", default=None, help="report the timings of this finished run")
    args = parser.parse_args(argv)
    if args.from_run:
        run_dir = Path(args.from_run)
        args.profile = f"finished run {run_dir} (its config.json)"
    else:
        run_dir = Path("results/benchmarks/locnet_run")
        locnet.run(locnet.PROFILES[args.profile], data_dir(args.data) / "caltech101", run_dir)
    timings = json.loads((run_dir / "timings.json").read_text())
    write_benchmark(args.out, args.profile, timings, BUDGET_S)


if __name__ == "__main__":
    main()
