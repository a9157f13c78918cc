"""Tiny offline mode: `COOKBOOK_TINY=1` swaps hub ids for tiny local models and the shipped data samples."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from helpers.paths import CONFIG_DIR, DATA_DIR, REPO_ROOT  # noqa: F401  (re-exported for the notebooks)

TINY_ENV = "COOKBOOK_TINY"
CACHE_ENV = "COOKBOOK_CACHE"

TINY_DATASETS = {
    "HuggingFaceM4/ChartQA": "chartqa",
    "openbmb/RLAIF-V-Dataset": "rlaif_v",
    "philschmid/amazon-product-descriptions-vlm": "amazon_products",
}
TINY_MODELS = {
    "Qwen/Qwen2-VL-7B-Instruct": "qwen2_vl",
    "Qwen/Qwen2-VL-2B-Instruct": "qwen2_vl",
    "HuggingFaceM4/idefics2-8b": "idefics2",
    "Qwen/Qwen2.5-VL-7B-Instruct": "qwen2_5_vl",
    "Qwen/Qwen3-VL-4B-Instruct": "qwen3_vl",
    "google/gemma-3-4b-it": "gemma3",
    "HuggingFaceTB/SmolVLM2-2.2B-Instruct": "smolvlm2",
}
# Bump when the tiny builders change so stale cached checkpoints are rebuilt.
BUILD_VERSION = "3"


def is_tiny() -> bool:
    """Return True when the `COOKBOOK_TINY` switch is on."""
    return os.environ.get(TINY_ENV, "").strip().lower() in {"1", "true", "yes"}


def cache_dir() -> Path:
    """Return where tiny checkpoints are cached (`COOKBOOK_CACHE`, default ~/.cache/vlm-cookbook)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vlm-cookbook")


def tiny_model_path(kind: str) -> Path:
    """Return the local path of the tiny checkpoint `kind`, building it on first use."""
    path = cache_dir() / f"tiny-{kind}-v{BUILD_VERSION}"
    if (path / "config.json").exists():
        return path
    from helpers import tiny_families  # heavy imports only when a build is needed

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    staging.chmod(0o755)
    try:
        tiny_families.BUILDERS[kind](staging)
        try:
            staging.rename(path)  # atomic: a concurrent builder either wins or finds it done
        except OSError:
            if not (path / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def resolve(hub_id: str) -> str:
    """Return `hub_id` unchanged, or in tiny mode the local tiny model or data sample standing in for it."""
    if not is_tiny():
        return hub_id
    if hub_id in TINY_DATASETS:
        return str(DATA_DIR / TINY_DATASETS[hub_id])
    if hub_id in TINY_MODELS:
        return str(tiny_model_path(TINY_MODELS[hub_id]))
    raise KeyError(f"{hub_id!r} has no tiny stand-in; known: {sorted(TINY_DATASETS) + sorted(TINY_MODELS)}")


def tiny_run_dir(name: str) -> str:
    """An emptied `runs/<name>` folder in the tiny cache: where tiny runs write checkpoints for later notebooks."""
    path = cache_dir() / "runs" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return str(path)
