"""The README's Python example runs as written."""

import re
from pathlib import Path

import nengo_hybrid as nh

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_opens_with_the_two_commands():
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(), re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make locnet", "make test"]


def test_readme_example_runs_and_swaps_families(capsys):
    example = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(example.strip().splitlines()) <= 10
    exec(compile(example, str(README), "exec"), {})
    printed = capsys.readouterr().out
    for family, relu, lif in [
        ("rate", "RectifiedLinear", "SoftLIFRate"),
        ("spiking", "SpikingRectifiedLinear", "LIF"),
        ("hybrid", "HybridSpikingRectifiedLinear", "HybridSoftLIF"),
    ]:
        line = next(x for x in printed.splitlines() if x.startswith(family + " "))
        assert f"{relu}()" in line and f"{lif}(" in line
    assert nh.HybridSoftLIF.__name__ in printed
