"""Copy the tiny-mode times of benchmarks/results/cookbook-tiny.json into README.md's table and each notebook's table,
and write README.md's model-swap matrix table (budget rows of `helpers.model_matrix`) between its markers.

Usage: python tools/fill_tables.py   (`make tables`; `make cookbook` writes the results file)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "cookbook-tiny.json"
MATRIX_MARKERS = ("<!-- matrix-table:start (tools/fill_tables.py writes it) -->", "<!-- matrix-table:end -->")
NOTEBOOK_ROW = re.compile(r"^(\| Tiny \(`COOKBOOK_TINY=1`\) \|.*\| )[^|]*(\|)$", re.M)


def tiny_cell(seconds: float) -> str:
    """The table cell for a tiny-mode time."""
    return f"{round(seconds)} s (measured with `make cookbook`)"


def fill_readme(text: str, times: dict[str, float]) -> str:
    """README.md with the last column of each notebook row set from `times`."""
    def row(match: re.Match) -> str:
        name = next(n for n in times if n.startswith(match.group(2)))
        return f"{match.group(1)}{round(times[name])} s |"
    return re.sub(r"^(\| (\d\d) \|.*\| )[^|]*\|$", row, text, flags=re.M)


def fill_notebook(source: str, seconds: float) -> str:
    """A notebook's opening cell with the Tiny row's time set."""
    return NOTEBOOK_ROW.sub(lambda m: f"{m.group(1)}{tiny_cell(seconds)} {m.group(2)}", source)


def matrix_table(rows: tuple[dict, ...] | None = None) -> str:
    """The model-swap matrix as a Markdown table: counts, image tokens and predicted peaks from `matrix_rows()`."""
    if rows is None:
        sys.path.insert(0, str(ROOT))
        from helpers.model_matrix import MATRIX, matrix_rows

        rows = tuple({**r, "processor": s.processor} for r, s in zip(matrix_rows(), MATRIX))
    lines = ["| model | parameters (exact) | image tokens, 800×600 chart | image budget: what the recipe sets | "
             "SFT QLoRA peak | DPO LoRA peak | not modelled |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['model']}` | {r['parameters']:,} | {r['image_tokens_800x600']:,} | `{r['processor']}` | "
                     f"{r['sft_qlora_gib']:.1f} GiB | {r['dpo_lora_gib']:.1f} GiB | {'; '.join(r['lacks'])} |")
    return "\n".join(lines)


def fill_matrix(text: str, table: str) -> str:
    """README.md with the text between the matrix markers replaced by `table`."""
    start, end = MATRIX_MARKERS
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{table}\n{end}{rest.split(end, 1)[1]}"


def main() -> None:
    """Rewrite README.md and the notebooks' opening cells in place."""
    times = json.loads(RESULTS.read_text())["notebooks"]
    readme = ROOT / "README.md"
    readme.write_text(fill_matrix(fill_readme(readme.read_text(), times), matrix_table()))
    for name, seconds in times.items():
        path = ROOT / "notebooks" / name
        nb = nbformat.read(path, as_version=4)
        nb.cells[0].source = fill_notebook(nb.cells[0].source, seconds)
        nbformat.write(nb, path)
    print(f"tiny times from {RESULTS.relative_to(ROOT)} written to README.md and {len(times)} notebooks")


if __name__ == "__main__":
    main()
