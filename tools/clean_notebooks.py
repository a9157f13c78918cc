"""Commit notebooks clean: no execution counts, no metadata noise, outputs kept only on cells tagged `nbval-check-output`.
A cell keeps only its tags: `parameters` (the settings a reader changes), `recipe` (the cells a reader copies, run on
their own by tests/test_copy.py) and nbval's `nbval-check-output`, `nbval-ignore-output`, `nbval-skip`.

The notebook metadata asks Colab for an A100 only where the notebook needs a GPU (GPU_NOTEBOOKS: training and
generation with 7-8 B models); 01, 02 and 07 run on any runtime, so they ask for none.

Usage: python tools/clean_notebooks.py [--execute] notebooks/*.ipynb
--execute first runs the notebook (inside tools/tiny-env: offline, on the tiny stand-ins) so the checked cells carry
fresh outputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from run_cookbook import execute

CHECK = "nbval-check-output"
TAGS = ("parameters", "recipe", CHECK, "nbval-ignore-output", "nbval-skip")  # the tags a cell keeps, in this order
NOTEBOOK_METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}
GPU_METADATA = {"accelerator": "GPU", "colab": {"gpuType": "A100", "provenance": []}}  # Colab opens it on an A100
GPU_NOTEBOOKS = ("03", "04", "05", "06")  # the numbers of the notebooks that train or generate with a 7-8 B model


def notebook_metadata(path: str | Path) -> dict:
    """The metadata a clean notebook carries: the kernel, and the A100 runtime only for the GPU_NOTEBOOKS."""
    return NOTEBOOK_METADATA | (GPU_METADATA if Path(path).name[:2] in GPU_NOTEBOOKS else {})


def merge_streams(outputs: list) -> list:
    """Join consecutive stream outputs of the same name: how the kernel chunks them depends on timing."""
    merged: list = []
    for out in outputs:
        last = merged[-1] if merged else None
        if out.output_type == "stream" and last is not None and last.output_type == "stream" and last.name == out.name:
            last.text += out.text
        else:
            merged.append(out)
    return merged


def clean(nb: nbformat.NotebookNode, path: str | Path) -> nbformat.NotebookNode:
    """Return `nb` (the notebook at `path`) with canonical metadata, stable cell ids and only checked outputs."""
    nb.metadata = nbformat.from_dict(notebook_metadata(path))
    nb.nbformat, nb.nbformat_minor = 4, 5
    for i, cell in enumerate(nb.cells):
        tags = [tag for tag in TAGS if tag in cell.metadata.get("tags", [])]
        cell.metadata = nbformat.from_dict({"tags": tags} if tags else {})
        cell.id = f"cell-{i:02d}"
        if cell.cell_type != "code":
            continue
        cell.execution_count = None
        if CHECK not in tags:
            cell.outputs = []
        cell.outputs = merge_streams(cell.outputs)
        for out in cell.outputs:
            if out.output_type == "execute_result":
                out.execution_count = None
    return nb


def main(argv: list[str]) -> None:
    """Clean (and optionally execute) each notebook given."""
    run = "--execute" in argv
    for name in [a for a in argv if a != "--execute"]:
        path = Path(name)
        nb = nbformat.read(path, as_version=4)
        if run:
            execute(nb, path)
        nbformat.validate(clean(nb, path))
        nbformat.write(nb, path)
        print(f"cleaned {path}{' (executed)' if run else ''}")


if __name__ == "__main__":
    main(sys.argv[1:])
