"""A reader copies notebook 03, 04, 05 or 06's recipe (its `parameters` cell and its `recipe` cells, in order) into
one file of a project of their own, and runs it: it runs to the end, in the tiny environment, with nothing of the
cookbook but `helpers/training.py` (tests/copies.py builds that project)."""

from __future__ import annotations

import pytest
from copies import ORDER, copy_source, helpers_imports, reader_project, reader_python, run_copy, vendored_files

ALLOWED = ["helpers.training:train_resumable"]  # resume after a disconnect; the cell names the plain trainer.train()


@pytest.mark.parametrize("name", ORDER)
def test_the_copy_imports_nothing_from_helpers_but_train_resumable(name):
    assert set(helpers_imports(copy_source(name))) <= set(ALLOWED)


def test_the_reader_vendors_training_and_what_it_imports():
    assert vendored_files() == ["checkpoints.py", "training.py"]


@pytest.mark.parametrize("name", ORDER)
def test_the_copy_runs_to_the_end_in_a_project_of_its_own(recipe_runs, name):
    done = recipe_runs.run(name)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def test_negative_control_a_copy_that_imports_another_helper_fails(tmp_path):
    """Notebook 03's copy with one more helpers import at the top of its first recipe cell: the reader's project has
    no helpers/data.py, so it stops there (before any model loads)."""
    source = copy_source("03")
    assert helpers_imports("from helpers.data import validate") == ["helpers.data:validate"]
    python = reader_python(tmp_path / "venv")
    done = run_copy(reader_project(tmp_path / "project"), "03", "from helpers.data import validate\n" + source, python)
    assert done.returncode and "ModuleNotFoundError: No module named 'helpers.data'" in done.stderr, done.stderr[-2000:]
