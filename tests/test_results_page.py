"""results/README.md: every finished table with its figures linked, the others named with
the command that runs them."""

import json

from nengo_hybrid import results_page


def test_the_page_holds_finished_tables_and_names_the_missing(tmp_path):
    unet = tmp_path / "unet_cpu"
    unet.mkdir()
    (unet / "table1.md").write_text("| model | 3D Dice |\n|---|---|\n| atlas | 0.672 |\n\nThe caption.\n")
    (unet / "figure3_masks.png").write_bytes(b"png")
    (unet / "timings.json").write_text(json.dumps({"total_s": 5100.0}))
    binary_ternary = tmp_path / "binary_ternary_cpu"
    binary_ternary.mkdir()
    (binary_ternary / "table5.md").write_text("| coding | model |\n\nTable five.\n")
    (tmp_path / "locnet").mkdir()  # a folder without its table: not run
    page = results_page.write(tmp_path).read_text()
    unet_part = page[page.index("the spiking U-Net"):page.index("the output cut-off")]
    assert "| atlas | 0.672 |" in unet_part and "The caption." in unet_part
    assert "[figure3_masks](unet_cpu/figure3_masks.png)" in unet_part and "85.0 min" in unet_part
    assert "Table five." in page and "table4" not in page
    for entry in results_page.ENTRIES:
        if entry.name not in ("unet", "binary_ternary"):
            assert f"Not run yet: `{entry.command}`" in page
    # the paper profile reads the paper folders: none here
    assert "| atlas |" not in results_page.write(tmp_path, "paper").read_text()


def test_a_resumed_run_keeps_the_time_its_first_run_took(tmp_path, monkeypatch):
    # `make reproduce ARGS=--resume` reads finished runs back in seconds: the page must
    # still show what each run cost, and the read-back is recorded beside it
    from dataclasses import dataclass

    from nengo_hybrid import experiment

    @dataclass(frozen=True)
    class Config:
        seed: int = 0

    run_dir = tmp_path / "unet_cpu"
    (run_dir).mkdir()
    (run_dir / "table1.md").write_text("| model |\n")
    clock = iter([1000.0, 1000.0 + 5100.0, 9000.0, 9000.0 + 3.0])
    monkeypatch.setattr(experiment.time, "time", lambda: next(clock))
    experiment.ExperimentRun(Config(), run_dir).finish()
    resumed = experiment.ExperimentRun(Config(), run_dir, resume=True)
    assert resumed.finish()["total_s"] == 3.0  # this invocation's own time, as it prints
    timings = json.loads((run_dir / "timings.json").read_text())
    assert timings["total_s"] == 5100.0 and [r["total_s"] for r in timings["resumed"]] == [3.0]
    assert "85.0 min" in results_page.write(tmp_path).read_text()
