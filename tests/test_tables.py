"""The tiny-environment times in README.md are the measured ones (benchmarks/results), and its matrix is computed."""

from __future__ import annotations

import json
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import fill_tables  # noqa: E402

TIMES = json.loads(fill_tables.RESULTS.read_text())


def test_the_results_file_says_where_and_how_it_was_measured():
    assert {"device", "cpu", "cores", "date", "versions", "command"} <= set(TIMES)
    assert set(TIMES["notebooks"]) == {p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}


def test_readme_shows_the_measured_times():
    text = (ROOT / "README.md").read_text()
    assert fill_tables.fill_readme(text, TIMES["notebooks"]) == text


def test_a_typed_time_is_caught():
    """Negative control: a number edited by hand no longer matches the results file."""
    text = (ROOT / "README.md").read_text()
    name = sorted(TIMES["notebooks"])[0]
    edited = fill_tables.fill_readme(text, TIMES["notebooks"] | {name: TIMES["notebooks"][name] + 7})
    assert edited != text


def test_readme_shows_the_computed_matrix():
    """README.md's model-swap matrix is `helpers.matrix_budget.matrix_rows()` and the collected CI tests, as
    `make tables` writes it."""
    text = (ROOT / "README.md").read_text()
    assert fill_tables.fill_matrix(text, fill_tables.matrix_table()) == text


def test_a_typed_matrix_number_is_caught():
    """Negative control: one peak edited by hand (or a stale row after a budget change) no longer matches."""
    from helpers.matrix_budget import matrix_rows

    rows = list(matrix_rows())
    rows[0] = {**rows[0], "sft_qlora_gib": rows[0]["sft_qlora_gib"] + 0.1}
    text = (ROOT / "README.md").read_text()
    assert fill_tables.fill_matrix(text, fill_tables.matrix_table(tuple(rows))) != text


def test_every_model_has_every_ci_mark_and_a_dropped_test_is_caught():
    """Each model's SFT, DPO, generation and count tests are collected; negative controls: a model dropped from the
    DPO parametrisation loses its ✓ (so README no longer matches)."""
    from helpers.models import MODELS

    ids = fill_tables.collected_ids()
    assert all(all(marks.values()) for marks in fill_tables.ci_marks(list(MODELS), ids).values())
    dpo = fill_tables.CI_CHECKS["DPO ✓"]
    dropped = tuple(i for i in ids if i != f"{dpo}[google/gemma-3-4b-it]")
    assert len(dropped) == len(ids) - 1
    assert fill_tables.ci_marks(list(MODELS), dropped)["google/gemma-3-4b-it"]["DPO ✓"] is False
    text = (ROOT / "README.md").read_text()
    assert fill_tables.fill_matrix(text, fill_tables.matrix_table(ids=dropped)) != text


def test_a_skipped_test_earns_no_mark(tmp_path):
    """Negative control: a test marked skip (or skipif, even if false) is collected but left out of the ids."""
    (tmp_path / "test_x.py").write_text("import pytest\n\n@pytest.mark.parametrize('m', ['a/b', 'c'])\n"
                                        "def test_runs(m):\n    pass\n\n@pytest.mark.skip\ndef test_skipped():\n"
                                        "    pass\n")
    assert fill_tables.collect(["test_x.py"], cwd=tmp_path) == ("test_x.py::test_runs[a/b]", "test_x.py::test_runs[c]")


def test_notebook_01_shows_the_measured_data_prep_table():
    """Notebook 01's data-preparation table is benchmarks/results/data-prep-<device>.json, as `make tables` writes it."""
    import nbformat

    report = fill_tables.data_prep_report()
    assert {"device", "cpu", "cores", "date", "versions", "command", "procs", "load_average"} <= set(report)
    assert not report["tiny"] and len(report["procs"]) > 1
    cells = nbformat.read(fill_tables.DATA_PREP_NOTEBOOK, as_version=4).cells
    text = cells[fill_tables.data_prep_cell(cells)].source
    assert fill_tables.fill_data_prep(text, fill_tables.data_prep_table(report)) == text


def test_a_typed_data_prep_number_is_caught():
    """Negative control: one time edited by hand (or a stale table after a new measurement) no longer matches."""
    import copy

    import nbformat

    report = copy.deepcopy(fill_tables.data_prep_report())
    report["seconds_per_1000_rows"]["chartqa"]["validate"]["1"] += 0.1
    cells = nbformat.read(fill_tables.DATA_PREP_NOTEBOOK, as_version=4).cells
    text = cells[fill_tables.data_prep_cell(cells)].source
    assert fill_tables.fill_data_prep(text, fill_tables.data_prep_table(report)) != text
