"""Execute every notebook into runs/executed/ and print a one-line summary per notebook.

Run it inside the tiny environment (`make cookbook` = `tools/tiny-env .venv/bin/python tools/run_cookbook.py`): the
kernels inherit it, work in its home (whose runs/ the notebooks share, as they share Drive on Colab) and stay offline.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def execute(nb: nbformat.NotebookNode, path: Path) -> None:
    """Run `nb` in place, in the environment's home (the tiny environment's, or the notebook's folder outside it)."""
    home = os.environ.get("TINY_ENV_HOME", str(path.parent))
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": home}}).execute()


def main() -> int:
    """Run notebooks/NN_*.ipynb in order; return 1 if any failed."""
    out_dir = ROOT / "runs" / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    failed, seconds = 0, {}
    where = "the tiny environment" if "TINY_ENV_HOME" in os.environ else "this environment (not tools/tiny-env)"
    print(f"running in {where}; executed notebooks -> {out_dir.relative_to(ROOT)}/")
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        status = "ok"
        try:
            execute(nb, path)
        except Exception as err:  # report and carry on with the next notebook
            status, failed = f"FAILED: {type(err).__name__}: {str(err).strip().splitlines()[-1][:200]}", failed + 1
        nbformat.write(nb, out_dir / path.name)
        seconds[path.name] = round(time.perf_counter() - start, 1)
        print(f"  {path.name:<40} {seconds[path.name]:6.1f} s  {status}")
    if not failed:
        save_times(seconds)
    return 1 if failed else 0


def save_times(seconds: dict[str, float]) -> None:
    """Write the tiny-mode times with the machine and versions to benchmarks/results/ (`make tables` shows them)."""
    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # helpers, and benchmarks/bench.py
    from bench import environment

    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("model name")), "?")
    report = environment() | {"command": "make cookbook", "cpu": model, "cores": os.cpu_count(),
                              "avx512_bf16": "avx512_bf16" in cpu, "notebooks": seconds}
    path = ROOT / "benchmarks" / "results" / "cookbook-tiny.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    print("saved", path.relative_to(ROOT), "(make tables copies the times into README.md)")


if __name__ == "__main__":
    sys.exit(main())
