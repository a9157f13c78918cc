"""Test session set-up: the suite runs inside the tiny environment (`make test` = `tools/tiny-env python -m pytest`),
which serves the hub ids offline, applies the smaller numbers, blocks the network and fixes bitsandbytes on the CPU, for
this process, for the notebook kernels nbval starts and for every subprocess."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))


def pytest_configure(config):
    """Refuse to run outside the tiny environment: the hub ids would go to the network."""
    if "TINY_ENV_HOME" not in os.environ:
        raise pytest.UsageError("run the tests inside the tiny environment: `make test`, or "
                                "`tools/tiny-env .venv/bin/python -m pytest ...`")


def pytest_collection_modifyitems(items):
    """Give checked notebook cells an in-memory execution count: nbval skips output checks of 'unrun' cells,
    and the committed notebooks carry no execution counts at all."""
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is not None and cell.get("outputs") and cell.get("execution_count") is None:
            cell.execution_count = 1


@pytest.fixture(scope="session")
def recipe_runs(tmp_path_factory):
    """Notebooks 03-06's recipes as a reader copies them, run in order in one project of the reader's own
    (tests/copies.py): `.home / "runs"` holds the run folders the notebooks name, `.run("05")` the finished run."""
    from copies import RecipeRuns

    return RecipeRuns(tmp_path_factory.mktemp("reader-project"), tmp_path_factory.mktemp("reader-venv") / "venv")
