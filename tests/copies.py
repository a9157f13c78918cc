"""Copy a notebook's recipe as a reader does, and run the copy in a project of the reader's own.

A copy is the notebook's `parameters` cell followed by its `recipe` cells, in order, in one `copy_NN.py` (IPython
syntax transformed). The reader's project is an empty folder holding only the copies and the one file the recipe cells
may import from the cookbook, `helpers/training.py` (resume after a disconnect; with what it imports). It runs under
`tools/tiny-env` with an interpreter that has every library of the cookbook's environment but not the cookbook itself:
a venv whose site-packages points at the cookbook venv's, without its editable install of `helpers`.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
from functools import cache
from pathlib import Path

import nbformat
from IPython.core.inputtransformer2 import TransformerManager

ROOT = Path(__file__).resolve().parent.parent
ORDER = ("03", "04", "05", "06")  # 05 reads the adapters of 03 and 04, 06 the adapter of 03, all from runs/
VENDORED = ("training.py",)  # what a recipe cell may import from helpers, and what it imports in turn, below


def notebook_path(name: str) -> Path:
    """notebooks/<name>_*.ipynb."""
    return next((ROOT / "notebooks").glob(f"{name}_*.ipynb"))


def tagged(nb: nbformat.NotebookNode, tag: str) -> list[str]:
    """The sources of the code cells tagged `tag`, as Python (IPython syntax transformed)."""
    return [TransformerManager().transform_cell(c.source) for c in nb.cells
            if c.cell_type == "code" and tag in c.metadata.get("tags", [])]


def copy_source(name: str) -> str:
    """The reader's copy of notebook `name`: its parameters cell, then its recipe cells."""
    nb = nbformat.read(notebook_path(name), as_version=4)
    return "\n\n".join(tagged(nb, "parameters") + tagged(nb, "recipe"))


def helpers_imports(source: str) -> list[str]:
    """`module:name` for each name `source` imports from the cookbook's `helpers` package."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "helpers":
            found += [f"{node.module}:{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] == "helpers"]
    return found


def vendored_files() -> list[str]:
    """helpers/ files the reader copies along: training.py and the helpers modules it imports (transitively)."""
    files, todo = [], list(VENDORED)
    while todo:
        name = todo.pop()
        if name in files:
            continue
        files.append(name)
        todo += [f"{m.split(':')[0].split('.')[1]}.py" for m in helpers_imports((ROOT / "helpers" / name).read_text())]
    return sorted(files)


@cache
def reader_python(where: Path) -> str:
    """A venv at `where` that imports the cookbook venv's libraries but not its editable `helpers`."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    site = Path(subprocess.run([str(where / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # a plain path line: the cookbook venv's site-packages on sys.path, without running its .pth files (the editable
    # install of `helpers` is one of them)
    (site / "cookbook_libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return str(where / "bin" / "python")


def reader_project(folder: Path) -> Path:
    """An empty project folder with the vendored helpers files."""
    (folder / "helpers").mkdir(parents=True)
    (folder / "helpers" / "__init__.py").write_text("")
    for name in vendored_files():
        shutil.copy(ROOT / "helpers" / name, folder / "helpers" / name)
    return folder


def run_copy(folder: Path, name: str, source: str, python: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Write `source` to folder/copy_<name>.py and run it there under tools/tiny-env (home: the folder)."""
    (folder / f"copy_{name}.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TINY_ENV_HOME")}
    env |= {"TINY_ENV_HOME": str(folder), "TRACKIO_DIR": str(folder / "trackio")}
    return subprocess.run([str(ROOT / "tools" / "tiny-env"), python, f"copy_{name}.py"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=timeout)


class RecipeRuns:
    """The copies of notebooks 03, 04, 05 and 06 run in order in one reader's project (`home`), each once."""

    def __init__(self, home: Path, venv: Path) -> None:
        self.home = reader_project(home)
        self.python = reader_python(venv)
        self.done: dict[str, subprocess.CompletedProcess] = {}

    def run(self, name: str) -> subprocess.CompletedProcess:
        """The finished run of notebook `name`'s copy (the copies before it in ORDER run first)."""
        for earlier in ORDER[: ORDER.index(name) + 1]:
            if earlier not in self.done:
                self.done[earlier] = run_copy(self.home, earlier, copy_source(earlier), self.python)
        return self.done[name]
