"""The LocNet experiment end to end on real airplanes (quick profile): Table 1, its
figures, a killed run resumed to the same numbers, and evaluation on another folder."""

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "locnet.py"
FIGURES = ["boxes.png", "firing_rates.png", "training_curves.png", "iou_vs_timesteps.png"]
# one worker builds the quick run all these tests read (pytest -n 2 --dist loadgroup)
pytestmark = pytest.mark.xdist_group("locnet_quick_run")


def locnet(*args, data, wait=True):
    cmd = [sys.executable, str(SCRIPT), *args, "--data", str(data)]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def quick_run(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("locnet") / "run"
    locnet("run", "--profile", "quick", "--out", str(out), data=data_root)
    return out


def test_table1_has_the_floor_and_three_models(quick_run):
    records = json.loads((quick_run / "table1.json").read_text())
    assert [r["model"] for r in records] == ["mean_box", "ann", "converted", "hybrid"]
    for r in records:
        assert 0 <= r["iou"] <= 1 and 0 <= r["frac_iou_ge_0.9"] <= 1
        assert "firing_rate_hz" in r and "synaptic_ops" in r
    floor, ann, converted, hybrid = records
    assert floor["iou"] > 0.8  # the mean box is a strong floor on these airplanes
    assert ann["firing_rate_hz"] is None and converted["firing_rate_hz"] > 0 and hybrid["synaptic_ops"] > 0
    assert abs(converted["gain_over_floor"] - (converted["iou"] - floor["iou"])) < 1e-9
    # every image's IoU is kept, and the gain's paired standard error is taken from them
    for r in records:
        assert abs(statistics.fmean(r["iou_per_image"]) - r["iou"]) < 1e-12
    differences = [a - b for a, b in zip(hybrid["iou_per_image"], floor["iou_per_image"])]
    assert len(differences) == len(floor["iou_per_image"]) > 1
    assert abs(hybrid["gain_over_floor_se"] - statistics.stdev(differences) / len(differences) ** 0.5) < 1e-12
    assert floor["gain_over_floor_se"] is None
    assert hybrid["iou"] > converted["iou"], "hybrid fine-tuning did not raise the converted SNN's IoU"
    assert ann["paper_iou"] == 0.8945
    md = (quick_run / "table1.md").read_text()
    assert "mean_box" in md and "floor" in md
    assert (quick_run / "table1.csv").read_text().splitlines()[0].startswith("model,iou")


def test_run_writes_configuration_split_versions_and_figures(quick_run):
    config = json.loads((quick_run / "config.json").read_text())
    assert config["seed"] == 0 and config["finetune"]["n_steps"] == 30 and config["flip"] == 0.5
    # the hybrid stage's fast path is part of the recorded configuration
    assert config["spiking"]["fuse_with_xla"] is True and config["standardise_targets"] is True
    targets = json.loads((quick_run / "targets.json").read_text())
    assert targets["mean"] == pytest.approx(json.loads((quick_run / "floor_box.json").read_text()))
    split = json.loads((quick_run / "split.json").read_text())
    assert split["train"] and split["test"] and not set(split["train"]) & set(split["test"])
    assert json.loads((quick_run / "versions.json").read_text())["nengo_dl"] == "3.6.0"
    for name in FIGURES:
        assert (quick_run / name).stat().st_size > 5000, name


def test_iou_vs_timesteps_draws_each_model_and_the_ann_and_floor_levels(tmp_path, monkeypatch):
    from nengo_hybrid import report

    drawn = {}
    monkeypatch.setattr(report, "save_figure", lambda fig, path: drawn.update(fig=fig, path=path))
    curves = {"converted": ([20, 100, 150], [0.87, 0.89, 0.90]), "hybrid": ([20, 100, 150], [0.88, 0.90, 0.91])}
    report.metric_vs_timesteps(curves, tmp_path / "f.png", "mean IoU", floor=0.88, ann=0.912)
    lines = {line.get_label(): line for line in drawn["fig"].axes[0].get_lines()}
    for model, (steps, values) in curves.items():
        assert list(lines[model].get_xdata()) == steps and list(lines[model].get_ydata()) == values
    assert set(lines["ANN (rate neurons)"].get_ydata()) == {0.912}
    assert set(lines["floor (ignores the input)"].get_ydata()) == {0.88}


def test_one_ann_line_per_label_when_curves_come_from_several_anns(tmp_path, monkeypatch):
    from nengo_hybrid import report

    drawn = {}
    monkeypatch.setattr(report, "save_figure", lambda fig, path: drawn.update(fig=fig))
    curves = {"bce converted": ([20, 40], [0.5, 0.6]), "dice converted": ([20, 40], [0.55, 0.65])}
    report.metric_vs_timesteps(curves, tmp_path / "f.png", "2D Dice", ann={"bce ANN": 0.7, "dice ANN": 0.72})
    lines = {line.get_label(): line for line in drawn["fig"].axes[0].get_lines()}
    assert set(lines["bce ANN"].get_ydata()) == {0.7} and set(lines["dice ANN"].get_ydata()) == {0.72}
    assert lines["bce ANN"].get_linestyle() != lines["dice ANN"].get_linestyle()


def test_training_curves_start_validation_at_the_starting_weights(tmp_path, monkeypatch):
    # the fine-tuning panel's validation curve starts at epoch 0 with the converted
    # network's loss (the value an epoch must beat to be kept), marked
    from nengo_hybrid import report

    drawn = {}
    monkeypatch.setattr(report, "save_figure", lambda fig, path: drawn.update(fig=fig))
    histories = {"ann": {"loss": [2.0, 1.5], "val_loss": [2.2, 1.9]},
                 "hybrid": {"loss": [1.3, 1.2], "val_loss": [1.88, 1.86], "start": {"val_loss": 1.80}}}
    report.training_curves(histories, tmp_path / "f.png")
    ann_axes, hybrid_axes = drawn["fig"].axes
    ann_lines = {line.get_label(): line for line in ann_axes.get_lines()}
    assert list(ann_lines["validation total loss"].get_xdata()) == [1, 2]
    lines = {line.get_label(): line for line in hybrid_axes.get_lines()}
    validation = lines["validation total loss"]
    assert list(validation.get_xdata()) == [0, 1, 2] and list(validation.get_ydata()) == [1.80, 1.88, 1.86]
    assert list(lines["total loss (task + rate regularisation)"].get_xdata()) == [1, 2]
    stars = [line for line in hybrid_axes.get_lines() if line.get_marker() == "*" and len(line.get_xdata())]
    assert [(list(s.get_xdata()), list(s.get_ydata())) for s in stars] == [([0], [1.80])]


def test_iou_vs_timesteps_numbers_are_the_tables_at_its_timesteps(quick_run):
    # the figure's numbers: every swept timestep of both SNNs, and at eval_steps the very
    # IoU the table reports (the table's box is the sweep's entry at eval_steps)
    config = json.loads((quick_run / "config.json").read_text())
    curves = json.loads((quick_run / "iou_vs_timesteps.json").read_text())
    table = {r["model"]: r for r in json.loads((quick_run / "table1.json").read_text())}
    assert curves["floor"] == table["mean_box"]["iou"] and curves["window"] == config["eval_window"]
    assert curves["ann"] == table["ann"]["iou"]
    assert sorted(curves["models"]) == ["converted", "hybrid"]
    for name, curve in curves["models"].items():
        assert curve["timesteps"] == sorted(set(config["steps_sweep"]) | {config["eval_steps"]})
        assert curve["iou"][curve["timesteps"].index(config["eval_steps"])] == table[name]["iou"]
        assert len(set(curve["iou"])) > 1, f"{name}: the same IoU at every timestep"


def test_rate_terms_train_the_ann_and_stay_out_of_the_hybrid_stage(quick_run):
    # TrainSettings.rate_terms: the ANN's loss holds a rate term per hidden layer, the
    # hybrid stage's (rate_terms=False) the box loss alone
    config = json.loads((quick_run / "config.json").read_text())
    assert config["ann"]["rate_terms"] is True and config["finetune"]["rate_terms"] is False
    histories = {stage: json.loads((quick_run / "checkpoints" / stage / "state.json").read_text())["history"]
                 for stage in ("ann", "hybrid")}
    assert len([key for key in histories["ann"] if key.endswith("rates_loss")]) >= 6
    assert histories["hybrid"] and not [key for key in histories["hybrid"] if "rates" in key]


@pytest.mark.parametrize("stage", ["ann", "hybrid"])
def test_a_killed_run_resumes_to_the_same_numbers(quick_run, data_root, tmp_path, stage):
    """Killed after an epoch of its ANN, or of its hybrid fine-tuning (the XLA-fused
    spiking step), a run resumes to the uninterrupted run's table, bit for bit."""
    out = tmp_path / "killed"
    process = locnet("run", "--profile", "quick", "--out", str(out), data=data_root, wait=False)
    state = out / "checkpoints" / stage / "state.json"
    deadline = time.time() + 600
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text())["epoch"] >= (2 if stage == "ann" else 1):
            break
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)  # a real signal to a real process
    process.wait()
    assert not (out / "table1.json").exists()

    resumed = locnet("run", "--profile", "quick", "--out", str(out), "--resume", data=data_root)
    assert f"[{stage}] resumed after epoch" in resumed.stdout
    expected = json.loads((quick_run / "table1.json").read_text())
    assert json.loads((out / "table1.json").read_text()) == expected


def test_evaluate_a_trained_model_on_another_folder(quick_run, data_root, tmp_path):
    folder = tmp_path / "my_airplanes"
    for sub in ("101_ObjectCategories/airplanes", "Annotations/Airplanes_Side_2"):
        (folder / sub).mkdir(parents=True)
    src = data_root / "caltech101"
    for i in ("0751", "0760", "0770", "0780", "0790", "0800"):
        if (src / f"101_ObjectCategories/airplanes/image_{i}.jpg").exists():
            shutil.copy(src / f"101_ObjectCategories/airplanes/image_{i}.jpg", folder / "101_ObjectCategories/airplanes")
            shutil.copy(src / f"Annotations/Airplanes_Side_2/annotation_{i}.mat", folder / "Annotations/Airplanes_Side_2")
    out = tmp_path / "evaluated"
    locnet("evaluate", "--checkpoint", str(quick_run), "--out", str(out), data=folder)
    records = json.loads((out / "table1.json").read_text())
    assert [r["model"] for r in records] == ["mean_box", "ann", "converted", "hybrid"]
    assert (out / "boxes.png").exists()
