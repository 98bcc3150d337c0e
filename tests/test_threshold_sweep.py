"""The output-threshold sweep (Table 2, Figure 5) on a trained quick U-Net run: every
model at every cut-off on validation and test subjects, the cut-off chosen on validation
subjects that were never trained on nor tested, the test curve equal to the run's own
scores at 0.5."""

import json
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from conftest import run_experiment

# one worker runs every test that reads the quick U-Net run, so it is trained once
pytestmark = pytest.mark.xdist_group("unet_quick_run")
ROOT = Path(__file__).resolve().parents[1]
MODELS = ["ann", "converted", "fine_tuned"]
CUTOFFS = np.round(np.arange(0.10, 0.6001, 0.02), 2)


@pytest.fixture(scope="module")
def sweep(unet_quick_run, msd_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("threshold_sweep") / "run"
    done = run_experiment("threshold_sweep.py", "run", "--profile", "quick", "--unet", unet_quick_run,
                          "--out", out, "--data", msd_root.parent)
    return out, done


def test_every_model_cutoff_and_split_is_recorded_and_the_best_is_chosen_on_validation(sweep):
    out, _ = sweep
    table = json.loads((out / "table2.json").read_text())
    records = table["records"]
    assert table["chosen_on"] == "validation"
    assert len(records) == len(MODELS) * 2 * len(CUTOFFS)
    assert {(r["model"], r["split"]) for r in records} == {(m, s) for m in MODELS for s in ("validation", "test")}
    for model in MODELS:
        curve = {r["threshold"]: r["dice_2d_on_target"] for r in records
                 if r["model"] == model and r["split"] == "validation"}
        assert sorted(curve) == pytest.approx(list(CUTOFFS))
        best = max(curve.values())
        # the best on validation (of ties the nearest to 0.5), never looked up on test
        chosen = min((t for t, d in curve.items() if d >= best - 1e-12), key=lambda t: abs(t - 0.5))
        assert table["best_thresholds"][model] == pytest.approx(chosen)
        assert all(0 <= d <= 1 for d in curve.values())
    assert table["best_threshold"] == table["best_thresholds"]["converted"]
    # the cut-off matters: the ANN's curve is not flat
    ann_test = [r["dice_2d_on_target"] for r in records if r["model"] == "ann" and r["split"] == "test"]
    assert max(ann_test) - min(ann_test) > 0.01
    md = (out / "table2.md").read_text()
    assert "◀" in md and "validation" in md and "0.48" in md


def test_validation_subjects_are_the_held_out_training_subjects(sweep, unet_quick_run):
    out, _ = sweep
    subjects = json.loads((out / "table2.json").read_text())["subjects"]
    folds = json.loads((unet_quick_run / "folds.json").read_text())["folds"]
    sys.path.insert(0, str(ROOT / "experiments"))
    import unet  # noqa: E402
    from nengo_hybrid.stages import validation_split

    config = unet.PROFILES["quick"]
    for key, split in subjects.items():
        fold = folds[int(key.removeprefix("fold").split("/")[0])]
        train, test = fold["train"], fold["test"]
        assert split["test"] == test[:config.test_subjects or None]
        assert set(split["validation"]) <= set(train) and not set(split["validation"]) & set(test)
        # the ANN's early-stopping split of the training slices (40 per subject, in order)
        groups = np.repeat(train, 40)
        val_idx, train_idx = validation_split(len(groups), config.ann, groups=groups)
        assert set(split["validation"]) <= set(groups[val_idx])
        assert not set(split["validation"]) & set(groups[train_idx])


def test_the_test_curve_at_one_half_is_the_runs_own_score(sweep, unet_quick_run):
    out, _ = sweep
    records = json.loads((out / "table2.json").read_text())["records"]
    at_half = {r["model"]: r["dice_2d_on_target"] for r in records if r["split"] == "test"
               and r["threshold"] == pytest.approx(0.5)}
    # the ANN is deterministic: its test slices scored by the U-Net run itself, pooled
    # over the run's cells
    cells = [json.loads(p.read_text())["models"]["ann"]
             for p in sorted((unet_quick_run / "cells").glob("fold*/*/scores.json"))]
    own = np.concatenate([np.asarray(c["slice_dice"])[np.asarray(c["has_target"], bool)] for c in cells])
    assert at_half["ann"] == pytest.approx(own.mean(), abs=1e-6)


def test_figure5_shows_the_curves(sweep):
    out, _ = sweep
    image = matplotlib.image.imread(out / "figure5_dice_vs_cutoff.png")
    assert image.shape[0] > 200 and len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 50


def test_resume_reuses_the_outputs(sweep, unet_quick_run, msd_root):
    out, _ = sweep
    table = json.loads((out / "table2.json").read_text())
    cached = sorted((out / "cells").glob("fold*/*/*_outputs.npz"))
    assert len(cached) == 2 * 2  # the quick run's 2 losses x 2 splits
    before = {p: p.stat().st_mtime_ns for p in cached}
    run_experiment("threshold_sweep.py", "run", "--profile", "quick", "--unet", unet_quick_run,
                   "--out", out, "--data", msd_root.parent, "--resume")
    assert {p: p.stat().st_mtime_ns for p in cached} == before
    assert json.loads((out / "table2.json").read_text())["records"] == table["records"]
