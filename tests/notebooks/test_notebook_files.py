"""The notebooks as stored: cleared, starting with goals/prerequisites/time, each with a test."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAME = re.compile(r"^(\d\d_[a-z0-9_]+|demo_[a-z0-9_]+)\.ipynb$")
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_there_are_notebooks():
    assert ALL, f"no notebooks in {NOTEBOOKS}"


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_notebook_is_stored_cleared(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert NAME.match(path.name), f"{path.name}: name it NN_short_name or demo_name"
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} was counted"


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_notebook_starts_with_goals_prerequisites_and_time(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown"
    text = "".join(first["source"]).lower()
    for word in ("goals", "prerequisites", "time"):
        assert word in text, f"{path.name}: the first cell names no {word!r}"


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_every_notebook_has_a_test_of_its_numbers(path: Path):
    test = Path(__file__).parent / f"test_{path.stem}.py"
    assert test.is_file(), f"{path.name} has no {test.name} that checks what it computes"
