"""Fine-tuning vs direct training (Table 3, Figure 6B) on a trained quick U-Net run: every
mode, seed and checkpoint recorded; fine-tuning starts from the converted SNN's own
validation Dice and direct training from each seed's random weights; minibatches to the
target read off the records; resuming trains nothing."""

import json
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from conftest import run_experiment
from nengo_hybrid import crossval, metrics, segmentation

# one worker runs every test that reads the quick U-Net run, so it is trained once
pytestmark = pytest.mark.xdist_group("unet_quick_run")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import unet  # noqa: E402

CHECKPOINTS = [0, 4, 8, 16]  # the quick profile's, and the start
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def comparison(unet_quick_run, msd_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("finetune_vs_direct") / "run"
    run_experiment("finetune_vs_direct.py", "run", "--profile", "quick", "--unet", unet_quick_run, "--out", out,
                   "--data", msd_root.parent)
    return out


def test_every_mode_seed_and_checkpoint_is_recorded(comparison):
    table = json.loads((comparison / "table3.json").read_text())
    records = table["records"]
    assert sorted((r["mode"], r["seed"], r["minibatches"]) for r in records) == sorted(
        (m, s, c) for m in ("fine_tune", "direct") for s in SEEDS for c in CHECKPOINTS)
    assert all(0 <= r["dice_2d_validation"] <= 1 for r in records)
    # the minibatches to the target, read off the records
    for reached in table["to_target"]:
        mine = sorted((r["minibatches"], r["dice_2d_validation"]) for r in records
                      if (r["mode"], r["seed"]) == (reached["mode"], reached["seed"]))
        expected = next((c for c, d in mine if d >= table["target"]), None)
        assert reached["minibatches"] == expected
    assert table["target"] == pytest.approx(0.9 * table["ann_dice_2d_validation"])
    # the table's mean rows are the means over seeds
    mean = next(r for r in table["summary"] if r["mode"] == "direct" and r["statistic"] == "mean")
    assert mean["mb16"] == pytest.approx(np.mean([r["dice_2d_validation"] for r in records
                                                  if r["mode"] == "direct" and r["minibatches"] == 16]))
    image = matplotlib.image.imread(comparison / "figure6b_convergence.png")
    assert image.shape[0] > 200 and len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 50
    assert "minibatches to target" in (comparison / "table3.md").read_text()


def test_fine_tuning_starts_at_the_converted_snn_and_direct_training_at_random_weights(
        comparison, unet_quick_run, msd_root):
    records = json.loads((comparison / "table3.json").read_text())["records"]
    start = {(r["mode"], r["seed"]): r["dice_2d_validation"] for r in records if r["minibatches"] == 0}
    # the converted SNN on the same validation slices, read at the run's T by the sweep's
    # path (another simulator, another minibatch size)
    trained = crossval.TrainedRun(unet_quick_run, unet.UNetConfig, unet.make_model)
    slices = trained.load(msd_root / "imagesTr", msd_root / "labelsTr")
    train, _ = crossval.fold_slices(trained.config, slices, trained.folds, 0)
    val = crossval.validation_slices(trained.config, train, 1)
    T = trained.config.eval_steps
    logits = trained.converted_sweep(0, trained.config.figure_loss, val.images, [T])[T]
    converted = np.mean(metrics.dice_2d(segmentation.probabilities(logits, val.images.shape[1:3]), val.masks,
                                        threshold=trained.config.threshold).on_target)
    for seed in SEEDS:
        assert start["fine_tune", seed] == pytest.approx(converted, abs=1e-6)
    # direct training starts from random weights that differ by seed: the thresholds
    # balanced on them differ from seed to seed and from the trained ANN's
    balanced = [json.loads((comparison / "cells" / f"direct_seed{seed}" / "thresholds.json").read_text())
                for seed in SEEDS]
    ann_thresholds = json.loads((trained.cell_dir(0, trained.config.figure_loss) / "thresholds.json").read_text())
    assert len({json.dumps(b["thresholds"], sort_keys=True) for b in balanced}) == len(SEEDS)
    assert all(b["thresholds"] != ann_thresholds["thresholds"] for b in balanced)


def test_resume_trains_nothing_and_keeps_the_numbers(comparison, unet_quick_run, msd_root):
    before = json.loads((comparison / "table3.json").read_text())["records"]
    done = run_experiment("finetune_vs_direct.py", "run", "--profile", "quick", "--unet", unet_quick_run,
                          "--out", comparison, "--data", msd_root.parent, "--resume")
    assert "epoch 1/" not in done.stdout
    assert json.loads((comparison / "table3.json").read_text())["records"] == before
