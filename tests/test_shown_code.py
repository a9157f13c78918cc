"""Notebooks 05 and 06 show in their recipe cells code that the scripts and the other notebooks import from helpers:
ChartQA's relaxed accuracy (helpers/metrics.py), the ChartQA formatter (helpers/data.py), the template's end-of-turn
token (helpers/processors.py) and the two GRPO rewards (scripts/rewards.py, which scripts/grpo.py imports). Each shown
definition is the module's, compared as syntax trees (comments and blank lines aside), so a copy cannot drift; and the
recipe cells import none of it (a reader's copy runs without helpers). tests/test_generation.py does the same for the
generation loop of notebook 05."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
from copies import notebook_path, tagged

ROOT = Path(__file__).resolve().parent.parent
HELPERS = ROOT / "helpers"


def module_file(module: str) -> Path:
    """helpers/`module`.py, or scripts/`module`.py for what only the scripts import (the GRPO rewards)."""
    path = HELPERS / f"{module}.py"
    return path if path.exists() else ROOT / "scripts" / f"{module}.py"


def recipe_cells(name: str) -> list[str]:
    """The cells of notebook `name` tagged `recipe`, as Python (IPython syntax transformed)."""
    return tagged(nbformat.read(notebook_path(name), as_version=4), "recipe")


def definitions(source: str) -> dict[str, str]:
    """`ast.dump` of each top-level function and single-name assignment of `source`, by name."""
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = ast.dump(node)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = ast.dump(node)
    return found


def module_names(module: str) -> list[str]:
    """Every top-level function and assignment of helpers/`module`.py, in order."""
    return list(definitions(module_file(module).read_text()))


# (notebook, helpers module, the names its recipe cells show)
SHOWN = [
    ("05", "metrics", ["_NUMBER", "_to_float", "relaxed_correctness", "relaxed_accuracy", "_gold_list"]),
    ("05", "data", ["CHARTQA_SYSTEM", "format_chartqa"]),
    ("05", "processors", ["SENTINEL", "end_of_turn_id"]),
    ("06", "metrics", ["_NUMBER", "_to_float", "relaxed_correctness"]),
    ("06", "data", ["CHARTQA_SYSTEM", "format_chartqa"]),
    ("06", "rewards", module_names("rewards")),  # all of it: scripts/grpo.py imports the module
]


def shown_differences(cells: list[str], module: str, names: list[str]) -> list[str]:
    """The names the cells do not define, or define otherwise than helpers/`module`.py does."""
    theirs = definitions(module_file(module).read_text())
    ours = {k: v for cell in cells for k, v in definitions(cell).items()}
    return [n for n in names if ours.get(n) != theirs[n]]


def helpers_imports(cells: list[str]) -> list[str]:
    """The `helpers` modules the cells import, except helpers.training (a reader vendors that one file)."""
    found = []
    for node in (n for cell in cells for n in ast.walk(ast.parse(cell))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "helpers":
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "helpers"]
    return [m for m in found if m != "helpers.training"]


@pytest.mark.parametrize("name, module, names", SHOWN, ids=[f"{n}-{m}" for n, m, _ in SHOWN])
def test_recipe_cells_show_the_helpers_code(name, module, names):
    assert shown_differences(recipe_cells(name), module, names) == []


@pytest.mark.parametrize("name", ["05", "06"])
def test_recipe_cells_import_nothing_of_it(name):
    assert helpers_imports(recipe_cells(name)) == []


def test_negative_control_a_drifted_or_missing_definition_is_found():
    cells = recipe_cells("05")
    drifted = [c.replace("<= max_relative_change", "< max_relative_change") for c in cells]
    assert drifted != cells and shown_differences(drifted, "metrics", SHOWN[0][2]) == ["relaxed_correctness"]
    reworded = [c.replace("chart analyst", "chart reader") for c in cells]
    assert shown_differences(reworded, "data", SHOWN[1][2]) == ["CHARTQA_SYSTEM"]
    cells = recipe_cells("06")
    looser = [c.replace("MAX_ANSWER_WORDS = 5", "MAX_ANSWER_WORDS = 6") for c in cells]
    assert looser != cells and shown_differences(looser, "rewards", SHOWN[5][2]) == ["MAX_ANSWER_WORDS"]
    without_format = [c for c in cells if "def format_reward(" not in c]
    assert shown_differences(without_format, "rewards", SHOWN[5][2]) == [
        "MAX_ANSWER_WORDS", "MAX_ANSWER_CHARS", "is_short_answer", "format_reward"]
    # a comment or a blank line is no difference: the syntax tree is compared
    assert shown_differences([c.replace("\n\n\n", "\n\n# shown\n") for c in cells], "rewards", SHOWN[5][2]) == []


def test_negative_control_an_import_from_helpers_is_found():
    cells = recipe_cells("06")
    assert helpers_imports(cells + ["from helpers.rewards import format_reward"]) == ["helpers.rewards"]
    assert helpers_imports(cells + ["import helpers.metrics"]) == ["helpers.metrics"]
    assert helpers_imports(["from helpers.training import train_resumable"]) == []
