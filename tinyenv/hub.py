"""The tiny stand-ins and where they live: tiny checkpoints laid out as a Hub cache, and the shipped data samples.

`tools/tiny-env` points `HF_HUB_CACHE` at `hub_cache()`, so `from_pretrained("Qwen/Qwen2-VL-7B-Instruct")` finds the
tiny checkpoint offline through huggingface_hub's own cache lookup (`refs/main` -> `snapshots/<commit>/`).
Run `python -m tinyenv.hub` to build every checkpoint and lay out the cache (once per cache; concurrent runs are safe).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data_samples"
CONFIG_DIR = DATA_DIR / "configs"
AMBER_SAMPLE = DATA_DIR / "amber"  # the AMBER-style sample (AMBER's own layout) that stands in for /content/AMBER
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


def cache_dir() -> Path:
    """Where tiny checkpoints are cached (`COOKBOOK_CACHE`, default ~/.cache/vlm-cookbook)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vlm-cookbook")


def hub_cache() -> Path:
    """The Hub cache (`HF_HUB_CACHE`) the tiny environment serves the models from."""
    return cache_dir() / "hub"


def tiny_model_path(kind: str) -> Path:
    """The local path of the tiny checkpoint `kind`, built on first use."""
    path = cache_dir() / f"tiny-{kind}-v{BUILD_VERSION}"
    if (path / "config.json").exists():
        return path
    from tinyenv import families  # heavy imports only when a build is needed

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    staging.chmod(0o755)
    try:
        families.BUILDERS[kind](staging)
        try:
            staging.rename(path)  # atomic: a concurrent builder either wins or finds it done
        except OSError:
            if not (path / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def commit(kind: str) -> str:
    """The stand-in commit hash of a tiny checkpoint's snapshot (stable per build version)."""
    return hashlib.sha1(f"tiny-{kind}-v{BUILD_VERSION}".encode()).hexdigest()


def snapshot(hub_id: str) -> Path:
    """The snapshot folder `hub_id` resolves to in the tiny Hub cache, laid out (and built) on first use."""
    kind = TINY_MODELS[hub_id]
    repo = hub_cache() / ("models--" + hub_id.replace("/", "--"))
    path = repo / "snapshots" / commit(kind)
    if (repo / "refs" / "main").is_file() and (path / "config.json").exists():
        return path
    built = tiny_model_path(kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    if not path.exists():
        link = path.with_name(f".{path.name}.{os.getpid()}")
        link.symlink_to(os.path.relpath(built, path.parent))
        os.replace(link, path)  # atomic, as huggingface_hub's own cache writes
    ref = repo / "refs" / f".main.{os.getpid()}"
    ref.write_text(commit(kind))
    os.replace(ref, repo / "refs" / "main")
    return path


def sample(hub_id: str) -> Path:
    """The shipped sample folder standing in for the data set `hub_id` (a Hub data set repository's layout)."""
    return DATA_DIR / TINY_DATASETS[hub_id]


def main() -> int:
    """Build every tiny checkpoint and lay out the Hub cache; print where it is."""
    for hub_id in TINY_MODELS:
        snapshot(hub_id)
    print(hub_cache())
    return 0


if __name__ == "__main__":
    sys.exit(main())
