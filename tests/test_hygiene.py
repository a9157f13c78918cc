"""Notebooks are committed clean, open with the fixed skeleton naming the helpers they import, and hold the Colab program
and nothing else (no line for tests or the tiny environment); helpers/ is what the notebooks import; no file holds a hub
token."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import clean_notebooks  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHECK = "nbval-check-output"
TAGS = ("parameters", "recipe", CHECK, "nbval-ignore-output", "nbval-skip")  # tools/clean_notebooks.py's order
# What only a test harness or the tiny environment would need: none of it belongs in the reader's notebook.
HARNESS = re.compile(r"resolve\(|TINY|is_tiny|tiny_run_dir|use_cpu=|COOKBOOK_|# ?NBVAL_|tinyenv|\btiny\b", re.I)
TOKEN = re.compile(r"hf_[A-Za-z0-9]{30,}")


def test_there_are_numbered_notebooks():
    assert NOTEBOOKS and all(re.fullmatch(r"\d\d[a-z]?_[a-z0-9_]+\.ipynb", p.name) for p in NOTEBOOKS)


# A plot committed for the reader: nbval (without --nbdime) skips image/png, so only its text/plain line is checked.
PLOT = {"image/png", "text/plain"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert metadata_problems(nb, path) == []
    for i, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        assert set(cell.metadata) <= {"tags"} and tags == [t for t in TAGS if t in tags], f"cell {i}: {cell.metadata}"
        assert not tags or cell.cell_type == "code", f"cell {i}: only code cells carry tags"
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is None, f"cell {i} has an execution count"
        checked = CHECK in tags
        assert bool(cell.outputs) == checked, f"cell {i}: outputs only, and always, on {CHECK} cells"
        for out in cell.outputs:
            assert out.output_type in ("stream", "execute_result", "display_data"), f"cell {i}: {out.output_type}"
            if out.output_type == "display_data":
                assert set(out.data) == PLOT, f"cell {i}: a display is a plot (PNG + its text line): {set(out.data)}"
            assert out.get("execution_count") is None
            text = out.get("text", "") + str({k: v for k, v in out.get("data", {}).items() if "image/" not in k})
            assert not re.search(r"0x[0-9a-fA-F]{6,}", text), f"cell {i}: a memory address is not reproducible"


def metadata_problems(nb: nbformat.NotebookNode, path: Path) -> list[str]:
    """How `nb`'s metadata differs from what tools/clean_notebooks.py writes for `path` (an A100 runtime for the
    notebooks that train or generate, none for those that run on any runtime), and a notebook whose recipe cells
    train without asking for a GPU."""
    problems = [] if nb.metadata == clean_notebooks.notebook_metadata(path) else [f"metadata {dict(nb.metadata)}"]
    if any("recipe" in c.metadata.get("tags", []) for c in nb.cells) and nb.metadata.get("accelerator") != "GPU":
        problems.append("recipe cells on a runtime without a GPU")
    return problems


def test_the_metadata_check_sees_a_gpu_asked_for_or_missing():
    """Negative control: notebook 01 (data formatting) asking for an A100, or notebook 03 (training) not, is caught."""
    formatting = nbformat.read(ROOT / "notebooks" / "01_dataset_formatting.ipynb", as_version=4)
    assert metadata_problems(formatting, ROOT / "notebooks" / "01_dataset_formatting.ipynb") == []
    formatting.metadata |= clean_notebooks.GPU_METADATA
    assert metadata_problems(formatting, ROOT / "notebooks" / "01_dataset_formatting.ipynb") != []
    training = nbformat.read(ROOT / "notebooks" / "03_sft_qwen2vl_chartqa.ipynb", as_version=4)
    training.metadata = nbformat.from_dict(clean_notebooks.NOTEBOOK_METADATA)
    assert len(metadata_problems(training, ROOT / "notebooks" / "03_sft_qwen2vl_chartqa.ipynb")) == 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_the_skeleton(path):
    cells = nbformat.read(path, as_version=4).cells
    title, install, versions, mode = cells[:4]
    assert title.cell_type == "markdown" and title.source.startswith("# ")
    assert re.search(r"^\|.*Hardware.*\|$", title.source, re.M), "hardware/time table in the opening cell"
    assert "google.colab" in install.source and "# Tested with" in install.source
    assert "__version__" in versions.source and "device" in versions.source
    settings = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    assert settings in ([], [3]), "the settings a reader changes: one cell tagged `parameters`, after the versions"
    if any("recipe" in c.metadata.get("tags", []) for c in cells):
        assert settings == [3], "a notebook with recipe cells has its settings in a parameters cell"


def harness_lines(cells: list) -> list[str]:
    """`cell i: line` for every line of `cells` (code or text) that exists for tests or the tiny environment."""
    return [f"cell {i}: {line.strip()}" for i, cell in enumerate(cells) for line in cell.source.splitlines()
            if HARNESS.search(line)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_holds_the_colab_program_and_nothing_else(path):
    assert harness_lines(nbformat.read(path, as_version=4).cells) == []


def test_the_harness_check_sees_a_tiny_line_in_code_or_text():
    """Negative control: each kind of line the notebooks used to carry is caught."""
    lines = ['model_id = resolve("Qwen/Qwen2-VL-7B-Instruct")', "if TINY:", "args = replace(args, **TINY_ARGS)",
             "    use_cpu=not torch.cuda.is_available(),", "# NBVAL_CHECK_OUTPUT", "In tiny mode these answers are noise."]
    cells = [nbformat.v4.new_code_cell(line) for line in lines[:-1]] + [nbformat.v4.new_markdown_cell(lines[-1])]
    assert len(harness_lines(cells)) == len(lines)
    assert harness_lines([nbformat.v4.new_code_cell('model_id = "Qwen/Qwen2-VL-7B-Instruct"')]) == []


def helpers_graph() -> dict[str, set[str]]:
    """helpers module -> the helpers modules it imports."""
    return {p.stem: imported_helpers(p.read_text()) for p in (ROOT / "helpers").glob("*.py") if p.stem != "__init__"}


def unreached(graph: dict[str, set[str]], roots: set[str]) -> set[str]:
    """The modules of `graph` that no import chain from `roots` reaches."""
    seen, todo = set(), list(roots)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += graph.get(module, set())
    return set(graph) - seen


def test_helpers_is_what_the_notebooks_import_and_nothing_else():
    """Every helpers module is imported by a notebook (directly, or by a module a notebook imports), and none is
    about the tiny environment: that is tinyenv/, on the test side."""
    graph = helpers_graph()
    assert unreached(graph, set(notebook_users())) == set()
    assert not [m for m in graph if "tiny" in m or "tinyenv" in (ROOT / "helpers" / f"{m}.py").read_text()]


def test_the_reach_check_sees_a_module_no_notebook_imports():
    """Negative control: a module only a script imports is reported."""
    graph = helpers_graph() | {"orphan": {"data"}}
    assert unreached(graph, set(notebook_users())) == {"orphan"}


def token_leaks(folder: Path) -> list[str]:
    """Files under `folder`, of any type (training_args.bin is a pickle), holding something shaped like a hub token."""
    return [str(p) for p in Path(folder).rglob("*")
            if p.is_file() and TOKEN.search(p.read_bytes().decode("latin-1"))]


def test_no_run_folder_holds_a_hub_token():
    """Run folders are git-ignored, so the scan below misses them: the scripts' `runs/` and the tiny environment's."""
    import os

    for folder in (ROOT / "runs", Path(os.environ["TINY_ENV_HOME"]) / "runs"):
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


USED = re.compile(r"^\*\*helpers used:\*\*(.*?)(?:\n\s*\n|\Z)", re.M | re.S)


def listed_helpers(markdown: str) -> set[str] | None:
    """The modules a notebook's `**helpers used:**` line names: backticked names outside parentheses, up to the
    sentence's end (a later sentence may name other code); None without such a line."""
    found = USED.search(markdown)
    if not found:
        return None
    text = re.sub(r"\([^)]*\)", "", found.group(1)).split(". ")[0]
    return set(re.findall(r"`(\w+)`", text))


def imported_helpers(code: str) -> set[str]:
    """The `helpers.X` modules code imports (`from helpers.X import`, `import helpers.X`, `from helpers import X`)."""
    source = re.sub(r"^(\s*)[!%].*$", r"\1pass", code, flags=re.M)  # IPython's shell and magic lines
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "helpers":
            modules |= {a.name for a in node.names} if node.module == "helpers" else {node.module.split(".")[1]}
        elif isinstance(node, ast.Import):
            modules |= {a.name.split(".")[1] for a in node.names if a.name.startswith("helpers.")}
    return modules


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_opening_cell_lists_the_helpers_the_code_imports(path):
    cells = nbformat.read(path, as_version=4).cells
    listed = listed_helpers(cells[0].source)
    assert listed is not None, "the opening cell has no `**helpers used:**` line"
    imported = imported_helpers("\n".join(c.source for c in cells if c.cell_type == "code"))
    assert listed == imported, f"`**helpers used:**` lists {sorted(listed)}; the code imports {sorted(imported)}"


def test_helpers_line_check_sees_an_import_or_a_name_too_many():
    """Negative control: an unlisted import, or a listed module nothing imports, makes the two sets differ."""
    line = "**helpers used:** `vision` (the image cap), `data` (validation, `format_dataset`), `fit`. And `SFTConfig`."
    code = ("!pip install x\nif True:\n    %time 1\n"  # shell and magic lines, as in the install cells
            "from helpers.vision import CHARTQA_MAX_PIXELS\nimport helpers.data\nfrom helpers import fit")
    assert listed_helpers(line) == imported_helpers(code) == {"vision", "data", "fit"}
    assert listed_helpers(line) != imported_helpers(code + "\nfrom helpers.plots import plot_history")
    assert listed_helpers(line.replace("`fit`", "`fit`, `amber`")) != imported_helpers(code)


def readme_modules(readme: str) -> dict[str, set[str]]:
    """helpers/README.md's table: module -> the notebook numbers its "used by" column names ("every notebook": all)."""
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            numbers = {p.name[:2] for p in NOTEBOOKS} if "every notebook" in cells[2] else set(
                re.findall(r"(?<![\w/])(\d\d)(?![\w/])", cells[2]))
            rows |= {name: numbers for name in re.findall(r"`(\w+)`", cells[0])}
    return rows


def notebook_users() -> dict[str, set[str]]:
    """helpers module -> the numbers of the notebooks whose code cells import it."""
    users: dict[str, set[str]] = {}
    for path in NOTEBOOKS:
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        for module in imported_helpers(code):
            users.setdefault(module, set()).add(path.name[:2])
    return users


def readme_problems(readme: str) -> list[str]:
    """How helpers/README.md's table disagrees with helpers/ (a module without a row, a row without a module) and with
    the notebooks' imports (per module, the notebooks named vs the notebooks importing it)."""
    rows, users = readme_modules(readme), notebook_users()
    modules = {p.stem for p in (ROOT / "helpers").glob("*.py")} - {"__init__"}
    problems = [f"no row: {m}" for m in sorted(modules - set(rows))]
    problems += [f"no module: {m}" for m in sorted(set(rows) - modules)]
    return problems + [f"{m}: names {sorted(rows.get(m, set()))}, imported by {sorted(users.get(m, set()))}"
                       for m in sorted(modules) if rows.get(m, set()) != users.get(m, set())]


def test_helpers_readme_lists_every_module_and_the_notebooks_that_import_it():
    assert readme_problems((ROOT / "helpers" / "README.md").read_text()) == []


def test_helpers_readme_check_sees_a_wrong_row():
    """Negative control: a notebook too many in a row, or a module without a row, is a problem."""
    readme = (ROOT / "helpers" / "README.md").read_text()
    assert readme_modules("| `x` | what | every notebook |")["x"] == {p.name[:2] for p in NOTEBOOKS}
    assert readme_problems(readme.replace("| 05, 06, `scripts/rewards.py` |", "| 04, 05, 06, `scripts/rewards.py` |")) == [
        "metrics: names ['04', '05', '06'], imported by ['05', '06']"]
    assert readme_problems("\n".join(line for line in readme.splitlines() if "`plots`" not in line)) == [
        "no row: plots", "plots: names [], imported by ['01', '03', '04', '06']"]
