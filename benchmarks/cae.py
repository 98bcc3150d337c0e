"""Time per stage of ``make cae`` (the paper profile) on this machine.

    python benchmarks/cae.py [--data DIR] [--profile paper]

Runs the CAE experiment and writes ``results/benchmarks/cae.json``: seconds per stage
(data, ANN training, converted evaluation, hybrid fine-tuning, hybrid evaluation, report),
the total against the 20-minute budget (`make cae` within 20 minutes on 2
cores of either machine kind, measured alone), and the machine.
"""

import nengo_hybrid  # noqa: F401, I001  (first: it quiets TensorFlow)

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import cae  # noqa: E402

from nengo_hybrid import segmentation  # noqa: E402
from nengo_hybrid.report import write_benchmark  # noqa: E402

BUDGET_S = 20 * 60


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    segmentation.add_folder_arguments(parser)
    parser.add_argument("--profile", default="paper", choices=sorted(cae.PROFILES))
    parser.add_argument("--out", default="results/benchmarks/cae.json")
    args = parser.parse_args(argv)
    run_dir = Path("results/benchmarks/cae_run")
    cae.run(cae.PROFILES[args.profile], *segmentation.folders(args), run_dir)
    timings = json.loads((run_dir / "timings.json").read_text())
    write_benchmark(args.out, args.profile, timings, BUDGET_S)


if __name__ == "__main__":
    main()
