"""The timestep x threshold-scaling sweep (Figure 6A) on a trained quick U-Net run: one
run read at every T is the mean of the output over its first T steps, the thresholds are
the balanced ones times the factor, each curve's elbow is the Kneedle point, and the
experiment writes its records, table and figure."""

import json
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from conftest import run_experiment
from nengo_hybrid import crossval, stages
from nengo_hybrid.simulation import iterate_predictions
from nengo_hybrid.sweeps import elbow

# one worker runs every test that reads the quick U-Net run, so it is trained once
pytestmark = pytest.mark.xdist_group("unet_quick_run")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import unet  # noqa: E402


def kneedle_by_hand(x, y):
    """Satopää et al.'s knee of an increasing concave curve, written out: both axes
    normalised to [0, 1], the point where the curve stands farthest above the diagonal."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    xn, yn = (x - x.min()) / np.ptp(x), (y - y.min()) / np.ptp(y)
    return int(x[np.argmax(yn - xn)])


@pytest.mark.parametrize("tau", [60.0, 150.0, 300.0])
def test_elbow_is_the_kneedle_point(tau):
    timesteps = [10, 20, 40, 60, 80, 100, 150, 200, 300, 400, 600, 800, 1000]
    dice = 0.85 * (1 - np.exp(-np.asarray(timesteps) / tau))
    assert elbow(timesteps, dice) == kneedle_by_hand(timesteps, dice)
    assert elbow(timesteps, np.full(len(timesteps), 0.5)) is None  # flat: no elbow


def test_one_run_read_at_every_T_is_the_mean_of_its_first_T_steps(unet_quick_run, msd_root):
    trained = crossval.TrainedRun(unet_quick_run, unet.UNetConfig, unet.make_model)
    slices = trained.load(msd_root / "imagesTr", msd_root / "labelsTr")
    train, _ = crossval.fold_slices(trained.config, slices, trained.folds, 0)
    x = crossval.validation_slices(trained.config, train, 1).images[15:20]
    read = trained.converted_sweep(0, "bce_dice", x, (3, 7, 10), scaling=0.8)

    # by hand: the converted network with every balanced threshold x 0.8, run 10 steps
    cell = trained.cell_dir(0, "bce_dice")
    thresholds = {name: 0.8 * v for name, v in stages.load_thresholds(cell).items()}
    config = trained.config
    net = stages.network(trained.make_model(config, x.shape[1:]), config, "if", thresholds)
    with net.simulator(minibatch_size=config.eval_batch) as sim:
        sim.load_params(cell / "ann")
        inputs = net.inputs(x, 10, config.spiking.encoding, config.seed, example_ids=np.arange(len(x)))
        series = np.concatenate([out[net.output] for _, out in iterate_predictions(sim, inputs)])
    assert series.shape[:2] == (len(x), 10)
    for t in (3, 7, 10):
        np.testing.assert_allclose(read[t], series[:, :t].mean(axis=1), rtol=1e-5, atol=1e-6)
    assert not np.allclose(read[3], read[10])  # the reading changes with T


@pytest.fixture(scope="module")
def sweep_run(unet_quick_run, msd_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("timestep_sweep") / "run"
    run_experiment("timestep_sweep.py", "run", "--profile", "quick", "--unet", unet_quick_run, "--out", out,
                   "--data", msd_root.parent)
    return out


def test_the_sweep_writes_records_elbows_table_and_figure(sweep_run):
    out = sweep_run
    figure = json.loads((out / "figure6a.json").read_text())
    config = unet.PROFILES["quick"]
    timesteps, scalings = [4, 8, 12, 24, 48, 96], [0.7, 1.0]
    assert [(r["scaling"], r["timesteps"]) for r in figure["records"]] == [
        (s, t) for s in scalings for t in timesteps]
    assert all(0 <= r["dice_2d_on_target"] <= 1 for r in figure["records"])
    assert figure["cells"] == [[0, config.figure_loss]]
    for found in figure["elbows"]:
        curve = [r["dice_2d_on_target"] for r in figure["records"] if r["scaling"] == found["scaling"]]
        assert found["timesteps"] == elbow(timesteps, curve)
    assert figure["paper_elbow"] == 200
    md = (out / "figure6a.md").read_text()
    assert "| elbow |" in md and "kneed" in md and "200" in md
    image = matplotlib.image.imread(out / "figure6a_dice_vs_timesteps.png")
    assert image.shape[0] > 200 and len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 50


def test_each_scaling_is_a_cell_and_ray_gives_the_local_numbers(sweep_run, unet_quick_run, msd_root, tmp_path):
    """Every (fold, loss, scaling) cell keeps its record, from which the curve is the
    mean over its slices; the same sweep with every cell a Ray task on a local Ray
    instance writes the same records and elbows, bit for bit."""
    pytest.importorskip("ray")
    figure = json.loads((sweep_run / "figure6a.json").read_text())
    for scaling in (0.7, 1.0):
        cell = json.loads((sweep_run / "cells" / "fold0" / "bce_dice" / f"scaling_{scaling:g}" / "record.json")
                          .read_text())
        assert cell["scaling"] == scaling and cell["n_slices"] == len(cell["dice_2d_on_target"][0]) > 0
        curve = [r["dice_2d_on_target"] for r in figure["records"] if r["scaling"] == scaling]
        np.testing.assert_allclose(curve, np.mean(cell["dice_2d_on_target"], axis=1), rtol=1e-12)

    out = tmp_path / "ray"
    done = run_experiment("timestep_sweep.py", "run", "--profile", "quick", "--unet", unet_quick_run, "--out", out,
                          "--data", msd_root.parent, "--executor", "ray")
    assert "[cells] 2/2 done" in done.stdout
    on_ray = json.loads((out / "figure6a.json").read_text())
    assert (on_ray["records"], on_ray["elbows"]) == (figure["records"], figure["elbows"])
