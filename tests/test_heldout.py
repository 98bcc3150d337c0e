"""`nengo_hybrid.heldout`'s pieces that need no training (its runs: test_cae_experiment.py)."""

from types import SimpleNamespace

import numpy as np

from nengo_hybrid import heldout


class FakeSlices:
    """Slices of three subjects: 4 of subject a, 4 of b, 2 of c, in that order."""

    subject_ids = np.array(["a"] * 4 + ["b"] * 4 + ["c"] * 2)
    subjects = ("a", "b", "c")

    def __len__(self):
        return len(self.subject_ids)


def test_rate_slices_names_the_slices_and_subjects_the_rates_came_from():
    slices = FakeSlices()
    assert heldout.rate_slices(SimpleNamespace(rate_examples=5), slices) == (
        "the first 5 test slices (2 of the 3 subjects)")
    assert heldout.rate_slices(SimpleNamespace(rate_examples=4), slices) == (
        "the first 4 test slices (1 of the 3 subjects)")
    for every in (10, 200, None):
        assert heldout.rate_slices(SimpleNamespace(rate_examples=every), slices) == (
            "all 10 test slices (3 subjects)")


def test_table_columns_mark_each_record_with_its_budget_and_timesteps():
    keys = [key for key, _ in heldout.COLUMNS]
    assert keys[:3] == ["model", "budget", "timesteps"]
    assert {"dice_2d_on_target", "firing_rate_hz", "paper_dice", "diff_vs_paper"} <= set(keys)
