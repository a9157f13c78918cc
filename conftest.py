"""Test session set-up: tiny mode for notebooks, offline hub clients, and no network at all."""

from __future__ import annotations

import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent / "tests"
sys.path.insert(0, str(TESTS))
import bnb_cpu  # noqa: E402
import netguard  # noqa: E402

# Inherited by the notebook kernels nbval starts: tiny mode, offline, headless plots, the kernel-side net guard.
os.environ["COOKBOOK_TINY"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["MPLBACKEND"] = "Agg"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["IPYTHONDIR"] = str(TESTS / "ipython")
netguard.install()
bnb_cpu.install()  # bitsandbytes' AVX512-BF16 CPU repack is never undone before training (tests/bnb_cpu.py)


def pytest_collection_modifyitems(items):
    """Give checked notebook cells an in-memory execution count: nbval skips output checks of 'unrun' cells,
    and the committed notebooks carry no execution counts at all."""
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is not None and cell.get("outputs") and cell.get("execution_count") is None:
            cell.execution_count = 1
