"""Copy the times of benchmarks/results/cookbook-tiny.json (each notebook in the tiny environment) into README.md's
table, and write README.md's model-swap matrix table (budget rows of `helpers.matrix_budget`, a ✓ per test CI collects for
each model) between its markers.

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


def fill_matrix(text: str, table: str) -> str:
    """README.md with the text between the matrix markers replaced by `table`."""
    start, end = MATRIX_MARKERS
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{table}\n{end}{rest.split(end, 1)[1]}"


def main() -> None:
    """Rewrite README.md's tables in place."""
    times = json.loads(RESULTS.read_text())["notebooks"]
    readme = ROOT / "README.md"
    readme.write_text(fill_matrix(fill_readme(readme.read_text(), times), matrix_table()))
    print(f"times of {len(times)} notebooks from {RESULTS.relative_to(ROOT)} and the matrix written to README.md")


if __name__ == "__main__":
    main()
