"""Binary vs ternary spiking networks (the second paper's Tables 4 and 5): the input
codings, the paired differences, VGG-5, the classification cells, and both tables end to
end on the real data (quick profile)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import nengo_hybrid as nh
from data_prep import caltech101
from nengo_hybrid import classification, codings
from nengo_hybrid.encoding import poisson
from nengo_hybrid.models.vgg import build_vgg5

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

# the end-to-end tests share one quick run: one worker runs them all
pytestmark = pytest.mark.xdist_group("binary_ternary")


def test_codings_scale_pixels_to_their_ranges_and_spike_with_their_signs():
    pixels = np.array([[0, 51, 255]], dtype=np.uint8)
    np.testing.assert_allclose(codings.scale(pixels, "binary"), [[0.0, 0.2, 1.0]], atol=1e-7)
    np.testing.assert_allclose(codings.scale(pixels, "ternary"), [[-1.0, -0.6, 1.0]], atol=1e-6)
    binary = poisson(codings.scale(pixels, "binary"), 400, seed=1)
    ternary = poisson(codings.scale(pixels, "ternary"), 400, seed=1)
    assert set(np.unique(binary)) <= {0.0, 1.0} and set(np.unique(ternary)) == {-1.0, 0.0, 1.0}
    # ternary: pixel 0 spikes -1 every step; 51 spikes -1 with probability 0.6
    assert (ternary[0, :, 0] == -1).all() and abs(ternary[0, :, 1].mean() + 0.6) < 0.08
    with pytest.raises(ValueError, match="uint8"):
        codings.scale(pixels.astype(np.float32), "binary")
    with pytest.raises(ValueError, match="coding 'unary'"):
        codings.scale(pixels, "unary")
    assert codings.coding_of("zero_mean") == "ternary" and codings.coding_of("unit") == "binary"


def test_differences_pair_the_units_and_compare_with_their_spread():
    values = {"ternary": {"ann": [0.80, 0.82, 0.90], "converted": [0.5, 0.6, 0.7]},
              "binary": {"ann": [0.70, 0.80, 0.80], "converted": [0.6, 0.5, 0.7]}}
    ann, converted = codings.differences(values, "accuracy", "seeds")
    # paired: (0.10, 0.02, 0.10) -> mean 0.0733, sample std 0.0462
    assert ann["ternary_minus_binary"] == pytest.approx(0.22 / 3)
    assert ann["spread"] == pytest.approx(np.std([0.10, 0.02, 0.10], ddof=1))
    assert ann["exceeds_spread"] is True and ann["n"] == 3 and ann["spread_over"] == "seeds"
    # (-0.1, 0.1, 0): mean 0 within a spread of 0.1
    assert converted["ternary_minus_binary"] == pytest.approx(0.0, abs=1e-12)
    assert converted["exceeds_spread"] is False
    single = codings.differences({"ternary": {"ann": [0.9]}, "binary": {"ann": [0.8]}}, "a", "folds")
    assert single[0]["spread"] is None and single[0]["exceeds_spread"] is None
    with pytest.raises(ValueError, match="pair"):
        codings.differences({"ternary": {"ann": [1, 2]}, "binary": {"ann": [1]}}, "a", "seeds")


def test_vgg5_layers_widths_and_no_bias():
    model = build_vgg5((32, 32, 3), 10, filters=(64, 128, 128))
    shapes = {layer.name: layer.output_shape[1:] for layer in model.layers}
    assert shapes["conv1"] == (32, 32, 64) and shapes["pool1"] == (16, 16, 64)
    assert shapes["conv3"] == (16, 16, 128) and shapes["pool2"] == (8, 8, 128)
    # dense widths scale with the input: 8 * 8 * 128 / 8
    assert shapes["dense1"] == (1024,) and shapes["dense2"] == (1024,) and shapes["logits"] == (10,)
    kernels = (3 * 3 * 3 * 64 + 3 * 3 * 64 * 128 + 3 * 3 * 128 * 128 + 8192 * 1024 + 1024 * 1024 + 1024 * 10)
    assert model.count_params() == kernels  # nothing but kernels: no bias anywhere
    assert build_vgg5((16, 16, 3), 10, filters=(4, 8, 8)).get_layer("dense1").units == 4 * 4 * 8 // 8
    with pytest.raises(ValueError, match="divisible by 4"):
        build_vgg5((30, 32, 3))


def test_vgg5_converts_to_integrate_and_fire_without_its_dropout():
    model = build_vgg5((16, 16, 3), 10, filters=(4, 8, 8), dense=(16, 16), dropout=0.5)
    plain = build_vgg5((16, 16, 3), 10, filters=(4, 8, 8), dense=(16, 16), dropout=0.0)
    spiking, plain_spiking = nh.convert(model, "if"), nh.convert(plain, "if")
    assert len(spiking.net.all_connections) == len(plain_spiking.net.all_connections)
    assert list(spiking.hidden_probes()) == ["conv1", "conv2", "conv3", "dense1", "dense2"]
    # the rate family computes the Keras model (dropout the identity at inference)
    x = np.random.RandomState(0).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
    rate = nh.convert(model, "rate")
    with rate.simulator(4, n_steps=1) as sim:
        out = sim.predict({rate.input: x.reshape(4, 1, -1)})[rate.output][:, -1]
    np.testing.assert_allclose(out, model.predict(x, verbose=0), atol=1e-4)


def test_scores_and_the_floor():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0]])
    labels = np.array([0, 1, 2, 2])
    found = classification.scores(logits, labels)
    assert found["accuracy"] == pytest.approx(0.75)
    assert found["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    floor = classification.floor_scores(np.array([2, 2, 1, 0]), labels)
    assert floor["accuracy"] == pytest.approx(0.5) and floor["balanced_accuracy"] == pytest.approx(1 / 3)
    np.testing.assert_array_equal(classification.one_hot([1, 0], 3), [[0, 1, 0], [1, 0, 0]])


def test_cells_take_their_coding_and_seed_everywhere():
    import binary_ternary

    config = binary_ternary.PROFILES["quick"].classification
    cell = classification.cell_config(config, "binary", 7)
    assert cell.intensity == "unit" and cell.seed == 7
    assert cell.ann.seed == 7 and cell.finetune.seed == 7
    assert classification.cell_config(config, "ternary", 7).intensity == "zero_mean"


def test_the_stand_in_is_read_when_there_is_no_cifar10(data_root, tmp_path):
    dataset = classification.load(data_root, "auto", size=(16, 16))
    assert dataset.name == classification.CALTECH_STAND_IN
    assert dataset.data.x_train.shape[1:] == (16, 16, 3) and len(dataset.data.class_names) == 10
    assert set(dataset.data.class_names) == set(caltech101.CLASSIFICATION_CATEGORIES)
    with pytest.raises(caltech101.DataError, match="cifar"):
        classification.load(tmp_path, "cifar10")


def test_the_cpu_profiles_unet_states_the_epochs_it_runs():
    """Table 5's cpu U-Net trains fewer epochs than Table 1's: its caption says so."""
    import binary_ternary

    unet_config = binary_ternary.PROFILES["cpu"].segmentation
    for settings in (unet_config.ann, unet_config.finetune):
        assert f"for at most {settings.epochs} epochs" in unet_config.departures
    assert unet_config.departures.count("for at most") == 2
    finetune = unet_config.finetune
    assert f"on {finetune.examples_per_epoch} slices an epoch for at most {finetune.epochs} epochs" \
        in unet_config.departures


@pytest.fixture(scope="module")
def quick_tables(msd_root, tmp_path_factory):
    import binary_ternary

    out = tmp_path_factory.mktemp("binary_ternary") / "run"
    binary_ternary.run(binary_ternary.PROFILES["quick"], msd_root.parent, out)
    return out


def test_table4_has_the_floor_both_codings_and_their_differences(quick_tables):
    table = json.loads((quick_tables / "table4.json").read_text())
    assert table["dataset"] == classification.CALTECH_STAND_IN
    records = table["records"]
    assert records[0]["model"] == "floor" and records[0]["balanced_accuracy"] == pytest.approx(0.1)
    rows = {(r["coding"], r["model"]): r for r in records[1:]}
    assert set(rows) == {(c, m) for c in ("binary", "ternary") for m in ("ann", "converted", "fine_tuned")}
    cells = quick_tables / "classification" / "cells"
    for (coding, model), row in rows.items():
        per_seed = [json.loads((cells / coding / f"seed{s}" / "scores.json").read_text())["models"][model]
                    for s in (0, 1)]
        values = [s["balanced_accuracy"] for s in per_seed]
        assert row["balanced_accuracy"] == pytest.approx(np.mean(values))
        assert row["balanced_accuracy_std"] == pytest.approx(np.std(values)) and row["n"] == 2
        assert (row["firing_rate_hz"] is None) == (model == "ann")
    for d in table["differences"]:
        expected = [rows["ternary", d["model"]]["per_seed"][s]["balanced_accuracy"]
                    - rows["binary", d["model"]]["per_seed"][s]["balanced_accuracy"] for s in (0, 1)]
        assert d["ternary_minus_binary"] == pytest.approx(np.mean(expected))
        assert d["spread"] == pytest.approx(np.std(expected, ddof=1))
    markdown = (quick_tables / "table4.md").read_text()
    assert "Caltech-101" in markdown and "Ternary minus binary" in markdown


def test_the_two_codings_really_differ_in_their_inputs(quick_tables):
    cells = quick_tables / "classification" / "cells"
    thresholds = {c: json.loads((cells / c / "seed0" / "thresholds.json").read_text()) for c in codings.CODINGS}
    # the same seed, other inputs: other ANNs, so other balanced thresholds
    assert thresholds["binary"] != thresholds["ternary"]


def test_table5_pairs_both_unet_runs_on_the_same_folds(quick_tables):
    table = json.loads((quick_tables / "table5.json").read_text())
    records = table["records"]
    assert records[0]["model"] == "atlas"
    runs = {c: quick_tables / f"unet_{c}" for c in codings.CODINGS}
    for coding, folder in runs.items():
        config = json.loads((folder / "config.json").read_text())
        assert config["intensity"] == codings.INTENSITY[coding]
    folds = {c: json.loads((runs[c] / "folds.json").read_text())["folds"] for c in codings.CODINGS}
    assert folds["binary"] == folds["ternary"]
    scores = {c: json.loads((runs[c] / "cells" / "fold0" / "bce_dice" / "scores.json").read_text())["models"]
              for c in codings.CODINGS}
    for d in table["differences"]:
        key = "subject_dice" if d["metric"] == "dice_3d" else "slice_dice"
        pick = (lambda s: np.asarray(s[key])) if key == "subject_dice" else \
            (lambda s: np.asarray(s[key])[np.asarray(s["has_target"], bool)])
        paired = pick(scores["ternary"][d["model"]]) - pick(scores["binary"][d["model"]])
        assert d["ternary_minus_binary"] == pytest.approx(paired.mean())
        assert d["spread"] == pytest.approx(paired.std(ddof=1))
        assert d["exceeds_spread"] == (abs(paired.mean()) > paired.std(ddof=1))
    rows = {(r["coding"], r["model"]): r for r in records[1:]}
    assert rows["ternary", "ann"]["dice_3d"] == pytest.approx(np.mean(scores["ternary"]["ann"]["subject_dice"]))


def test_the_comparison_figure_draws_the_table(quick_tables, tmp_path):
    records = json.loads((quick_tables / "table4.json").read_text())["records"]
    drawn = codings.comparison_figure(tmp_path / "figure.png", records, "balanced_accuracy", "balanced accuracy")
    for record in records[1:]:
        assert drawn[record["coding"]][record["model"]] == pytest.approx(record["balanced_accuracy"])
    assert (quick_tables / "table4_binary_vs_ternary.png").exists()


def test_a_resumed_run_reads_its_cells_back(quick_tables, msd_root):
    import binary_ternary

    cells = sorted((quick_tables / "classification" / "cells").rglob("*.*"))
    before = {p: p.stat().st_mtime_ns for p in cells}
    table = json.loads((quick_tables / "table4.json").read_text())
    binary_ternary.run(binary_ternary.PROFILES["quick"], msd_root.parent, quick_tables, ("4",), resume=True)
    assert before == {p: p.stat().st_mtime_ns for p in cells}
    assert json.loads((quick_tables / "table4.json").read_text())["records"] == table["records"]
