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
