"""One table of a run read at several timestep budgets (`nengo_hybrid.budgets`)."""

from types import SimpleNamespace

import numpy as np

from nengo_hybrid.budgets import budget_records, budget_sweeps


def results(offset, epochs):
    outputs = {"ann": np.full(3, 1.0), "converted": np.full(3, 2.0 + offset), "hybrid": np.full(3, 3.0 + offset)}
    return {"outputs": outputs, "rates": {"converted": {}, "hybrid": {}},
            "sweeps": {"converted": {10: offset}, "hybrid": {10: offset + 1}},
            "finetune_epochs": epochs, "finetune_best_epoch": epochs - 1}


def score(config, found, main):
    """A record per output, the floor first on the main budget; the score is the output's
    mean, so each record shows which budget's output it came from."""
    records = [{"model": "floor", "score": 0.0}] if main else []
    return records + [{"model": name, "score": float(out.mean())} for name, out in found["outputs"].items()]


def test_every_budget_contributes_its_spiking_models_and_the_ann_and_floor_appear_once():
    long, short = SimpleNamespace(eval_steps=80), SimpleNamespace(eval_steps=30)
    budgets = [("long", long, results(0.0, 4)), ("short", short, results(10.0, 2))]
    records = budget_records(score, budgets)
    assert [(r["model"], r["budget"], r["timesteps"]) for r in records] == [
        ("floor", None, None), ("ann", None, None), ("converted", "long", 80), ("hybrid", "long", 80),
        ("converted", "short", 30), ("hybrid", "short", 30)]
    assert [r["score"] for r in records] == [0.0, 1.0, 2.0, 3.0, 12.0, 13.0]
    # each budget's fine-tuned model carries its own training columns
    assert (records[3]["epochs"], records[3]["best_epoch"]) == (4, 3)
    assert (records[5]["epochs"], records[5]["best_epoch"]) == (2, 1)
    assert "epochs" not in records[4] and "epochs" not in records[2]

    sweeps = budget_sweeps(budgets)
    assert sweeps == {"converted": {10: 0.0}, "hybrid": {10: 1.0}, "hybrid (30 steps)": {10: 11.0}}


def test_one_budget_is_the_table_without_budget_columns_changing_it():
    records = budget_records(score, [("long", SimpleNamespace(eval_steps=80), results(0.0, 4))])
    assert [r["model"] for r in records] == ["floor", "ann", "converted", "hybrid"]
    assert records[-1]["timesteps"] == 80 and records[0]["budget"] is None
