"""The three-stage U-Net experiment end to end on real hippocampus volumes (quick profile):
folds by subject, Table 1 with its floor and every (loss, model) record, per-cell figures,
resuming without retraining, and ``evaluate`` writing NIfTI masks in each input's grid."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import nibabel as nib
import numpy as np
import pytest

from conftest import run_experiment

# one worker runs every test that reads the quick U-Net run, so it is trained once
pytestmark = pytest.mark.xdist_group("unet_quick_run")
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "unet.py"
LOSSES = ["bce", "bce_dice"]  # the quick profile's
MODELS = ["ann", "converted", "fine_tuned"]
REQUIRED = ["loss", "model", "dice_3d", "dice_3d_std", "dice_2d", "dice_2d_std", "dice_2d_on_target",
            "firing_rate_hz", "timesteps", "per_fold"]


def unet(*args):
    return run_experiment("unet.py", *args)


@pytest.fixture(scope="module")
def quick_run(unet_quick_run):
    return unet_quick_run


def test_folds_test_every_subject_exactly_once_and_never_train_on_it(quick_run):
    folds = json.loads((quick_run / "folds.json").read_text())
    assert len(folds["folds"]) == 5 and folds["run_folds"] == [0]
    tested = [s for fold in folds["folds"] for s in fold["test"]]
    assert len(tested) == len(set(tested)) == 15  # the quick profile's 15 subjects
    for fold in folds["folds"]:
        assert not set(fold["train"]) & set(fold["test"])
        assert set(fold["train"]) | set(fold["test"]) == set(tested)


def test_table1_has_the_floor_and_every_loss_and_model(quick_run):
    records = json.loads((quick_run / "table1.json").read_text())
    assert [(r["loss"], r["model"]) for r in records] == [(None, "atlas")] + [
        (loss, model) for loss in LOSSES for model in MODELS]
    floor = records[0]
    for r in records:
        for key in REQUIRED:
            assert key in r, (r["model"], key)
        for key in ("dice_2d", "dice_2d_on_target", "dice_3d"):
            assert 0 <= r[key] <= 1
            gain = {"dice_2d": "gain_over_floor_2d", "dice_2d_on_target": "gain_over_floor_2d_on_target",
                    "dice_3d": "gain_over_floor_3d"}[key]
            assert r[gain] == pytest.approx(r[key] - floor[key], abs=1e-12)
        # fold 0's own scores are the pooled ones when only fold 0 ran
        assert len(r["per_fold"]) == 1 and r["per_fold"][0]["dice_3d"] == pytest.approx(r["dice_3d"])
        assert r["n_subjects"] == 3  # 15 subjects in 5 folds
    # the atlas ignores the image, yet overlaps the hippocampus of unseen subjects
    assert floor["dice_3d"] > 0.5 and floor["firing_rate_hz"] is None and floor["timesteps"] is None
    for r in records[1:]:
        if r["model"] == "ann":
            assert r["firing_rate_hz"] is None and r["timesteps"] is None
        else:
            assert r["timesteps"] == 12 and 0 < r["firing_rate_hz"] < 1000
            assert r["synaptic_ops"] > 0 and r["energy_j_loihi"] > 0
    md = (quick_run / "table1.md").read_text()
    assert "| bce_dice | fine_tuned |" in md and "empty" in md and "Departures" in md
    assert (quick_run / "table1.csv").read_text().splitlines()[0].startswith("loss,model,dice_2d,")


def test_cells_keep_thresholds_scores_and_figures(quick_run):
    thresholds = json.loads((quick_run / "thresholds.json").read_text())
    assert sorted(thresholds) == [f"fold0/{loss}" for loss in sorted(LOSSES)]
    for loss in LOSSES:
        cell = quick_run / "cells" / "fold0" / loss
        scores = json.loads((cell / "scores.json").read_text())
        assert scores["thresholds"] == thresholds[f"fold0/{loss}"]
        assert all(v > 0 for v in scores["thresholds"].values())
        per_slice = scores["models"]["fine_tuned"]["slice_dice"]
        assert len(per_slice) == len(scores["models"]["atlas"]["has_target"]) == 3 * 40
        for name in ("ann.npz", "fine_tuned.npz", "atlas.npy", "thresholds.json"):
            assert (cell / name).is_file()
    for name in ("figure3_masks.png", "figure4_firing_rates.png", "dice_vs_timesteps.png"):
        image = matplotlib.image.imread(quick_run / name)
        # drawn: many distinct colours, not a blank canvas
        assert image.shape[0] > 200 and len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 50, name


def test_dice_vs_timesteps_draws_each_losss_ann_and_the_atlas_of_the_fold_shown(quick_run):
    # the pooled figure's lines (its numbers beside it): every cell's curves, and each
    # loss's ANN and the atlas at the fold's 2D Dice, which a one-fold run's table pools
    shown = json.loads((quick_run / "dice_vs_timesteps.json").read_text())
    table = {(r["model"], r["loss"]): r["dice_2d"] for r in json.loads((quick_run / "table1.json").read_text())}
    assert shown["fold"] == 0 and shown["floor"] == pytest.approx(table["atlas", None], abs=1e-12)
    assert sorted(shown["ann"]) == [f"{loss} ANN" for loss in sorted(LOSSES)]
    for loss in LOSSES:
        assert shown["ann"][f"{loss} ANN"] == pytest.approx(table["ann", loss], abs=1e-12)
        cell = json.loads((quick_run / "cells" / "fold0" / loss / "dice_vs_timesteps.json").read_text())
        assert cell["ann"] == pytest.approx(table["ann", loss], abs=1e-12)
        for model, curve in cell["models"].items():
            assert shown["models"][f"{loss} {model}"] == curve


def test_resume_reads_finished_cells_without_training_them_again(quick_run):
    cell = quick_run / "cells" / "fold0" / "bce"
    before = {p: p.stat().st_mtime_ns for p in (cell / "scores.json", cell / "fine_tuned.npz")}
    table = (quick_run / "table1.json").read_text()
    done = unet("run", "--profile", "quick", "--out", quick_run, "--resume")
    assert "[ann] epoch" not in done.stdout  # nothing trained
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert json.loads((quick_run / "table1.json").read_text()) == json.loads(table)


def test_a_killed_cell_resumes_on_ray_to_the_local_numbers(quick_run, msd_root, tmp_path):
    """The grid's promise end to end: the run copied with its bce_dice cell removed;
    that cell killed (SIGKILL, a real process) mid-run on the local executor, then
    finished by a Ray task on a local Ray instance; the finished bce cell is read back,
    its folder untouched, and Table 1 comes out bit-identical to the local run's."""
    pytest.importorskip("ray")
    out = tmp_path / "run"
    shutil.copytree(quick_run, out)
    shutil.rmtree(out / "cells" / "fold0" / "bce_dice")
    for name in ("table1.json", "table1.csv", "table1.md", "grid.json"):
        (out / name).unlink()
    kept = {p: p.stat().st_mtime_ns for p in (out / "cells" / "fold0" / "bce").rglob("*") if p.is_file()}

    args = [sys.executable, str(SCRIPT), "run", "--profile", "quick", "--out", str(out), "--resume",
            "--data", str(msd_root.parent)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    balanced = out / "cells" / "fold0" / "bce_dice" / "thresholds.json"  # the ANN done, then balanced
    deadline = time.time() + 600
    while not balanced.exists() and time.time() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "table1.json").exists()

    done = unet("run", "--profile", "quick", "--out", out, "--resume", "--executor", "ray")
    assert "[ann] resumed after epoch" in done.stdout  # the killed cell went on from its checkpoint
    assert "1 of 2 cells finished before: read back" in done.stdout
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert json.loads((out / "grid.json").read_text())["executor"] == "ray"
    assert json.loads((out / "table1.json").read_text()) == json.loads((quick_run / "table1.json").read_text())


def test_a_failing_cell_is_named_and_the_table_waits_unless_partial(quick_run, msd_root, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(quick_run, out)
    for name in ("table1.json", "table1.csv", "table1.md"):
        (out / name).unlink()
    failing = out / "cells" / "fold0" / "bce_dice"
    (failing / "scores.json").unlink()  # unfinished, and its checkpoint state unreadable
    (failing / "checkpoints" / "ann" / "state.json").write_text("{not json")
    kept = {p: p.stat().st_mtime_ns for p in (out / "cells" / "fold0" / "bce").rglob("*") if p.is_file()}
    args = [sys.executable, str(SCRIPT), "run", "--profile", "quick", "--out", str(out), "--resume",
            "--data", str(msd_root.parent)]

    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode != 0
    assert "1 of 2 cells not finished: fold0/bce_dice" in done.stderr and "state.json" in done.stderr
    assert not (out / "table1.json").exists()
    assert json.loads((out / "grid.json").read_text())["finished"] == ["fold0/bce"]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the finished cell is kept as it was

    done = subprocess.run(args + ["--partial"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    records = json.loads((out / "table1.json").read_text())
    expected = [r for r in json.loads((quick_run / "table1.json").read_text()) if r["loss"] != "bce_dice"]
    assert [(r["loss"], r["model"]) for r in records] == [(None, "atlas")] + [("bce", m) for m in MODELS]
    assert all(r.pop("partial") is True for r in records)
    assert records == expected  # the finished cell's rows, as the full table has them
    assert "PARTIAL TABLE: 1 cells missing (fold0/bce_dice)" in (out / "table1.md").read_text()


def test_evaluate_writes_nifti_masks_in_each_input_grid(quick_run, msd_root, tmp_path):
    test_ids = json.loads((quick_run / "folds.json").read_text())["folds"][0]["test"][:2]
    folder = tmp_path / "mine"
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for i in test_ids:
        shutil.copy(msd_root / "imagesTr" / f"{i}.nii.gz", folder / "images")
        shutil.copy(msd_root / "labelsTr" / f"{i}.nii.gz", folder / "labels")
    out = tmp_path / "evaluated"
    unet("evaluate", "--checkpoint", quick_run, "--out", out, "--loss", "bce_dice", "--fold", "0",
         "--mask-model", "ann", "--images", folder / "images", "--labels", folder / "labels")
    records = json.loads((out / "evaluation.json").read_text())
    assert [r["model"] for r in records] == ["atlas"] + MODELS
    assert all(math.isfinite(r["dice_3d"]) for r in records)
    cell = json.loads((quick_run / "cells" / "fold0" / "bce_dice" / "scores.json").read_text())
    for r in records[1:]:
        # the same models on two of the same test subjects: the same per-subject 3D Dice
        mine = dict(zip(cell["models"][r["model"]]["subject_ids"], cell["models"][r["model"]]["subject_dice"]))
        if r["model"] == "ann":  # the ANN is deterministic; spiking inputs are drawn per example index
            assert r["dice_3d"] == pytest.approx(np.mean([mine[i] for i in test_ids]), abs=1e-6)
    for i in test_ids:
        image = nib.load(folder / "images" / f"{i}.nii.gz")
        mask_img = nib.load(out / "masks" / f"{i}.nii.gz")
        assert mask_img.shape == image.shape
        np.testing.assert_allclose(mask_img.affine, image.affine, atol=1e-4)
        assert set(np.unique(np.asanyarray(mask_img.dataobj))) <= {0, 1}
    assert json.loads((out / "evaluated.json").read_text())["mask_model"] == "ann"
