"""``--seeds N`` (`nengo_hybrid.seeds`): each seed a cell that runs the experiment with
every seed of its configuration set, the table the mean and spread over the seeds, a
finished seed read back, a failed one named.  The experiment here is a stand-in whose
table is a known function of its seeds; the real experiments call the same code."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from nengo_hybrid import seeds
from nengo_hybrid.cells import GridIncomplete, GridOptions
from nengo_hybrid.stages import TrainSettings

METRICS = (("iou", "mean IoU"), ("firing_rate_hz", "rate (Hz)"))


@dataclass(frozen=True)
class StandInConfig:
    seed: int = 0
    ann: TrainSettings = TrainSettings(learning_rate=1e-3, epochs=1, batch_size=1)
    failing_seed: int = -1


def stand_in_run(config, data, out_dir, resume=False):
    """Table 1 of a stand-in experiment: a floor without a rate, an ANN whose IoU
    depends on the run's seed and its training seed."""
    if config.seed == config.failing_seed:
        raise RuntimeError(f"seed {config.seed} has no data in {data}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "calls.log", "a") as log:
        log.write("run\n")
    records = [{"model": "mean_box", "iou": 0.5 + 0.01 * config.seed, "firing_rate_hz": None, "paper_iou": None},
               {"model": "ann", "iou": 0.8 + 0.02 * config.seed + 0.001 * config.ann.seed,
                "firing_rate_hz": 100.0 + config.seed, "paper_iou": 0.8945, "data": data}]
    (out / "table1.json").write_text(json.dumps(records))
    return records


def test_the_table_is_the_mean_and_std_over_seed_cells(tmp_path):
    rows = seeds.run_seeds(stand_in_run, StandInConfig(seed=3), ("airplanes",), tmp_path, 3, "table1", METRICS,
                           "the stand-in's caption")
    expected = [0.8 + 0.02 * s + 0.001 * s for s in (3, 4, 5)]  # every seed of the config set
    floor, ann = rows
    assert ann["model"] == "ann" and ann["seeds"] == [3, 4, 5]
    assert ann["iou_per_seed"] == pytest.approx(expected)
    assert ann["iou"] == pytest.approx(np.mean(expected)) and ann["iou_std"] == pytest.approx(np.std(expected))
    assert ann["firing_rate_hz"] == pytest.approx(104.0)
    assert ann["paper_iou"] == 0.8945 and ann["data"] == "airplanes"  # shared by every seed: kept
    assert floor["firing_rate_hz"] is None and floor["firing_rate_hz_per_seed"] == [None] * 3
    assert floor["iou_std"] == pytest.approx(np.std([0.53, 0.54, 0.55]))
    for s in (3, 4, 5):  # each seed's own run, in its own folder
        assert json.loads((tmp_path / "cells" / f"seed{s}" / "table1.json").read_text())[1]["iou"] == \
            pytest.approx(0.8 + 0.021 * s)
    markdown = (tmp_path / "table1.md").read_text()
    assert "3 seeds (3, 4, 5)" in markdown and "the stand-in's caption" in markdown and "paper IoU" in markdown
    assert json.loads((tmp_path / "table1.json").read_text()) == json.loads(json.dumps(rows))

    # resumed: every seed read back, none run again
    again = seeds.run_seeds(stand_in_run, StandInConfig(seed=3), ("airplanes",), tmp_path, 3, "table1", METRICS,
                            "the stand-in's caption", resume=True)
    assert again == json.loads(json.dumps(rows))
    assert all(len((tmp_path / "cells" / f"seed{s}" / "calls.log").read_text().split()) == 1 for s in (3, 4, 5))


def test_a_failed_seed_is_named_and_the_table_waits_unless_partial(tmp_path):
    config = StandInConfig(seed=0, failing_seed=1)
    with pytest.raises(GridIncomplete, match="(?s)seed1.*seed 1 has no data"):
        seeds.run_seeds(stand_in_run, config, ("airplanes",), tmp_path, 3, "table1", METRICS, "words")
    assert not (tmp_path / "table1.json").exists()
    rows = seeds.run_seeds(stand_in_run, config, ("airplanes",), tmp_path, 3, "table1", METRICS, "words",
                           resume=True, grid=GridOptions(partial=True))
    assert rows[1]["seeds"] == [0, 2] and all(row["partial"] for row in rows)
    assert "PARTIAL TABLE: 1 seeds missing (seed1)" in (tmp_path / "table1.md").read_text()
    with pytest.raises(ValueError, match="at least one seed"):
        seeds.seed_cells(config, 0)
