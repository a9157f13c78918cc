"""Where the repository's shipped files live: the data samples and the hub files copied into them."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data_samples"
CONFIG_DIR = DATA_DIR / "configs"
