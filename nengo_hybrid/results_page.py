"""``results/README.md``: one page with every table of both papers that a run has
written, each with its floor row, the paper's numbers (or finding) beside ours and its
caption, followed by links to the run's figures; experiments not run yet are listed as
such, with the command that runs them.

    python -m nengo_hybrid.results_page [--results results] [--profile default|paper|cpu|quick]

``--profile default`` reads each experiment's default folder: ``make locnet`` and ``make
cae`` run the paper profile (``results/locnet``, ``results/cae``), the second paper's
experiments their ``cpu`` profile (``results/unet_cpu``, ...).
"""

import argparse
import json
import sys
from pathlib import Path
from typing import NamedTuple, Tuple

from nengo_hybrid.atomic import write_text
from nengo_hybrid.paths import default_out


class Entry(NamedTuple):
    """One experiment's place on the page."""

    title: str
    name: str  # its results folder is `default_out(name, profile)`
    tables: Tuple[str, ...]  # Markdown tables in that folder, in order
    command: str  # what writes it
    default_profile: str  # the profile `make` runs without PROFILE


ENTRIES = (
    Entry("Hybrid co-training, Table 1: LocNet on Caltech-101 airplanes", "locnet", ("table1.md",),
          "make locnet", "paper"),
    Entry("Hybrid co-training, Table 2: the CAE on hippocampus MRI", "cae", ("table2.md",), "make cae", "paper"),
    Entry("Three-stage pipeline, Table 1: the spiking U-Net", "unet", ("table1.md",), "make unet", "cpu"),
    Entry("Three-stage pipeline, Table 2 / Figure 5: the output cut-off", "threshold_sweep", ("table2.md",),
          "make sweeps", "cpu"),
    Entry("Three-stage pipeline, Figure 6A: timesteps x threshold scaling", "timestep_sweep", ("figure6a.md",),
          "make sweeps", "cpu"),
    Entry("Three-stage pipeline, Table 3 / Figure 6B: fine-tuning vs direct training", "finetune_vs_direct",
          ("table3.md",), "make finetune-vs-direct", "cpu"),
    Entry("Three-stage pipeline, Tables 4 and 5: binary vs ternary SNNs", "binary_ternary",
          ("table4.md", "table5.md"), "make binary-ternary", "cpu"),
)


def folder(results, entry, profile="default"):
    """The results folder of ``entry`` under ``results`` for ``profile``."""
    chosen = entry.default_profile if profile == "default" else profile
    return Path(results) / Path(default_out(entry.name, chosen)).name


def section(results, entry, profile="default"):
    """The page's Markdown for one experiment."""
    run_dir = folder(results, entry, profile)
    lines = [f"## {entry.title}", ""]
    found = [run_dir / table for table in entry.tables if (run_dir / table).exists()]
    if not found:
        return lines + [f"Not run yet: `{entry.command}` writes `{run_dir.name}/`.", ""]
    timings = run_dir / "timings.json"
    if timings.exists():
        total = json.loads(timings.read_text()).get("total_s")
        if total:
            lines += [f"`{entry.command}` → `{run_dir.name}/`, {total / 60:.1f} min.", ""]
    for table in found:
        lines += [table.read_text().strip(), ""]
    figures = sorted(run_dir.glob("*.png"))
    if figures:
        lines += ["Figures: " + ", ".join(f"[{f.stem}]({run_dir.name}/{f.name})" for f in figures), ""]
    return lines


def write(results="results", profile="default"):
    """Write ``results/README.md``; returns its path."""
    results = Path(results)
    lines = ["# Results", "",
             "Every table the experiments of this repository have written here, with its floor row (what "
             "a model that ignores its input scores), the paper's numbers (or, where the paper's table "
             "is an image in the text we have, its finding) and its caption, which states every "
             "departure from the paper's protocol. Written by `make reproduce` "
             "(`python -m nengo_hybrid.results_page`).", ""]
    for entry in ENTRIES:
        lines += section(results, entry, profile)
    path = results / "README.md"
    write_text(path, "\n".join(lines))
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results")
    parser.add_argument("--profile", default="default", choices=("default", "paper", "cpu", "quick"))
    args = parser.parse_args(argv)
    print(f"wrote {write(args.results, args.profile)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
