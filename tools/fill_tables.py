"""Copy the times of benchmarks/results/cookbook-tiny.json (each notebook in the tiny environment) into README.md's
table, and write README.md's model-swap matrix table (budget rows of `helpers.matrix_budget`, a ✓ per test CI collects for
each model) between its markers; write notebook 01's data-preparation table from benchmarks/results/data-prep-*.json
(`benchmarks/data_prep.py`) between its markers.

Usage: python tools/fill_tables.py   (`make tables`; `make cookbook` writes the results file)
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "cookbook-tiny.json"
MATRIX_MARKERS = ("<!-- matrix-table:start (tools/fill_tables.py writes it) -->", "<!-- matrix-table:end -->")

def fill_readme(text: str, times: dict[str, float]) -> str:
    """README.md with the last column of each notebook row set from `times`."""
    def row(match: re.Match) -> str:
        name = next(n for n in times if n.startswith(match.group(2)))
        return f"{match.group(1)}{round(times[name])} s |"
    return re.sub(r"^(\| (\d\d) \|.*\| )[^|]*\|$", row, text, flags=re.M)


# README column -> the test whose per-model runs earn a ✓: CI runs every collected test, and must pass to land.
CI_CHECKS = {
    "SFT ✓": "tests/test_matrix.py::test_sft_supervises_exactly_the_answer_and_the_end_of_turn",
    "DPO ✓": "tests/test_matrix.py::test_dpo_steps_raise_the_margin",
    "generation ✓": "tests/test_matrix.py::test_batched_generation_equals_one_by_one",
    "count ✓": "tests/test_budget_matrix.py::test_exact_count_equals_the_published_count",
}
# Run in a subprocess: print the ids pytest collects, leaving out tests marked skip, skipif or xfail.
COLLECT = """import sys, pytest
class Ids:
    def pytest_collection_finish(self, session):
        for item in session.items:
            if not any(item.get_closest_marker(m) for m in ("skip", "skipif", "xfail")):
                print("ID", item.nodeid)
sys.exit(pytest.main(["--collect-only", "-q", *sys.argv[1:]], plugins=[Ids()]))"""


def collect(files: list[str], cwd: Path = ROOT) -> tuple[str, ...]:
    """The test ids pytest collects from `files` (`pytest --collect-only`), without those marked skip/skipif/xfail."""
    out = subprocess.run([sys.executable, "-c", COLLECT, *files], cwd=cwd, capture_output=True, text=True, check=True)
    return tuple(line[3:] for line in out.stdout.splitlines() if line.startswith("ID "))


@functools.cache
def collected_ids() -> tuple[str, ...]:
    """The collected test ids of the CI_CHECKS files."""
    return collect(sorted({test.split("::")[0] for test in CI_CHECKS.values()}))


def ci_marks(models: list[str], ids: tuple[str, ...]) -> dict[str, dict[str, bool]]:
    """model -> CI_CHECKS column -> whether a collected test of that kind has the model as its parameter (hub id or
    the name after the owner)."""
    marks = {m: dict.fromkeys(CI_CHECKS, False) for m in models}
    for test_id in ids:
        test, _, param = test_id.partition("[")
        for column, wanted in CI_CHECKS.items():
            for m in models:
                if test == wanted and param[:-1] in (m, m.split("/")[1]):
                    marks[m][column] = True
    return marks


def matrix_table(rows: tuple[dict, ...] | None = None, ids: tuple[str, ...] | None = None) -> str:
    """The model-swap matrix as a Markdown table: counts, image tokens and predicted peaks from `matrix_rows()`, and a
    ✓ per kind of CI test (CI_CHECKS) that runs on the model."""
    if rows is None:
        sys.path.insert(0, str(ROOT))
        from helpers.matrix_budget import matrix_rows

        rows = matrix_rows()
    marks = ci_marks([r["model"] for r in rows], collected_ids() if ids is None else ids)
    lines = ["| model | parameters (exact) | image tokens, 800×600 chart | image budget (the recipe's line) | "
             f"SFT QLoRA peak | DPO LoRA peak | {' | '.join(CI_CHECKS)} | not modelled |",
             "|---" * (7 + len(CI_CHECKS)) + "|"]
    for r in rows:
        ticks = " | ".join("✓" if ok else "—" for ok in marks[r["model"]].values())
        lines.append(f"| `{r['model']}` | {r['parameters']:,} | {r['image_tokens_800x600']:,} | "
                     f"`{r['image_budget']}` | {r['sft_qlora_gib']:.1f} GiB | {r['dpo_lora_gib']:.1f} GiB | {ticks} | "
                     f"{'; '.join(r['lacks'])} |")
    return "\n".join(lines)


def between(text: str, markers: tuple[str, str], table: str) -> str:
    """`text` with what stands between the two `markers` replaced by `table`."""
    start, end = markers
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{table}\n{end}{rest.split(end, 1)[1]}"


def fill_matrix(text: str, table: str) -> str:
    """README.md with the text between the matrix markers replaced by `table`."""
    return between(text, MATRIX_MARKERS, table)


# Notebook 01's data-preparation table: the CPU measurement of benchmarks/data_prep.py (not its --tiny run).
DATA_PREP_NOTEBOOK = ROOT / "notebooks" / "01_dataset_formatting.ipynb"
DATA_PREP_MARKERS = ("<!-- data-prep-table:start (tools/fill_tables.py writes it from benchmarks/results/data-prep-*.json) -->",
                     "<!-- data-prep-table:end -->")
DATA_PREP_SETS = {"chartqa": ("ChartQA", "PNG charts, ~800×600", 28_300),  # hub rows: train split / all files
                  "rlaif_v": ("RLAIF-V", "JPEG photos, 640×480", 83_100)}
DATA_PREP_STEPS = {"validate": "validate", "format": "format", "plain_map": "plain `map`"}


def data_prep_report() -> dict:
    """The data-preparation measurement: benchmarks/results/data-prep-<device>.json (the --tiny run's file aside)."""
    paths = [p for p in sorted((ROOT / "benchmarks" / "results").glob("data-prep-*.json")) if "tiny" not in p.name]
    return json.loads(paths[0].read_text())


def data_prep_table(report: dict) -> str:
    """Notebook 01's table: seconds per 1,000 rows of each step and process count, and what the file says about the
    machine, the rows and the extrapolation to the full data sets (one core's CPU time)."""
    procs, results = report["procs"], report["seconds_per_1000_rows"]
    plural = {p: f"{p} process{'es' if p > 1 else ''}" for p in procs}
    head = [f"{DATA_PREP_STEPS[step]}, {plural[p]}" for step in DATA_PREP_STEPS for p in procs]
    lines = ["| synthetic rows | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for kind, (name, images, _) in DATA_PREP_SETS.items():
        r = results[kind]
        lines.append(f"| {name}: {images} | " + " | ".join(f"{r[step][str(p)]:.1f} s" for step in DATA_PREP_STEPS
                                                             for p in procs) + " |")
    load, cores = report["load_average"]["before"][0], report["cores"]
    busy = load >= cores  # no core free for a second process
    rows = {results[kind]["rows"] for kind in DATA_PREP_SETS}
    lines += ["", f"{report['cpu']}, {cores} cores{', shared with other jobs' if busy else ''} (load average "
              f"{load:.1f} at the start), {report['date']}; datasets {report['versions']['datasets']}, Pillow "
              f"{report['versions']['pillow']}; {'/'.join(f'{n:,}' for n in sorted(rows))} synthetic rows per set, the "
              f"fastest of {report['repeats']} runs."]
    if busy:
        chart = results["chartqa"]["validate_cpu"]
        lines.append("No core was free for a second process, so it could not cut the wall time; the CPU time of the "
                     "work stayed about the same (validating 1,000 ChartQA rows: "
                     + ", ".join(f"{chart[str(p)]:.1f} s with {plural[p]}" for p in procs) + ").")
    cpu = {kind: (results[kind]["validate_cpu"]["1"] + results[kind]["format_cpu"]["1"],
                  results[kind]["validate_cpu"]["1"] + results[kind]["plain_map_cpu"]["1"]) for kind in DATA_PREP_SETS}
    lines.append("One core's CPU time for the full data sets, validation + format (validation + plain `map`): " + "; ".join(
        f"{name}'s {rows / 1000:.1f}k rows {cpu[kind][0] * rows / 60_000:.0f} min ({cpu[kind][1] * rows / 60_000:.0f} min)"
        for kind, (name, _, rows) in DATA_PREP_SETS.items()) + ". Reading 1,000 chart sizes from the file headers: "
        f"{results['chartqa']['sizes_header']:.2f} s; decoding the charts: {results['chartqa']['sizes_decode']:.1f} s.")
    return "\n".join(lines)


def fill_data_prep(text: str, table: str) -> str:
    """`text` (notebook 01's markdown cell) with the text between the data-preparation markers replaced by `table`."""
    return between(text, DATA_PREP_MARKERS, table)


def data_prep_cell(cells: list) -> int:
    """The index of notebook 01's cell holding the data-preparation markers."""
    return next(i for i, c in enumerate(cells) if DATA_PREP_MARKERS[0] in c.source)


def main() -> None:
    """Rewrite README.md's tables and notebook 01's data-preparation table in place."""
    times = json.loads(RESULTS.read_text())["notebooks"]
    readme = ROOT / "README.md"
    readme.write_text(fill_matrix(fill_readme(readme.read_text(), times), matrix_table()))
    print(f"times of {len(times)} notebooks from {RESULTS.relative_to(ROOT)} and the matrix written to README.md")
    import nbformat

    nb = nbformat.read(DATA_PREP_NOTEBOOK, as_version=4)
    cell = nb.cells[data_prep_cell(nb.cells)]
    cell.source = fill_data_prep(cell.source, data_prep_table(data_prep_report()))
    nbformat.write(nb, DATA_PREP_NOTEBOOK)
    print(f"data-preparation table written to {DATA_PREP_NOTEBOOK.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
