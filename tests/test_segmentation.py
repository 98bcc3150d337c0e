"""Segmentation helpers: subject-wise cross-validation folds, the atlas floor, Dice scores
of probability masks, pooling of cross-validation cells, and the comparison with the floor
and the paper."""

import dataclasses
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from data_prep.hippocampus import cross_validation_folds, msd_folders
from nengo_hybrid import segmentation
from nengo_hybrid.report import compare_with_floor_and_paper

CONFIG = SimpleNamespace(size=(40, 56, 40), axis=0, intensity="unit")


# ----------------------------------------------------------------------------- folds

def fake_ids(n):
    ids = [f"s{i:03d}" for i in range(n)]
    np.random.RandomState(99).shuffle(ids)  # the input order must not matter
    return ids


def check_folds(folds, ids, n_folds):
    ids = set(ids)
    assert len(folds) == n_folds
    tests = [test for _, test in folds]
    # every id in exactly one test set
    flat = [i for test in tests for i in test]
    assert len(flat) == len(set(flat)) == len(ids) and set(flat) == ids
    sizes = [len(t) for t in tests]
    assert max(sizes) - min(sizes) <= 1
    for train, test in folds:
        assert not set(train) & set(test)
        assert set(train) | set(test) == ids
        assert len(train) + len(test) == len(ids)  # no duplicates in train either
        assert list(train) == sorted(train) and list(test) == sorted(test)


@pytest.mark.parametrize("n", [5, 23, 40, 52])
def test_folds_partition_the_subjects(n):
    ids = fake_ids(n)
    folds = cross_validation_folds(ids, 5, seed=3)
    check_folds(folds, ids, 5)
    sizes = sorted(len(test) for _, test in folds)
    assert sum(sizes) == n and sizes[0] == n // 5


def test_folds_are_seeded():
    ids = fake_ids(23)
    assert cross_validation_folds(ids, 5, seed=1) == cross_validation_folds(ids, 5, seed=1)
    # the order the ids come in does not matter, only the seed
    assert cross_validation_folds(ids, 5, seed=1) == cross_validation_folds(sorted(ids), 5, seed=1)
    assert cross_validation_folds(ids, 5, seed=1) != cross_validation_folds(ids, 5, seed=2)
    # another seed deals other test sets, not just the same sets in another order
    tests = lambda seed: {tuple(t) for _, t in cross_validation_folds(ids, 5, seed=seed)}
    assert tests(1) != tests(2)


def test_leave_one_out_is_the_most_folds():
    ids = fake_ids(6)
    folds = cross_validation_folds(ids, 6, seed=0)
    check_folds(folds, ids, 6)
    assert sorted(t[0] for _, t in folds) == sorted(ids)


@pytest.mark.parametrize("n_folds", [7, 100, 1, 0, -2])
def test_impossible_fold_counts_are_refused(n_folds):
    with pytest.raises(ValueError):
        cross_validation_folds(fake_ids(6), n_folds, seed=0)


@pytest.fixture(scope="module")
def msd():
    root = Path(os.environ.get("NENGO_HYBRID_DATA", "data")) / "msd_hippocampus"
    if not (root / "imagesTr").is_dir():
        pytest.skip(f"no {root}")
    return msd_folders(root)


def test_folds_of_the_real_subjects(msd):
    ids = segmentation.subject_ids(*msd)
    assert len(ids) >= 100 and len(set(ids)) == len(ids)
    folds = cross_validation_folds(ids, 5, seed=0)
    check_folds(folds, ids, 5)
    # the full Decathlon task has 260 labelled subjects (folds of 52); the shipped data
    # has a subset: every fold's size follows from the count
    assert sorted(len(t) for _, t in folds) == sorted(
        len(ids) // 5 + (k < len(ids) % 5) for k in range(5))
    if len(ids) == 260:
        assert all(len(t) == 52 for _, t in folds)


# ----------------------------------------------------------------------------- atlas

@pytest.fixture(scope="module")
def slices(msd):
    ids = segmentation.subject_ids(*msd)[:6]
    loaded = segmentation.load(CONFIG, *msd, ids)
    assert [s.id for s in loaded.subjects] == ids
    return loaded


def shuffled(slices, seed=0):
    """The same slices in another order (their ``slice_index`` says where each goes)."""
    order = np.random.RandomState(seed).permutation(len(slices))
    return dataclasses.replace(slices, images=slices.images[order], masks=slices.masks[order],
                               subject_ids=slices.subject_ids[order],
                               slice_index=slices.slice_index[order])


def volumes_by_hand(slices):
    """Each subject's mask volume stacked with numpy from the slices (axis 0)."""
    depth = slices.size[0]
    out = {}
    for subject in np.unique(slices.subject_ids):
        volume = np.full(slices.size, np.nan)
        for k in np.flatnonzero(slices.subject_ids == subject):
            volume[slices.slice_index[k]] = slices.masks[k, :, :, 0]
        assert not np.isnan(volume).any() and volume.shape[0] == depth
        out[subject] = volume
    return out


def test_the_real_slices_are_what_the_test_assumes(slices):
    assert len(slices) == 6 * 40 and slices.masks.shape == (240, 56, 40, 1)
    assert set(np.unique(slices.masks)) == {0.0, 1.0}
    has = slices.masks.reshape(len(slices), -1).any(axis=1)
    assert 0 < has.sum() < len(slices)  # some slices show hippocampus, some don't


@pytest.mark.parametrize("order_seed", [None, 5])
def test_atlas_is_the_mean_of_the_subjects_masks(slices, order_seed):
    data = slices if order_seed is None else shuffled(slices, order_seed)
    expected = np.mean(list(volumes_by_hand(data).values()), axis=0)
    prior = segmentation.atlas(data)
    assert prior.shape == CONFIG.size
    np.testing.assert_allclose(prior, expected, atol=1e-6)
    # a mean of six binary masks: multiples of 1/6, and not trivial
    np.testing.assert_allclose(prior * 6, np.round(prior * 6), atol=1e-5)
    assert prior.max() == pytest.approx(1.0) and 0 < (prior > 0.5).sum() < prior.size


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_atlas_slices_cut_the_thresholded_atlas_like_the_slices(slices, threshold):
    data = shuffled(slices, 1)
    prior = segmentation.atlas(slices)
    cut = segmentation.atlas_slices(prior, data, threshold)
    assert cut.shape == (len(data), 56, 40, 1)
    for k in range(len(data)):
        expected = (prior[data.slice_index[k]] > threshold).astype(np.float32)
        np.testing.assert_array_equal(cut[k, :, :, 0], expected)
    # the same mask for every subject at one slice index
    for index in (10, 20):
        rows = np.flatnonzero(data.slice_index == index)
        assert len(rows) == 6 and all(np.array_equal(cut[rows[0]], cut[r]) for r in rows)
    assert cut.sum() > 0


def test_atlas_slices_along_another_axis(msd, slices):
    """The slices' axis, not axis 0, is the one cut across."""
    other = segmentation.load(SimpleNamespace(size=CONFIG.size, axis=2, intensity="unit"), *msd,
                              [s.id for s in slices.subjects])
    prior = segmentation.atlas(slices)  # the same subjects' atlas, from axis-0 slices
    np.testing.assert_allclose(segmentation.atlas(other), prior, atol=1e-6)
    cut = segmentation.atlas_slices(prior, other, 0.5)
    assert cut.shape == (len(other), 40, 56, 1)  # axis 2 of a 40 x 56 x 40 volume
    for k in range(0, len(other), 7):
        np.testing.assert_array_equal(cut[k, :, :, 0], (prior[:, :, other.slice_index[k]] > 0.5))


# ----------------------------------------------------------------------------- scores

def dice(p, g):
    p, g = p.astype(bool), g.astype(bool)
    total = p.sum() + g.sum()
    return 1.0 if total == 0 else 2.0 * (p & g).sum() / total


def test_the_ground_truth_scores_one(slices):
    found = segmentation.scores(slices.masks[..., 0], slices, 0.5)
    for key in ("dice_2d", "dice_2d_on_target", "dice_3d"):
        assert found[key] == pytest.approx(1.0)
    for key in ("dice_2d_std", "dice_2d_on_target_std", "dice_3d_std"):
        assert found[key] == pytest.approx(0.0)
    np.testing.assert_array_equal(found["slice_dice"], np.ones(len(slices)))
    assert found["subject_ids"] == [s.id for s in slices.subjects]


def test_an_empty_prediction_scores_only_the_empty_slices(slices):
    truth = slices.masks.reshape(len(slices), -1).any(axis=1)
    found = segmentation.scores(np.zeros((len(slices), 56, 40), np.float32), slices, 0.5)
    # empty truth and empty prediction: 1; any hippocampus missed entirely: 0
    np.testing.assert_array_equal(found["slice_dice"], (~truth).astype(float))
    assert found["dice_2d"] == pytest.approx(np.mean(~truth))
    assert found["dice_2d_std"] == pytest.approx(np.std((~truth).astype(float)))
    assert found["dice_2d_on_target"] == 0.0
    assert found["dice_3d"] == 0.0
    np.testing.assert_array_equal(found["subject_dice"], np.zeros(6))


@pytest.mark.parametrize("threshold", [0.5, 0.75])
def test_scores_match_dice_computed_by_hand(slices, threshold):
    rng = np.random.RandomState(0)
    truth = slices.masks[..., 0]
    # probabilities: the truth shifted by two pixels, plus noise that the threshold cuts
    predicted = np.clip(0.6 * np.roll(truth, 2, axis=1) + 0.5 * rng.uniform(size=truth.shape), 0, 1)
    found = segmentation.scores(predicted, slices, threshold)

    binary = predicted > threshold
    per_slice = np.array([dice(binary[k], truth[k]) for k in range(len(slices))])
    has = truth.reshape(len(slices), -1).any(axis=1)
    np.testing.assert_allclose(found["slice_dice"], per_slice, atol=1e-12)
    assert found["dice_2d"] == pytest.approx(per_slice.mean())
    assert found["dice_2d_std"] == pytest.approx(per_slice.std())
    assert found["dice_2d_on_target"] == pytest.approx(per_slice[has].mean())
    assert found["dice_2d_on_target_std"] == pytest.approx(per_slice[has].std())
    assert 0.05 < found["dice_2d_on_target"] < 0.95  # a case that tells the rules apart

    # 3D: each subject's voxels together, stacked by hand
    pred_volumes = {}
    for subject in np.unique(slices.subject_ids):
        rows = np.flatnonzero(slices.subject_ids == subject)
        volume = np.zeros(slices.size, bool)
        volume[slices.slice_index[rows]] = binary[rows]
        pred_volumes[subject] = volume
    true_volumes = volumes_by_hand(slices)
    expected = [dice(pred_volumes[s], true_volumes[s]) for s in found["subject_ids"]]
    assert sorted(found["subject_ids"]) == sorted(true_volumes)
    np.testing.assert_allclose(found["subject_dice"], expected, atol=1e-12)
    assert found["dice_3d"] == pytest.approx(np.mean(expected))
    assert found["dice_3d_std"] == pytest.approx(np.std(expected))
    # one subject by hand, explicitly
    first = found["subject_ids"][0]
    p, g = pred_volumes[first], true_volumes[first] > 0.5
    assert found["subject_dice"][0] == pytest.approx(2 * (p & g).sum() / (p.sum() + g.sum()))


def test_scores_do_not_depend_on_the_slices_order(slices):
    rng = np.random.RandomState(1)
    predicted = np.clip(slices.masks[..., 0] + rng.normal(0, 0.4, size=slices.masks.shape[:3]), 0, 1)
    order = np.random.RandomState(2).permutation(len(slices))
    a = segmentation.scores(predicted, slices, 0.5)
    b = segmentation.scores(predicted[order], shuffled(slices, 2), 0.5)
    np.testing.assert_allclose(b["slice_dice"], a["slice_dice"][order])
    by_subject = dict(zip(a["subject_ids"], a["subject_dice"]))
    np.testing.assert_allclose(b["subject_dice"], [by_subject[s] for s in b["subject_ids"]])
    for key in ("dice_2d", "dice_2d_on_target", "dice_3d"):
        assert b[key] == pytest.approx(a[key])


# ----------------------------------------------------------------------------- pooling

def fake_cells():
    a = {"snn": {"model": "snn", "slice_dice": [1.0, 0.5, 0.0, 0.8],
                 "has_target": [False, True, True, True], "subject_dice": [0.6, 0.7],
                 "subject_ids": ["s1", "s2"], "firing_rate_hz": 10.0, "synaptic_ops": 100,
                 "layer_rates_hz": {"conv1": 5.0, "conv2": 7.0}}}
    b = {"snn": {"model": "snn", "slice_dice": [0.9, 1.0, 0.3],
                 "has_target": [True, False, True], "subject_dice": [0.4],
                 "subject_ids": ["s3"], "firing_rate_hz": 25.0, "synaptic_ops": 300,
                 "layer_rates_hz": {"conv1": 6.0, "conv2": 9.0}}}
    return [a, b]


def test_pooled_record_pools_every_slice_and_subject():
    cells = fake_cells()
    record = segmentation.pooled_record(cells, "snn")
    all_2d = np.array([1.0, 0.5, 0.0, 0.8, 0.9, 1.0, 0.3])
    on_target = np.array([0.5, 0.0, 0.8, 0.9, 0.3])
    all_3d = np.array([0.6, 0.7, 0.4])
    assert record["model"] == "snn"
    assert record["dice_2d"] == pytest.approx(all_2d.mean())
    assert record["dice_2d_std"] == pytest.approx(all_2d.std(ddof=0))
    assert record["dice_2d_on_target"] == pytest.approx(on_target.mean())
    assert record["dice_2d_on_target_std"] == pytest.approx(on_target.std(ddof=0))
    assert record["dice_3d"] == pytest.approx(all_3d.mean())
    assert record["dice_3d_std"] == pytest.approx(all_3d.std(ddof=0))
    # pooled, not the mean of the folds' means
    assert record["dice_2d"] != pytest.approx(np.mean([np.mean([1.0, 0.5, 0.0, 0.8]),
                                                       np.mean([0.9, 1.0, 0.3])]))
    assert record["firing_rate_hz"] == pytest.approx(17.5)
    assert record["synaptic_ops"] == pytest.approx(200.0)
    assert "layer_rates_hz" in record
    assert record["n_subjects"] == 3 and record["n_slices"] == 7
    for key in ("slice_dice", "has_target", "subject_dice"):
        assert key not in record


def test_pooled_record_keeps_each_folds_summary():
    cells = fake_cells()
    record = segmentation.pooled_record(cells, "snn")
    assert len(record["per_fold"]) == 2
    for fold, cell in zip(record["per_fold"], cells):
        part = cell["snn"]
        s = np.array(part["slice_dice"])
        t = s[np.array(part["has_target"])]
        d = np.array(part["subject_dice"])
        assert fold["dice_2d"] == pytest.approx(s.mean())
        assert fold["dice_2d_std"] == pytest.approx(s.std())
        assert fold["dice_2d_on_target"] == pytest.approx(t.mean())
        assert fold["dice_2d_on_target_std"] == pytest.approx(t.std())
        assert fold["dice_3d"] == pytest.approx(d.mean())
        assert fold["dice_3d_std"] == pytest.approx(d.std())


def test_pooled_record_of_a_floor_without_activity():
    cells = fake_cells()
    for cell in cells:
        cell["atlas"] = dict(cell["snn"], model="atlas", firing_rate_hz=None, synaptic_ops=None)
        del cell["atlas"]["layer_rates_hz"]
    record = segmentation.pooled_record(cells, "atlas")
    assert record["firing_rate_hz"] is None and record["synaptic_ops"] is None
    assert record["dice_2d"] == pytest.approx(np.mean([1.0, 0.5, 0.0, 0.8, 0.9, 1.0, 0.3]))


# ----------------------------------------------------------------------------- comparison

def test_compare_with_floor_and_paper():
    records = [{"model": "atlas", "dice_2d": 0.6, "dice_3d": 0.5},
               {"model": "ann", "dice_2d": 0.85, "dice_3d": 0.75},
               {"model": "snn", "dice_2d": 0.7, "dice_3d": 0.55}]
    out = compare_with_floor_and_paper(records, "atlas", {"dice_2d": "gain_over_floor_2d"},
                                       {"ann": 0.8}, "paper_dice", compared="dice_2d",
                                       paper_rates={"ann": None, "snn": 700.0})
    assert out is records  # in place
    atlas, ann, snn = records
    assert atlas["gain_over_floor_2d"] == 0.0
    assert ann["gain_over_floor_2d"] == pytest.approx(0.25)
    assert snn["gain_over_floor_2d"] == pytest.approx(0.1)
    assert "gain_over_floor_3d" not in ann  # only the gains asked for
    assert atlas["paper_dice"] is None and snn["paper_dice"] is None
    assert ann["paper_dice"] == 0.8
    assert ann["diff_vs_paper"] == pytest.approx(0.05)
    assert atlas["diff_vs_paper"] is None and snn["diff_vs_paper"] is None
    assert atlas["paper_firing_rate_hz"] is None and ann["paper_firing_rate_hz"] is None
    assert snn["paper_firing_rate_hz"] == 700.0
    # the records' own numbers are untouched
    assert [r["dice_2d"] for r in records] == [0.6, 0.85, 0.7]


def test_compare_with_floor_and_paper_without_paper_rates():
    records = [{"model": "ann", "dice_3d": 0.9}, {"model": "atlas", "dice_3d": 0.4}]
    compare_with_floor_and_paper(records, "atlas", {"dice_3d": "gain_over_floor_3d"},
                                 {"ann": 0.95}, "paper_dice", compared="dice_3d")
    assert records[0]["gain_over_floor_3d"] == pytest.approx(0.5)
    assert records[1]["gain_over_floor_3d"] == 0.0
    assert records[0]["diff_vs_paper"] == pytest.approx(-0.05)
    assert all("paper_firing_rate_hz" not in r for r in records)
