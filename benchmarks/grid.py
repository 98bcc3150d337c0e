"""The U-Net's grid of cells on the local executor against Ray, on this machine, and what
the paper profile's grid would take on more workers.

    python benchmarks/grid.py [--data DIR] [--cpu-run results/unet_cpu] [--cell-minutes M]

1. Runs the quick profile's grid (``experiments/unet.py run --profile quick``) twice in
   fresh processes and folders, ``--executor local`` then ``--executor ray`` (a local
   Ray instance), each cell on every core; prints both wall times, whether the two
   Table 1s are bit-identical, and Ray's overhead per cell (scheduling, Ray's start-up
   and each worker's start-up: the wall-time difference over the cells) as a fraction
   of a ``cpu``-profile cell, measured in ``--cpu-run``'s ``timings.json``.
2. Projects (computes, does not measure) the wall time of the paper profile's grid
   (5 folds x 3 losses = 15 cells) on 1, 4, 16 and 64 workers: each fold's cell of a
   loss costs what that loss's measured cell cost (the ``cpu`` run's cells, or
   ``--cell-minutes`` for a paper-profile cell measured on your hardware), the cells
   dealt longest first to the least-loaded worker; no grid finishes before its longest
   cell (the critical path).

Writes ``results/benchmarks/grid.json``.
"""

import argparse
import heapq
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from nengo_hybrid.atomic import write_json  # noqa: E402
from nengo_hybrid.report import cpu, describe_cpu  # noqa: E402

LOSSES = ("bce", "dice", "bce_dice")
PAPER_FOLDS = 5
WORKERS = (1, 4, 16, 64)
OVERHEAD_BAR = 0.05


def run_grid(executor, data, out):
    """Wall seconds of one quick-profile grid run in a fresh process."""
    cmd = [sys.executable, str(ROOT / "experiments" / "unet.py"), "run", "--profile", "quick", "--out",
           str(out), "--executor", executor] + (["--data", data] if data else [])
    start = time.time()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.time() - start
    if done.returncode:
        raise SystemExit(f"the {executor} run failed:\n{done.stderr[-3000:]}")
    return seconds


def cell_seconds(timings):
    """Seconds per (fold, loss) cell of a run's ``timings.json`` (its stage keys summed)."""
    cells = {}
    for key, seconds in timings.items():
        parts = key.split("_")
        if not parts[0].startswith("fold") or not isinstance(seconds, (int, float)):
            continue
        loss = next((loss for loss in sorted(LOSSES, key=len, reverse=True)
                     if key.startswith(f"{parts[0]}_{loss}_")), None)
        if loss:
            cells[f"{parts[0]}/{loss}"] = cells.get(f"{parts[0]}/{loss}", 0.0) + seconds
    return cells


def makespan(durations, workers):
    """Wall time of ``durations`` dealt longest first to the least-loaded of
    ``workers`` (list scheduling): never below the longest duration."""
    loads = [0.0] * workers
    for duration in sorted(durations, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + duration)
    return max(loads)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="data directory (default: $NENGO_HYBRID_DATA, else ./data)")
    parser.add_argument("--cpu-run", default="results/unet_cpu", help="a finished cpu-profile run")
    parser.add_argument("--cell-minutes", type=float, default=None,
                        help="project with this many minutes per cell instead of the cpu run's cells")
    parser.add_argument("--out", default="results/benchmarks/grid.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        walls = {executor: run_grid(executor, args.data, Path(tmp) / executor) for executor in ("local", "ray")}
        tables = {e: json.loads((Path(tmp) / e / "table1.json").read_text()) for e in walls}
        quick_cells = json.loads((Path(tmp) / "local" / "grid.json").read_text())["finished"]
    identical = tables["local"] == tables["ray"]
    overhead = (walls["ray"] - walls["local"]) / len(quick_cells)

    cpu_timings = Path(args.cpu_run) / "timings.json"
    cpu_cells = cell_seconds(json.loads(cpu_timings.read_text())) if cpu_timings.exists() else {}
    if not cpu_cells and args.cell_minutes is None:
        raise SystemExit(f"{cpu_timings}: no finished cpu-profile run to measure a cell by (run `make unet`) "
                         f"or give --cell-minutes")
    mean_cpu_cell = sum(cpu_cells.values()) / len(cpu_cells) if cpu_cells else None
    if args.cell_minutes is not None:
        per_loss, basis = {loss: args.cell_minutes * 60 for loss in LOSSES}, f"{args.cell_minutes:g} min per cell (given)"
    else:
        per_loss = {loss: max(s for name, s in cpu_cells.items() if name.endswith("/" + loss)) for loss in LOSSES
                    if any(name.endswith("/" + loss) for name in cpu_cells)}
        basis = f"the cpu profile's measured cells ({cpu_timings})"
    durations = [per_loss[loss] for loss in per_loss for _ in range(PAPER_FOLDS)]
    projection = {workers: makespan(durations, workers) for workers in WORKERS}

    machine = cpu()
    print(f"machine: {describe_cpu(machine)}")
    print(f"quick grid ({len(quick_cells)} cells): local {walls['local']:.1f} s, ray {walls['ray']:.1f} s "
          f"(ray / local = {walls['ray'] / walls['local']:.2f}); tables bit-identical: {identical}")
    if mean_cpu_cell:
        print(f"Ray's overhead per cell: {overhead:.1f} s = {overhead / mean_cpu_cell:.1%} of a cpu-profile cell "
              f"({mean_cpu_cell / 60:.1f} min; the bar: under {OVERHEAD_BAR:.0%})")
    print(f"\nPROJECTION (computed, not measured) of the paper profile's grid, {len(durations)} cells, "
          f"from {basis}:")
    print("| workers | wall time (h) |\n|---|---|")
    for workers, seconds in projection.items():
        print(f"| {workers} | {seconds / 3600:.2f} |")
    print(f"(the longest cell, the critical path: {max(durations) / 3600:.2f} h)")
    write_json(args.out, {
        "machine": {"cpu": machine, "platform": platform.platform()},
        "quick_grid": {"cells": quick_cells, "wall_s": walls, "ray_over_local": walls["ray"] / walls["local"],
                       "tables_identical": identical, "ray_overhead_per_cell_s": overhead},
        "cpu_cell_s": cpu_cells, "ray_overhead_fraction_of_cpu_cell":
            overhead / mean_cpu_cell if mean_cpu_cell else None, "overhead_bar": OVERHEAD_BAR,
        "projection": {"what": "computed, not measured", "basis": basis, "cells": len(durations),
                       "wall_s_by_workers": projection, "critical_path_s": max(durations)}})
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
