"""The second paper's three stages through the same `run_stages` as LocNet and the CAE,
by configuration only, on real hippocampus slices: ANN -> integrate-and-fire conversion
with balanced thresholds and ternary Poisson inputs -> surrogate-gradient fine-tuning
through time; early stopping validates on whole subjects; the thresholds are saved and
restored; the run is reproducible."""

import json
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import pytest
import tensorflow as tf

from data_prep.hippocampus import load_slices, msd_folders, split_subjects, subjects
from nengo_hybrid import metrics
from nengo_hybrid.losses import BCEDice
from nengo_hybrid.models.cae import build_cae, mask_probabilities
from nengo_hybrid.stages import (Balancing, SpikingSettings, TrainSettings, evaluate_stages,
                                 run_stages)

# one worker trains the module's run, once (spread over two workers, both trained it)
pytestmark = pytest.mark.xdist_group("three_stage_run")

T = 16


@dataclass(frozen=True)
class ThreeStageConfig:
    seed: int = 0
    ann: TrainSettings = TrainSettings(learning_rate=3e-3, epochs=5, batch_size=8)
    finetune: TrainSettings = TrainSettings(learning_rate=1e-3, epochs=2, batch_size=8, n_steps=T,
                                            patience=2, validation_fraction=0.15,
                                            examples_per_epoch=48)
    synapse: Optional[float] = None
    scale_firing_rates: Optional[float] = None
    eval_steps: int = T
    eval_window: int = T  # the non-spiking output's potential averaged over every step
    # read beyond T too: a deep network's spikes need timesteps to reach the output
    steps_sweep: tuple = (8, T, 3 * T)
    eval_batch: int = 8
    rate_examples: int = 16
    spiking: SpikingSettings = SpikingSettings(
        converted_family="if", finetuned_family="if", finetuned_name="fine-tuned",
        encoding="poisson", balancing=Balancing(examples=16, percentile=99.9, batch_size=8))


@pytest.fixture(scope="module")
def three_stage_run(msd_root, tmp_path_factory):
    images, labels = msd_folders(msd_root)
    ids = [s.id for s in subjects(images, labels)][:10]
    train_ids, test_ids = split_subjects(ids, 0.2, seed=0)
    # zero-mean intensities in [-1, 1]: ternary input spikes
    slices = load_slices(images, labels, ids=ids, intensity="zero_mean")
    train, test = slices.select(train_ids), slices.select(test_ids)
    tf.keras.utils.set_random_seed(0)
    model = build_cae(train.images.shape[1:], "relu", (4, 8, 8, 16), seed=0)
    out = tmp_path_factory.mktemp("three_stage")
    config = ThreeStageConfig()
    results = run_stages(model, config, train.images, train.masks, test.images, BCEDice(0.5, 0.5),
                         out, resume=False, groups=train.subject_ids)
    return {"model": model, "config": config, "train": train, "test": test, "out": out,
            "results": results}


def dice(outputs, slices):
    masks = mask_probabilities(outputs).reshape(slices.masks.shape[:3])
    return float(np.nanmean(metrics.dice_2d(masks, slices.masks).scores))


def test_the_converted_snn_has_balanced_thresholds_saved_with_the_run(three_stage_run):
    run = three_stage_run
    saved = json.loads((run["out"] / "thresholds.json").read_text())
    thresholds = run["results"]["thresholds"]
    assert saved["thresholds"] == thresholds and saved["encoding"] == "poisson"
    assert saved["balancing"]["percentile"] == 99.9 and saved["n_steps"] == T
    # one per hidden layer (the output layer does not spike), all positive
    conv_layers = [layer.name for layer in run["model"].layers[:-1]
                   if isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Conv2DTranspose))]
    assert list(thresholds) == conv_layers and all(v > 0 for v in thresholds.values())
    # Poisson input: the synaptic operations count its spikes, mean |x| / dt
    assert run["results"]["input_rate_hz"] == pytest.approx(
        np.abs(run["test"].images).mean() / 0.001, rel=1e-5)


def test_conversion_then_fine_tuning_through_time_segment_real_slices(three_stage_run):
    run = three_stage_run
    results, test = run["results"], run["test"]
    outputs = results["outputs"]
    assert set(outputs) == {"ann", "converted", "fine-tuned"}
    scores = {name: dice(out, test) for name, out in outputs.items()}
    # the atlas-free floor: predicting no hippocampus anywhere
    empty = dice(np.full_like(outputs["ann"], -10.0), test)
    assert scores["ann"] > empty + 0.05, scores
    # early-stop conversion: the converted SNN approaches the ANN as it runs longer
    # (each of its nine spiking layers needs a few steps to charge up, so at 16 steps
    # the output is still far from the ANN's; at 48 it is close) ...
    sweep = results["sweeps"]["converted"]
    with np.errstate(invalid="ignore"):  # a constant output (nothing arrived yet) has none
        agreement = {t: np.corrcoef(sweep[t].ravel(), outputs["ann"].ravel())[0, 1] for t in sweep}
    assert agreement[3 * T] > 0.9 and agreement[3 * T] > agreement[T], agreement
    assert np.isnan(agreement[8]) or agreement[8] < agreement[T], agreement
    # ... and fine-tuning through time recovers at T steps much of what the early stop lost
    assert scores["fine-tuned"] > scores["converted"] + 0.05, scores
    # the spiking layers fired
    rates = results["rates"]["converted"]
    assert 1 < rates["network"] < 1000 and set(rates["layers"]) == set(results["thresholds"])
    # fine-tuning ran through time and kept its best epoch (0 = the converted weights)
    assert results["finetune_epochs"] >= 1 and results["finetune_best_epoch"] is not None
    assert set(results["histories"]) == {"ann", "fine-tuned"}
    assert "balance_s" in results["timings"] and "fine-tuned_s" in results["timings"]


def test_early_stopping_validated_on_whole_training_subjects(three_stage_run):
    run = three_stage_run
    state = json.loads((run["out"] / "checkpoints" / "fine-tuned" / "state.json").read_text())
    held_out = set(state["validation_groups"])
    train_subjects = {str(s) for s in run["train"].subject_ids}
    test_subjects = {str(s) for s in run["test"].subject_ids}
    assert held_out and held_out < train_subjects and not held_out & test_subjects


def test_a_finished_run_evaluates_again_to_the_same_outputs(three_stage_run):
    run = three_stage_run
    again = evaluate_stages(run["model"], run["config"], run["out"], run["test"].images)
    assert again["thresholds"] == run["results"]["thresholds"]
    for name, outputs in run["results"]["outputs"].items():
        np.testing.assert_array_equal(again["outputs"][name], outputs, err_msg=name)


def test_another_seed_draws_other_input_spikes(three_stage_run):
    run = three_stage_run
    from nengo_hybrid.stages import spiking_evaluation

    other = replace(run["config"], seed=1)
    x = run["test"].images[:8]
    params, thresholds = run["out"] / "ann", run["results"]["thresholds"]
    same = spiking_evaluation(run["model"], run["config"], params, x, thresholds)["outputs"]
    np.testing.assert_array_equal(same, run["results"]["outputs"]["converted"][:8])
    different = spiking_evaluation(run["model"], other, params, x, thresholds)["outputs"]
    assert not np.array_equal(same, different)
