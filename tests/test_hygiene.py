"""Notebooks are committed clean and open with the fixed skeleton; no file holds a hub token."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHECK = "# NBVAL_CHECK_OUTPUT"
TOKEN = re.compile(r"hf_[A-Za-z0-9]{30,}")


def test_there_are_numbered_notebooks():
    assert NOTEBOOKS and all(re.fullmatch(r"\d\d[a-z]?_[a-z0-9_]+\.ipynb", p.name) for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert set(nb.metadata) <= {"kernelspec", "language_info", "accelerator", "colab"}, "metadata noise"
    for i, cell in enumerate(nb.cells):
        assert cell.metadata in ({}, {"tags": ["recipe"]}), f"cell {i} has metadata {dict(cell.metadata)}"
        assert not cell.metadata or cell.cell_type == "code", f"cell {i}: only code cells are recipe cells"
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is None, f"cell {i} has an execution count"
        checked = CHECK in cell.source
        assert bool(cell.outputs) == checked, f"cell {i}: outputs only, and always, on {CHECK} cells"
        for out in cell.outputs:
            assert out.output_type in ("stream", "execute_result"), f"cell {i}: {out.output_type} output"
            assert out.get("execution_count") is None
            text = out.get("text", "") + str(out.get("data", {}))
            assert not re.search(r"0x[0-9a-fA-F]{6,}", text), f"cell {i}: a memory address is not reproducible"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_the_skeleton(path):
    cells = nbformat.read(path, as_version=4).cells
    title, install, versions, mode = cells[:4]
    assert title.cell_type == "markdown" and title.source.startswith("# ")
    assert re.search(r"^\|.*Hardware.*\|$", title.source, re.M), "hardware/time table in the opening cell"
    assert "google.colab" in install.source and "# Tested with" in install.source
    assert "__version__" in versions.source and "device" in versions.source
    mode_lines = [line for line in mode.source.splitlines() if "COOKBOOK_TINY" in line]
    assert len(mode_lines) == 1 and "resolve" in mode_lines[0], "one visible mode line importing resolve"


def token_leaks(folder: Path) -> list[str]:
    """Files under `folder`, of any type (training_args.bin is a pickle), holding something shaped like a hub token."""
    return [str(p) for p in Path(folder).rglob("*")
            if p.is_file() and TOKEN.search(p.read_bytes().decode("latin-1"))]


def test_no_run_folder_holds_a_hub_token():
    """Run folders are git-ignored, so the scan below misses them: the scripts' `runs/` and the tiny runs' cache."""
    from helpers.tiny import cache_dir

    for folder in (ROOT / "runs", cache_dir() / "runs"):
        if folder.is_dir():
            assert token_leaks(folder) == []


def test_the_run_folder_scan_finds_a_token_pickled_into_training_args(tmp_path):
    """Negative control: what the Trainer writes into every checkpoint (`torch.save(args)`) holds `--hub_token`."""
    import torch
    from transformers import TrainingArguments

    token = "hf_" + "Q" * 34
    torch.save(TrainingArguments(output_dir=str(tmp_path), hub_token=token), tmp_path / "training_args.bin")
    assert token_leaks(tmp_path) == [str(tmp_path / "training_args.bin")]


def test_no_file_holds_a_hub_token():
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    leaks = [f for f in tracked if (ROOT / f).is_file() and TOKEN.search((ROOT / f).read_bytes().decode("latin-1"))]
    assert leaks == []
